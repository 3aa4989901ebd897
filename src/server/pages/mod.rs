//! The registry's web pages, beside the API and rendered from the same
//! `LocalRegistry` data (no second source of truth):
//!
//! ```text
//! GET /                          search (the API's full-text search), task and base-model filters,
//!                                newest and most downloaded packages, registry totals
//! GET /prompts/<name>[/<vers>]   one package: every version, facts, plots, the `add` line
//! GET /models/<fingerprint>      every package for one frozen base model
//! GET /static/pages.css          the one stylesheet (the pages load nothing else)
//! ```
//!
//! Templates are askama's (`templates/`, compiled in), which HTML-escapes
//! every value, so names, descriptions and metadata from publishers render
//! as text. Every page carries a Content-Security-Policy that allows only
//! the server's own stylesheet and `data:` images: no script runs, nothing
//! external loads, so the pages work offline. `--auth-required` protects
//! them like the index.

mod cache;
mod format;
mod home;
mod model;
mod norms;
mod plot;
mod prompt;

use askama::Template;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;

pub(crate) use cache::PageCache;
pub(crate) use norms::NormCache;

use super::{ApiError, SharedState};
use crate::registry::api::PackageSummary;
use crate::registry::browse::ListedPackage;

/// No script, no frames, no external anything: the stylesheet and inline
/// SVG (which `img-src` does not govern) are all the pages use.
const CONTENT_SECURITY_POLICY: &str =
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'";
const STYLESHEET: &str = include_str!("pages.css");

pub(crate) fn routes(state: &SharedState) -> Router<SharedState> {
    Router::new()
        .route("/", get(home::home))
        .route("/prompts/{name}", get(prompt::latest))
        .route("/prompts/{name}/{version}", get(prompt::version))
        .route("/models/{fingerprint}", get(model::model))
        .layer(middleware::from_fn_with_state(state.clone(), served_from_cache))
        .route("/static/pages.css", get(stylesheet))
}

/// The read check of every page (GET and HEAD; the router answers other
/// methods with 405), then a page from [`PageCache`] when it holds a fresh
/// one, else the handler's page, kept when it is a 200 to a GET. The
/// handlers do not check again: a token is looked up (and rate-limited) once
/// per view.
async fn served_from_cache(State(state): State<SharedState>, request: Request, next: Next) -> Response {
    let method = request.method().clone();
    if method != Method::GET && method != Method::HEAD {
        return next.run(request).await;
    }
    if let Err(e) = state.check_read(request.headers()).await {
        return PageError(e).into_response();
    }
    if method == Method::HEAD {
        return next.run(request).await;
    }
    let key = request.uri().path_and_query().map(|p| p.as_str().to_string()).unwrap_or_default();
    let private = state.config.auth_required;
    if let Some(body) = state.pages.get(&key) {
        return html(StatusCode::OK, body, private);
    }
    let generation = state.pages.generation();
    let response = next.run(request).await;
    if response.status() != StatusCode::OK {
        return response;
    }
    let (parts, body) = response.into_parts();
    match axum::body::to_bytes(body, usize::MAX).await {
        Ok(bytes) => {
            state.pages.put(key, generation, bytes.clone());
            Response::from_parts(parts, Body::from(bytes))
        }
        Err(e) => PageError(ApiError::internal(anyhow::anyhow!("reading a rendered page: {e}"))).into_response(),
    }
}

/// After every successful write through the API (any method but GET and
/// HEAD), the cached pages are stale.
pub(crate) async fn invalidate_after_writes(
    State(state): State<SharedState>,
    request: Request,
    next: Next,
) -> Response {
    let write = !matches!(*request.method(), Method::GET | Method::HEAD);
    let response = next.run(request).await;
    if write && response.status().is_success() {
        state.pages.invalidate();
    }
    response
}

async fn stylesheet() -> Response {
    let mut response = (StatusCode::OK, STYLESHEET).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/css; charset=utf-8"));
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=3600"));
    secure(headers);
    response
}

/// The headers every page response carries.
fn secure(headers: &mut HeaderMap) {
    headers.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CONTENT_SECURITY_POLICY));
    headers.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
}

/// A rendered page; its status is 200.
fn page(template: &impl Template, private: bool) -> Result<Response, PageError> {
    let body = template
        .render()
        .map_err(|e| PageError(ApiError::internal(anyhow::Error::new(e).context("rendering a page"))))?;
    Ok(html(StatusCode::OK, body, private))
}

fn html(status: StatusCode, body: impl Into<Body>, private: bool) -> Response {
    let mut response = (status, body.into()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    // Download counts change by the minute: revalidate, and keep pages of a
    // private registry out of shared caches.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if private { "private, no-cache" } else { "no-cache" }),
    );
    secure(headers);
    response
}

/// An API error shown as a page (same status, same message).
pub(crate) struct PageError(pub ApiError);

impl From<ApiError> for PageError {
    fn from(e: ApiError) -> PageError {
        PageError(e)
    }
}

impl From<anyhow::Error> for PageError {
    fn from(e: anyhow::Error) -> PageError {
        PageError(ApiError::internal(e))
    }
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    title: String,
    detail: &'a str,
}

impl IntoResponse for PageError {
    fn into_response(self) -> Response {
        let status = self.0.status;
        let title = format!("{} {}", status.as_u16(), status.canonical_reason().unwrap_or("error"));
        let body = ErrorPage { title, detail: &self.0.detail }
            .render()
            .unwrap_or_else(|_| String::from("<!doctype html><title>error</title><p>the error page failed to render"));
        let mut response = html(status, body, true);
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer realm=\"attempt-pkg\""));
        }
        response
    }
}

type PageResult = Result<Response, PageError>;

/// One package in a table of packages.
pub(crate) struct PackageRow {
    pub name: String,
    pub version: String,
    pub task: String,
    pub description: String,
    pub model_hex: String,
    pub model_short: String,
    pub prompt_length: u32,
    pub yanked: bool,
    /// Left empty where the list does not know it (search hits).
    pub downloads: String,
    pub published: String,
}

impl PackageRow {
    fn from_summary(s: &PackageSummary) -> PackageRow {
        PackageRow {
            name: s.name.clone(),
            version: s.latest.to_string(),
            task: s.task.clone(),
            description: s.description.clone(),
            model_hex: s.base_model.hex().to_string(),
            model_short: format::short_hex(s.base_model.hex()),
            prompt_length: s.prompt_length,
            yanked: s.yanked,
            downloads: String::new(),
            published: String::new(),
        }
    }

    fn from_listed(p: &ListedPackage) -> PackageRow {
        PackageRow {
            downloads: format::thousands(p.downloads),
            published: format::utc(p.published_at),
            ..PackageRow::from_summary(&p.summary)
        }
    }
}
