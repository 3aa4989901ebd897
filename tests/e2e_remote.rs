//! The project workflow against a registry served over HTTP: publish with a
//! token, then `add` → lock → fetch → verify through the HTTP client, and the
//! lock records the registry's URL.

mod common_registry;
mod server_common;

use std::fs;

use common_registry::{Env, Prompt, FINGERPRINT};
use server_common::Server;

#[test]
fn add_fetch_verify_from_a_served_registry() {
    let server = Server::start(&[]);
    let token = server.token("ci", &[]);
    let env = Env::new();
    let url = server.index_url();

    let mut p = Prompt::new("rte-prompt", "1.1.0");
    p.task = "rte".into();
    let dir = p.write();
    env.ok(&["--registry", &url, "publish", dir.path().to_str().unwrap(), "--token", &token]);

    let project = tempfile::tempdir().unwrap();
    let proj = project.path().to_str().unwrap();
    env.ok(&["--project", proj, "init", "--name", "remote-demo", "--model-fingerprint", FINGERPRINT]);
    env.ok(&["--registry", &url, "--project", proj, "add", "rte-prompt@1"]);
    let lock = fs::read_to_string(project.path().join("attempt.lock")).unwrap();
    assert!(lock.contains("rte-prompt") && lock.contains("1.1.0"), "lock: {lock}");
    assert!(lock.contains(&format!("registry+{}", server.url)), "lock should name the served registry: {lock}");

    env.ok(&["--registry", &url, "--project", proj, "fetch"]);
    env.ok(&["--registry", &url, "--project", proj, "verify"]);
    // The blob is now in the shared cache: an offline, locked run needs no server.
    env.ok(&["--project", proj, "--frozen", "fetch"]);
}
