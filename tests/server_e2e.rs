//! Client ↔ server end to end on 127.0.0.1: publish with a token, index and
//! blob fetches through the HTTP `RegistrySource`, search, yank, auth,
//! conflicts, integrity, resumed downloads, path traversal, limits.

mod common_registry;
mod server_common;

use std::fs;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::unix::fs::PermissionsExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use attempt_pkg::home::Home;
use attempt_pkg::package::{Artifact, LoadedPackage};
use attempt_pkg::registry::{download_many, open as open_source, DownloadJob, RegistrySource};
use common_registry::{sha256_hex, Env, Prompt};
use registry_index::Checksum;
use server_common::{http, raw_request, Server};

fn artifact(p: &Prompt) -> Artifact {
    let dir = p.write();
    Artifact::build(dir.path()).expect("build artifact")
}

fn put_artifact(server: &Server, token: Option<&str>, bytes: &[u8]) -> reqwest::blocking::Response {
    let mut req = http().put(format!("{}/api/v1/prompts/new", server.url)).body(bytes.to_vec());
    if let Some(t) = token {
        req = req.header("Authorization", format!("Bearer {t}"));
    }
    req.send().expect("PUT publish")
}

/// Publishes through the CLI (`publish --registry URL --token T`).
fn cli_publish(env: &Env, server: &Server, token: &str, p: &Prompt) {
    let dir = p.write();
    let out = env.ok(&["publish", dir.path().to_str().unwrap(), "--registry", &server.index_url(), "--token", token]);
    assert!(out.contains(&format!("Published {}@{}", p.name, p.version)), "{out}");
}

#[test]
fn publish_fetch_search_yank_through_the_server() {
    let server = Server::start(&[]);
    let token = server.token("alice", &[]);
    let env = Env::new();
    let mut mnli = Prompt::new("mnli-prompt", "1.0.0");
    mnli.description = "Natural language inference".into();
    cli_publish(&env, &server, &token, &mnli);
    cli_publish(&env, &server, &token, &Prompt { version: "1.1.0".into(), seed: 3.0, ..mnli.clone() });

    // config.json: relative dl/api, auth not required.
    let config: serde_json::Value =
        http().get(format!("{}/index/config.json", server.url)).send().unwrap().json().unwrap();
    assert_eq!(config["dl"], "../blobs");
    assert_eq!(config["auth-required"], false);

    // Index file with an ETag; revalidation answers 304.
    let first = http().get(format!("{}/index/mn/li/mnli-prompt", server.url)).send().unwrap();
    assert_eq!(first.status(), 200);
    let etag = first.headers()["etag"].to_str().unwrap().to_string();
    assert!(first.headers()["cache-control"].to_str().unwrap().contains("must-revalidate"));
    assert_eq!(first.text().unwrap().lines().count(), 2);
    let again =
        http().get(format!("{}/index/mn/li/mnli-prompt", server.url)).header("If-None-Match", &etag).send().unwrap();
    assert_eq!(again.status(), 304);

    // The HTTP RegistrySource: versions, then a verified blob download.
    let home = Home::at(env.home.path().to_path_buf());
    let source = open_source(Some(&server.index_url()), &home, false, None).unwrap();
    assert_eq!(source.source_id(), format!("registry+{}", server.index_url()));
    let versions = source.versions("mnli-prompt").unwrap();
    assert_eq!(versions.len(), 2);
    assert!(source.versions("no-such-prompt").unwrap().is_empty());
    let dest_dir = tempfile::tempdir().unwrap();
    let dest = dest_dir.path().join("mnli.safetensors");
    source.download_blob(&versions[0].cksum, &dest).unwrap();
    let loaded = LoadedPackage::read_verified(&dest, &versions[0].cksum).unwrap();
    assert_eq!(loaded.manifest.id().version.to_string(), "1.0.0");
    // The server stored exactly the bytes the CLI built.
    assert_eq!(fs::read(&dest).unwrap(), artifact(&mnli).bytes());

    // Bounded concurrent downloads.
    // The same blob twice in one batch must work too (the two take turns).
    let mut jobs: Vec<DownloadJob> = versions
        .iter()
        .map(|v| DownloadJob { cksum: v.cksum.clone(), dest: dest_dir.path().join(format!("{}.st", v.vers)) })
        .collect();
    jobs.push(DownloadJob { cksum: versions[1].cksum.clone(), dest: dest_dir.path().join("again.st") });
    for r in download_many(&source, &jobs, 4) {
        r.unwrap();
    }
    for job in &jobs {
        assert_eq!(sha256_hex(&fs::read(&job.dest).unwrap()), job.cksum.hex());
    }

    // Offline: the index cache answers.
    let offline = open_source(Some(&server.index_url()), &home, true, None).unwrap();
    assert_eq!(offline.versions("mnli-prompt").unwrap(), versions);
    let err = offline.versions("sst2-prompt").unwrap_err();
    assert!(format!("{err:#}").contains("--offline"), "{err:#}");

    // Search and info over the API.
    let hits: serde_json::Value =
        http().get(format!("{}/api/v1/prompts?q=inference", server.url)).send().unwrap().json().unwrap();
    assert_eq!(hits["prompts"][0]["name"], "mnli-prompt");
    assert_eq!(hits["prompts"][0]["latest"], "1.1.0");
    let out = env.ok(&["search", "inference", "--registry", &server.index_url()]);
    assert!(out.starts_with("mnli-prompt@1.1.0  [mnli]  Natural language inference"), "{out}");
    let info: serde_json::Value =
        http().get(format!("{}/api/v1/prompts/mnli-prompt", server.url)).send().unwrap().json().unwrap();
    assert_eq!(info["owners"], serde_json::json!(["alice"]));

    // Yank through the CLI: the index says so, and the ETag changes.
    let out = env.ok(&["yank", "mnli-prompt@1.1.0", "--registry", &server.index_url(), "--token", &token]);
    assert!(out.contains("Yanked mnli-prompt@1.1.0"), "{out}");
    let versions = source.versions("mnli-prompt").unwrap();
    assert!(versions.iter().any(|v| v.vers.to_string() == "1.1.0" && v.yanked));
    let after =
        http().get(format!("{}/index/mn/li/mnli-prompt", server.url)).header("If-None-Match", &etag).send().unwrap();
    assert_eq!(after.status(), 200);
    env.ok(&["yank", "mnli-prompt@1.1.0", "--undo", "--registry", &server.index_url(), "--token", &token]);
    assert!(source.versions("mnli-prompt").unwrap().iter().all(|v| !v.yanked));
}

