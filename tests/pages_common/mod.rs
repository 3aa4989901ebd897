//! The registry the page tests browse, and the browse queries checked on
//! one registry database (SQLite in tests/server_pages.rs, PostgreSQL in
//! tests/server_postgres.rs).
#![allow(dead_code)]

use std::path::Path;

use attempt_pkg::package::Artifact;
use attempt_pkg::registry::browse::Filters;
use attempt_pkg::registry::LocalRegistry;
use registry_index::Checksum;
use semver::Version;

use crate::common_registry::{Prompt, FINGERPRINT, OTHER_FINGERPRINT};

/// Markup a publisher might try in a description: must render as text.
pub const EVIL_DESCRIPTION: &str = "<script>alert('pwned')</script><img src=x onerror=alert(1)> & friends";
pub const YANK_REASON: &str = "trained on the wrong split";

/// `mnli-prompt` 1.0.0, 1.1.0 (to be yanked), 1.2.0 (metrics, provenance,
/// source attention); `sst2-prompt` for another model and task; the prompt
/// set `mix-set` depending on both; `evil-prompt` with markup everywhere.
pub fn packages() -> Vec<(Prompt, String)> {
    let mnli =
        Prompt { description: "Natural language inference prompt".into(), ..Prompt::new("mnli-prompt", "1.0.0") };
    let mnli_11 = Prompt { version: "1.1.0".into(), seed: 2.0, ..mnli.clone() };
    let mnli_12 = Prompt { version: "1.2.0".into(), seed: 3.0, length: 6, ..mnli.clone() };
    let sst2 = Prompt {
        task: "sst2".into(),
        description: "Sentiment prompt".into(),
        fingerprint: OTHER_FINGERPRINT.into(),
        ..Prompt::new("sst2-prompt", "1.0.0")
    };
    let set = Prompt {
        task: "mix".into(),
        description: "Both prompts as one set".into(),
        with_tensor: false,
        deps: vec![("mnli-prompt".into(), "^1.0".into()), ("sst2-prompt".into(), "^1.0".into())],
        fingerprint: FINGERPRINT.into(),
        ..Prompt::new("mix-set", "0.1.0")
    };
    let evil = Prompt { description: EVIL_DESCRIPTION.into(), seed: 9.0, ..Prompt::new("evil-prompt", "0.1.0") };
    let trained = "\n[provenance]\ntraining-method = \"attempt\"\ntraining-steps = \"400\"\n\
                   source-attention = \"sst2-prompt=0.625, qqp-prompt=0.375\"\n\n[metrics]\naccuracy = 0.8125\n";
    let evil_extra =
        "\n[provenance]\nnote = \"<b onmouseover=alert(2)>bold</b>\"\n\n[metrics]\n\"<i>metric</i>\" = 1.5\n";
    vec![
        (mnli.clone(), String::new()),
        (mnli_11, String::new()),
        (sst2, String::new()),
        (mnli_12, trained.to_string()),
        (set, String::new()),
        (evil, evil_extra.to_string()),
    ]
}

/// Writes the authoring directory of `prompt` with `extra` manifest text.
pub fn write(prompt: &Prompt, extra: &str, dir: &Path) {
    prompt.write_to(dir);
    let manifest = prompt.manifest() + extra;
    std::fs::write(dir.join("Prompt.toml"), manifest).expect("write manifest");
}

pub fn artifact(prompt: &Prompt, extra: &str) -> Artifact {
    let dir = tempfile::tempdir().expect("temp dir");
    write(prompt, extra, dir.path());
    Artifact::build(dir.path()).expect("build artifact")
}

