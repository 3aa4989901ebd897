//! `attempt-pkg serve`: a registry directory exposed over HTTP.
//!
//! The server is a thin layer over [`LocalRegistry`] (the same code as local
//! publishing, so the same validation and crash safety):
//!
//! ```text
//! GET    /index/config.json                     dl, api, auth-required
//! GET    /index/<prefix>/<name>                 sparse index file (ETag, If-None-Match → 304)
//! GET    /blobs/sha256/<hex>                    artifact (Range → 206/416, immutable caching)
//! PUT    /api/v1/prompts/new                    publish (body = artifact bytes)
//! GET    /api/v1/prompts?q=…                    search
//! GET    /api/v1/prompts?page=N&per_page=M      listing by name, one page (no `q`)
//! GET    /api/v1/prompts/<name>                 package info
//! GET    /api/v1/prompts/<name>/similar         the confusable existing name, if any
//! DELETE /api/v1/prompts/<name>/<vers>/yank     yank (`?reason=…` optional)
//! PUT    /api/v1/prompts/<name>/<vers>/unyank   unyank
//! GET|PUT|DELETE /api/v1/prompts/<name>/owners  owners
//! GET    /  /prompts/<name>[/<vers>]  /models/<fingerprint>   web pages (pages/)
//! ```
//!
//! Every URL path is validated (package-name rules, 64-hex checksums) before
//! a file-system path is built from it. See docs/server.md for deployment.

mod api;
mod blobs;
mod downloads;
mod error;
mod index;
pub mod owners;
mod pages;
mod ratelimit;
pub mod tokens;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use axum::extract::DefaultBodyLimit;
use axum::http::HeaderMap;
use axum::routing::{delete, get, put};
use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

use crate::registry::LocalRegistry;
pub use error::{ApiError, ApiResult};
use ratelimit::RateLimiter;
use tokens::{Scope, TokenInfo};

/// Request bodies other than uploads (owner lists) are tiny.
const SMALL_BODY_LIMIT: usize = 64 * 1024;
/// Request line + headers.
const MAX_HEADER_BYTES: usize = 64 * 1024;
const MAX_HEADERS: usize = 64;

/// How `attempt-pkg serve` is configured.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub root: PathBuf,
    /// PostgreSQL URL of the registry database; `None` = SQLite in `root`.
    pub database_url: Option<String>,
    pub addr: SocketAddr,
    /// Reads (index, blobs, search, info) need a token too.
    pub auth_required: bool,
    /// The URL clients reach this server at (behind a proxy); else `dl` and
    /// `api` in config.json are relative to the index URL.
    pub public_url: Option<String>,
    pub max_upload_bytes: usize,
    /// Authenticated API requests per minute and token, on average.
    pub rate_per_minute: u32,
    pub rate_burst: u32,
    /// Threads serving connections.
    pub workers: usize,
    /// How often blob download counts are written to the database; zero
    /// turns counting off.
    pub download_flush: Duration,
}

/// Shared by every request.
pub(crate) struct AppState {
    registry: LocalRegistry,
    config: ServerConfig,
    limiter: RateLimiter,
    index_cache: index::IndexCache,
    /// Blob downloads not yet written to the database (`None`: not counted).
    downloads: Option<Arc<downloads::DownloadCounter>>,
    /// Per-token norms for the package pages' plots.
    norms: pages::NormCache,
    /// Rendered pages, for a few seconds or until the next write.
    pages: Arc<pages::PageCache>,
    /// Test hook (`ATTEMPT_TEST_CUT_BLOB_AFTER=N`): whole-blob responses stop
    /// after N bytes, as if the connection dropped, to test resumption.
    cut_blob_after: Option<u64>,
}

type SharedState = Arc<AppState>;

impl AppState {
    /// The token the request carries, if any; an invalid or revoked token is 401.
    async fn token(&self, headers: &HeaderMap) -> ApiResult<Option<TokenInfo>> {
        let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else { return Ok(None) };
        let value = value.to_str().map_err(|_| ApiError::unauthorized("the Authorization header is not valid text"))?;
        let secret = value.strip_prefix("Bearer ").unwrap_or(value).trim();
        match tokens::authenticate(self.registry.pool(), secret).await? {
            Some(token) => Ok(Some(token)),
            None => Err(ApiError::unauthorized(
                "the token is invalid or revoked; create a new one with `attempt-pkg token create` on the server \
                 and store it with `attempt-pkg login`",
            )),
        }
    }

    /// A valid token with `scope`, within its rate limit.
    async fn require(&self, headers: &HeaderMap, scope: Scope) -> ApiResult<TokenInfo> {
        let token = self.token(headers).await?.ok_or_else(|| {
            ApiError::unauthorized(format!(
                "this request needs a token with the `{scope}` scope; pass --token, set ATTEMPT_TOKEN, \
                 or run `attempt-pkg login --registry NAME`"
            ))
        })?;
        if !token.has_scope(scope) {
            return Err(ApiError::forbidden(format!(
                "token `{}` lacks the `{scope}` scope (it has: {})",
                token.name,
                token.scopes.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(", ")
            )));
        }
        self.rate_limit(&token)?;
        tokens::touch(self.registry.pool(), token.id).await;
        Ok(token)
    }

    /// Reads are open unless the registry requires authentication.
    async fn check_read(&self, headers: &HeaderMap) -> ApiResult<()> {
        let token = self.token(headers).await?;
        if self.config.auth_required && token.is_none() {
            return Err(ApiError::unauthorized(
                "this registry requires authentication for reads; run `attempt-pkg login --registry NAME` or set ATTEMPT_TOKEN",
            ));
        }
        Ok(())
    }

