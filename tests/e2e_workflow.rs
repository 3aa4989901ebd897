//! The whole package workflow through the real binary, across layers:
//! publish (registry) → search → add/lock (resolver) → tree → fetch/verify
//! (cache) → yank → remove.

mod common_registry;

use std::fs;

use common_registry::{Env, Prompt, FINGERPRINT, OTHER_FINGERPRINT};

fn publish(env: &Env, p: &Prompt) -> String {
    let dir = p.write();
    env.ok(&["publish", dir.path().to_str().unwrap()])
}

#[test]
fn publish_search_add_lock_tree_fetch_verify_remove() {
    let env = Env::new();
    let project = tempfile::tempdir().unwrap();
    let proj = project.path().to_str().unwrap();

    let mut mnli = Prompt::new("mnli-prompt", "1.0.0");
    mnli.task = "mnli".into();
    mnli.description = "natural language inference source prompt".into();
    publish(&env, &mnli);
    let mut mnli2 = mnli.clone();
    mnli2.version = "1.2.0".into();
    mnli2.seed = 2.0;
    publish(&env, &mnli2);
    let mut sst2 = Prompt::new("sst2-prompt", "0.3.1");
    sst2.task = "sst2".into();
    sst2.description = "movie review sentiment".into();
    sst2.seed = 3.0;
    publish(&env, &sst2);

    let found = env.ok(&["search", "sentiment"]);
    assert!(found.contains("sst2-prompt"), "search output: {found}");
    assert!(!found.contains("mnli-prompt"), "search output: {found}");

    env.ok(&["--project", proj, "init", "--name", "demo", "--model-fingerprint", FINGERPRINT]);
    env.ok(&["--project", proj, "add", "mnli-prompt@1.0", "sst2-prompt"]);
    let lock = fs::read_to_string(project.path().join("attempt.lock")).unwrap();
    assert!(lock.contains("mnli-prompt") && lock.contains("1.2.0"), "lock: {lock}");
    assert!(lock.contains("sst2-prompt") && lock.contains("0.3.1"), "lock: {lock}");

    // A no-op lock keeps the file byte-identical.
    env.ok(&["--project", proj, "lock"]);
    assert_eq!(fs::read_to_string(project.path().join("attempt.lock")).unwrap(), lock);

    let tree = env.ok(&["--project", proj, "tree"]);
    assert!(tree.contains("mnli-prompt") && tree.contains("sst2-prompt"), "tree: {tree}");

    env.ok(&["--project", proj, "fetch"]);
    env.ok(&["--project", proj, "verify"]);

    // Yanking a locked version does not break the project (Cargo semantics)...
    env.ok(&["yank", "mnli-prompt@1.2.0"]);
    env.ok(&["--project", proj, "--locked", "lock"]);
    // ...but a fresh resolution no longer picks it.
    fs::remove_file(project.path().join("attempt.lock")).unwrap();
    env.ok(&["--project", proj, "lock"]);
    let relocked = fs::read_to_string(project.path().join("attempt.lock")).unwrap();
    assert!(relocked.contains("1.0.0") && !relocked.contains("1.2.0"), "lock: {relocked}");

    env.ok(&["--project", proj, "remove", "sst2-prompt"]);
    let after = fs::read_to_string(project.path().join("attempt.lock")).unwrap();
    assert!(!after.contains("sst2-prompt"), "lock: {after}");
}

#[test]
fn base_model_conflict_is_explained() {
    let env = Env::new();
    let project = tempfile::tempdir().unwrap();
    let proj = project.path().to_str().unwrap();
    let mut squad = Prompt::new("squad", "1.2.0");
    squad.fingerprint = OTHER_FINGERPRINT.into();
    publish(&env, &squad);

    env.ok(&["--project", proj, "init", "--name", "demo", "--model-fingerprint", FINGERPRINT]);
    let err = env.fails(&["--project", proj, "add", "squad@1.2"]);
    assert!(err.contains("squad"), "error: {err}");
    let short = |f: &str| f.trim_start_matches("sha256:")[..12].to_string();
    assert!(err.contains(&short(FINGERPRINT)), "error should name the project's model: {err}");
    assert!(err.contains(&short(OTHER_FINGERPRINT)), "error should name the package's model: {err}");
    assert!(!project.path().join("attempt.lock").exists(), "a failed add must not write a lock");
    let manifest = fs::read_to_string(project.path().join("attempt.toml")).unwrap();
    assert!(!manifest.contains("squad"), "a failed add must not change attempt.toml: {manifest}");
}
