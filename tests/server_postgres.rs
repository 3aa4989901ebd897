//! Scale-out on PostgreSQL: several `serve` processes share one database and
//! one registry directory, and act as one registry.
//!
//! Needs a PostgreSQL server: `ATTEMPT_TEST_POSTGRES_URL` (an admin URL; each
//! test creates its own database). `scripts/test.sh` starts a throwaway one
//! (scripts/postgres-test-server.sh) and sets `ATTEMPT_REQUIRE_POSTGRES=1`,
//! which turns a missing server into a failure instead of a skip.

mod common_registry;
mod pages_common;
mod server_common;

use std::sync::atomic::{AtomicUsize, Ordering};

use attempt_pkg::package::Artifact;
use attempt_pkg::registry::{Backend, LocalRegistry};
use common_registry::{Env, Prompt};
use semver::Version;
use server_common::{http, Server};
use sqlx::{Connection, Executor};

fn admin_url() -> Option<String> {
    match std::env::var("ATTEMPT_TEST_POSTGRES_URL") {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            assert!(
                std::env::var("ATTEMPT_REQUIRE_POSTGRES").map_or(true, |v| v != "1"),
                "ATTEMPT_REQUIRE_POSTGRES=1 but ATTEMPT_TEST_POSTGRES_URL is not set (scripts/test.sh starts PostgreSQL)"
            );
            eprintln!("skipping: ATTEMPT_TEST_POSTGRES_URL is not set (run scripts/test.sh, which starts PostgreSQL)");
            None
        }
    }
}

/// Creates an empty database on the test server; returns its URL.
fn fresh_database(admin: &str) -> String {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let name = format!("attempt_test_{}_{}", std::process::id(), NEXT.fetch_add(1, Ordering::Relaxed));
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let mut conn = sqlx::PgConnection::connect(admin).await.expect("connect to the test PostgreSQL");
        conn.execute(format!("DROP DATABASE IF EXISTS {name}").as_str()).await.unwrap();
        conn.execute(format!("CREATE DATABASE {name}").as_str()).await.unwrap();
    });
    let mut url = url::Url::parse(admin).expect("admin URL");
    url.set_path(&format!("/{name}"));
    url.to_string()
}

fn artifact(p: &Prompt) -> Artifact {
    let dir = p.write();
    Artifact::build(dir.path()).expect("build artifact")
}

fn put(server: &Server, token: &str, bytes: &[u8]) -> u16 {
    put_with_body(server, token, bytes).0
}

fn put_with_body(server: &Server, token: &str, bytes: &[u8]) -> (u16, String) {
    let response = http()
        .put(format!("{}/api/v1/prompts/new", server.url))
        .header("Authorization", format!("Bearer {token}"))
        .body(bytes.to_vec())
        .send()
        .expect("PUT publish");
    (response.status().as_u16(), response.text().unwrap_or_default())
}