#[test]
fn refused_writes_change_nothing() {
    let server = Server::start(&[]);
    let yank_only = server.token("yanker", &["--scope", "yank"]);
    let other_pkg = server.token("narrow", &["--package", "other-prompt"]);
    let p = Prompt::new("mnli-prompt", "1.0.0");
    let bytes = artifact(&p).bytes().to_vec();
    let before = server.files();

    assert_eq!(put_artifact(&server, None, &bytes).status(), 401);
    assert_eq!(put_artifact(&server, Some("apk_0000"), &bytes).status(), 401);
    let resp = put_artifact(&server, Some(yank_only.as_str()), &bytes);
    assert_eq!(resp.status(), 403);
    assert!(resp.text().unwrap().contains("publish"));
    assert_eq!(put_artifact(&server, Some(other_pkg.as_str()), &bytes).status(), 403);
    // Revoked tokens stop working.
    let revoked = server.token("gone", &[]);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attempt-pkg"))
        .args(["token", "revoke", "gone", "--root", server.root().to_str().unwrap()])
        .output()
        .unwrap();
    assert!(out.status.success());
    assert_eq!(put_artifact(&server, Some(revoked.as_str()), &bytes).status(), 401);
    let list = std::process::Command::new(env!("CARGO_BIN_EXE_attempt-pkg"))
        .args(["token", "list", "--root", server.root().to_str().unwrap()])
        .output()
        .unwrap();
    let list = String::from_utf8(list.stdout).unwrap();
    assert!(list.lines().any(|l| l.starts_with("gone\t") && l.ends_with("revoked")), "{list}");
    assert!(list.lines().any(|l| l.starts_with("narrow\t") && l.contains("packages=other-prompt")), "{list}");
    assert!(!list.contains(&revoked), "token list must not print secrets");
    // Only hashes are stored.
    let db = fs::read(server.root().join("registry.db")).unwrap();
    let wal = fs::read(server.root().join("registry.db-wal")).unwrap_or_default();
    let needle = revoked.as_bytes();
    assert!(!db.windows(needle.len()).any(|w| w == needle) && !wal.windows(needle.len()).any(|w| w == needle));
    // Malformed bodies are 4xx with a message.
    let owner = server.token("owner", &[]);
    let resp = put_artifact(&server, Some(owner.as_str()), b"definitely not safetensors");
    assert_eq!(resp.status(), 422);
    assert!(resp.text().unwrap().contains("invalid artifact"));
    assert_eq!(put_artifact(&server, Some(owner.as_str()), b"").status(), 400);
    assert_eq!(server.files(), before, "a refused publish wrote files");

    // The owner publishes; another user may not publish a new version or yank.
    assert_eq!(put_artifact(&server, Some(owner.as_str()), &bytes).status(), 200);
    let intruder = server.token("mallory", &[]);
    let next = artifact(&Prompt { version: "1.0.1".into(), seed: 9.0, ..p.clone() });
    let resp = put_artifact(&server, Some(intruder.as_str()), next.bytes());
    assert_eq!(resp.status(), 403);
    assert!(resp.text().unwrap().contains("not an owner"));
    let resp = http()
        .delete(format!("{}/api/v1/prompts/mnli-prompt/1.0.0/yank", server.url))
        .header("Authorization", format!("Bearer {intruder}"))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 403);
    // Until an owner adds them.
    let resp = http()
        .put(format!("{}/api/v1/prompts/mnli-prompt/owners", server.url))
        .header("Authorization", format!("Bearer {owner}"))
        .json(&serde_json::json!({"users": ["mallory"]}))
        .send()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(put_artifact(&server, Some(intruder.as_str()), next.bytes()).status(), 200);

    // Duplicate version: 409, the original untouched.
    let dup = put_artifact(&server, Some(owner.as_str()), &bytes);
    assert_eq!(dup.status(), 409);
    assert!(dup.text().unwrap().contains("already published"));
    // A changed artifact under a published version is refused too.
    let changed = artifact(&Prompt { seed: 42.0, ..p.clone() });
    assert_eq!(put_artifact(&server, Some(owner.as_str()), changed.bytes()).status(), 409);
    assert!(!server.blob_file(changed.checksum().hex()).exists());
}