    fn rate_limit(&self, token: &TokenInfo) -> ApiResult<()> {
        self.limiter.check(token.id).map_err(|wait| {
            let secs = wait.as_secs().max(1);
            let mut err = ApiError::new(
                axum::http::StatusCode::TOO_MANY_REQUESTS,
                format!("token `{}` is over its rate limit; retry in {secs} s", token.name),
            );
            err.retry_after = Some(secs);
            err
        })
    }
}

/// The HTTP routes over an opened registry.
pub(crate) fn router(state: SharedState) -> Router {
    let upload_limit = state.config.max_upload_bytes;
    Router::new()
        .route("/index/{*path}", get(index::index_file))
        .route("/blobs/sha256/{*path}", get(blobs::blob))
        .route("/api/v1/prompts/new", put(api::publish).layer(DefaultBodyLimit::max(upload_limit)))
        .route("/api/v1/prompts", get(api::prompts))
        .route("/api/v1/prompts/{name}", get(api::info))
        .route("/api/v1/prompts/{name}/{version}/yank", delete(api::yank))
        .route("/api/v1/prompts/{name}/{version}/unyank", put(api::unyank))
        .route("/api/v1/prompts/{name}/similar", get(api::similar))
        .route("/api/v1/prompts/{name}/owners", get(api::owners_list).put(api::owners_add).delete(api::owners_remove))
        .merge(pages::routes(&state))
        .fallback(api::not_found)
        .layer(DefaultBodyLimit::max(SMALL_BODY_LIMIT))
        .layer(axum::middleware::from_fn_with_state(state.clone(), pages::invalidate_after_writes))
        .with_state(state)
}

/// Opens (and so repairs) the registry, binds, prints `Serving <root> on
/// http://<addr>` on stdout, and serves until the process is stopped.
///
/// Connections are handled by `config.workers` threads, each with its own
/// single-threaded runtime accepting from the shared socket (like nginx's
/// worker processes): a connection stays on one thread, so requests cost no
/// cross-thread wake-ups. The database pool and its background tasks live
/// on a small shared runtime.
pub fn serve(config: ServerConfig) -> Result<()> {
    let shared = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("attempt-db")
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let registry = shared.block_on(LocalRegistry::open_with_database(&config.root, config.database_url.as_deref()))?;
    let listener = std::net::TcpListener::bind(config.addr)
        .with_context(|| format!("cannot listen on {}; is another server using the port?", config.addr))?;
    let local = listener.local_addr()?;
    let cut_blob_after = std::env::var("ATTEMPT_TEST_CUT_BLOB_AFTER").ok().and_then(|v| v.parse().ok());
    let workers = config.workers.max(1);
    let pages = Arc::new(pages::PageCache::default());
    let downloads = (!config.download_flush.is_zero()).then(|| {
        let counter = Arc::new(downloads::DownloadCounter::default());
        shared.spawn(downloads::flush_loop(counter.clone(), registry.clone(), pages.clone(), config.download_flush));
        counter
    });
    let state = Arc::new(AppState {
        registry,
        limiter: RateLimiter::new(config.rate_per_minute, config.rate_burst),
        index_cache: index::IndexCache::default(),
        downloads,
        norms: pages::NormCache::default(),
        pages,
        cut_blob_after,
        config,
    });
    println!("Serving {} on http://{local}", state.config.root.display());
    use std::io::Write as _;
    let _ = std::io::stdout().flush();
    let app = router(state);
    // One acceptor hands connections round-robin to the workers: balanced
    // even when many clients connect at once (a shared accept queue lets the
    // first thread to wake take them all).
    let mut senders = Vec::with_capacity(workers);
    let mut threads = Vec::with_capacity(workers);
    for i in 0..workers {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel::<std::net::TcpStream>();
        senders.push(tx);
        let app = app.clone();
        let thread = std::thread::Builder::new().name(format!("attempt-http-{i}")).spawn(move || -> Result<()> {
            let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            runtime.block_on(worker_loop(rx, app));
            Ok(())
        })?;
        threads.push(thread);
    }
    listener.set_nonblocking(false)?;
    let mut next = 0usize;
    for conn in listener.incoming() {
        match conn {
            Ok(stream) => {
                if senders[next % workers].send(stream).is_err() {
                    break; // the worker died; its join below reports why
                }
                next = next.wrapping_add(1);
            }
            Err(e) => {
                // Out of file descriptors and the like: back off, keep serving.
                tracing::warn!("accept failed: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
    drop(senders);
    for thread in threads {
        match thread.join() {
            Ok(result) => result?,
            Err(_) => anyhow::bail!("a server thread panicked"),
        }
    }
    drop(shared);
    Ok(())
}

async fn worker_loop(mut connections: tokio::sync::mpsc::UnboundedReceiver<std::net::TcpStream>, app: Router) {
    while let Some(stream) = connections.recv().await {
        if stream.set_nonblocking(true).is_err() {
            continue;
        }
        let Ok(stream) = tokio::net::TcpStream::from_std(stream) else { continue };
        let _ = stream.set_nodelay(true);
        let service = TowerToHyperService::new(app.clone());
        tokio::spawn(async move {
            let result = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(30))
                .max_buf_size(MAX_HEADER_BYTES.max(8192))
                .max_headers(MAX_HEADERS)
                .serve_connection(TokioIo::new(stream), service)
                .await;
            if let Err(e) = result {
                tracing::debug!("connection ended with an error: {e}");
            }
        });
    }
}