#[test]
fn library_registry_on_postgres() {
    let Some(admin) = admin_url() else { return };
    let db = fresh_database(&admin);
    let root = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let registry = LocalRegistry::open_with_database(root.path(), Some(&db)).await.unwrap();
        assert_eq!(registry.backend(), Backend::Postgres);
        let mut mnli = Prompt::new("mnli-prompt", "1.0.0");
        mnli.description = "Natural language inference".into();
        registry.publish(&artifact(&mnli)).await.unwrap();
        registry.publish(&artifact(&Prompt { version: "1.1.0".into(), seed: 2.0, ..mnli.clone() })).await.unwrap();
        let mut sst = Prompt::new("sst2-prompt", "0.1.0");
        sst.task = "sst2".into();
        sst.description = "Sentiment, trained after mnli-prompt inference".into();
        registry.publish(&artifact(&sst)).await.unwrap();

        // Immutable versions and confusable names, as on SQLite.
        let err = format!("{:#}", registry.publish(&artifact(&mnli)).await.unwrap_err());
        assert!(err.contains("already published"), "{err}");
        let err = format!("{:#}", registry.publish(&artifact(&Prompt::new("mnli_prompt", "9.0.0"))).await.unwrap_err());
        assert!(err.contains("too similar"), "{err}");

        // Search: every word as a prefix; name hits rank above description hits.
        let hits = registry.search("mnli", 10).await.unwrap();
        let names: Vec<&str> = hits.iter().map(|h| h.name.as_str()).collect();
        assert_eq!(names, ["mnli-prompt", "sst2-prompt"]);
        assert_eq!(hits[0].latest, Version::new(1, 1, 0));
        assert_eq!(registry.search("sentim", 10).await.unwrap().len(), 1);
        assert!(registry.search("inference zzz", 10).await.unwrap().is_empty());

        // The paginated listing the server answers `GET /api/v1/prompts?page=N` with.
        let (first, more) = registry.list_page(0, 1).await.unwrap();
        assert_eq!(first.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["mnli-prompt"]);
        assert!(more);
        let (second, more) = registry.list_page(1, 1).await.unwrap();
        assert_eq!(second.iter().map(|p| p.name.as_str()).collect::<Vec<_>>(), ["sst2-prompt"]);
        assert!(!more);
        assert!(registry.list_page(2, 1).await.unwrap().0.is_empty());

        // Yank history, index files, consistency.
        registry.set_yanked("mnli-prompt", &Version::new(1, 1, 0), true, None).await.unwrap();
        let info = registry.info("mnli-prompt").await.unwrap().unwrap();
        assert!(info.versions[1].yanked);
        assert_eq!(info.yank_history.len(), 1);
        assert_eq!(registry.search("mnli", 1).await.unwrap()[0].latest, Version::new(1, 0, 0));
        let index = std::fs::read_to_string(root.path().join("index/mn/li/mnli-prompt")).unwrap();
        assert_eq!(index.lines().count(), 2);
        assert!(index.lines().nth(1).unwrap().contains("\"yanked\":true"));
        assert!(registry.check_index().await.unwrap().is_empty());
        assert!(!root.path().join("registry.db").exists(), "state belongs in PostgreSQL, not SQLite");

        // A lost index is rebuilt from the database on the next open.
        std::fs::remove_dir_all(root.path().join("index")).unwrap();
        let reopened = LocalRegistry::open_with_database(root.path(), Some(&db)).await.unwrap();
        assert!(reopened.check_index().await.unwrap().is_empty());
        assert_eq!(reopened.list().await.unwrap().len(), 2);
    });
}

#[test]
fn two_servers_on_one_database_are_one_registry() {
    let Some(admin) = admin_url() else { return };
    let db = fresh_database(&admin);
    let env = [("ATTEMPT_DATABASE_URL", db.as_str())];
    let a = Server::start_with_env(&[], &env);
    let b = Server::start_sharing(a.root(), &[], &env);
    // One token, created once, works on both.
    let token = a.token("alice", &[]);
    let client = Env::new();

    let mnli = Prompt::new("mnli-prompt", "1.0.0");
    assert_eq!(put(&a, &token, artifact(&mnli).bytes()), 200);
    assert_eq!(put(&b, &token, artifact(&Prompt { version: "1.1.0".into(), seed: 4.0, ..mnli.clone() }).bytes()), 200);
    for server in [&a, &b] {
        let index = http().get(format!("{}/index/mn/li/mnli-prompt", server.url)).send().unwrap().text().unwrap();
        assert_eq!(index.lines().count(), 2, "{}: {index}", server.url);
        let hits: serde_json::Value =
            http().get(format!("{}/api/v1/prompts?q=mnli", server.url)).send().unwrap().json().unwrap();
        assert_eq!(hits["prompts"][0]["latest"], "1.1.0");
    }

    // A yank through one server shows through the other, and the CLI agrees.
    let out = client.ok(&["yank", "mnli-prompt@1.1.0", "--registry", &b.index_url(), "--token", &token]);
    assert!(out.contains("Yanked mnli-prompt@1.1.0"), "{out}");
    let index = http().get(format!("{}/index/mn/li/mnli-prompt", a.url)).send().unwrap().text().unwrap();
    assert!(index.lines().nth(1).unwrap().contains("\"yanked\":true"), "{index}");
    let out = client.ok(&["search", "mnli", "--registry", &a.index_url()]);
    assert!(out.starts_with("mnli-prompt@1.0.0"), "{out}");

    // Racing publishes of one version through both servers: exactly one wins.
    let bytes = artifact(&Prompt::new("race-prompt", "1.0.0")).bytes().to_vec();
    let replies: Vec<(u16, String)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..8)
            .map(|i| {
                let server = if i % 2 == 0 { &a } else { &b };
                let (token, bytes) = (&token, &bytes);
                s.spawn(move || put_with_body(server, token, bytes))
            })
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(replies.iter().filter(|r| r.0 == 200).count(), 1, "{replies:?}");
    assert_eq!(replies.iter().filter(|r| r.0 == 409).count(), 7, "{replies:?}");

    // Ownership is shared state too: bob cannot publish alice's package on either server.
    let bob = a.token("bob", &[]);
    assert_eq!(put(&b, &bob, artifact(&Prompt { version: "2.0.0".into(), ..mnli.clone() }).bytes()), 403);

    // A new process on the same database and directory sees everything; nothing went to SQLite.
    let c = Server::start_sharing(a.root(), &[], &env);
    let index = http().get(format!("{}/index/ra/ce/race-prompt", c.url)).send().unwrap().text().unwrap();
    assert_eq!(index.lines().count(), 1);
    assert!(!a.root().join("registry.db").exists());
}

