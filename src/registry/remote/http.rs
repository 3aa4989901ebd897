//! A remote registry over HTTP, as a [`RegistrySource`]: the sparse index
//! (cached under `$ATTEMPT_HOME/cache/index/<registry-id>/`, revalidated
//! with ETags, readable offline) and blobs (downloaded into a partial file,
//! resumed with `Range` after an interruption, sha256-verified before they
//! are handed over). Also the publish/yank/search API calls.

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read, Seek, Write};
use std::path::{Path, PathBuf};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use registry_index::{index_path, parse_index_file, validate_name, Checksum, IndexConfig, IndexEntry};
use reqwest::blocking::{Client, RequestBuilder, Response};
use reqwest::header;
use reqwest::StatusCode;
use semver::Version;
use url::Url;

use crate::cache::Cache;
use crate::fsutil::{write_atomic, write_atomic_with};
use crate::registry::api::{
    InfoResponse, ListResponse, PackageInfo, PackageSummary, PublishResponse, SearchResponse, SimilarResponse,
    YankOutcome, YankResponse, MAX_PER_PAGE,
};
use crate::registry::RegistrySource;

/// Tries per request (connection errors, timeouts, 5xx, 429).
const MAX_ATTEMPTS: u32 = 4;
/// Tries per blob download without any progress between them.
const MAX_STALLED_ATTEMPTS: u32 = 6;
const FIRST_BACKOFF: Duration = Duration::from_millis(200);

/// How to reach one remote registry.
#[derive(Debug, Clone)]
pub struct RemoteOptions {
    /// Normalised sparse index URL (ends with `/`).
    pub index_url: Url,
    /// Recorded in lockfiles: the registry asked for, even when a mirror
    /// (`replace-with`) serves it.
    pub source_id: String,
    /// For messages: the configured name, else the URL.
    pub display: String,
    pub token: Option<String>,
    pub offline: bool,
    /// `$ATTEMPT_HOME/cache`: where index copies and partial downloads live.
    pub cache: Cache,
}

pub struct HttpRegistry {
    opts: RemoteOptions,
    client: Client,
    /// The index cache of this registry.
    index_cache: PathBuf,
    config: OnceLock<IndexConfig>,
    /// What the index said about each checksum (for messages and size checks).
    known: Mutex<HashMap<Checksum, (String, Version, u64)>>,
    progress: MultiProgress,
}

impl std::fmt::Debug for HttpRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpRegistry").field("index_url", &self.opts.index_url.as_str()).finish_non_exhaustive()
    }
}