#[test]
fn concurrent_publishes_of_one_version_have_one_winner() {
    let server = Server::start(&[]);
    let token = server.token("ci", &[]);
    let bytes = artifact(&Prompt::new("race-prompt", "1.0.0")).bytes().to_vec();
    let statuses: Vec<u16> = std::thread::scope(|s| {
        let handles: Vec<_> =
            (0..8).map(|_| s.spawn(|| put_artifact(&server, Some(token.as_str()), &bytes).status().as_u16())).collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(statuses.iter().filter(|s| **s == 200).count(), 1, "{statuses:?}");
    assert_eq!(statuses.iter().filter(|s| **s == 409).count(), 7, "{statuses:?}");
    let index = http().get(format!("{}/index/ra/ce/race-prompt", server.url)).send().unwrap().text().unwrap();
    assert_eq!(index.lines().count(), 1);
}

#[test]
fn tampered_blob_is_refused_and_deleted() {
    let server = Server::start(&[]);
    let token = server.token("alice", &[]);
    let p = Prompt::new("mnli-prompt", "1.0.0");
    let built = artifact(&p);
    assert_eq!(put_artifact(&server, Some(token.as_str()), built.bytes()).status(), 200);
    // The server's disk is corrupted (or an attacker swapped the file).
    let mut evil = built.bytes().to_vec();
    let last = evil.len() - 1;
    evil[last] ^= 0xff;
    fs::write(server.blob_file(built.checksum().hex()), &evil).unwrap();

    let env = Env::new();
    let home = Home::at(env.home.path().to_path_buf());
    let source = open_source(Some(&server.index_url()), &home, false, None).unwrap();
    let entry = source.versions("mnli-prompt").unwrap().remove(0);
    let dest = env.home.path().join("out.safetensors");
    let err = format!("{:#}", source.download_blob(&entry.cksum, &dest).unwrap_err());
    assert!(err.contains("checksum mismatch"), "{err}");
    assert!(err.contains("mnli-prompt@1.0.0"), "names the package: {err}");
    assert!(err.contains(&server.index_url()), "names the registry: {err}");
    assert!(!dest.exists());
    let partial = env.home.path().join("cache/partial").join(format!("{}.part", entry.cksum.hex()));
    assert!(!partial.exists(), "the bad download was kept");
}

#[test]
fn interrupted_download_resumes_with_range_and_verifies() {
    // Every response that starts at byte 0 is cut after 3000 bytes: only a
    // client that resumes with Range can finish.
    let server = Server::start_with_env(&[], &[("ATTEMPT_TEST_CUT_BLOB_AFTER", "3000")]);
    let token = server.token("alice", &[]);
    let big = Prompt { hidden: 64, length: 64, ..Prompt::new("big-prompt", "1.0.0") };
    let built = artifact(&big);
    assert!(built.bytes().len() > 10_000);
    assert_eq!(put_artifact(&server, Some(token.as_str()), built.bytes()).status(), 200);

    // The cut is real: a plain GET gets a short body.
    let short = http().get(format!("{}/blobs/sha256/{}", server.url, built.checksum().hex())).send().unwrap().bytes();
    assert!(short.is_err() || short.unwrap().len() < built.bytes().len());

    let env = Env::new();
    let home = Home::at(env.home.path().to_path_buf());
    let source = open_source(Some(&server.index_url()), &home, false, None).unwrap();
    let entry = source.versions("big-prompt").unwrap().remove(0);
    let dest = env.home.path().join("big.safetensors");
    source.download_blob(&entry.cksum, &dest).unwrap();
    assert_eq!(fs::read(&dest).unwrap(), built.bytes());
}

#[test]
fn download_survives_a_server_restart() {
    // Client → proxy → server. The proxy cuts the first blob response after
    // 4000 bytes and refuses connections until the test has killed the
    // server and started a new one on the same directory; the client keeps
    // retrying and then resumes with a Range request.
    let server = Server::start(&[]);
    let token = server.token("alice", &[]);
    let big = Prompt { hidden: 64, length: 64, ..Prompt::new("big-prompt", "1.0.0") };
    let built = artifact(&big);
    assert_eq!(put_artifact(&server, Some(token.as_str()), built.bytes()).status(), 200);
    let proxy = CuttingProxy::start(server.addr(), 4000);

    let env = Env::new();
    let home = Home::at(env.home.path().to_path_buf());
    let index = format!("http://{}/index/", proxy.addr);
    let source = open_source(Some(&index), &home, false, None).unwrap();
    let entry = source.versions("big-prompt").unwrap().remove(0);
    let dest = env.home.path().join("big.safetensors");

    std::thread::scope(|s| {
        let download = s.spawn(|| source.download_blob(&entry.cksum, &dest));
        // Wait for the cut, then restart the server while the client retries.
        while !proxy.cut_done.load(Ordering::SeqCst) {
            std::thread::sleep(Duration::from_millis(10));
        }
        let mut server = server;
        server.kill();
        let root = std::mem::replace(&mut server.root, tempfile::tempdir().unwrap());
        let restarted = Server::start_at(root, &[], &[]);
        *proxy.backend.lock().unwrap() = Some(restarted.addr().to_string());
        download.join().unwrap().unwrap();
        drop(restarted);
    });
    assert_eq!(fs::read(&dest).unwrap(), built.bytes());
    let heads = proxy.requests.lock().unwrap();
    let blob_requests: Vec<&String> = heads.iter().filter(|h| h.starts_with("GET /blobs/")).collect();
    assert!(blob_requests.len() >= 2, "{heads:?}");
    assert!(!blob_requests[0].to_ascii_lowercase().contains("range:"));
    let resumed = blob_requests.last().unwrap().to_ascii_lowercase();
    assert!(resumed.contains("range: bytes=4000-"), "resumed from the cut: {resumed}");
}

/// A test-only TCP proxy: forwards whole requests (adding `Connection:
/// close`), cuts the first blob response after `cut_after` bytes, then drops
/// connections until `backend` is set again.
struct CuttingProxy {
    addr: String,
    backend: Arc<Mutex<Option<String>>>,
    requests: Arc<Mutex<Vec<String>>>,
    cut_done: Arc<AtomicBool>,
}

impl CuttingProxy {
    fn start(backend: &str, cut_after: usize) -> CuttingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let proxy = CuttingProxy {
            addr,
            backend: Arc::new(Mutex::new(Some(backend.to_string()))),
            requests: Arc::new(Mutex::new(Vec::new())),
            cut_done: Arc::new(AtomicBool::new(false)),
        };
        let (backend, requests, cut_done) = (proxy.backend.clone(), proxy.requests.clone(), proxy.cut_done.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                let Some(upstream_addr) = backend.lock().unwrap().clone() else { continue };
                let (requests, cut_done, backend) = (requests.clone(), cut_done.clone(), backend.clone());
                std::thread::spawn(move || {
                    let mut head = Vec::new();
                    let mut byte = [0u8; 1];
                    while !head.ends_with(b"\r\n\r\n") {
                        if client.read(&mut byte).unwrap_or(0) == 0 {
                            return;
                        }
                        head.push(byte[0]);
                    }
                    let head = String::from_utf8_lossy(&head).into_owned();
                    requests.lock().unwrap().push(head.clone());
                    let Ok(mut upstream) = TcpStream::connect(&upstream_addr) else { return };
                    // `head` ends with the blank line; insert a header before it.
                    let rewritten = format!("{}Connection: close\r\n\r\n", &head[..head.len() - 2]);
                    if upstream.write_all(rewritten.as_bytes()).is_err() {
                        return;
                    }
                    let cut = head.starts_with("GET /blobs/") && !cut_done.load(Ordering::SeqCst);
                    if cut {
                        // Headers plus `cut_after` body bytes, then drop both sides.
                        let mut response = Vec::new();
                        let mut buf = [0u8; 1024];
                        loop {
                            let n = upstream.read(&mut buf).unwrap_or(0);
                            if n == 0 {
                                break;
                            }
                            response.extend_from_slice(&buf[..n]);
                            if let Some(pos) = response.windows(4).position(|w| w == b"\r\n\r\n") {
                                if response.len() >= pos + 4 + cut_after {
                                    response.truncate(pos + 4 + cut_after);
                                    break;
                                }
                            }
                        }
                        let _ = client.write_all(&response);
                        *backend.lock().unwrap() = None;
                        cut_done.store(true, Ordering::SeqCst);
                        return;
                    }
                    let _ = std::io::copy(&mut upstream, &mut client);
                });
            }
        });
        proxy
    }
}