#[test]
fn unsupported_database_url_is_explained() {
    let root = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attempt-pkg"))
        .args(["token", "list", "--root", root.path().to_str().unwrap(), "--database", "mysql://u:secret@host/db"])
        .env("ATTEMPT_HOME", root.path().join("home"))
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("no registry directory"), "{err}");
    std::fs::create_dir_all(root.path().join("index")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_attempt-pkg"))
        .args(["token", "list", "--root", root.path().to_str().unwrap(), "--database", "mysql://u:secret@host/db"])
        .env("ATTEMPT_HOME", root.path().join("home"))
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("unsupported registry database") && err.contains("postgres://"), "{err}");
    assert!(!err.contains("secret"), "the password is not echoed: {err}");
}

#[test]
fn server_killed_after_the_commit_recovers_from_postgres() {
    let Some(admin) = admin_url() else { return };
    let db = fresh_database(&admin);
    let crashing =
        Server::start_with_env(&[], &[("ATTEMPT_DATABASE_URL", db.as_str()), ("ATTEMPT_TEST_CRASH_AT", "after-db")]);
    let token = crashing.token("alice", &[]);
    let bytes = artifact(&Prompt::new("mnli-prompt", "1.0.0")).bytes().to_vec();
    // The server aborts between the database commit and the index write.
    let reply = http()
        .put(format!("{}/api/v1/prompts/new", crashing.url))
        .header("Authorization", format!("Bearer {token}"))
        .body(bytes.clone())
        .send();
    assert!(reply.is_err(), "the server was meant to die mid-publish: {reply:?}");
    assert!(!crashing.root().join("index/mn/li/mnli-prompt").exists());

    // Any server process on the registry repairs the index from the database when it starts.
    let restarted = Server::start_sharing(crashing.root(), &[], &[("ATTEMPT_DATABASE_URL", db.as_str())]);
    let index = http().get(format!("{}/index/mn/li/mnli-prompt", restarted.url)).send().unwrap().text().unwrap();
    assert_eq!(index.lines().count(), 1, "{index}");
    assert_eq!(put(&restarted, &token, &bytes), 409);
}

/// The web pages' queries (totals, newest, most downloaded, filters,
/// dependents, a model's packages, batched download counts, yank reasons)
/// give the same answers on PostgreSQL as on SQLite (tests/server_pages.rs).
#[test]
fn page_queries_on_postgres() {
    let Some(admin) = admin_url() else { return };
    let db = fresh_database(&admin);
    let root = tempfile::tempdir().unwrap();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let registry = LocalRegistry::open_with_database(root.path(), Some(&db)).await.unwrap();
        pages_common::check_browse_queries(&registry).await;
    });
}
