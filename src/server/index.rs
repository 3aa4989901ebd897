//! The sparse index over HTTP: `config.json` and one file per package, with
//! strong ETags so clients revalidate cheaply (304).

use std::collections::HashMap;
use std::io;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::sync::RwLock;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use registry_index::{index_path, IndexConfig};

use super::{ApiError, ApiResult, SharedState};

/// Index files in memory, keyed by relative path and revalidated against the
/// file's inode, size and mtime on every request (writers replace files by
/// rename, so a new version is a new inode): a `stat` instead of a read.
#[derive(Default)]
pub(crate) struct IndexCache {
    files: RwLock<HashMap<String, Cached>>,
}

#[derive(Clone)]
struct Cached {
    stamp: (u64, u64, i64, i64),
    body: Bytes,
    etag: HeaderValue,
}

impl IndexCache {
    /// The file's bytes and ETag; `None` if it does not exist.
    fn get(&self, rel: &str, path: &Path) -> io::Result<Option<(Bytes, HeaderValue)>> {
        let meta = match std::fs::metadata(path) {
            Ok(m) => m,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let stamp = (meta.ino(), meta.len(), meta.mtime(), meta.mtime_nsec());
        if let Some(hit) = self.files.read().unwrap_or_else(|p| p.into_inner()).get(rel) {
            if hit.stamp == stamp {
                return Ok(Some((hit.body.clone(), hit.etag.clone())));
            }
        }
        let body = match std::fs::read(path) {
            Ok(b) => Bytes::from(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        let etag = etag_of(&body);
        let entry = Cached { stamp, body: body.clone(), etag: etag.clone() };
        self.files.write().unwrap_or_else(|p| p.into_inner()).insert(rel.to_string(), entry);
        Ok(Some((body, etag)))
    }
}

fn etag_of(bytes: &[u8]) -> HeaderValue {
    let digest = crate::fsutil::sha256(bytes);
    // 32 hex digits: ASCII, always a valid header value.
    HeaderValue::from_str(&format!("\"{}\"", &digest.hex()[..32])).unwrap_or_else(|_| HeaderValue::from_static("\"0\""))
}

pub(crate) async fn index_file(
    State(state): State<SharedState>,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.check_read(&headers).await?;
    let cache_control = if state.config.auth_required {
        HeaderValue::from_static("private, no-cache")
    } else {
        HeaderValue::from_static("public, max-age=0, must-revalidate")
    };
    let (body, etag) = if path == "config.json" {
        let body = Bytes::from(config_json(&state));
        let etag = etag_of(&body);
        (body, etag)
    } else {
        // The path must be exactly where the index puts the file of the
        // name it ends with: this rules out `..`, `//`, odd names, everything.
        let name = path.rsplit('/').next().unwrap_or_default();
        let valid = index_path(name).map(|p| p == path).unwrap_or(false);
        if !valid {
            return Err(ApiError::not_found(format!("`/index/{path}` is not an index file path")));
        }
        let file = state.registry.root().join("index").join(&path);
        match state.index_cache.get(&path, &file) {
            Ok(Some(hit)) => hit,
            Ok(None) => return Err(ApiError::not_found(format!("no package named `{name}`"))),
            Err(e) => {
                return Err(ApiError::internal(anyhow::Error::new(e).context(format!("reading {}", file.display()))))
            }
        }
    };
    let not_modified = headers.get(header::IF_NONE_MATCH).and_then(|v| v.to_str().ok()).is_some_and(|v| {
        v.split(',').any(|tag| tag.trim().trim_start_matches("W/") == etag.to_str().unwrap_or_default())
    });
    let mut response = if not_modified {
        StatusCode::NOT_MODIFIED.into_response()
    } else {
        let content_type = if path == "config.json" { "application/json" } else { "text/plain; charset=utf-8" };
        ([(header::CONTENT_TYPE, HeaderValue::from_static(content_type))], Body::from(body)).into_response()
    };
    response.headers_mut().insert(header::ETAG, etag);
    response.headers_mut().insert(header::CACHE_CONTROL, cache_control);
    Ok(response)
}

/// `dl` and `api` relative to `/index/config.json` unless a public URL is set,
/// so the server works behind any host name or proxy prefix.
fn config_json(state: &SharedState) -> String {
    let (dl, api) = match &state.config.public_url {
        Some(base) => {
            let base = base.trim_end_matches('/');
            (format!("{base}/blobs"), format!("{base}/"))
        }
        None => ("../blobs".to_string(), "../".to_string()),
    };
    let config = IndexConfig { dl, api: Some(api), auth_required: state.config.auth_required };
    serde_json::to_string_pretty(&config).unwrap_or_default() + "\n"
}
