//! init → add → lock → tree → remove, and the lock's stability rules.

mod common;

use common::{Env, Version, MODEL_A};

fn registry_with_basics(env: &Env) {
    for v in ["1.0.0", "1.2.0", "1.2.5", "1.3.0", "2.0.0"] {
        env.registry.publish(Version::new("mnli-prompt", v));
    }
    for v in ["1.0.0", "1.0.3", "1.1.0"] {
        env.registry.publish(Version::new("sst2-prompt", v));
    }
}

#[test]
fn init_add_lock_tree_remove() {
    let env = Env::new();
    registry_with_basics(&env);
    env.init();
    assert!(env.manifest().contains(&format!("fingerprint = \"sha256:{MODEL_A}\"")));

    env.ok(&["add", "mnli-prompt@1.2", "sst2-prompt"]);
    let manifest = env.manifest();
    assert!(manifest.contains("mnli-prompt = \"^1.2\""), "{manifest}");
    // No version given: the newest compatible one, as a caret requirement.
    assert!(manifest.contains("sst2-prompt = \"^1.1.0\""), "{manifest}");
    assert_eq!(env.locked_version("mnli-prompt").as_deref(), Some("1.3.0"));
    assert_eq!(env.locked_version("sst2-prompt").as_deref(), Some("1.1.0"));
    let lock = env.lock();
    assert!(lock.contains(&format!("fingerprint = \"sha256:{MODEL_A}\"")), "{lock}");
    assert!(lock.find("name = \"mnli-prompt\"") < lock.find("name = \"sst2-prompt\""), "sorted: {lock}");

    let tree = env.ok(&["tree"]);
    assert!(tree.starts_with("demo\n"), "{tree}");
    assert!(tree.contains("├── mnli-prompt v1.3.0"), "{tree}");
    assert!(tree.contains("└── sst2-prompt v1.1.0"), "{tree}");
    let json: serde_json::Value = serde_json::from_str(&env.ok(&["tree", "--json"])).unwrap();
    assert_eq!(json["project"], "demo");
    assert_eq!(json["packages"].as_array().unwrap().len(), 2);
    assert_eq!(json["base_model"]["fingerprint"], format!("sha256:{MODEL_A}"));

    env.ok(&["remove", "sst2-prompt"]);
    assert!(!env.manifest().contains("sst2-prompt"));
    assert_eq!(env.locked_version("sst2-prompt"), None);
    assert_eq!(env.locked_version("mnli-prompt").as_deref(), Some("1.3.0"));
    let err = env.fails(&["remove", "sst2-prompt"]);
    assert!(err.contains("sst2-prompt is not in [sources]"), "{err}");
}

#[test]
fn noop_lock_is_byte_identical_and_not_rewritten() {
    let env = Env::new();
    registry_with_basics(&env);
    env.init();
    env.ok(&["add", "mnli-prompt", "sst2-prompt@=1.0.3"]);
    let before = env.lock();
    let mtime = std::fs::metadata(env.lock_path()).unwrap().modified().unwrap();
    std::thread::sleep(std::time::Duration::from_millis(20));
    env.ok(&["lock"]);
    env.ok(&["lock", "--locked"]);
    assert_eq!(env.lock(), before);
    assert_eq!(std::fs::metadata(env.lock_path()).unwrap().modified().unwrap(), mtime, "rewritten without change");
    // A newer version appearing does not move a lock by itself.
    env.registry.publish(Version::new("mnli-prompt", "1.4.0"));
    env.ok(&["lock"]);
    assert_eq!(env.lock(), before);
}

#[test]
fn locked_fails_when_manifest_changed_and_says_what() {
    let env = Env::new();
    registry_with_basics(&env);
    env.init();
    env.ok(&["add", "mnli-prompt@1.2"]);
    let lock = env.lock();
    let manifest = env.manifest().replace("[sources]\n", "[sources]\nsst2-prompt = \"1.0\"\n");
    common::write(&env.project.join("attempt.toml"), &manifest);
    let err = env.fails(&["lock", "--locked"]);
    assert!(err.contains("--locked") && err.contains("+ sst2-prompt 1.1.0"), "{err}");
    assert_eq!(env.lock(), lock, "--locked must not write");
    // --frozen implies --locked.
    let err = env.fails(&["tree", "--frozen"]);
    assert!(err.contains("sst2-prompt"), "{err}");
    // add under --locked changes nothing either.
    let err = env.fails(&["add", "--locked", "mnli-prompt@=1.0.0"]);
    assert!(err.contains("~ mnli-prompt 1.3.0 -> 1.0.0"), "{err}");
    assert!(env.manifest().contains("mnli-prompt = \"^1.2\""));
}

