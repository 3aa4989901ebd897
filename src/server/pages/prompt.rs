//! `/prompts/<name>` and `/prompts/<name>/<version>`: everything a person
//! needs to decide on a prompt, and the line to add it.

use askama::Template;
use axum::extract::{Path as UrlPath, State};
use registry_index::validate_name;
use semver::Version;

use super::plot::{self, Chart};
use super::{format, page, PageResult};
use crate::package::Manifest;
use crate::registry::api::{PackageInfo, VersionInfo};
use crate::registry::browse::PageExtras;
use crate::server::{ApiError, SharedState};

/// The provenance key `package --from-run` writes an ATTEMPT run's source
/// attention under (see `plot::parse_source_attention`).
pub(crate) const SOURCE_ATTENTION_KEY: &str = "source-attention";

#[derive(Template)]
#[template(path = "prompt.html")]
struct PromptPage {
    title: String,
    name: String,
    version: String,
    latest: bool,
    yanked: bool,
    yank_reason: Option<String>,
    description: String,
    license: String,
    task: String,
    base_model_name: String,
    fingerprint: String,
    hidden_size: u32,
    prompt_length: u32,
    dtype: String,
    prompt_set: bool,
    size: String,
    size_bytes: String,
    sha256: String,
    published: String,
    owners: Vec<String>,
    downloads_version: String,
    downloads_total: String,
    add_line: String,
    versions: Vec<VersionRow>,
    dependencies: Vec<(String, String)>,
    dependents: Vec<(String, String)>,
    metrics: Vec<(String, String)>,
    provenance: Vec<(String, String)>,
    norms: Option<Chart>,
    attention: Option<Chart>,
}

struct VersionRow {
    version: String,
    published: String,
    size: String,
    downloads: String,
    yanked: bool,
    reason: Option<String>,
    selected: bool,
}

pub(crate) async fn latest(State(state): State<SharedState>, UrlPath(name): UrlPath<String>) -> PageResult {
    render(&state, &name, None).await
}

pub(crate) async fn version(
    State(state): State<SharedState>,
    UrlPath((name, version)): UrlPath<(String, String)>,
) -> PageResult {
    let version = Version::parse(&version)
        .map_err(|e| ApiError::bad_request(format!("`{version}` is not a semver version: {e}")))?;
    render(&state, &name, Some(version)).await
}

async fn render(state: &SharedState, name: &str, wanted: Option<Version>) -> PageResult {
    validate_name(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let registry = &state.registry;
    let (info, downloads) = registry
        .package_with_downloads(name)
        .await?
        .ok_or_else(|| ApiError::not_found(format!("no package named `{name}`")))?;
    let selected = match &wanted {
        Some(v) => info
            .versions
            .iter()
            .find(|x| &x.version == v)
            .ok_or_else(|| ApiError::not_found(format!("{name}@{v} is not published")))?,
        None => info.latest().ok_or_else(|| ApiError::not_found(format!("`{name}` has no versions")))?,
    };
    let PageExtras { owners, dependents, manifest } = registry.page_extras(name, &selected.version).await?;
    let manifest = match manifest {
        Some(text) => Manifest::from_json(&text)
            .map_err(|e| tracing::warn!("the stored manifest of {name}@{} does not parse: {e:#}", selected.version))
            .ok(),
        None => None,
    };
    // A missing or unreadable blob costs the plot, not the page.
    let norms = match &selected.dtype {
        Some(_) => match state.norms.get(&selected.cksum, registry.blob_file(&selected.cksum)).await {
            Ok(norms) => plot::token_norms(&norms),
            Err(e) => {
                tracing::warn!("no token norms for {name}@{}: {e:#}", selected.version);
                None
            }
        },
        None => None,
    };
    let provenance: Vec<(String, String)> = manifest
        .as_ref()
        .map(|m| m.provenance.iter().map(|(k, v)| (k.clone(), v.clone())).collect())
        .unwrap_or_default();
    let attention = provenance
        .iter()
        .find(|(k, _)| k == SOURCE_ATTENTION_KEY)
        .and_then(|(_, v)| plot::source_attention(&plot::parse_source_attention(v)));
    let metrics = manifest
        .as_ref()
        .map(|m| m.metrics.iter().map(|(k, v)| (k.clone(), format::metric(*v))).collect())
        .unwrap_or_default();

    let count = |v: &Version| downloads.get(v).copied().unwrap_or(0);
    let reasons = yank_reasons(&info);
    let versions = info
        .versions
        .iter()
        .rev()
        .map(|v| VersionRow {
            version: v.version.to_string(),
            published: format::utc(v.published_at),
            size: format::bytes(v.size),
            downloads: format::thousands(count(&v.version)),
            yanked: v.yanked,
            reason: v.yanked.then(|| reason_of(&reasons, &v.version)).flatten(),
            selected: v.version == selected.version,
        })
        .collect();
    let template = PromptPage {
        title: format!("{name} {}", selected.version),
        name: name.to_string(),
        version: selected.version.to_string(),
        latest: info.latest().is_some_and(|l| l.version == selected.version),
        yanked: selected.yanked,
        yank_reason: selected.yanked.then(|| reason_of(&reasons, &selected.version)).flatten(),
        description: selected.description.clone(),
        license: selected.license.clone().unwrap_or_else(|| "not stated".into()),
        task: selected.task.clone(),
        base_model_name: selected.base_model_name.clone(),
        fingerprint: selected.base_model.hex().to_string(),
        hidden_size: selected.hidden_size,
        prompt_length: selected.prompt_length,
        dtype: selected.dtype.clone().unwrap_or_default(),
        prompt_set: selected.dtype.is_none(),
        size: format::bytes(selected.size),
        size_bytes: format::thousands(selected.size),
        sha256: selected.cksum.hex().to_string(),
        published: format::utc(selected.published_at),
        owners,
        downloads_version: format::thousands(count(&selected.version)),
        downloads_total: format::thousands(downloads.values().sum()),
        add_line: format!("attempt-pkg add {name}@{}", selected.version),
        versions,
        dependencies: dependencies_of(selected),
        dependents: dependents
            .into_iter()
            .map(|d| (d.name, d.versions.iter().map(Version::to_string).collect::<Vec<_>>().join(", ")))
            .collect(),
        metrics,
        provenance,
        norms,
        attention,
    };
    page(&template, state.config.auth_required)
}

fn dependencies_of(v: &VersionInfo) -> Vec<(String, String)> {
    v.deps.iter().map(|d| (d.name.clone(), d.req.to_string())).collect()
}

/// The reason of each version's most recent yank, oldest event first in the history.
fn yank_reasons(info: &PackageInfo) -> Vec<(Version, Option<String>)> {
    let mut last: Vec<(Version, Option<String>)> = Vec::new();
    for event in info.yank_history.iter().filter(|e| e.yanked) {
        last.retain(|(v, _)| v != &event.version);
        last.push((event.version.clone(), event.reason.clone()));
    }
    last
}

fn reason_of(reasons: &[(Version, Option<String>)], version: &Version) -> Option<String> {
    reasons.iter().find(|(v, _)| v == version).and_then(|(_, r)| r.clone())
}
