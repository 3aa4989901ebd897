//! The training workflow through the real binary on the tiny committed BERT
//! fixture: train-source → publish → init → add → train → eval/predict →
//! package --from-run → publish again, and the refusals (another model,
//! a tampered cached blob).

mod common_registry;

use std::fs;
use std::path::{Path, PathBuf};

use common_registry::Env;

fn fixture_model() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/model")
}

const SMALL: &[&str] = common_registry::SMALL_TRAINING;

fn train_source(env: &Env, task: &str, out: &Path) -> String {
    let model = fixture_model();
    let mut args = vec!["train-source", "--model", model.to_str().unwrap(), "--task", task];
    let name = format!("{task}-prompt");
    args.extend(["--name", &name, "--out", out.to_str().unwrap()]);
    args.extend_from_slice(SMALL);
    env.ok(&args)
}

fn fingerprint_of(authoring: &Path) -> String {
    let text = fs::read_to_string(authoring.join("Prompt.toml")).unwrap();
    let line = text.lines().find(|l| l.starts_with("fingerprint")).expect("fingerprint line");
    line.split('"').nth(1).unwrap().to_string()
}

/// Publish two sources and create a project that adds them; returns (project dir, fingerprint).
fn project_with_sources(env: &Env, work: &Path) -> (PathBuf, String) {
    for task in ["sentiment", "topic"] {
        let out = work.join(task);
        let printed = train_source(env, task, &out);
        assert!(printed.contains("accuracy"), "{printed}");
        assert!(printed.contains("trainable parameters"), "{printed}");
        let published = env.ok(&["publish", out.to_str().unwrap()]);
        assert!(published.contains(&format!("{task}-prompt@0.1.0")), "{published}");
    }
    let fp = fingerprint_of(&work.join("sentiment"));
    assert!(fp.starts_with("sha256:") && fp.len() == 71, "{fp}");
    let proj = work.join("project");
    let p = proj.to_str().unwrap();
    env.ok(&[
        "--project",
        p,
        "init",
        "--name",
        "demo",
        "--model-fingerprint",
        &fp,
        "--model-path",
        fixture_model().to_str().unwrap(),
    ]);
    env.ok(&["--project", p, "add", "sentiment-prompt", "topic-prompt"]);
    let mut manifest = fs::read_to_string(proj.join("attempt.toml")).unwrap();
    manifest.push_str(
        "\n[train]\ntasks = [\"mood\"]\nmax-steps = 6\nepochs = 2\nbatch-size = 8\nmax-length = 12\nsynthetic-train = 32\nsynthetic-dev = 16\n",
    );
    fs::write(proj.join("attempt.toml"), manifest).unwrap();
    (proj, fp)
}

