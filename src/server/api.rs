//! The JSON API: publish, yank/unyank, search, package info, owners.

use axum::body::Bytes;
use axum::extract::{Path as UrlPath, Query, State};
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use registry_index::validate_name;
use semver::Version;
use serde::Deserialize;
use serde_json::{json, Value};

use super::tokens::{check_owner_name, Scope};
use super::{owners, ApiError, ApiResult, SharedState};
use crate::package::{Artifact, LoadedPackage};
use crate::registry::api::{
    InfoResponse, ListResponse, PageMeta, PublishResponse, SearchMeta, SearchResponse, SimilarResponse, YankOutcome,
    YankResponse, MAX_PER_PAGE,
};

pub(crate) async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no such endpoint: {}", uri.path()))
}

/// `PUT /api/v1/prompts/new`, body = the artifact (a `.safetensors` file as
/// `attempt-pkg publish` builds it).
pub(crate) async fn publish(
    State(state): State<SharedState>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult<Json<PublishResponse>> {
    let token = state.require(&headers, Scope::Publish).await?;
    if body.is_empty() {
        return Err(ApiError::bad_request(
            "the request body is empty; it must be the artifact (use `attempt-pkg publish`)",
        ));
    }
    // Parsing and re-encoding validate the whole artifact (CPU work: off the I/O threads).
    let artifact = tokio::task::spawn_blocking(move || -> Result<Artifact, String> {
        let package = LoadedPackage::from_bytes(&body).map_err(|e| format!("invalid artifact: {e:#}"))?;
        let artifact = Artifact::from_parts(package.manifest.clone(), package.prompt.clone())
            .map_err(|e| format!("invalid package: {e:#}"))?;
        // The stored blob must be exactly what `attempt-pkg publish` builds,
        // so every registry holds one canonical artifact per content.
        if artifact.checksum() != &package.checksum {
            return Err(format!(
                "the artifact is valid but not in canonical form (sha256 {} re-encodes to {}); build it with `attempt-pkg publish`",
                package.checksum.hex(),
                artifact.checksum().hex()
            ));
        }
        Ok(artifact)
    })
    .await
    .map_err(|e| ApiError::internal(e.into()))?
    .map_err(|detail| ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, detail))?;
    let id = artifact.manifest().id();
    if !token.allows_package(&id.name) {
        return Err(ApiError::forbidden(format!(
            "token `{}` may not publish `{}` (it is limited to other packages)",
            token.name, id.name
        )));
    }

    // Ownership and duplicate checks see a stable registry: the write lock
    // is shared by every server process on this registry.
    let registry = &state.registry;
    let mut lock = registry.lock_writes().await.map_err(ApiError::internal)?;
    if let Some(existing) = registry.similar_name(&id.name).await? {
        if existing != id.name {
            return Err(ApiError::conflict(format!(
                "`{}` is too similar to the existing package `{existing}` (names differing only in `-`/`_` or case are the same package)",
                id.name
            )));
        }
    }
    if !owners::may_manage(registry.pool(), &id.name, &token.owner).await? {
        return Err(not_an_owner(&state, &token.owner, &id.name).await);
    }
    if let Some(info) = registry.info(&id.name).await? {
        if let Some(v) = info.versions.iter().find(|v| v.version == id.version) {
            return Err(ApiError::conflict(format!(
                "{id} is already published ({}); published versions are immutable, bump the version to publish a change",
                v.cksum.prefixed()
            )));
        }
    }
    // Claim a new (or unowned) package before publishing, so a crash after
    // the publish cannot leave it ownerless for someone else to claim.
    let claimed = owners::list(registry.pool(), &id.name).await?.is_empty();
    if claimed {
        owners::add(registry.pool(), &id.name, std::slice::from_ref(&token.owner)).await?;
    }
    let published = match registry.publish_locked(&mut lock, &artifact).await {
        Ok(p) => p,
        Err(e) => {
            if claimed {
                owners::remove(registry.pool(), &id.name, std::slice::from_ref(&token.owner)).await?;
            }
            return Err(classify_publish_error(e));
        }
    };
    tracing::info!("published {}@{} by {} (token {})", published.name, published.version, token.owner, token.name);
    Ok(Json(PublishResponse { published, warnings: Vec::new() }))
}