#[test]
fn caret_tilde_and_exact_requirements() {
    let env = Env::new();
    registry_with_basics(&env);
    env.publish_prerelease();
    env.init();
    env.ok(&["add", "mnli-prompt@=1.2.0"]);
    assert!(env.manifest().contains("mnli-prompt = \"=1.2.0\""));
    assert_eq!(env.locked_version("mnli-prompt").as_deref(), Some("1.2.0"));
    env.ok(&["add", "mnli-prompt@~1.2"]);
    assert_eq!(env.locked_version("mnli-prompt").as_deref(), Some("1.2.0"), "still allowed: kept");
    env.ok(&["update", "mnli-prompt"]);
    assert_eq!(env.locked_version("mnli-prompt").as_deref(), Some("1.2.5"));
    // ^1 never reaches 2.0.0 nor the 1.4.0-beta pre-release.
    env.ok(&["add", "mnli-prompt@1"]);
    env.ok(&["update"]);
    assert_eq!(env.locked_version("mnli-prompt").as_deref(), Some("1.3.0"));
    // Asking for the pre-release explicitly gets it.
    env.ok(&["add", "mnli-prompt@>=1.4.0-beta.1"]);
    env.ok(&["update"]);
    assert_eq!(env.locked_version("mnli-prompt").as_deref(), Some("2.0.0"));
    env.ok(&["add", "mnli-prompt@=1.4.0-beta.1"]);
    assert_eq!(env.locked_version("mnli-prompt").as_deref(), Some("1.4.0-beta.1"));
}

trait Prerelease {
    fn publish_prerelease(&self);
}
impl Prerelease for Env {
    fn publish_prerelease(&self) {
        self.registry.publish(Version::new("mnli-prompt", "1.4.0-beta.1"));
    }
}

#[test]
fn transitive_prompt_set_dependencies() {
    let env = Env::new();
    registry_with_basics(&env);
    env.registry.publish(Version::new("glue-set", "1.0.0").deps(&[("mnli-prompt", "^1.2"), ("sst2-prompt", "~1.0")]));
    env.init();
    env.ok(&["add", "glue-set"]);
    assert_eq!(env.locked_version("glue-set").as_deref(), Some("1.0.0"));
    assert_eq!(env.locked_version("mnli-prompt").as_deref(), Some("1.3.0"));
    assert_eq!(env.locked_version("sst2-prompt").as_deref(), Some("1.0.3"));
    assert!(env.lock().contains("dependencies = [\"mnli-prompt\", \"sst2-prompt\"]"), "{}", env.lock());
    let tree = env.ok(&["tree"]);
    assert!(tree.contains("└── glue-set v1.0.0\n    ├── mnli-prompt v1.3.0\n    └── sst2-prompt v1.0.3"), "{tree}");
    // A direct requirement narrows the shared one.
    env.ok(&["add", "sst2-prompt@=1.0.0"]);
    assert_eq!(env.locked_version("sst2-prompt").as_deref(), Some("1.0.0"));
    env.ok(&["remove", "glue-set"]);
    assert_eq!(env.locked_version("mnli-prompt"), None, "only glue-set needed it");
}

#[test]
fn add_keeps_locked_versions_and_update_moves_them() {
    let env = Env::new();
    registry_with_basics(&env);
    env.init();
    env.ok(&["add", "mnli-prompt@1"]);
    assert_eq!(env.locked_version("mnli-prompt").as_deref(), Some("1.3.0"));
    env.registry.publish(Version::new("mnli-prompt", "1.5.0"));
    env.registry.publish(Version::new("sst2-prompt", "1.2.0"));
    env.ok(&["add", "sst2-prompt@1.0"]);
    assert_eq!(env.locked_version("mnli-prompt").as_deref(), Some("1.3.0"), "add must keep locked versions");
    assert_eq!(env.locked_version("sst2-prompt").as_deref(), Some("1.2.0"));
    env.registry.publish(Version::new("sst2-prompt", "1.3.0"));
    env.ok(&["update", "mnli-prompt"]);
    assert_eq!(env.locked_version("mnli-prompt").as_deref(), Some("1.5.0"));
    assert_eq!(env.locked_version("sst2-prompt").as_deref(), Some("1.2.0"), "update NAME moves only NAME");
    let out = env.cmd(&["update"]).output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("~ sst2-prompt 1.2.0 -> 1.3.0"));
    assert_eq!(env.locked_version("sst2-prompt").as_deref(), Some("1.3.0"));
    let err = env.fails(&["update", "qqp"]);
    assert!(err.contains("qqp is not in attempt.lock"), "{err}");
}