/// Publishes [`packages`] into `registry`, yanks mnli-prompt 1.1.0 with a
/// reason, counts downloads, and checks every query the pages use.
pub async fn check_browse_queries(registry: &LocalRegistry) {
    let mut cksums = Vec::new();
    for (prompt, extra) in packages() {
        cksums.push(registry.publish(&artifact(&prompt, extra.as_str())).await.expect("publish").cksum);
    }
    let v = |s: &str| Version::parse(s).expect("version");
    registry.set_yanked("mnli-prompt", &v("1.1.0"), true, Some(YANK_REASON)).await.expect("yank");
    let info = registry.info("mnli-prompt").await.unwrap().unwrap();
    assert_eq!(info.yank_history.last().unwrap().reason.as_deref(), Some(YANK_REASON));
    let long = "x".repeat(501);
    assert!(registry.set_yanked("mnli-prompt", &v("1.0.0"), true, Some(&long)).await.is_err());

    // Batches add up; a second batch for the same blob adds to the first.
    registry.record_downloads(&[(cksums[0].clone(), 2), (cksums[3].clone(), 5)]).await.unwrap();
    registry.record_downloads(&[(cksums[3].clone(), 1)]).await.unwrap();
    let downloads = registry.version_downloads("mnli-prompt").await.unwrap();
    assert_eq!(downloads.get(&v("1.0.0")), Some(&2));
    assert_eq!(downloads.get(&v("1.2.0")), Some(&6));
    assert_eq!(downloads.get(&v("1.1.0")), None);
    let (info, with_downloads) = registry.package_with_downloads("mnli-prompt").await.unwrap().expect("a package");
    assert_eq!(with_downloads, downloads);
    assert_eq!(
        info,
        registry.info("mnli-prompt").await.unwrap().unwrap(),
        "the same package as `info` (it has a yanked version)"
    );
    assert!(registry.package_with_downloads("no-such-prompt").await.unwrap().is_none());

    let totals = registry.totals().await.unwrap();
    assert_eq!((totals.packages, totals.versions, totals.downloads), (4, 6, 8));

    let newest: Vec<String> = registry.newest(10).await.unwrap().into_iter().map(|p| p.summary.name).collect();
    assert_eq!(newest.len(), 4, "{newest:?}");
    let popular = registry.most_downloaded(10).await.unwrap();
    assert_eq!(popular.len(), 1);
    assert_eq!((popular[0].summary.name.as_str(), popular[0].downloads), ("mnli-prompt", 8));

    attempt_pkg::server::owners::add(registry.pool(), "mnli-prompt", &["ada".into()]).await.unwrap();
    attempt_pkg::server::owners::add(registry.pool(), "mnli-prompt", &["bob".into(), "ada".into()]).await.unwrap();
    let extras = registry.page_extras("mnli-prompt", &v("1.2.0")).await.unwrap();
    assert_eq!(extras.owners, vec!["ada", "bob"], "oldest owner first, each once");
    assert_eq!(extras.dependents.len(), 1);
    assert_eq!(
        (extras.dependents[0].name.as_str(), extras.dependents[0].versions.clone()),
        ("mix-set", vec![v("0.1.0")])
    );
    let manifest = extras.manifest.expect("stored manifest");
    assert!(manifest.contains("source-attention"), "{manifest}");
    let unpublished = registry.page_extras("mnli-prompt", &v("9.0.0")).await.unwrap();
    assert_eq!((unpublished.manifest, unpublished.owners.len()), (None, 2), "no manifest, the same owners");
    let set = registry.page_extras("mix-set", &v("0.1.0")).await.unwrap();
    assert!(set.dependents.is_empty() && set.owners.is_empty() && set.manifest.is_some(), "{set:?}");

    assert_eq!(registry.tasks().await.unwrap(), vec!["mix", "mnli", "sst2"]);
    let models = registry.models().await.unwrap();
    assert_eq!(models.len(), 2);
    assert_eq!((models[0].fingerprint.prefixed(), models[0].packages), (FINGERPRINT.to_string(), 3));

    let sst2_task = Filters { task: Some("sst2".into()), base_model: None };
    let other_model = Filters { task: None, base_model: Some(Checksum::parse(OTHER_FINGERPRINT).unwrap()) };
    let names = |hits: Vec<attempt_pkg::registry::PackageSummary>| hits.into_iter().map(|s| s.name).collect::<Vec<_>>();
    assert_eq!(names(registry.search_filtered("prompt", &sst2_task, 20).await.unwrap()), vec!["sst2-prompt"]);
    assert_eq!(names(registry.search_filtered("inference", &other_model, 20).await.unwrap()), Vec::<String>::new());
    assert_eq!(names(registry.search("inference", 20).await.unwrap()), vec!["mnli-prompt"]);
    let (listed, more) = registry.list_filtered(&other_model, 0, 10).await.unwrap();
    assert!(!more);
    assert_eq!(listed.iter().map(|p| p.summary.name.as_str()).collect::<Vec<_>>(), vec!["sst2-prompt"]);
    let (first, more) = registry.list_filtered(&Filters::default(), 0, 2).await.unwrap();
    assert!(more);
    assert_eq!(first.iter().map(|p| p.summary.name.as_str()).collect::<Vec<_>>(), vec!["evil-prompt", "mix-set"]);

    let fp = Checksum::parse(FINGERPRINT).unwrap();
    let facts = registry.model_facts(&fp).await.unwrap().expect("a known model");
    assert_eq!(
        (facts.names.clone(), facts.hidden_sizes.clone(), facts.packages),
        (vec!["tiny-test-model".to_string()], vec![8], 3)
    );
    let (for_model, more) = registry.packages_for_model(&fp, 0, 10).await.unwrap();
    assert!(!more);
    assert_eq!(
        for_model.iter().map(|p| p.summary.name.as_str()).collect::<Vec<_>>(),
        vec!["evil-prompt", "mix-set", "mnli-prompt"]
    );
    assert_eq!(for_model[2].downloads, 8);
    let unknown = Checksum::parse(&"3".repeat(64)).unwrap();
    assert!(registry.model_facts(&unknown).await.unwrap().is_none());
}
