//! `attempt-pkg quickstart` end to end on the tiny committed BERT fixture
//! (`--model` skips the MiniLM download; tests never use the network).

mod common_registry;

use std::path::Path;

use common_registry::Env;

#[test]
fn quickstart_publishes_locks_and_compares_attempt_with_pt() {
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let dir = work.path().join("qs");
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/model");
    let args = [
        "quickstart",
        "--dir",
        dir.to_str().unwrap(),
        "--model",
        model.to_str().unwrap(),
        "--source-steps",
        "4",
        "--target-steps",
        "4",
        "--target-train",
        "16",
        "--dev",
        "12",
        "--prompt-length",
        "4",
        "--max-length",
        "12",
    ];
    let report = env.json(&args);
    assert_eq!(report["sources"].as_array().unwrap().len(), 3, "{report}");
    let methods: Vec<&str> =
        report["results"].as_array().unwrap().iter().map(|r| r["method"].as_str().unwrap()).collect();
    assert_eq!(methods, ["attempt", "pt"]);
    let attention = report["results"][0]["attention"].as_array().unwrap();
    assert_eq!(attention.len(), 4, "three sources and the target: {report}");
    // The project it made is an ordinary locked project.
    let lock = std::fs::read_to_string(dir.join("project/attempt.lock")).unwrap();
    for name in ["sentiment-prompt", "topic-prompt", "same-topic-prompt"] {
        assert!(lock.contains(name), "{lock}");
    }
    let tree = env.ok(&[
        "--project",
        dir.join("project").to_str().unwrap(),
        "--registry",
        dir.join("registry").to_str().unwrap(),
        "tree",
    ]);
    assert!(tree.contains("topic-prompt"), "{tree}");
    // A second run in the same directory starts over instead of failing on published versions.
    let again = env.json(&args);
    assert_eq!(again["results"].as_array().unwrap().len(), 2);
    // A directory it did not create is left alone.
    let foreign = work.path().join("foreign");
    std::fs::create_dir_all(&foreign).unwrap();
    std::fs::write(foreign.join("notes.txt"), "mine").unwrap();
    let err = env.fails(&["quickstart", "--dir", foreign.to_str().unwrap(), "--model", model.to_str().unwrap()]);
    assert!(err.contains("not empty"), "{err}");
}
