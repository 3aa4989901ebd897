//! Blobs over HTTP: content-addressed, so immutable; single byte ranges
//! (`Range: bytes=a-b`, `a-`, `-n`) are served as 206 so interrupted
//! downloads resume.

use std::io::SeekFrom;

use axum::body::{Body, Bytes};
use axum::extract::{Path as UrlPath, State};
use axum::http::{header, HeaderMap, HeaderValue, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use registry_index::{blob_path, Checksum};
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

use super::{ApiError, ApiResult, SharedState};

/// `<hex>` or `<first two hex>/<hex>` (the on-disk layout, so a static mirror
/// of the directory and this server answer the same URLs).
fn parse_blob_path(path: &str) -> Option<Checksum> {
    let hex = match path.split_once('/') {
        None => path,
        Some((shard, hex)) if hex.len() == 64 && hex.starts_with(shard) && shard.len() == 2 => hex,
        Some(_) => return None,
    };
    let lower = hex.len() == 64 && hex.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    if lower {
        Checksum::parse(hex).ok()
    } else {
        None
    }
}

/// A parsed `Range` header against a file of `len` bytes.
#[derive(Debug, PartialEq, Eq)]
enum RangeRequest {
    /// No range (or one we serve whole, e.g. several ranges): 200.
    Full,
    /// Inclusive byte range: 206.
    Part(u64, u64),
    /// 416.
    Unsatisfiable,
}

fn parse_range(value: Option<&str>, len: u64) -> RangeRequest {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else { return RangeRequest::Full };
    if spec.contains(',') {
        return RangeRequest::Full;
    }
    let Some((start, end)) = spec.split_once('-') else { return RangeRequest::Full };
    let (start, end) = (start.trim(), end.trim());
    let parsed = match (start.is_empty(), end.is_empty()) {
        (false, _) => {
            let Ok(first) = start.parse::<u64>() else { return RangeRequest::Full };
            let last = if end.is_empty() { Ok(u64::MAX) } else { end.parse::<u64>() };
            match last {
                Ok(last) if last >= first => Some((first, last.min(len.saturating_sub(1)))),
                Ok(_) => return RangeRequest::Full, // syntactically invalid: ignore the header (RFC 9110)
                Err(_) => return RangeRequest::Full,
            }
        }
        (true, false) => {
            let Ok(suffix) = end.parse::<u64>() else { return RangeRequest::Full };
            if suffix == 0 {
                None
            } else {
                Some((len.saturating_sub(suffix), len.saturating_sub(1)))
            }
        }
        (true, true) => return RangeRequest::Full,
    };
    match parsed {
        Some((first, last)) if len > 0 && first < len => RangeRequest::Part(first, last),
        _ => RangeRequest::Unsatisfiable,
    }
}

pub(crate) async fn blob(
    State(state): State<SharedState>,
    method: Method,
    UrlPath(path): UrlPath<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    state.check_read(&headers).await?;
    let cksum = parse_blob_path(&path).ok_or_else(|| {
        ApiError::not_found(format!("`/blobs/sha256/{path}` is not a blob path (expected 64 lowercase hex digits)"))
    })?;
    let etag = HeaderValue::from_str(&format!("\"{}\"", cksum.hex())).map_err(|e| ApiError::internal(e.into()))?;
    let file_path = state.registry.root().join("blobs").join(blob_path(&cksum));
    let mut file = match tokio::fs::File::open(&file_path).await {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ApiError::not_found(format!("no blob {}", cksum.prefixed())));
        }
        Err(e) => {
            return Err(ApiError::internal(anyhow::Error::new(e).context(format!("opening {}", file_path.display()))))
        }
    };
    let len = file.metadata().await.map_err(|e| ApiError::internal(e.into()))?.len();

    let mut common = HeaderMap::new();
    common.insert(header::ETAG, etag.clone());
    common.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    common.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static(if state.config.auth_required {
            "private, max-age=31536000, immutable"
        } else {
            "public, max-age=31536000, immutable"
        }),
    );
    let matches_etag = |name: header::HeaderName| {
        headers.get(name).and_then(|v: &HeaderValue| v.to_str().ok()).is_some_and(|v| {
            v.split(',').any(|t| t.trim().trim_start_matches("W/") == etag.to_str().unwrap_or_default())
        })
    };
    if matches_etag(header::IF_NONE_MATCH) {
        return Ok((StatusCode::NOT_MODIFIED, common).into_response());
    }
    // If-Range with another validator: the client's partial copy is of
    // something else, so it gets the whole blob.
    let range_header = if headers.contains_key(header::IF_RANGE) && !matches_etag(header::IF_RANGE) {
        None
    } else {
        headers.get(header::RANGE).and_then(|v| v.to_str().ok())
    };
    let (status, first, count) = match parse_range(range_header, len) {
        RangeRequest::Full => (StatusCode::OK, 0, len),
        RangeRequest::Part(first, last) => {
            let value = format!("bytes {first}-{last}/{len}");
            common.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&value).map_err(|e| ApiError::internal(e.into()))?,
            );
            (StatusCode::PARTIAL_CONTENT, first, last - first + 1)
        }
        RangeRequest::Unsatisfiable => {
            common.insert(
                header::CONTENT_RANGE,
                HeaderValue::from_str(&format!("bytes */{len}")).map_err(|e| ApiError::internal(e.into()))?,
            );
            return Ok((StatusCode::RANGE_NOT_SATISFIABLE, common).into_response());
        }
    };
    if first > 0 {
        file.seek(SeekFrom::Start(first)).await.map_err(|e| ApiError::internal(e.into()))?;
    }
    // A download is a GET answered from the first byte (a resumed
    // download's later ranges are the same download; HEAD is no download);
    // only a tally in memory here.
    if let Some(downloads) = state.downloads.as_ref().filter(|_| first == 0 && method == Method::GET) {
        downloads.record(&cksum);
    }
    common.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/octet-stream"));
    common.insert(header::CONTENT_LENGTH, HeaderValue::from(count));
    let body = match state.cut_blob_after.filter(|&n| first == 0 && n < count) {
        None => Body::from_stream(ReaderStream::with_capacity(file.take(count), 64 * 1024)),
        Some(cut) => {
            // Test hook: send `cut` bytes, then fail the body so the
            // connection is dropped with the response incomplete.
            let mut head = vec![0u8; usize::try_from(cut).unwrap_or(0)];
            file.read_exact(&mut head).await.map_err(|e| ApiError::internal(e.into()))?;
            let head = futures_util::stream::iter([Ok::<_, std::io::Error>(Bytes::from(head))]);
            let cut = futures_util::stream::once(async {
                // Let the bytes before the cut reach the client first.
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                Err::<Bytes, _>(std::io::Error::other("test hook: connection cut"))
            });
            Body::from_stream(futures_util::StreamExt::chain(head, cut))
        }
    };
    Ok((status, common, body).into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 10), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=0-4"), 10), RangeRequest::Part(0, 4));
        assert_eq!(parse_range(Some("bytes=5-"), 10), RangeRequest::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=5-100"), 10), RangeRequest::Part(5, 9));
        assert_eq!(parse_range(Some("bytes=-3"), 10), RangeRequest::Part(7, 9));
        assert_eq!(parse_range(Some("bytes=10-"), 10), RangeRequest::Unsatisfiable);
        assert_eq!(parse_range(Some("bytes=0-1,3-4"), 10), RangeRequest::Full);
        assert_eq!(parse_range(Some("items=0-1"), 10), RangeRequest::Full);
        assert_eq!(parse_range(Some("bytes=4-2"), 10), RangeRequest::Full);
    }

    #[test]
    fn blob_paths() {
        let hex = "ab".repeat(32);
        assert!(parse_blob_path(&hex).is_some());
        assert!(parse_blob_path(&format!("ab/{hex}")).is_some());
        assert!(parse_blob_path(&format!("cd/{hex}")).is_none());
        assert!(parse_blob_path(&"AB".repeat(32)).is_none());
        assert!(parse_blob_path("../../registry.db").is_none());
        assert!(parse_blob_path(&format!("../{hex}")).is_none());
    }
}