#[test]
fn ranges_and_blob_caching() {
    let server = Server::start(&[]);
    let token = server.token("alice", &[]);
    let built = artifact(&Prompt::new("mnli-prompt", "1.0.0"));
    assert_eq!(put_artifact(&server, Some(token.as_str()), built.bytes()).status(), 200);
    let url = format!("{}/blobs/sha256/{}", server.url, built.checksum().hex());
    let part = http().get(&url).header("Range", "bytes=10-19").send().unwrap();
    assert_eq!(part.status(), 206);
    assert_eq!(part.headers()["content-range"].to_str().unwrap(), format!("bytes 10-19/{}", built.bytes().len()));
    assert_eq!(part.bytes().unwrap().as_ref(), &built.bytes()[10..20]);
    let full = http().get(&url).send().unwrap();
    assert!(full.headers()["cache-control"].to_str().unwrap().contains("immutable"));
    assert_eq!(full.bytes().unwrap().as_ref(), built.bytes());
    let past = http().get(&url).header("Range", "bytes=999999-").send().unwrap();
    assert_eq!(past.status(), 416);
    // The sharded on-disk layout is served too (static mirrors use it).
    let hex = built.checksum().hex();
    assert_eq!(http().get(format!("{}/blobs/sha256/{}/{hex}", server.url, &hex[..2])).send().unwrap().status(), 200);
    assert_eq!(http().get(format!("{}/blobs/sha256/{}", server.url, "0".repeat(64))).send().unwrap().status(), 404);
}