#[test]
fn bad_input_changes_nothing() {
    let env = Env::new();
    registry_with_basics(&env);
    env.init();
    env.ok(&["add", "mnli-prompt"]);
    let (manifest, lock) = (env.manifest(), env.lock());
    for bad in ["mnli-prompt@1.x.y", "mnli-prompt@", "mnli-prompt@>>1"] {
        let err = env.fails(&["add", bad]);
        assert!(err.contains("invalid requirement") || err.contains("not a semver requirement"), "{bad}: {err}");
    }
    for bad in ["../evil", "a/b", "a..b", "Mnli", "x\\y"] {
        let err = env.fails(&["add", bad]);
        assert!(err.contains("invalid package name"), "{bad}: {err}");
    }
    let err = env.fails(&["add", "nosuch-prompt"]);
    assert!(err.contains("no package named `nosuch-prompt` in registry"), "{err}");
    let err = env.fails(&["add", "mnli_prompt"]);
    assert!(err.contains("did you mean `mnli-prompt`"), "{err}");
    assert_eq!(env.manifest(), manifest);
    assert_eq!(env.lock(), lock);
    let err = env.fails(&["init"]);
    assert!(err.contains("already exists"), "{err}");
    let err = env.fails(&["init", "--project", "other", "--name", "../x"]);
    assert!(err.contains("invalid project name"), "{err}");
}

#[test]
fn edits_keep_user_sections() {
    let env = Env::new();
    registry_with_basics(&env);
    env.init();
    let text = format!("{}\n[train]\nsteps = 100 # tuned\n", env.manifest());
    common::write(&env.project.join("attempt.toml"), &text);
    env.ok(&["add", "mnli-prompt@1.2"]);
    env.ok(&["add", "sst2-prompt"]);
    env.ok(&["remove", "sst2-prompt"]);
    let after = env.manifest();
    assert!(after.contains("[train]\nsteps = 100 # tuned"), "{after}");
    assert!(after.contains("mnli-prompt = \"^1.2\""), "{after}");
}

#[test]
fn project_is_found_from_a_subdirectory() {
    let env = Env::new();
    registry_with_basics(&env);
    env.init();
    env.ok(&["add", "mnli-prompt"]);
    let sub = env.project.join("notebooks");
    std::fs::create_dir_all(&sub).unwrap();
    let out = env.cmd(&["tree"]).current_dir(&sub).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stdout).contains("mnli-prompt v2.0.0"));
}

#[test]
fn concurrent_adds_in_one_project_keep_every_edit() {
    let env = Env::new();
    let names: Vec<String> = (0..6).map(|i| format!("src{i}-prompt")).collect();
    for n in &names {
        env.registry.publish(Version::new(n, "1.0.0"));
    }
    env.init();
    // Six processes read-modify-write attempt.toml and attempt.lock at once;
    // the project lock serialises them, so no edit is lost.
    let children: Vec<std::process::Child> = names
        .iter()
        .map(|n| {
            std::process::Command::new(env!("CARGO_BIN_EXE_attempt-pkg"))
                .current_dir(&env.project)
                .env("ATTEMPT_HOME", &env.home)
                .env("ATTEMPT_REGISTRY", &env.registry.root)
                .args(["add", n])
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    for mut c in children {
        assert!(c.wait().unwrap().success());
    }
    let manifest = env.manifest();
    for n in &names {
        assert!(manifest.contains(&format!("{n} = \"^1.0.0\"")), "{n} lost: {manifest}");
        assert_eq!(env.locked_version(n).as_deref(), Some("1.0.0"), "{n} not locked");
    }
}