#[test]
fn train_source_publish_add_train_eval_predict_package() {
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let (proj, fp) = project_with_sources(&env, work.path());
    let p = proj.to_str().unwrap();

    let run = proj.join("runs/a");
    let out = env.ok(&["--project", p, "train", "--run-dir", run.to_str().unwrap(), "--quiet"]);
    assert!(out.contains("trainable parameters"), "{out}");
    assert!(out.contains("attention over sources"), "{out}");
    assert!(out.contains("sentiment-prompt@0.1.0") && out.contains("topic-prompt@0.1.0"), "{out}");
    for f in ["checkpoint.safetensors", "run.json", "metrics.json"] {
        assert!(run.join(f).is_file(), "{f} missing from the run dir");
    }
    let record: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert_eq!(record["provenance"]["model_fingerprint"].as_str(), Some(fp.as_str()), "{record}");
    assert!(record["provenance"]["lock_checksum"].as_str().is_some_and(|c| c.starts_with("sha256:")), "{record}");

    let eval = env.json(&["--project", p, "eval", "--run", run.to_str().unwrap()]);
    let acc = eval[0]["metrics"]["accuracy"].as_f64().expect("accuracy");
    assert!((0.0..=1.0).contains(&acc), "{eval}");
    let weights: f64 = eval[0]["attention"].as_array().unwrap().iter().map(|w| w["weight"].as_f64().unwrap()).sum();
    assert!((weights - 1.0).abs() < 1e-3, "attention sums to {weights}");

    let pred =
        env.ok(&["--project", p, "predict", "--run", run.to_str().unwrap(), "--task", "mood", "--text", "a good song"]);
    assert!(pred.contains("label: "), "{pred}");
    assert!(pred.contains("attention:") && pred.contains("target:mood"), "{pred}");

    let pkg = work.path().join("mood-attempt");
    env.ok(&[
        "package",
        "--from-run",
        run.to_str().unwrap(),
        "--task",
        "mood",
        "--name",
        "mood-attempt",
        "--out",
        pkg.to_str().unwrap(),
    ]);
    assert_eq!(fingerprint_of(&pkg), fp);
    let published = env.ok(&["publish", pkg.to_str().unwrap()]);
    assert!(published.contains("mood-attempt@0.1.0"), "{published}");
    // The trained target is now a source like any other.
    env.ok(&["--project", p, "add", "mood-attempt"]);
    let out = env.ok(&[
        "--project",
        p,
        "--locked",
        "train",
        "--method",
        "pt",
        "--run-dir",
        proj.join("runs/b").to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out.contains("trainable parameters"), "{out}");
}

#[test]
fn train_refuses_another_model_and_a_tampered_blob() {
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let (proj, fp) = project_with_sources(&env, work.path());
    let p = proj.to_str().unwrap();

    // Same architecture, one weight changed: a different model.
    let other = work.path().join("other-model");
    fs::create_dir_all(&other).unwrap();
    for f in ["config.json", "tokenizer.json", "model.safetensors"] {
        fs::copy(fixture_model().join(f), other.join(f)).unwrap();
    }
    let mut bytes = fs::read(other.join("model.safetensors")).unwrap();
    let n = bytes.len();
    bytes[n - 2] ^= 0x01;
    fs::write(other.join("model.safetensors"), bytes).unwrap();
    let err = env.fails(&["--project", p, "train", "--model", other.to_str().unwrap(), "--quiet"]);
    assert!(err.contains("fingerprint") && err.contains(&fp), "{err}");

    // Without the project's fingerprint line, the prompts' own fingerprints still refuse it.
    let manifest = fs::read_to_string(proj.join("attempt.toml")).unwrap();
    let stripped: String =
        manifest.lines().filter(|l| !l.starts_with("fingerprint")).map(|l| format!("{l}\n")).collect();
    fs::write(proj.join("attempt.toml"), stripped).unwrap();
    let err = env.fails(&["--project", p, "train", "--model", other.to_str().unwrap(), "--quiet"]);
    assert!(err.contains("fingerprint"), "{err}");
    assert!(!proj.join("runs").exists(), "a refused run must write nothing");
    fs::write(proj.join("attempt.toml"), manifest).unwrap();

    // Tamper with a cached artifact: training refuses (and drops it from the cache).
    env.ok(&["--project", p, "fetch"]);
    let blobs = env.home.path().join("cache/blobs/sha256");
    let blob = walk(&blobs).into_iter().next().expect("a cached blob");
    let mut bytes = fs::read(&blob).unwrap();
    let n = bytes.len();
    bytes[n - 1] ^= 0x55;
    fs::write(&blob, bytes).unwrap();
    let err = env.fails(&["--project", p, "--offline", "train", "--quiet"]);
    assert!(err.contains("corrupt"), "{err}");
    assert!(!proj.join("runs").exists());
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        if path.is_dir() {
            out.extend(walk(&path));
        } else {
            out.push(path);
        }
    }
    out.sort();
    out
}