/// Registry failures (I/O, database) are the server's fault; everything else
/// LocalRegistry refuses is the request's (unsatisfiable dependencies, …).
fn classify_publish_error(err: anyhow::Error) -> ApiError {
    let internal = err.chain().any(|e| e.is::<std::io::Error>() || e.is::<sqlx::Error>());
    if internal {
        ApiError::internal(err)
    } else {
        ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, format!("{err:#}"))
    }
}

async fn not_an_owner(state: &SharedState, who: &str, package: &str) -> ApiError {
    let owners = owners::list(state.registry.pool(), package).await.unwrap_or_default();
    ApiError::forbidden(format!("`{who}` is not an owner of `{package}` (owners: {})", owners.join(", ")))
}

pub(crate) async fn yank(
    state: State<SharedState>,
    headers: HeaderMap,
    path: UrlPath<(String, String)>,
    query: Query<YankQuery>,
) -> ApiResult<Json<YankResponse>> {
    set_yanked(state, headers, path, query, true).await
}

pub(crate) async fn unyank(
    state: State<SharedState>,
    headers: HeaderMap,
    path: UrlPath<(String, String)>,
    query: Query<YankQuery>,
) -> ApiResult<Json<YankResponse>> {
    set_yanked(state, headers, path, query, false).await
}

#[derive(Debug, Deserialize)]
pub(crate) struct YankQuery {
    /// Why the version is yanked (yanks only).
    reason: Option<String>,
}

