//! `/`: search and filters over the registry, its newest and most downloaded
//! packages, and its totals.

use askama::Template;
use axum::extract::{Query, State};
use registry_index::Checksum;
use serde::Deserialize;

use super::{format, page, PackageRow, PageResult};
use crate::registry::browse::{Filters, ModelChoice};
use crate::server::{ApiError, SharedState};

/// Rows per page of results, and of the home page's two lists.
const RESULTS_PER_PAGE: u64 = 50;
const LIST_LENGTH: usize = 10;

#[derive(Debug, Deserialize)]
pub(crate) struct HomeQuery {
    #[serde(default)]
    q: String,
    #[serde(default)]
    task: String,
    #[serde(default)]
    model: String,
    page: Option<u64>,
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage {
    title: String,
    q: String,
    task: String,
    model: String,
    tasks: Vec<String>,
    models: Vec<ModelOption>,
    packages: String,
    versions: String,
    downloads: String,
    /// `None` when nothing was asked: the page shows the two lists instead.
    results: Option<Vec<PackageRow>>,
    /// Why there are no results, when it is not "nothing matched".
    notice: Option<String>,
    /// Query string of the next page of results (without `?`).
    next_page: Option<String>,
    newest: Vec<PackageRow>,
    popular: Vec<PackageRow>,
}

struct ModelOption {
    hex: String,
    label: String,
}

impl ModelOption {
    fn of(m: &ModelChoice) -> ModelOption {
        ModelOption {
            hex: m.fingerprint.hex().to_string(),
            label: format!("{} ({}…, {} packages)", m.name, format::short_hex(m.fingerprint.hex()), m.packages),
        }
    }
}

pub(crate) async fn home(State(state): State<SharedState>, Query(query): Query<HomeQuery>) -> PageResult {
    let registry = &state.registry;
    let q = query.q.trim().to_string();
    let filters = Filters {
        task: Some(query.task.trim().to_string()).filter(|t| !t.is_empty()),
        base_model: match query.model.trim() {
            "" => None,
            text => Some(Checksum::parse(text).map_err(|e| ApiError::bad_request(format!("model filter: {e}")))?),
        },
    };
    let page_number = query.page.unwrap_or(1).max(1);
    let totals = registry.totals().await?;
    let mut notice = None;
    let mut next_page = None;
    let results = if !q.is_empty() {
        if q.chars().any(char::is_alphanumeric) {
            let hits = registry.search_filtered(&q, &filters, RESULTS_PER_PAGE as usize).await?;
            Some(hits.iter().map(PackageRow::from_summary).collect())
        } else {
            notice = Some(format!("`{q}` has no words to search for; try a task or a name, e.g. sentiment"));
            Some(Vec::new())
        }
    } else if !filters.is_empty() {
        let offset = (page_number - 1).saturating_mul(RESULTS_PER_PAGE);
        let (listed, more) = registry.list_filtered(&filters, offset, RESULTS_PER_PAGE).await?;
        if more {
            next_page = Some(next_page_query(&query, page_number + 1));
        }
        Some(listed.iter().map(PackageRow::from_listed).collect())
    } else {
        None
    };
    let (newest, popular) = if results.is_none() {
        (
            registry.newest(LIST_LENGTH).await?.iter().map(PackageRow::from_listed).collect(),
            registry.most_downloaded(LIST_LENGTH).await?.iter().map(PackageRow::from_listed).collect(),
        )
    } else {
        (Vec::new(), Vec::new())
    };
    let template = HomePage {
        title: "Prompt registry".into(),
        q,
        task: filters.task.clone().unwrap_or_default(),
        model: filters.base_model.as_ref().map(|c| c.hex().to_string()).unwrap_or_default(),
        tasks: registry.tasks().await?,
        models: registry.models().await?.iter().map(ModelOption::of).collect(),
        packages: format::thousands(totals.packages),
        versions: format::thousands(totals.versions),
        downloads: format::thousands(totals.downloads),
        results,
        notice,
        next_page,
        newest,
        popular,
    };
    page(&template, state.config.auth_required)
}

fn next_page_query(query: &HomeQuery, page: u64) -> String {
    let mut out = url::form_urlencoded::Serializer::new(String::new());
    out.append_pair("task", query.task.trim())
        .append_pair("model", query.model.trim())
        .append_pair("page", &page.to_string());
    out.finish()
}