impl HttpRegistry {
    pub fn new(opts: RemoteOptions) -> Result<HttpRegistry> {
        let client = Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(300))
            .user_agent(concat!("attempt-pkg/", env!("CARGO_PKG_VERSION")))
            .build()
            .context("creating the HTTP client")?;
        let index_cache = opts.cache.index_copy_dir(&opts.index_url);
        Ok(HttpRegistry {
            opts,
            client,
            index_cache,
            config: OnceLock::new(),
            known: Mutex::new(HashMap::new()),
            progress: MultiProgress::new(),
        })
    }

    pub fn display(&self) -> &str {
        &self.opts.display
    }

    pub fn index_url(&self) -> &Url {
        &self.opts.index_url
    }

    /// The registry's `config.json` (fetched once; cached for offline use).
    pub fn config(&self) -> Result<&IndexConfig> {
        if let Some(c) = self.config.get() {
            return Ok(c);
        }
        let cached = self.index_cache.join("config.json");
        let text = if self.opts.offline {
            fs::read_to_string(&cached).with_context(|| {
                format!("registry {} is not in the cache (--offline); run once without --offline", self.opts.display)
            })?
        } else {
            let url = self.opts.index_url.join("config.json")?;
            let resp = self.send(|| self.authed(self.client.get(url.clone())))?;
            let resp = self.check(resp, "reading the registry config")?;
            let text = resp.text().with_context(|| format!("reading {url}"))?;
            write_atomic(&cached, text.as_bytes())?;
            text
        };
        let config: IndexConfig = serde_json::from_str(&text)
            .with_context(|| format!("the config.json of registry {} is invalid", self.opts.display))?;
        Ok(self.config.get_or_init(|| config))
    }

    /// The URL of a blob, from `dl` in config.json (relative to it, or absolute).
    pub fn blob_url(&self, cksum: &Checksum) -> Result<Url> {
        let dl = &self.config()?.dl;
        let rel = if dl.contains("{sha256}") {
            dl.replace("{sha256}", cksum.hex())
        } else {
            format!("{}/sha256/{}", dl.trim_end_matches('/'), cksum.hex())
        };
        let base = self.opts.index_url.join("config.json")?;
        base.join(&rel).with_context(|| format!("registry {} has an invalid `dl` ({dl})", self.opts.display))
    }

    /// `<api>/api/v1/<path>`.
    fn api_url(&self, path: &str) -> Result<Url> {
        let Some(api) = self.config()?.api.clone() else {
            bail!(
                "registry {} has no API (it is a read-only mirror); publish to the registry it mirrors",
                self.opts.display
            )
        };
        let base = self.opts.index_url.join("config.json")?.join(&api)?;
        let mut base = base;
        if !base.path().ends_with('/') {
            let p = format!("{}/", base.path());
            base.set_path(&p);
        }
        Ok(base.join(&format!("api/v1/{path}"))?)
    }

    fn authed(&self, req: RequestBuilder) -> RequestBuilder {
        match &self.opts.token {
            Some(t) => req.header(header::AUTHORIZATION, format!("Bearer {t}")),
            None => req,
        }
    }

    /// Sends with bounded retries and exponential backoff on connection
    /// errors, timeouts, 5xx and 429. The last response is returned as is.
    fn send(&self, make: impl Fn() -> RequestBuilder) -> Result<Response> {
        self.send_inner(make, true)
    }

    /// Like [`Self::send`], but a request that may have reached the server
    /// (a publish) is retried only when the connection was never made, or
    /// on 429, so a retry cannot turn a success into a confusing 409.
    fn send_once_reached(&self, make: impl Fn() -> RequestBuilder) -> Result<Response> {
        self.send_inner(make, false)
    }

    fn send_inner(&self, make: impl Fn() -> RequestBuilder, idempotent: bool) -> Result<Response> {
        let mut delay = FIRST_BACKOFF;
        for attempt in 1..=MAX_ATTEMPTS {
            let last = attempt == MAX_ATTEMPTS;
            let retry_status =
                |s: StatusCode| s == StatusCode::TOO_MANY_REQUESTS || (idempotent && s.is_server_error());
            match make().send() {
                Ok(resp) if !last && retry_status(resp.status()) => {
                    let wait = retry_after(&resp).unwrap_or(delay).min(Duration::from_secs(30));
                    tracing::debug!("{} answered {}; retrying in {wait:?}", self.opts.display, resp.status());
                    std::thread::sleep(wait);
                }
                Ok(resp) => return Ok(resp),
                Err(e) if !last && (e.is_connect() || (idempotent && is_transient(&e))) => {
                    tracing::debug!("request to {} failed ({e}); retrying in {delay:?}", self.opts.display);
                    std::thread::sleep(delay);
                }
                Err(e) => {
                    return Err(anyhow::Error::new(e)).with_context(|| {
                        format!("cannot reach registry {} (tried {attempt} times); check the URL and the network, or use --offline", self.opts.display)
                    })
                }
            }
            delay *= 2;
        }
        bail!("unreachable: retry loop ended without a result")
    }

    /// Turns a non-success response into an error that says what the server said.
    fn check(&self, resp: Response, doing: &str) -> Result<Response> {
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let detail = server_detail(resp);
        let hint = match status {
            StatusCode::UNAUTHORIZED => {
                "; log in with `attempt-pkg login --registry NAME`, pass --token or set ATTEMPT_TOKEN"
            }
            StatusCode::FORBIDDEN => "; the token lacks the permission (scope, package or ownership)",
            _ => "",
        };
        bail!("{doing} at registry {} failed: {status}: {detail}{hint}", self.opts.display)
    }

    fn remember(&self, entries: &[IndexEntry]) {
        let mut known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        for e in entries {
            known.insert(e.cksum.clone(), (e.name.clone(), e.vers.clone(), e.size));
        }
    }

    fn describe(&self, cksum: &Checksum) -> (String, Option<u64>) {
        let known = self.known.lock().unwrap_or_else(|p| p.into_inner());
        match known.get(cksum) {
            Some((name, vers, size)) => (format!("{name}@{vers}"), Some(*size)),
            None => (format!("blob {}", cksum.prefixed()), None),
        }
    }

    /// Downloads a blob to `dest`, resuming a partial download and
    /// verifying the sha256 before `dest` appears.
    pub fn fetch_blob(&self, cksum: &Checksum, dest: &Path) -> Result<()> {
        let (what, expected_size) = self.describe(cksum);
        if self.opts.offline {
            bail!("{what} is not in the cache and --offline forbids downloading it from {}", self.opts.display);
        }
        let url = self.blob_url(cksum)?;
        let partial_dir = self.opts.cache.partial_dir();
        fs::create_dir_all(&partial_dir).with_context(|| format!("creating {}", partial_dir.display()))?;
        let part_path = self.opts.cache.partial_download(cksum);
        let mut part = open_locked(&part_path)?;

        let bar = self.progress.add(ProgressBar::new(expected_size.unwrap_or(0)));
        bar.set_style(
            ProgressStyle::with_template("{msg:30!} [{bar:30}] {bytes}/{total_bytes} {bytes_per_sec}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        bar.set_message(what.clone());
        let result = self.download_into(&url, &mut part, cksum, expected_size, &bar, &what);
        bar.finish_and_clear();
        result?;

        let actual = hash_file(&mut part).with_context(|| format!("reading {}", part_path.display()))?;
        if &actual != cksum {
            // Removed while still locked, so a waiting download starts afresh.
            let _ = fs::remove_file(&part_path);
            drop(part);
            bail!(
                "checksum mismatch for {what} from registry {}: expected {}, got {}; the download was deleted. \
                 The registry served corrupt or tampered data: tell its operator",
                self.opts.display,
                cksum.prefixed(),
                actual.prefixed()
            );
        }
        part.sync_all()?;
        // Moved while still locked: a download waiting for the lock then
        // finds the path gone and starts its own file.
        let moved = move_file(&part_path, dest);
        drop(part);
        moved
    }

    fn download_into(
        &self,
        url: &Url,
        part: &mut fs::File,
        cksum: &Checksum,
        expected_size: Option<u64>,
        bar: &ProgressBar,
        what: &str,
    ) -> Result<()> {
        let mut stalled = 0;
        let mut delay = FIRST_BACKOFF;
        let mut restarted = false;
        loop {
            let mut have = part.metadata()?.len();
            if expected_size.is_some_and(|size| have > size) {
                part.set_len(0)?;
                have = 0;
            }
            if have > 0 && expected_size == Some(have) {
                return Ok(());
            }
            bar.set_position(have);
            let mut req = self.authed(self.client.get(url.clone()));
            if have > 0 {
                req = req.header(header::RANGE, format!("bytes={have}-"));
            }
            let failure: anyhow::Error = match req.send() {
                Err(e) if is_transient(&e) => e.into(),
                Err(e) => return Err(anyhow::Error::new(e).context(format!("downloading {what} from {url}"))),
                Ok(resp) => {
                    let status = resp.status();
                    match status {
                        StatusCode::OK | StatusCode::PARTIAL_CONTENT => {
                            let start = if status == StatusCode::OK {
                                0
                            } else {
                                content_range_start(&resp).unwrap_or(u64::MAX)
                            };
                            if start != 0 && start != have {
                                // A range we did not ask for: start over.
                                part.set_len(0)?;
                                continue;
                            }
                            if start == 0 {
                                part.set_len(0)?;
                            }
                            if let Some(total) = resp.content_length() {
                                bar.set_length(start + total);
                            }
                            part.seek(io::SeekFrom::Start(start))?;
                            match copy_body(resp, part, bar) {
                                Ok(_) => return Ok(()),
                                Err(e) => {
                                    part.flush()?;
                                    if part.metadata()?.len() > have {
                                        stalled = 0;
                                        delay = FIRST_BACKOFF;
                                    }
                                    e
                                }
                            }
                        }
                        StatusCode::RANGE_NOT_SATISFIABLE if have > 0 => {
                            // Either complete already or a stale partial: the
                            // hash decides; a stale one is discarded once.
                            if &hash_file(part)? == cksum || restarted {
                                return Ok(());
                            }
                            restarted = true;
                            part.set_len(0)?;
                            continue;
                        }
                        s if s.is_server_error() || s == StatusCode::TOO_MANY_REQUESTS => {
                            anyhow::anyhow!("server answered {s}")
                        }
                        _ => {
                            self.check(resp, &format!("downloading {what}"))?;
                            bail!("downloading {what}: unexpected answer {status}");
                        }
                    }
                }
            };
            stalled += 1;
            if stalled >= MAX_STALLED_ATTEMPTS {
                return Err(failure.context(format!(
                    "downloading {what} from registry {} failed {stalled} times without progress; \
                     run the command again to resume ({} bytes kept)",
                    self.opts.display,
                    part.metadata().map(|m| m.len()).unwrap_or(0)
                )));
            }
            tracing::debug!("download of {what} interrupted ({failure:#}); resuming in {delay:?}");
            std::thread::sleep(delay);
            delay = (delay * 2).min(Duration::from_secs(5));
        }
    }

    // ---- API ------------------------------------------------------------

    fn require_token(&self, action: &str) -> Result<&str> {
        self.opts.token.as_deref().with_context(|| {
            format!(
                "{action} on registry {} needs a token: run `attempt-pkg login --registry {}`, pass --token, or set ATTEMPT_TOKEN",
                self.opts.display, self.opts.display
            )
        })
    }

    /// `PUT /api/v1/prompts/new` with the artifact bytes; the answer carries
    /// the server's warnings, for the caller to show.
    pub fn publish(&self, artifact: &[u8]) -> Result<PublishResponse> {
        self.require_token("publishing")?;
        let url = self.api_url("prompts/new")?;
        let body = artifact.to_vec();
        let resp = self.send_once_reached(|| {
            self.authed(self.client.put(url.clone()))
                .header(header::CONTENT_TYPE, "application/octet-stream")
                .body(body.clone())
        })?;
        let resp = self.check(resp, "publishing")?;
        resp.json().context("reading the publish response")
    }

    /// Yanks (or unyanks) `name@version`.
    pub fn set_yanked(&self, name: &str, version: &Version, yanked: bool, reason: Option<&str>) -> Result<YankOutcome> {
        validate_name(name)?;
        self.require_token("yanking")?;
        let mut url = self.api_url(&format!("prompts/{name}/{version}/{}", if yanked { "yank" } else { "unyank" }))?;
        if let Some(reason) = reason {
            url.query_pairs_mut().append_pair("reason", reason);
        }
        let resp = self.send(|| {
            let req = if yanked { self.client.delete(url.clone()) } else { self.client.put(url.clone()) };
            self.authed(req)
        })?;
        let resp = self.check(resp, if yanked { "yanking" } else { "unyanking" })?;
        let answer: YankResponse = resp.json().context("reading the yank response")?;
        Ok(answer.outcome())
    }

    /// `GET /api/v1/prompts?q=`: the hits, best first.
    pub fn search(&self, query: &str, limit: usize) -> Result<Vec<PackageSummary>> {
        let mut url = self.api_url("prompts")?;
        url.query_pairs_mut().append_pair("q", query).append_pair("per_page", &limit.to_string());
        let body: SearchResponse = self.get_json(&url, "searching")?;
        Ok(body.prompts)
    }

    /// `GET /api/v1/prompts/<name>`; `None` when the server has no such package.
    pub fn info(&self, name: &str) -> Result<Option<PackageInfo>> {
        validate_name(name)?;
        self.require_online("reading package info")?;
        let url = self.api_url(&format!("prompts/{name}"))?;
        let resp = self.send(|| self.authed(self.client.get(url.clone())))?;
        if resp.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        let resp = self.check(resp, &format!("reading the package info of `{name}`"))?;
        let body: InfoResponse = resp.json().with_context(|| format!("reading the package info of `{name}`"))?;
        Ok(Some(body.package))
    }

    /// `GET /api/v1/prompts/<name>/similar`: the package `name` is confusable with.
    pub fn similar_name(&self, name: &str) -> Result<Option<String>> {
        validate_name(name)?;
        let url = self.api_url(&format!("prompts/{name}/similar"))?;
        let body: SimilarResponse = self.get_json(&url, "looking up similar names")?;
        Ok(body.similar)
    }

    /// Every package, by name: walks `GET /api/v1/prompts?page=N` to the last page.
    pub fn list(&self) -> Result<Vec<PackageSummary>> {
        let mut all = Vec::new();
        let mut page = Some(1u64);
        while let Some(n) = page {
            let mut url = self.api_url("prompts")?;
            url.query_pairs_mut()
                .append_pair("page", &n.to_string())
                .append_pair("per_page", &MAX_PER_PAGE.to_string());
            let body: ListResponse = self.get_json(&url, "listing packages")?;
            all.extend(body.prompts);
            // A server must move forward; one that does not would loop forever.
            page = body.meta.next_page.filter(|next| *next > n);
        }
        // By name in byte order, as a directory lists, whatever the server
        // database's collation.
        all.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(all)
    }

    fn require_online(&self, doing: &str) -> Result<()> {
        if self.opts.offline {
            bail!(
                "{doing} needs registry {} and --offline forbids contacting it; run without --offline",
                self.opts.display
            );
        }
        Ok(())
    }

    /// A GET of the API, read as `T`; `--offline` refuses (the API is not cached).
    fn get_json<T: serde::de::DeserializeOwned>(&self, url: &Url, doing: &str) -> Result<T> {
        self.require_online(doing)?;
        let resp = self.send(|| self.authed(self.client.get(url.clone())))?;
        let resp = self.check(resp, doing)?;
        resp.json().with_context(|| format!("reading the answer of registry {} ({doing})", self.opts.display))
    }
}

impl RegistrySource for HttpRegistry {
    fn source_id(&self) -> String {
        self.opts.source_id.clone()
    }

    fn versions(&self, name: &str) -> Result<Vec<IndexEntry>> {
        let rel = index_path(name)?;
        let cached = self.index_cache.join(&rel);
        let etag_file = cached.with_file_name(format!("{name}.etag"));
        let parse = |text: &str| {
            parse_index_file(name, text)
                .with_context(|| format!("the index file of `{name}` from registry {} is corrupt", self.opts.display))
        };
        if self.opts.offline {
            let text = fs::read_to_string(&cached).with_context(|| {
                format!(
                    "`{name}` is not in the index cache of registry {} (--offline); run once without --offline",
                    self.opts.display
                )
            })?;
            let entries = parse(&text)?;
            self.remember(&entries);
            return Ok(entries);
        }
        let url = self.opts.index_url.join(&rel)?;
        let etag = match (fs::read_to_string(&etag_file), cached.is_file()) {
            (Ok(tag), true) => Some(tag.trim().to_string()),
            _ => None,
        };
        let resp = self.send(|| {
            let req = self.authed(self.client.get(url.clone()));
            match &etag {
                Some(tag) => req.header(header::IF_NONE_MATCH, tag.as_str()),
                None => req,
            }
        })?;
        let entries = match resp.status() {
            StatusCode::NOT_MODIFIED => {
                let text = fs::read_to_string(&cached).with_context(|| format!("reading {}", cached.display()))?;
                parse(&text)?
            }
            StatusCode::NOT_FOUND | StatusCode::GONE => {
                let _ = fs::remove_file(&cached);
                let _ = fs::remove_file(&etag_file);
                return Ok(Vec::new());
            }
            _ => {
                let resp = self.check(resp, &format!("reading the index of `{name}`"))?;
                let new_tag = resp.headers().get(header::ETAG).and_then(|v| v.to_str().ok()).map(str::to_string);
                let text = resp.text().with_context(|| format!("reading {url}"))?;
                let entries = parse(&text)?;
                write_atomic(&cached, text.as_bytes())?;
                match new_tag {
                    Some(tag) => write_atomic(&etag_file, tag.as_bytes())?,
                    None => {
                        let _ = fs::remove_file(&etag_file);
                    }
                }
                entries
            }
        };
        self.remember(&entries);
        Ok(entries)
    }

    fn download_blob(&self, cksum: &Checksum, dest: &Path) -> Result<()> {
        self.fetch_blob(cksum, dest)
    }
}

fn is_transient(e: &reqwest::Error) -> bool {
    e.is_connect() || e.is_timeout() || e.is_request() || e.is_body()
}

fn retry_after(resp: &Response) -> Option<Duration> {
    let secs: u64 = resp.headers().get(header::RETRY_AFTER)?.to_str().ok()?.parse().ok()?;
    Some(Duration::from_secs(secs))
}

fn content_range_start(resp: &Response) -> Option<u64> {
    let value = resp.headers().get(header::CONTENT_RANGE)?.to_str().ok()?;
    let range = value.strip_prefix("bytes ")?;
    range.split('-').next()?.trim().parse().ok()
}

/// The `detail` of a JSON error body, else the body text (shortened).
fn server_detail(resp: Response) -> String {
    let text = resp.text().unwrap_or_default();
    if let Ok(value) = serde_json::from_str::<serde_json::Value>(&text) {
        let details: Vec<&str> = value
            .get("errors")
            .and_then(|e| e.as_array())
            .map(|errors| errors.iter().filter_map(|e| e.get("detail").and_then(|d| d.as_str())).collect())
            .unwrap_or_default();
        if !details.is_empty() {
            return details.join("; ");
        }
    }
    let mut text = text.trim().to_string();
    if text.len() > 300 {
        let cut = (0..=300).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
        text.truncate(cut);
        text.push('…');
    }
    if text.is_empty() {
        "(no details)".to_string()
    } else {
        text
    }
}

/// Streams a response body to the file; `Err` (with what was written kept)
/// when the connection breaks.
fn copy_body(mut resp: Response, part: &mut fs::File, bar: &ProgressBar) -> Result<u64, anyhow::Error> {
    let mut buf = vec![0u8; 64 * 1024];
    let mut written = 0u64;
    loop {
        let n = match resp.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(anyhow::Error::new(e).context("the connection broke during the download")),
        };
        part.write_all(&buf[..n])?;
        written += n as u64;
        bar.inc(n as u64);
    }
    if let Some(len) = resp.content_length() {
        if written < len {
            bail!("the connection closed after {written} of {len} bytes");
        }
    }
    Ok(written)
}