#[test]
fn suggest_ranks_the_registry_and_apply_edits_as_add_and_remove_would() {
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let (proj, _) = project_with_sources(&env, work.path());
    let p = proj.to_str().unwrap();
    let before = (
        fs::read_to_string(proj.join("attempt.toml")).unwrap(),
        fs::read_to_string(proj.join("attempt.lock")).unwrap(),
    );
    let args = ["--project", p, "suggest", "--task", "mood", "--sample", "24", "--resamples", "4", "--top", "1"];

    // The contract scripts rely on.
    let s = env.json(&args);
    let ranking = s["ranking"].as_array().expect("ranking");
    let names: Vec<&str> = ranking.iter().map(|r| r["name"].as_str().unwrap()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(sorted, ["sentiment-prompt", "topic-prompt"], "{s}");
    assert!(ranking.iter().all(|r| r["version"] == "0.1.0" && r["score"].is_f64()), "{s}");
    // train-source recorded each source's task signature; it reached the index and the ranking.
    let authored = fs::read_to_string(work.path().join("sentiment/Prompt.toml")).unwrap();
    assert!(authored.contains("format = 2") && authored.contains("[signature]"), "{authored}");
    assert!(env.index_text("sentiment-prompt").is_some_and(|t| t.contains("\"sig\"") && t.contains("\"v\":2")));
    assert!(ranking.iter().all(|r| r["signature_cosine"].as_f64().is_some_and(|c| (-1.0..=1.0).contains(&c))), "{s}");
    // ... and whether it learned its own task, which the ranking reports.
    assert!(ranking.iter().all(|r| r["learned_own_task"].is_boolean() && r["own_task"]["metric"] == "accuracy"), "{s}");
    assert!(ranking.windows(2).all(|w| w[0]["score"].as_f64() >= w[1]["score"].as_f64()), "best first: {s}");
    let keep: Vec<String> = s["keep"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    let remove: Vec<String> = s["remove"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
    assert!(keep.len() <= 1 && keep.len() + remove.len() == 2, "{s}");
    // Without --apply nothing changes.
    assert_eq!(fs::read_to_string(proj.join("attempt.toml")).unwrap(), before.0);
    assert!(!proj.join("attempt.selection.json").exists());

    // train starts from the best-ranked kept source of the record (here the
    // second in name order, so not the default) and copies the record into run.json.
    let mut record = s.clone();
    record["keep"] = serde_json::json!(["topic-prompt"]);
    fs::write(proj.join("attempt.selection.json"), record.to_string()).unwrap();
    let run = proj.join("runs/selected");
    env.ok(&["--project", p, "train", "--method", "spot", "--run-dir", run.to_str().unwrap(), "--quiet"]);
    let run_record: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    let extra = &run_record["provenance"]["extra"];
    assert_eq!(extra["init-source"].as_str(), Some("topic-prompt@0.1.0"), "{run_record}");
    assert!(extra["selection"].as_str().is_some_and(|t| t.contains("signal_version")), "{run_record}");
    assert_eq!(run_record["config"]["target-init"]["index"], 1, "{run_record}");
    // --init-source names the source instead, over the record's choice.
    let chosen = proj.join("runs/chosen");
    let chosen_arg = chosen.to_str().unwrap();
    env.ok(&[
        "--project",
        p,
        "train",
        "--method",
        "spot",
        "--init-source",
        "sentiment-prompt",
        "--run-dir",
        chosen_arg,
    ]);
    let chosen_record: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(chosen.join("run.json")).unwrap()).unwrap();
    assert_eq!(chosen_record["provenance"]["extra"]["init-source"].as_str(), Some("sentiment-prompt@0.1.0"));
    assert_eq!(chosen_record["config"]["target-init"]["index"], 0, "{chosen_record}");
    let refused = proj.join("runs/refused");
    let refused_arg = refused.to_str().unwrap();
    let err =
        env.fails(&["--project", p, "train", "--method", "spot", "--init-source", "qqp", "--run-dir", refused_arg]);
    assert!(err.contains("`qqp` is not one of the project's sources") && err.contains("topic-prompt@0.1.0"), "{err}");
    let err = env.fails(&[
        "--project",
        p,
        "train",
        "--method",
        "pt",
        "--init-source",
        "topic-prompt",
        "--run-dir",
        refused_arg,
    ]);
    assert!(err.contains("plain prompt tuning"), "{err}");
    assert!(!refused.exists(), "a refused run writes nothing");
    // A chosen start says nothing more; without a selection the run says
    // it started from the first source, and how to start from the best one.
    let quiet_about_init =
        |out: &std::process::Output| !String::from_utf8_lossy(&out.stderr).contains("the first locked source");
    let again = proj.join("runs/selected-again");
    let out = env.run(&["--project", p, "train", "--method", "spot", "--run-dir", again.to_str().unwrap()]);
    assert!(out.status.success() && quiet_about_init(&out), "{}", String::from_utf8_lossy(&out.stderr));
    fs::remove_file(proj.join("attempt.selection.json")).unwrap();
    let plain = proj.join("runs/first-source");
    let out = env.run(&["--project", p, "train", "--method", "spot", "--run-dir", plain.to_str().unwrap()]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && !quiet_about_init(&out) && stderr.contains("--init-source"), "{stderr}");

    // The same edits by hand, on a copy of the project.
    let manual = work.path().join("manual");
    fs::create_dir_all(&manual).unwrap();
    for f in ["attempt.toml", "attempt.lock"] {
        fs::copy(proj.join(f), manual.join(f)).unwrap();
    }
    let m = manual.to_str().unwrap();
    let mut rm = vec!["--project", m, "remove"];
    rm.extend(remove.iter().map(String::as_str));
    env.ok(&rm);

    env.ok(&[&args[..], &["--apply"]].concat());
    for f in ["attempt.toml", "attempt.lock"] {
        assert_eq!(fs::read_to_string(proj.join(f)).unwrap(), fs::read_to_string(manual.join(f)).unwrap(), "{f}");
    }
    let record: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(proj.join("attempt.selection.json")).unwrap()).unwrap();
    assert_eq!(record["keep"], s["keep"]);
    assert_eq!(record["signal_version"], s["signal_version"]);
    // `tree` says why the lock holds what it holds.
    let tree = env.ok(&["--project", p, "tree"]);
    assert!(
        tree.contains("chosen by `suggest` for task mood") && tree.contains("#1 ") && tree.contains("#2 "),
        "{tree}"
    );
    assert_eq!(env.json(&["--project", p, "tree"])["selection"]["keep"], s["keep"]);

    // Refusals change nothing.
    let after = fs::read_to_string(proj.join("attempt.toml")).unwrap();
    let err = env.fails(&["--project", p, "suggest", "--task", "mood", "--top", "0", "--apply"]);
    assert!(err.contains("--top 0"), "{err}");
    let err = env.fails(&["--project", p, "suggest", "--task", "mood", "--task", "sentiment", "--apply"]);
    assert!(err.contains("exactly one --task"), "{err}");
    let err = env.fails(&["--project", p, "suggest", "--task", "mood", "--synthetic-train", "2", "--apply"]);
    assert!(err.contains("for 3 classes"), "{err}");
    assert_eq!(fs::read_to_string(proj.join("attempt.toml")).unwrap(), after);
}

#[test]
fn train_select_chooses_sources_then_trains() {
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let (proj, _) = project_with_sources(&env, work.path());
    let p = proj.to_str().unwrap();
    let run = proj.join("runs/selected");
    let out = env.json(&[
        "--project",
        p,
        "train",
        "--method",
        "spot",
        "--select",
        "1",
        "--run-dir",
        run.to_str().unwrap(),
        "--quiet",
    ]);
    assert!(out["tasks"][0]["metrics"]["accuracy"].is_f64(), "one JSON object on stdout: {out}");
    let selection: serde_json::Value =
        serde_json::from_str(&fs::read_to_string(proj.join("attempt.selection.json")).unwrap()).unwrap();
    let keep = selection["keep"].as_array().unwrap();
    assert!(keep.len() <= 1, "{selection}");
    let record: serde_json::Value = serde_json::from_str(&fs::read_to_string(run.join("run.json")).unwrap()).unwrap();
    assert!(record["provenance"]["extra"]["selection"].is_string(), "{record}");
    let manifest = fs::read_to_string(proj.join("attempt.toml")).unwrap();
    match keep.first().and_then(|k| k.as_str()) {
        // Nothing predicted to help: no sources left, and plain prompt tuning ran.
        None => {
            assert_eq!(record["config"]["method"], "pt", "{record}");
            assert!(!manifest.contains("sentiment-prompt") && !manifest.contains("topic-prompt"), "{manifest}");
        }
        Some(kept) => {
            assert_eq!(record["config"]["method"], "spot", "{record}");
            assert_eq!(record["provenance"]["extra"]["init-source"], format!("{kept}@0.1.0"), "{record}");
        }
    }
    let err = env.fails(&["--project", p, "train", "--select", "0"]);
    assert!(err.contains("--select 0"), "{err}");
}

#[test]
fn a_relative_data_dir_flag_is_read_from_where_the_command_runs() {
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let data = work.path().join("data/SST-2");
    fs::create_dir_all(&data).unwrap();
    let rows: String =
        (0..32).map(|i| if i % 2 == 0 { "good great fine\t1\n" } else { "bad awful poor\t0\n" }).collect();
    fs::write(data.join("train.tsv"), format!("sentence\tlabel\n{rows}")).unwrap();
    fs::write(data.join("dev.tsv"), format!("sentence\tlabel\n{rows}")).unwrap();
    let model = fixture_model();
    env.ok(&[
        "--project",
        work.path().join("proj").to_str().unwrap(),
        "init",
        "--name",
        "rel",
        "--model-path",
        model.to_str().unwrap(),
    ]);
    // From the directory above the project, as `attempt-pkg --project proj … --data-dir data`.
    let mut args = vec!["--project", "proj", "train", "--task", "sst2", "--method", "pt", "--data-dir", "data"];
    args.extend_from_slice(&SMALL[..SMALL.len() - 5]); // not the synthetic sizes
    args.extend(["--quiet", "--run-dir", "proj/run"]);
    let out = env.cmd().current_dir(work.path()).args(&args).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(work.path().join("proj/run/run.json").is_file());
}

#[test]
fn train_source_records_its_data_without_a_local_path_and_whether_it_learned() {
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    // A GLUE-style directory: SST-2/train.tsv and dev.tsv.
    let data = work.path().join("private-data");
    fs::create_dir_all(data.join("SST-2")).unwrap();
    let rows = |n: usize| {
        let mut text = "sentence\tlabel\n".to_string();
        for i in 0..n {
            text.push_str(if i % 2 == 0 { "good great fine\t1\n" } else { "bad awful poor\t0\n" });
        }
        text
    };
    fs::write(data.join("SST-2/train.tsv"), rows(32)).unwrap();
    fs::write(data.join("SST-2/dev.tsv"), rows(16)).unwrap();
    let out = work.path().join("sst2");
    let model = fixture_model();
    let mut args = vec!["train-source", "--model", model.to_str().unwrap(), "--task", "sst2", "--name", "sst2-prompt"];
    args.extend(["--out", out.to_str().unwrap(), "--data-dir", data.to_str().unwrap()]);
    args.extend_from_slice(&SMALL[..SMALL.len() - 5]); // not the synthetic sizes
    args.push("--quiet");
    env.ok(&args);
    let text = fs::read_to_string(out.join("Prompt.toml")).unwrap();
    assert!(
        !text.contains("private-data") && !text.contains(work.path().to_str().unwrap()),
        "a local path leaked:\n{text}"
    );
    let manifest: attempt_pkg::package::Manifest = toml::from_str(&text).unwrap();
    assert_eq!(manifest.provenance["dataset"], "sst2");
    assert_eq!(manifest.provenance["dataset-files"], "SST-2/train.tsv, SST-2/dev.tsv");
    let digest = &manifest.provenance["dataset-sha256"];
    assert!(digest.len() == 64 && digest.bytes().all(|b| b.is_ascii_hexdigit()), "{digest}");
    let check =
        attempt_pkg::data::baseline::OwnTaskCheck::from_manifest(&manifest.metrics).expect("own-task check recorded");
    assert_eq!((check.metric.as_str(), check.examples), ("accuracy", 16));
    assert_eq!(check.baseline, 0.5, "the majority class of a balanced training set scores half");
}

/// Every file below `dir` with its bytes (see [`walk`]).
fn files_below(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    walk(dir).into_iter().map(|p| (fs::read(&p).unwrap(), p)).map(|(bytes, p)| (p, bytes)).collect()
}

#[test]
fn a_broken_config_toml_stops_train_naming_the_file_and_changes_nothing() {
    let env = Env::new();
    let work = tempfile::tempdir().unwrap();
    let proj = work.path().join("project");
    let p = proj.to_str().unwrap();
    env.ok(&["--project", p, "init", "--name", "demo", "--model-path", fixture_model().to_str().unwrap()]);
    let mut manifest = fs::read_to_string(proj.join("attempt.toml")).unwrap();
    manifest.push_str("\n[train]\ntasks = [\"mood\"]\nmax-steps = 2\nsynthetic-train = 16\nsynthetic-dev = 8\n");
    fs::write(proj.join("attempt.toml"), manifest).unwrap();
    let config = env.home.path().join("config.toml");
    fs::write(&config, "[registries.a\nindex = \"http://127.0.0.1:9/\"\n").unwrap();
    let before = (files_below(&proj), files_below(env.home.path()));
    for offline in [false, true] {
        let mut args = vec!["--project", p];
        if offline {
            args.push("--offline");
        }
        args.extend(["train", "--quiet"]);
        let err = env.fails(&args);
        assert!(
            err.contains(&config.display().to_string()) && err.contains("not a valid attempt-pkg config"),
            "{args:?}: {err}"
        );
    }
    assert_eq!((files_below(&proj), files_below(env.home.path())), before, "a refused train changed files");
    assert!(!proj.join("runs").exists() && !proj.join("attempt.lock").exists());
}