#[test]
fn url_paths_never_escape_the_registry() {
    let server = Server::start(&[]);
    for path in [
        "/blobs/sha256/../../registry.db",
        "/blobs/sha256/%2e%2e/%2e%2e/registry.db",
        "/index/../registry.db",
        "/index/%2e%2e/registry.db",
        "/index/%2e%2e%2fregistry.db",
        "/index/.generation",
        "/index/mn/li/..%2f..%2f..%2fregistry.db",
        "/blobs/sha256/ab/..%2f..%2f..%2fregistry.db",
        "/registry.db",
    ] {
        let (status, body) =
            raw_request(server.addr(), &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"));
        assert!(status == 404 || status == 400, "{path}: {status}");
        assert!(!String::from_utf8_lossy(&body).contains("SQLite format"), "{path} leaked the database");
    }
    // Oversized headers are refused.
    let huge = format!(
        "GET /index/config.json HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\nConnection: close\r\n\r\n",
        "a".repeat(200_000)
    );
    let (status, _) = raw_request(server.addr(), &huge);
    assert!(status == 431 || status == 400 || status == 0, "huge header: {status}");
}

#[test]
fn oversized_upload_is_413_and_writes_nothing() {
    let server = Server::start(&["--max-upload-bytes", "2000"]);
    let token = server.token("alice", &[]);
    let big = artifact(&Prompt { hidden: 64, length: 64, ..Prompt::new("big-prompt", "1.0.0") });
    let before = server.files();
    assert_eq!(put_artifact(&server, Some(token.as_str()), big.bytes()).status(), 413);
    assert_eq!(server.files(), before);
    // A small one still fits.
    assert_eq!(
        put_artifact(&server, Some(token.as_str()), artifact(&Prompt::new("small-prompt", "1.0.0")).bytes()).status(),
        200
    );
}

#[test]
fn auth_required_protects_reads_and_login_stores_the_token() {
    let server = Server::start(&["--auth-required"]);
    let token = server.token("alice", &[]);
    let env = Env::new();
    // config.toml names the registry; login stores the token 0600.
    fs::write(
        env.home.path().join("config.toml"),
        format!("[registry]\ndefault = \"team\"\n\n[registries.team]\nindex = \"{}\"\n", server.url),
    )
    .unwrap();
    assert_eq!(http().get(format!("{}/index/config.json", server.url)).send().unwrap().status(), 401);
    let out = env.cmd().args(["login", "--registry", "team"]).write_stdin(format!("{token}\n")).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let creds = env.home.path().join("credentials.toml");
    assert_eq!(fs::metadata(&creds).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(fs::read_to_string(&creds).unwrap().contains(&token));

    // Publish through the default registry with the stored token.
    let p = Prompt::new("mnli-prompt", "1.0.0");
    let dir = p.write();
    let out = env.ok(&["publish", dir.path().to_str().unwrap()]);
    assert!(out.contains("Published mnli-prompt@1.0.0"), "{out}");
    let home = Home::at(env.home.path().to_path_buf());
    let source = open_source(None, &home, false, None).unwrap();
    assert_eq!(source.source_id(), format!("registry+{}/index/", server.url));
    let entry = source.versions("mnli-prompt").unwrap().remove(0);
    let dest = env.home.path().join("x.safetensors");
    source.download_blob(&entry.cksum, &dest).unwrap();
    assert_eq!(sha256_hex(&fs::read(&dest).unwrap()), entry.cksum.hex());

    // A wrong token in the environment wins over the stored one, and fails.
    let err =
        env.cmd().env("ATTEMPT_TOKEN", "apk_wrong").args(["publish", dir.path().to_str().unwrap()]).output().unwrap();
    assert!(!err.status.success());
    assert!(String::from_utf8_lossy(&err.stderr).contains("401"));
    let _ = Checksum::parse(entry.cksum.hex()).unwrap();
}

#[test]
fn mirror_replacement_keeps_the_original_source_id() {
    let upstream = Server::start(&[]);
    let mirror = Server::start(&[]);
    let token = mirror.token("alice", &[]);
    let p = Prompt::new("mnli-prompt", "1.0.0");
    assert_eq!(put_artifact(&mirror, Some(token.as_str()), artifact(&p).bytes()).status(), 200);
    let env = Env::new();
    fs::write(
        env.home.path().join("config.toml"),
        format!(
            "[registries.upstream]\nindex = \"{}/index/\"\nreplace-with = \"mirror\"\n\n[registries.mirror]\nindex = \"{}/index/\"\n",
            upstream.url, mirror.url
        ),
    )
    .unwrap();
    let home = Home::at(env.home.path().to_path_buf());
    let source = open_source(Some("upstream"), &home, false, None).unwrap();
    // Served by the mirror (upstream has nothing), recorded as upstream.
    assert_eq!(source.versions("mnli-prompt").unwrap().len(), 1);
    assert_eq!(source.source_id(), format!("registry+{}/index/", upstream.url));
}

#[test]
fn per_token_rate_limit() {
    let server = Server::start(&["--rate-limit", "1", "--rate-burst", "2"]);
    let token = server.token("alice", &[]);
    let yank = |v: &str| {
        http()
            .delete(format!("{}/api/v1/prompts/none-prompt/{v}/yank", server.url))
            .header("Authorization", format!("Bearer {token}"))
            .send()
            .unwrap()
            .status()
            .as_u16()
    };
    assert_eq!(yank("1.0.0"), 404);
    assert_eq!(yank("1.0.0"), 404);
    assert_eq!(yank("1.0.0"), 429);
}

#[test]
fn server_killed_mid_publish_restarts_consistent() {
    // The server process aborts (like kill -9) right after the database
    // commit, before the index file is written.
    let mut server = Server::start_with_env(&[], &[("ATTEMPT_TEST_CRASH_AT", "after-db")]);
    let token = server.token("alice", &[]);
    let built = artifact(&Prompt::new("mnli-prompt", "1.0.0"));
    let mut req = http().put(format!("{}/api/v1/prompts/new", server.url)).body(built.bytes().to_vec());
    req = req.header("Authorization", format!("Bearer {token}"));
    assert!(req.send().is_err(), "the server should have died mid-request");
    server.kill();

    let root = std::mem::replace(&mut server.root, tempfile::tempdir().unwrap());
    let restarted = Server::start_at(root, &[], &[]);
    // Startup repaired the index: the committed version is visible, and immutable.
    let index = http().get(format!("{}/index/mn/li/mnli-prompt", restarted.url)).send().unwrap();
    assert_eq!(index.status(), 200);
    assert_eq!(index.text().unwrap().lines().count(), 1);
    assert_eq!(put_artifact(&restarted, Some(token.as_str()), built.bytes()).status(), 409);
    // The publisher owns it: another user cannot claim it.
    let other = restarted.token("mallory", &[]);
    let next = artifact(&Prompt { version: "1.0.1".into(), seed: 7.0, ..Prompt::new("mnli-prompt", "1.0.0") });
    assert_eq!(put_artifact(&restarted, Some(other.as_str()), next.bytes()).status(), 403);
    let blob = http().get(format!("{}/blobs/sha256/{}", restarted.url, built.checksum().hex())).send().unwrap();
    assert_eq!(blob.bytes().unwrap().as_ref(), built.bytes());
}

#[test]
fn client_configuration_errors_are_explained() {
    let env = Env::new();
    let dir = env.home.path().join("some-registry");
    let err = env.fails(&["login", "--registry", dir.to_str().unwrap(), "--token", "apk_x"]);
    assert!(err.contains("registry directory"), "{err}");
    fs::write(
        env.home.path().join("config.toml"),
        "[registries.a]\nindex = \"http://127.0.0.1:9/\"\nreplace-with = \"b\"\n[registries.b]\nindex = \"http://127.0.0.1:9/\"\nreplace-with = \"a\"\n",
    )
    .unwrap();
    let err = env.fails(&["login", "--registry", "a", "--token", "apk_x"]);
    assert!(err.contains("loops"), "{err}");
    fs::write(env.home.path().join("config.toml"), "[registries.a]\nindex = \"ftp://x/\"\n").unwrap();
    let err = env.fails(&["login", "--registry", "a", "--token", "apk_x"]);
    assert!(err.contains("http:// or https://"), "{err}");
    assert!(!env.home.path().join("credentials.toml").exists());
    // Nothing listens on port 9: a clear, bounded failure.
    let p = Prompt::new("mnli-prompt", "1.0.0");
    let src = p.write();
    let err =
        env.fails(&["publish", src.path().to_str().unwrap(), "--registry", "http://127.0.0.1:9/", "--token", "apk_x"]);
    assert!(err.contains("cannot reach registry"), "{err}");
}
