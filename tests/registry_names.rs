//! Package-name rules and anti-squatting.

mod common_registry;

use std::fs;

use common_registry::{Env, Prompt};

fn publish_named(env: &Env, name: &str) -> std::process::Output {
    let p = Prompt::new("placeholder", "1.0.0");
    let dir = p.write();
    let manifest = p.manifest().replace("name = \"placeholder\"", &format!("name = \"{name}\""));
    fs::write(dir.path().join("Prompt.toml"), manifest).unwrap();
    env.run(&["publish", dir.path().to_str().unwrap()])
}

#[test]
fn invalid_names_are_refused() {
    let env = Env::new();
    for name in [
        "..",
        "../evil",
        "a/b",
        "a\\\\b",
        "Mnli",
        "mnLi",
        "1prompt",
        "-x",
        "_x",
        "",
        "a.b",
        "caf\u{e9}",
        &"a".repeat(65),
    ] {
        let out = publish_named(&env, name);
        assert!(!out.status.success(), "`{name}` must be refused");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("name"), "`{name}`: {err}");
    }
    // Nothing escaped into the file system around the registry.
    assert!(!env.home.path().join("evil").exists());
    assert!(publish_named(&env, &"a".repeat(64)).status.success());
}

#[test]
fn confusable_names_are_refused() {
    let env = Env::new();
    assert!(publish_named(&env, "mnli-prompt").status.success());
    let before = env.snapshot();
    let out = publish_named(&env, "mnli_prompt");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("too similar to the existing package `mnli-prompt`"), "{err}");
    assert_eq!(env.snapshot(), before);

    // The other direction too, across several separators.
    assert!(publish_named(&env, "glue_task_set").status.success());
    let out = publish_named(&env, "glue-task_set");
    assert!(String::from_utf8_lossy(&out.stderr).contains("`glue_task_set`"));
    // Distinct canonical names are fine.
    assert!(publish_named(&env, "mnliprompt").status.success());
    let names: Vec<String> =
        env.json(&["list"]).as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap().to_string()).collect();
    assert_eq!(names, ["glue_task_set", "mnli-prompt", "mnliprompt"]);
}