async fn set_yanked(
    State(state): State<SharedState>,
    headers: HeaderMap,
    UrlPath((name, version)): UrlPath<(String, String)>,
    Query(query): Query<YankQuery>,
    yanked: bool,
) -> ApiResult<Json<YankResponse>> {
    let token = state.require(&headers, Scope::Yank).await?;
    validate_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let version = Version::parse(&version)
        .map_err(|e| ApiError::bad_request(format!("`{version}` is not a semver version: {e}")))?;
    if !token.allows_package(&name) {
        return Err(ApiError::forbidden(format!(
            "token `{}` may not yank `{name}` (it is limited to other packages)",
            token.name
        )));
    }
    let info =
        state.registry.info(&name).await?.ok_or_else(|| ApiError::not_found(format!("no package named `{name}`")))?;
    if !info.versions.iter().any(|v| v.version == version) {
        return Err(ApiError::not_found(format!("{name}@{version} is not published")));
    }
    if !owners::may_manage(state.registry.pool(), &name, &token.owner).await? {
        return Err(not_an_owner(&state, &token.owner, &name).await);
    }
    if let Some(reason) = &query.reason {
        if reason.chars().count() > 500 || reason.chars().any(char::is_control) {
            return Err(ApiError::bad_request("the yank reason must be one line of at most 500 characters"));
        }
    }
    let outcome = state.registry.set_yanked(&name, &version, yanked, query.reason.as_deref()).await?;
    Ok(Json(YankResponse { changed: outcome == YankOutcome::Changed, ok: true }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct PromptsQuery {
    q: Option<String>,
    page: Option<u64>,
    per_page: Option<u64>,
}

/// `GET /api/v1/prompts`: with `q`, a search (best match first, `per_page`
/// hits); without, one page of the listing by name (`page` from 1).
pub(crate) async fn prompts(
    State(state): State<SharedState>,
    headers: HeaderMap,
    Query(query): Query<PromptsQuery>,
) -> ApiResult<Response> {
    state.check_read(&headers).await?;
    let per_page = query.per_page.unwrap_or(20).clamp(1, MAX_PER_PAGE);
    let Some(q) = query.q else {
        let page = query.page.unwrap_or(1);
        if page == 0 {
            return Err(ApiError::bad_request("`page` counts from 1"));
        }
        let offset = (page - 1).saturating_mul(per_page);
        let (prompts, more) = state.registry.list_page(offset, per_page).await?;
        let meta = PageMeta { next_page: more.then_some(page + 1), page, per_page };
        return Ok(Json(ListResponse { meta, prompts }).into_response());
    };
    if !q.chars().any(char::is_alphanumeric) {
        return Err(ApiError::bad_request("the query `q` has no words to search for (e.g. ?q=sentiment)"));
    }
    let limit = usize::try_from(per_page).unwrap_or(20);
    let hits = state.registry.search(&q, limit).await?;
    Ok(Json(SearchResponse { meta: SearchMeta { total: hits.len() }, prompts: hits }).into_response())
}

pub(crate) async fn info(
    State(state): State<SharedState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Json<InfoResponse>> {
    state.check_read(&headers).await?;
    validate_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    let package =
        state.registry.info(&name).await?.ok_or_else(|| ApiError::not_found(format!("no package named `{name}`")))?;
    let owners = owners::list(state.registry.pool(), &name).await?;
    Ok(Json(InfoResponse { owners, package }))
}

/// `GET /api/v1/prompts/<name>/similar`: the existing package `name` would
/// be confused with (case, `-`/`_`), so clients can say "did you mean".
pub(crate) async fn similar(
    State(state): State<SharedState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Json<SimilarResponse>> {
    state.check_read(&headers).await?;
    validate_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    Ok(Json(SimilarResponse { similar: state.registry.similar_name(&name).await? }))
}

#[derive(Debug, Deserialize)]
pub(crate) struct OwnerList {
    users: Vec<String>,
}

pub(crate) async fn owners_list(
    State(state): State<SharedState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
) -> ApiResult<Json<Value>> {
    state.check_read(&headers).await?;
    validate_name(&name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if state.registry.info(&name).await?.is_none() {
        return Err(ApiError::not_found(format!("no package named `{name}`")));
    }
    let users = owners::list(state.registry.pool(), &name).await?;
    Ok(Json(json!({ "users": users })))
}

pub(crate) async fn owners_add(
    State(state): State<SharedState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    Json(body): Json<OwnerList>,
) -> ApiResult<Json<Value>> {
    let users = check_owner_change(&state, &headers, &name, &body).await?;
    owners::add(state.registry.pool(), &name, &users).await?;
    Ok(Json(json!({ "ok": true, "users": owners::list(state.registry.pool(), &name).await? })))
}

pub(crate) async fn owners_remove(
    State(state): State<SharedState>,
    headers: HeaderMap,
    UrlPath(name): UrlPath<String>,
    Json(body): Json<OwnerList>,
) -> ApiResult<Json<Value>> {
    let users = check_owner_change(&state, &headers, &name, &body).await?;
    // Under the write lock, so two removals on two servers cannot leave no owner.
    let _lock = state.registry.lock_writes().await.map_err(ApiError::internal)?;
    let current = owners::list(state.registry.pool(), &name).await?;
    if current.iter().all(|o| users.contains(o)) {
        return Err(ApiError::bad_request(format!("`{name}` must keep at least one owner")));
    }
    owners::remove(state.registry.pool(), &name, &users).await?;
    Ok(Json(json!({ "ok": true, "users": owners::list(state.registry.pool(), &name).await? })))
}

async fn check_owner_change(
    state: &SharedState,
    headers: &HeaderMap,
    name: &str,
    body: &OwnerList,
) -> ApiResult<Vec<String>> {
    let token = state.require(headers, Scope::Publish).await?;
    validate_name(name).map_err(|e| ApiError::bad_request(e.to_string()))?;
    if body.users.is_empty() || body.users.len() > 100 {
        return Err(ApiError::bad_request("`users` must list 1 to 100 owner names"));
    }
    for user in &body.users {
        check_owner_name(user).map_err(|e| ApiError::bad_request(e.to_string()))?;
    }
    if !token.allows_package(name) {
        return Err(ApiError::forbidden(format!("token `{}` may not manage `{name}`", token.name)));
    }
    if state.registry.info(name).await?.is_none() {
        return Err(ApiError::not_found(format!("no package named `{name}`")));
    }
    let current = owners::list(state.registry.pool(), name).await?;
    if !current.iter().any(|o| o == &token.owner) {
        return Err(not_an_owner(state, &token.owner, name).await);
    }
    Ok(body.users.clone())
}
