//! publish → search → info → list, determinism, immutability, yank.

mod common_registry;

use std::fs;

use common_registry::{sha256_hex, Env, Prompt, FINGERPRINT};

fn publish(env: &Env, p: &Prompt) -> String {
    let dir = p.write();
    let out = env.ok(&["publish", dir.path().to_str().unwrap()]);
    let line = out.trim();
    assert!(line.starts_with(&format!("Published {}@{} (sha256:", p.name, p.version)), "{line}");
    line.rsplit("sha256:").next().unwrap().trim_end_matches(')').to_string()
}

#[test]
fn publish_then_search_info_list() {
    let env = Env::new();
    let mut mnli = Prompt::new("mnli-prompt", "1.0.0");
    mnli.description = "Natural language inference prompt".into();
    let cksum = publish(&env, &mnli);
    let mut sst2 = Prompt::new("sst2-prompt", "0.3.1");
    sst2.task = "sst2".into();
    sst2.description = "Binary sentiment classification".into();
    sst2.seed = 2.0;
    publish(&env, &sst2);

    // The blob is stored under its checksum, and its bytes hash to it.
    let blob = env.registry().join("blobs/sha256").join(&cksum[..2]).join(&cksum);
    assert_eq!(sha256_hex(&fs::read(&blob).unwrap()), cksum);

    // The index line carries the artifact's facts.
    let entries = env.index_entries("mnli-prompt");
    assert_eq!(entries.len(), 1);
    let e = &entries[0];
    assert_eq!(e.cksum.hex(), cksum);
    assert_eq!((e.hidden_size, e.prompt_length, e.yanked), (8, 4, false));
    assert_eq!(e.base_model.prefixed(), FINGERPRINT);
    assert_eq!(e.size, fs::read(&blob).unwrap().len() as u64);
    assert_eq!((e.v, e.sig.is_none()), (2, true), "format 2 lines; no signature in this package");
    assert!(env.registry().join("index/config.json").is_file());

    // Search: prefix words over name, task and description.
    let hits = env.json(&["search", "sentim"]);
    assert_eq!(hits.as_array().unwrap().len(), 1);
    assert_eq!(hits[0]["name"], "sst2-prompt");
    let hits = env.json(&["search", "prompt"]);
    assert_eq!(hits.as_array().unwrap().len(), 2);
    let text = env.ok(&["search", "inference"]);
    assert!(text.contains("mnli-prompt@1.0.0"), "{text}");
    assert!(env.ok(&["search", "nothing-like-this"]).contains("no packages match"));
    assert_eq!(env.json(&["search", "prompt", "--limit", "1"]).as_array().unwrap().len(), 1);

    // Info.
    let info = env.json(&["info", "mnli-prompt"]);
    assert_eq!(info["name"], "mnli-prompt");
    assert_eq!(info["versions"][0]["version"], "1.0.0");
    assert_eq!(info["versions"][0]["cksum"], cksum);
    assert_eq!(info["versions"][0]["dtype"], "F32");
    let text = env.ok(&["info", "mnli-prompt@1.0.0"]);
    assert!(text.contains("4×8 F32") && text.contains(&cksum), "{text}");
    assert!(env.fails(&["info", "mnli-prompt@9.9.9"]).contains("not published"));
    assert!(env.fails(&["info", "mnli_prompt"]).contains("did you mean `mnli-prompt`"));

    // List.
    let list = env.json(&["list"]);
    let names: Vec<&str> = list.as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["mnli-prompt", "sst2-prompt"]);
    assert!(env.ok(&["list"]).contains("sst2-prompt@0.3.1  [sst2]  4×8"));
}

#[test]
fn artifacts_are_deterministic() {
    let p = Prompt::new("det-prompt", "1.0.0");
    let (a, b) = (Env::new(), Env::new());
    // Two separate authoring directories with the same content, two registries.
    let ca = publish(&a, &p);
    let cb = publish(&b, &p);
    assert_eq!(ca, cb);
    let blob = |env: &Env, c: &str| fs::read(env.registry().join("blobs/sha256").join(&c[..2]).join(c)).unwrap();
    assert_eq!(blob(&a, &ca), blob(&b, &cb));
    // The artifact is a plain safetensors file any reader can load.
    let bytes = blob(&a, &ca);
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert_eq!(st.tensor("prompt").unwrap().shape(), &[4, 8]);
    let (_, meta) = safetensors::SafeTensors::read_metadata(&bytes).unwrap();
    let meta = meta.metadata().clone().unwrap();
    assert_eq!(meta["attempt.format"], "1");
    let manifest: serde_json::Value = serde_json::from_str(&meta["attempt.manifest"]).unwrap();
    assert_eq!(manifest["package"]["name"], "det-prompt");
    assert_eq!(manifest["base-model"]["hidden-size"], 8);
}

#[test]
fn published_versions_are_immutable() {
    let env = Env::new();
    let p = Prompt::new("fixed-prompt", "1.0.0");
    publish(&env, &p);
    let before = env.snapshot();
    let index_before = env.index_text("fixed-prompt").unwrap();

    // Same bytes again, and different bytes under the same version.
    let dir = p.write();
    let err = env.fails(&["publish", dir.path().to_str().unwrap()]);
    assert!(err.contains("already published") && err.contains("immutable"), "{err}");
    let mut changed = p.clone();
    changed.seed = 9.0;
    let dir = changed.write();
    assert!(env.fails(&["publish", dir.path().to_str().unwrap()]).contains("already published"));

    assert_eq!(env.snapshot(), before, "a refused publish must change nothing");
    assert_eq!(env.index_text("fixed-prompt").unwrap(), index_before);
    assert_eq!(env.json(&["info", "fixed-prompt"])["versions"].as_array().unwrap().len(), 1);

    // A new version is fine and sorts by semver in the index.
    let mut next = p.clone();
    next.version = "1.10.0".into();
    next.seed = 3.0;
    publish(&env, &next);
    let mut mid = p.clone();
    mid.version = "1.2.0".into();
    mid.seed = 4.0;
    publish(&env, &mid);
    let vers: Vec<String> = env.index_entries("fixed-prompt").iter().map(|e| e.vers.to_string()).collect();
    assert_eq!(vers, ["1.0.0", "1.2.0", "1.10.0"]);
}

