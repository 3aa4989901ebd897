//! Resolution rules: yanked versions, base-model constraints and their explanations.

mod common;

use common::{Env, Version, MODEL_A, MODEL_B};

#[test]
fn yanked_versions_are_skipped_but_a_locked_one_keeps_working() {
    let env = Env::new();
    env.registry.publish(Version::new("squad", "1.0.0"));
    env.registry.publish(Version::new("squad", "1.1.0"));
    env.init();
    env.ok(&["add", "squad@1"]);
    assert_eq!(env.locked_version("squad").as_deref(), Some("1.1.0"));
    env.registry.yank("squad", "1.1.0");
    // Locked: keeps working, including --locked and a new add of something else.
    env.ok(&["lock", "--locked"]);
    env.registry.publish(Version::new("qqp", "0.1.0"));
    env.ok(&["add", "qqp"]);
    assert_eq!(env.locked_version("squad").as_deref(), Some("1.1.0"));
    env.ok(&["fetch"]);
    // A new resolution never picks it.
    env.ok(&["update", "squad"]);
    assert_eq!(env.locked_version("squad").as_deref(), Some("1.0.0"));
    // Nor does a fresh project, and when only yanked versions match, the error says so.
    let other = Env::new();
    other.registry.publish(Version::new("squad", "1.0.0").yanked());
    other.registry.publish(Version::new("squad", "0.9.0"));
    other.init();
    let err = other.fails(&["add", "squad@1"]);
    assert!(err.contains("is yanked") && err.contains("squad"), "{err}");
    // Bare add skips yanked versions when choosing the requirement.
    other.ok(&["add", "squad"]);
    assert!(other.manifest().contains("squad = \"^0.9.0\""), "{}", other.manifest());
}

#[test]
fn base_model_conflict_is_explained_with_both_fingerprints() {
    let env = Env::new();
    env.registry.publish(Version::new("squad", "1.1.0"));
    env.registry.publish(Version::new("squad", "1.2.0").model(MODEL_B));
    env.registry.publish(Version::new("squad", "1.3.0").model(MODEL_B));
    env.init();
    let err = env.fails(&["add", "squad@1.2"]);
    let ours = format!("sha256:{}", &MODEL_A[..12]);
    let theirs = format!("sha256:{}", &MODEL_B[..12]);
    assert!(err.contains(&ours) && err.contains(&theirs), "{err}");
    assert!(
        err.contains(&format!(
            "hint: squad@1.3.0 is for base model {theirs}…, but this project uses {ours}…; no version of squad matching ^1.2 is for {ours}…"
        )),
        "{err}"
    );
    // The derivation itself names the package and the requirement.
    assert!(err.contains("squad ^1.2"), "{err}");
    assert!(!env.manifest().contains("squad"), "failed add must not edit attempt.toml");
    // With a compatible requirement it resolves to the version for our model.
    env.ok(&["add", "squad@1.1"]);
    assert_eq!(env.locked_version("squad").as_deref(), Some("1.1.0"));
    // A bare add picks the newest version for our model, not the newest overall.
    let env2 = Env::new();
    env2.registry.publish(Version::new("squad", "1.1.0"));
    env2.registry.publish(Version::new("squad", "1.3.0").model(MODEL_B));
    env2.init();
    env2.ok(&["add", "squad"]);
    assert!(env2.manifest().contains("squad = \"^1.1.0\""));
}

#[test]
fn prompts_must_agree_on_one_model_even_through_sets() {
    let env = Env::new();
    env.registry.publish(Version::new("mnli", "1.0.0"));
    env.registry.publish(Version::new("sst2", "1.0.0").model(MODEL_B));
    env.registry.publish(Version::new("glue", "1.0.0").deps(&[("mnli", "^1"), ("sst2", "^1")]));
    // Project without a fingerprint: the prompts still must share one.
    env.ok(&["init", "--name", "nofp"]);
    let err = env.fails(&["add", "glue"]);
    assert!(err.contains("base model"), "{err}");
    assert!(err.contains(&MODEL_A[..12]) && err.contains(&MODEL_B[..12]), "{err}");
    assert!(err.contains("glue@1.0.0") && err.contains("sst2"), "{err}");
    // Two plain prompts for different models cannot be mixed either.
    env.ok(&["add", "mnli"]);
    let err = env.fails(&["add", "sst2"]);
    assert!(err.contains("mnli") && err.contains("sst2"), "{err}");
    assert!(err.contains(&MODEL_A[..12]) && err.contains(&MODEL_B[..12]), "{err}");
}

#[test]
fn hidden_size_and_prompt_length_mismatch() {
    let env = Env::new();
    env.registry.publish(Version::new("wide", "1.0.0").hidden(16));
    env.registry.publish(Version::new("narrow", "1.0.0").hidden(8));
    env.registry.publish(Version::new("long", "1.0.0").length(50));
    env.init();
    env.ok(&["add", "narrow"]);
    // Same fingerprint, other hidden size: cannot be mixed with narrow.
    let err = env.fails(&["add", "wide@1"]);
    assert!(err.contains("hidden size 16") && err.contains("hidden size 8"), "{err}");
    // Pinning the hidden size and length in attempt.toml gives a direct hint.
    let text = env.manifest().replace("[model]\n", "[model]\nhidden-size = 8\nprompt-length = 4\n");
    common::write(&env.project.join("attempt.toml"), &text);
    env.ok(&["lock"]);
    let err = env.fails(&["add", "wide@1"]);
    assert!(err.contains("hint: wide@1.0.0 has hidden size 16, but this project's model"), "{err}");
    let err = env.fails(&["add", "long@1"]);
    assert!(err.contains("prompt length 50") && err.contains("long"), "{err}");
    assert!(err.contains("hint: long@1.0.0 has prompt length 50, but this project sets prompt-length = 4"), "{err}");
}

#[test]
fn missing_transitive_dependency_is_named() {
    let env = Env::new();
    env.registry.publish(Version::new("glue", "1.0.0").deps(&[("ghost", "^1")]));
    env.init();
    let err = env.fails(&["add", "glue"]);
    assert!(err.contains("no registry has a package named ghost, which glue@1.0.0 depends on"), "{err}");
    assert!(err.contains("depends on ghost ^1"), "{err}");
}

#[test]
fn prompt_length_alone_is_enforced() {
    let env = Env::new();
    env.registry.publish(Version::new("long", "1.0.0").length(50));
    env.registry.publish(Version::new("long", "0.9.0"));
    env.ok(&[
        "init",
        "--name",
        "demo",
        "--model-fingerprint",
        &format!("sha256:{MODEL_A}"),
        "--model-path",
        "models/mini",
    ]);
    let text = env.manifest().replace("path = \"models/mini\"\n", "path = \"models/mini\"\nprompt-length = 4\n");
    common::write(&env.project.join("attempt.toml"), &text);
    // The newest version has the wrong length: a bare add settles on 0.9.0.
    env.ok(&["add", "long"]);
    assert!(env.manifest().contains("long = \"^0.9.0\""), "{}", env.manifest());
    let err = env.fails(&["add", "long@1"]);
    assert!(
        err.contains("long@1.0.0 cannot be used: it has prompt length 50, but the project sets prompt-length = 4"),
        "{err}"
    );
}