/// sha256 of the whole file, whatever its position.
fn hash_file(file: &mut fs::File) -> io::Result<Checksum> {
    file.seek(io::SeekFrom::Start(0))?;
    crate::fsutil::hash_reader(file)
}

/// Opens and locks the partial file. Two downloads of one blob take turns;
/// if the first one finished (and moved the file away) while we waited, the
/// handle we hold is stale, so open the path again.
fn open_locked(part_path: &Path) -> Result<fs::File> {
    use std::os::unix::fs::MetadataExt;
    loop {
        let part = fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .read(true)
            .write(true)
            .open(part_path)
            .with_context(|| format!("opening {}", part_path.display()))?;
        part.lock().with_context(|| format!("locking {}", part_path.display()))?;
        let same = match (fs::metadata(part_path), part.metadata()) {
            (Ok(on_disk), Ok(held)) => on_disk.ino() == held.ino() && on_disk.dev() == held.dev(),
            _ => false,
        };
        if same {
            return Ok(part);
        }
    }
}

/// Renames, or copies across file systems.
fn move_file(from: &Path, to: &Path) -> Result<()> {
    if fs::rename(from, to).is_ok() {
        return Ok(());
    }
    // Another file system: copy into a temp file beside `to`, then rename,
    // so `to` never exists half-written.
    write_atomic_with(to, |tmp| {
        fs::copy(from, tmp).with_context(|| format!("copying {} to {}", from.display(), tmp.display()))?;
        Ok(())
    })
    .with_context(|| format!("moving the download to {}", to.display()))?;
    let _ = fs::remove_file(from);
    Ok(())
}