#[test]
fn yank_and_undo_show_in_index_and_info() {
    let env = Env::new();
    let p = Prompt::new("yank-prompt", "1.0.0");
    publish(&env, &p);
    let mut p2 = p.clone();
    p2.version = "1.1.0".into();
    p2.seed = 7.0;
    p2.description = "zebra wording only in 1.1.0".into();
    publish(&env, &p2);
    assert_eq!(env.json(&["search", "zebra"]).as_array().unwrap().len(), 1);

    assert_eq!(env.ok(&["yank", "yank-prompt@1.1.0"]).trim(), "Yanked yank-prompt@1.1.0");
    let entries = env.index_entries("yank-prompt");
    assert_eq!(entries.iter().map(|e| e.yanked).collect::<Vec<_>>(), [false, true]);
    let info = env.json(&["info", "yank-prompt"]);
    assert_eq!(info["versions"][1]["yanked"], true);
    assert_eq!(info["yank_history"][0]["version"], "1.1.0");
    assert!(env.ok(&["info", "yank-prompt"]).contains("(yanked)"));
    // The latest version shown by list skips the yanked one.
    assert_eq!(env.json(&["list"])[0]["latest"], "1.0.0");
    // The blob stays downloadable.
    let blob = &entries[1].cksum;
    assert!(env.registry().join("blobs").join(registry_index::blob_path(blob)).is_file());

    assert!(env.ok(&["yank", "yank-prompt@1.1.0"]).contains("already yanked"));
    // Search describes the latest unyanked version.
    assert_eq!(env.json(&["search", "yank"])[0]["latest"], "1.0.0");
    assert!(env.json(&["search", "zebra"]).as_array().unwrap().is_empty());
    assert_eq!(env.ok(&["yank", "yank-prompt@1.1.0", "--undo"]).trim(), "Unyanked yank-prompt@1.1.0");
    assert!(env.index_entries("yank-prompt").iter().all(|e| !e.yanked));
    let info = env.json(&["info", "yank-prompt"]);
    assert_eq!(info["yank_history"].as_array().unwrap().len(), 2);
    assert_eq!(info["yank_history"][1]["yanked"], false);
    assert_eq!(env.json(&["list"])[0]["latest"], "1.1.0");
    assert_eq!(env.json(&["search", "zebra"]).as_array().unwrap().len(), 1);

    assert!(env.fails(&["yank", "yank-prompt@3.0.0"]).contains("not published"));
    assert!(env.fails(&["yank", "yank-prompt"]).contains("NAME@VERSION"));
    assert!(env.fails(&["yank", "yank-prompt@1.x"]).contains("semver"));
}

#[test]
fn prompt_sets_depend_on_published_prompts() {
    let env = Env::new();
    publish(&env, &Prompt::new("sst2-prompt", "1.2.0"));
    let mut set = Prompt::new("glue-set", "0.1.0");
    set.with_tensor = false;
    set.deps = vec![("sst2-prompt".into(), "^1.0".into())];
    publish(&env, &set);
    let e = &env.index_entries("glue-set")[0];
    assert_eq!(e.prompt_length, 0);
    assert_eq!(e.deps.len(), 1);
    assert_eq!(e.deps[0].name, "sst2-prompt");
    assert_eq!(e.deps[0].req.to_string(), "^1.0");
    assert!(env.ok(&["list"]).contains("glue-set@0.1.0  [mnli]  prompt set"));

    // Dependencies must exist with a matching version.
    let mut bad = set.clone();
    bad.name = "bad-set".into();
    bad.deps = vec![("sst2-prompt".into(), "^2".into())];
    let dir = bad.write();
    assert!(env.fails(&["publish", dir.path().to_str().unwrap()]).contains("matches no published"));
    bad.deps = vec![("sst2_prompt".into(), "^1".into())];
    let dir = bad.write();
    assert!(env.fails(&["publish", dir.path().to_str().unwrap()]).contains("did you mean `sst2-prompt`"));
    assert!(env.index_text("bad-set").is_none());
}

#[test]
fn publish_defaults_to_current_dir_and_read_commands_need_a_registry() {
    let env = Env::new();
    assert!(env.fails(&["list"]).contains("no registry at"));
    let p = Prompt::new("cwd-prompt", "1.0.0");
    let dir = p.write();
    let out = env.cmd().arg("publish").current_dir(dir.path()).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // --registry points elsewhere; that registry is separate.
    let other = tempfile::tempdir().unwrap();
    let other_reg = other.path().join("reg");
    let mut p2 = p.clone();
    p2.name = "elsewhere".into();
    let dir2 = p2.write();
    env.ok(&["publish", dir2.path().to_str().unwrap(), "--registry", other_reg.to_str().unwrap()]);
    assert_eq!(env.json(&["list"]).as_array().unwrap().len(), 1);
    let listed = env.json(&["list", "--registry", other_reg.to_str().unwrap()]);
    assert_eq!(listed[0]["name"], "elsewhere");
    let out = env.cmd().args(["--json", "list"]).env("ATTEMPT_REGISTRY", &other_reg).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("elsewhere"));
}
