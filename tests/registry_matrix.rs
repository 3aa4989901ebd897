//! One registry handle: every scenario runs the real binary twice, once on a
//! registry directory and once on the same kind of directory served by
//! `attempt-pkg serve` on 127.0.0.1, and the two transcripts (stdout of every
//! command, `--json` included, and what it wrote) must be equal once the
//! registry's own name is replaced by `<registry>`, its source id by
//! `<source>`, and times by 0. A command that only works on one backing fails
//! its scenario on the other.

mod common_registry;
mod server_common;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use common_registry::{tensor_file, Env, Prompt, FINGERPRINT};
use server_common::Server;
use tempfile::TempDir;

/// Where a scenario's registry lives, and how commands reach it.
struct Backing {
    kind: &'static str,
    env: Env,
    work: TempDir,
    /// What `--registry` is given.
    registry: String,
    /// The token of a served registry (given as ATTEMPT_TOKEN).
    token: Option<String>,
    /// What stands for this registry in outputs, longest first.
    names: Vec<(String, &'static str)>,
    _server: Option<Server>,
    _dir: Option<TempDir>,
}

impl Backing {
    fn directory() -> Backing {
        let dir = tempfile::tempdir().expect("temp dir");
        let root = dir.path().join("registry");
        let registry = root.to_str().expect("utf-8 path").to_string();
        let mut backing = Backing::new("directory", registry.clone(), None);
        // The source id is the canonical path, known once the directory exists.
        fs::create_dir_all(&root).expect("mkdir");
        let canonical = fs::canonicalize(&root).expect("canonical path");
        backing.names =
            vec![(format!("registry+file://{}", canonical.display()), "<source>"), (registry, "<registry>")];
        backing._dir = Some(dir);
        backing
    }

    fn served() -> Backing {
        let server = Server::start(&[]);
        let token = server.token("alice", &[]);
        let url = server.index_url();
        let mut backing = Backing::new("served", url.clone(), Some(token));
        backing.names = vec![(format!("registry+{url}"), "<source>"), (url, "<registry>")];
        backing._server = Some(server);
        backing
    }

    fn new(kind: &'static str, registry: String, token: Option<String>) -> Backing {
        Backing {
            kind,
            env: Env::new(),
            work: tempfile::tempdir().expect("temp dir"),
            registry,
            token,
            names: Vec::new(),
            _server: None,
            _dir: None,
        }
    }

    fn work(&self, rel: &str) -> PathBuf {
        self.work.path().join(rel)
    }

    fn w(&self, rel: &str) -> String {
        self.work(rel).to_str().expect("utf-8 path").to_string()
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut cmd = self.env.cmd();
        cmd.env("ATTEMPT_REGISTRY", &self.registry).env_remove("ATTEMPT_TOKEN");
        if let Some(token) = &self.token {
            cmd.env("ATTEMPT_TOKEN", token);
        }
        cmd.args(args).output().expect("run attempt-pkg")
    }

    /// Runs `args`, which must succeed on this backing; returns stdout and stderr, normalised.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        let (stdout, stderr) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        assert!(out.status.success(), "on the {} registry, attempt-pkg {args:?} failed:\n{stderr}", self.kind);
        self.normalise(&format!("$ {}\n{}{}", args.join(" "), normalise_json(&stdout), stderr))
    }

    /// Runs `args`, which must fail on this backing with a message containing `why`.
    fn fails(&self, args: &[&str], why: &str) -> String {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "on the {} registry, attempt-pkg {args:?} should fail", self.kind);
        assert!(
            stderr.contains(why),
            "on the {} registry, attempt-pkg {args:?}: expected `{why}` in:\n{stderr}",
            self.kind
        );
        format!("$ {}\nfails: {why}\n", self.normalise(&args.join(" ")))
    }

    fn file(&self, rel: &str) -> String {
        let text = fs::read_to_string(self.work(rel)).unwrap_or_else(|e| panic!("reading {rel}: {e}"));
        self.normalise(&format!("== {rel}\n{text}"))
    }

    fn normalise(&self, text: &str) -> String {
        let mut text = text.to_string();
        for (name, placeholder) in &self.names {
            text = text.replace(name.as_str(), placeholder);
        }
        let work = self.work.path().to_str().expect("utf-8 path");
        let home = self.env.home.path().to_str().expect("utf-8 path");
        text.replace(work, "<work>").replace(home, "<home>").lines().map(zero_unix_time).collect::<Vec<_>>().join("\n")
            + "\n"
    }

    fn publish(&self, p: &Prompt) -> String {
        let dir = p.write();
        let out = self.ok(&["publish", dir.path().to_str().expect("utf-8")]);
        out.replace(dir.path().to_str().expect("utf-8"), "<dir>")
    }

    fn json_publish(&self, p: &Prompt) -> String {
        let dir = p.write();
        let out = self.ok(&["--json", "publish", dir.path().to_str().expect("utf-8")]);
        out.replace(dir.path().to_str().expect("utf-8"), "<dir>")
    }
}

/// `--json` output with its times (which differ between any two runs) set to 0.
fn normalise_json(stdout: &str) -> String {
    let Ok(mut value) = serde_json::from_str::<serde_json::Value>(stdout) else { return stdout.to_string() };
    zero_times(&mut value);
    serde_json::to_string_pretty(&value).expect("JSON") + "\n"
}

fn zero_times(value: &mut serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, v) in map.iter_mut() {
                if matches!(key.as_str(), "published_at" | "at" | "seconds" | "mean_step_seconds") {
                    *v = serde_json::json!(0);
                } else {
                    zero_times(v);
                }
            }
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(zero_times),
        _ => {}
    }
}

/// `info`'s `yanked 1.1.0 at unix time 1767225600` → `… at unix time 0`.
fn zero_unix_time(line: &str) -> String {
    match line.split_once("at unix time ") {
        Some((head, _)) => format!("{head}at unix time 0"),
        None => line.to_string(),
    }
}

/// Runs `scenario` on both backings; their transcripts must be equal.
/// Returns the transcript and the served backing, to look into afterwards.
fn on_both(scenario: impl Fn(&Backing) -> String) -> (String, Backing) {
    let local = scenario(&Backing::directory());
    let server = Backing::served();
    let served = scenario(&server);
    if local != served {
        let first = local.lines().zip(served.lines()).position(|(a, b)| a != b).unwrap_or(0);
        panic!("the backings differ from line {}:\n--- directory\n{local}\n--- served\n{served}", first + 1);
    }
    (local, server)
}

fn mnli(version: &str, seed: f32) -> Prompt {
    let mut p = Prompt::new("mnli-prompt", version);
    p.description = "Natural language inference".into();
    p.seed = seed;
    p
}

fn sst2() -> Prompt {
    let mut p = Prompt::new("sst2-prompt", "1.0.0");
    p.task = "sst2".into();
    p.description = "Sentiment of movie reviews".into();
    p.seed = 7.0;
    p
}

#[test]
fn publish_info_list_search_yank() {
    on_both(|b| {
        let mut t = String::new();
        t += &b.publish(&mnli("1.0.0", 0.5));
        t += &b.json_publish(&mnli("1.1.0", 3.0));
        t += &b.publish(&sst2());
        // Published versions are immutable, and confusable names are refused.
        mnli("1.0.0", 9.0).write_to(&b.work("again"));
        t += &b.fails(&["publish", &b.w("again")], "immutable");
        Prompt::new("mnli_prompt", "2.0.0").write_to(&b.work("confusable"));
        t += &b.fails(&["publish", &b.w("confusable")], "too similar");

        t += &b.ok(&["info", "mnli-prompt"]);
        t += &b.ok(&["--json", "info", "mnli-prompt"]);
        t += &b.ok(&["info", "mnli-prompt@1.0.0"]);
        t += &b.fails(&["info", "mnli_prompt"], "did you mean `mnli-prompt`?");
        t += &b.fails(&["info", "qqp-prompt"], "try `attempt-pkg search qqp-prompt`");
        t += &b.fails(&["info", "mnli-prompt@9.9.9"], "is not published");
        t += &b.ok(&["list"]);
        t += &b.ok(&["--json", "list"]);
        t += &b.ok(&["search", "inference"]);
        t += &b.ok(&["--json", "search", "sentiment"]);
        t += &b.ok(&["search", "prompt", "--limit", "1"]);
        t += &b.ok(&["search", "zzz"]);

        t += &b.ok(&["yank", "mnli-prompt@1.1.0"]);
        t += &b.ok(&["yank", "mnli-prompt@1.1.0"]);
        t += &b.fails(&["yank", "mnli-prompt@3.0.0"], "not published");
        t += &b.ok(&["info", "mnli-prompt"]);
        t += &b.ok(&["--json", "info", "mnli-prompt"]);
        t += &b.ok(&["list"]);
        t += &b.ok(&["yank", "mnli-prompt@1.1.0", "--undo"]);
        t += &b.ok(&["--json", "list"]);
        t
    });
}

#[test]
fn add_lock_fetch_verify_update_remove() {
    on_both(|b| {
        let mut t = String::new();
        b.publish(&mnli("1.0.0", 0.5));
        b.publish(&sst2());
        let p = b.w("project");
        fs::create_dir_all(b.work("project")).unwrap();
        t += &b.ok(&["--project", &p, "init", "--name", "matrix", "--model-fingerprint", FINGERPRINT]);
        t += &b.ok(&["--project", &p, "add", "mnli-prompt", "sst2-prompt@1"]);
        t += &b.file("project/attempt.lock");
        t += &b.file("project/attempt.toml");
        t += &b.ok(&["--project", &p, "tree"]);
        t += &b.ok(&["--project", &p, "fetch"]);
        t += &b.ok(&["--project", &p, "verify"]);
        t += &b.ok(&["--project", &p, "--locked", "lock"]);
        // A new version: update moves to it, and the lock says so.
        b.publish(&mnli("1.1.0", 3.0));
        t += &b.ok(&["--project", &p, "update", "mnli-prompt"]);
        t += &b.file("project/attempt.lock");
        t += &b.ok(&["--project", &p, "remove", "sst2-prompt"]);
        t += &b.ok(&["--project", &p, "fetch"]);
        t += &b.file("project/attempt.lock");
        // Everything is cached: --frozen needs no registry.
        t += &b.ok(&["--project", &p, "--frozen", "fetch"]);
        t
    });
}

#[test]
fn export_and_import_publish() {
    on_both(|b| {
        let mut t = String::new();
        b.publish(&mnli("1.0.0", 0.5));
        let out = b.w("peft");
        t += &b.ok(&["--json", "export", "mnli-prompt@^1", "--format", "peft", "--out", &out]);
        t += &b.ok(&["export", "mnli-prompt", "--format", "safetensors", "--out", &b.w("st")]);
        let exported = fs::read(b.work("st/prompt.safetensors")).unwrap();
        t += &format!("exported {} bytes, sha256 {}\n", exported.len(), common_registry::sha256_hex(&exported));

        let data: Vec<u8> = (0..4 * 8).flat_map(|i| (i as f32 * 0.25).to_le_bytes()).collect();
        fs::write(b.work("prompt.safetensors"), tensor_file("F32", &[4, 8], &data)).unwrap();
        let import = |extra: &[&str]| {
            let mut args = vec!["import", "", "--name", "imported-prompt", "--version", "1.0.0", "--task", "record"];
            args.extend_from_slice(&["--base-model", FINGERPRINT, "--hidden-size", "8", "--base-model-name", "tiny"]);
            args.extend_from_slice(extra);
            args.iter().map(|a| a.to_string()).collect::<Vec<_>>()
        };
        let src = b.w("prompt.safetensors");
        let mut args = import(&["--publish"]);
        args[1] = src.clone();
        t += &b.ok(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let mut args = import(&["--publish", "--out", &b.w("imported")]);
        args[1] = src;
        t += &b.fails(&args.iter().map(String::as_str).collect::<Vec<_>>(), "immutable");
        t += &b.ok(&["--json", "info", "imported-prompt"]);
        t
    });
}

#[test]
fn suggest_json_on_the_tiny_model() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/model");
    let model = model.to_str().expect("utf-8 path").to_string();
    // The per-candidate `seconds` differ between any two runs; zero_times sets them to 0.
    // `--z 0`: keep what scores above its controls at all, so `--apply` has something to add.
    let scenario = |b: &Backing, model: &str| {
        let mut t = String::new();
        for (i, name) in ["alpha-prompt", "beta-prompt"].iter().enumerate() {
            let data: Vec<u8> =
                (0..4 * 32).flat_map(|j| ((j as f32 * 0.37 + i as f32).sin() * 3.0).to_le_bytes()).collect();
            let file = b.w(&format!("{name}.safetensors"));
            fs::write(&file, tensor_file("F32", &[4, 32], &data)).unwrap();
            t += &b.ok(&[
                "import",
                &file,
                "--name",
                name,
                "--version",
                "1.0.0",
                "--task",
                "mood",
                "--base-model",
                model,
                "--publish",
            ]);
        }
        let p = b.w("project");
        fs::create_dir_all(b.work("project")).unwrap();
        let fp = {
            let out = b.run(&["--json", "model", "info", model]);
            let info: serde_json::Value = serde_json::from_slice(&out.stdout).expect("model info JSON");
            info["fingerprint"].as_str().expect("fingerprint").to_string()
        };
        t += &b.ok(&["--project", &p, "init", "--name", "pick", "--model-fingerprint", &fp, "--model-path", model]);
        let mut manifest = fs::read_to_string(b.work("project/attempt.toml")).unwrap();
        manifest.push_str("\n[train]\ntasks = [\"mood\"]\nmax-length = 12\nsynthetic-train = 32\nsynthetic-dev = 16\n");
        fs::write(b.work("project/attempt.toml"), manifest).unwrap();
        let suggest = [
            "--project",
            &p,
            "--json",
            "suggest",
            "--task",
            "mood",
            "--sample",
            "24",
            "--resamples",
            "4",
            "--top",
            "1",
            "--z",
            "0",
        ];
        t += &b.ok(&suggest);
        t += &b.ok(&[&suggest[..], &["--apply"]].concat());
        t += &b.file("project/attempt.lock");
        t
    };
    let (local, server) = on_both(|b| scenario(b, &model));
    // --z 0 keeps the candidate with a positive score, so --apply locked it through the resolver.
    assert!(local.contains("Adding alpha-prompt ^1.0.0") && local.contains("\"ranking\""), "{local}");
    // From a server, suggest read every candidate through the verified download cache.
    let cached = server.env.home.path().join("cache/blobs/sha256");
    let count = fs::read_dir(&cached)
        .map(|dirs| dirs.flatten().map(|d| fs::read_dir(d.path()).map_or(0, |f| f.count())).sum::<usize>());
    assert_eq!(count.ok(), Some(2), "candidates in {}", cached.display());
}

#[test]
fn served_listing_is_paginated() {
    let b = Backing::served();
    for name in ["a-prompt", "b-prompt", "c-prompt"] {
        b.publish(&Prompt::new(name, "1.0.0"));
    }
    let url = b.registry.trim_end_matches("index/").to_string();
    let page = |n: u32| -> serde_json::Value {
        let resp = server_common::http().get(format!("{url}api/v1/prompts?page={n}&per_page=2")).send().expect("GET");
        assert_eq!(resp.status(), 200);
        resp.json().expect("JSON")
    };
    let names = |v: &serde_json::Value| -> Vec<String> {
        v["prompts"]
            .as_array()
            .expect("prompts")
            .iter()
            .map(|p| p["name"].as_str().unwrap_or_default().to_string())
            .collect()
    };
    let first = page(1);
    assert_eq!(names(&first), ["a-prompt", "b-prompt"]);
    assert_eq!(first["meta"], serde_json::json!({"next_page": 2, "page": 1, "per_page": 2}));
    let second = page(2);
    assert_eq!(names(&second), ["c-prompt"]);
    assert_eq!(second["meta"]["next_page"], serde_json::Value::Null);
    assert!(names(&page(3)).is_empty());
    let zero = server_common::http().get(format!("{url}api/v1/prompts?page=0")).send().expect("GET");
    assert_eq!(zero.status(), 400);
    // The client walks every page.
    assert!(b.ok(&["list"]).contains("c-prompt@1.0.0"));
}

#[test]
fn train_source_publish_train_package_publish() {
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/model");
    let model = model.to_str().expect("utf-8 path").to_string();
    let small = common_registry::SMALL_TRAINING;
    let scenario = |b: &Backing, model: &str| {
        let mut t = String::new();
        let source = b.w("sentiment");
        let mut args = vec![
            "--json",
            "train-source",
            "--model",
            model,
            "--task",
            "sentiment",
            "--name",
            "sentiment-prompt",
            "--out",
            &source,
        ];
        args.extend_from_slice(small);
        t += &b.ok(&args);
        t += &b.ok(&["publish", &source]);
        t += &b.ok(&["--json", "info", "sentiment-prompt"]);
        let p = b.w("project");
        fs::create_dir_all(b.work("project")).unwrap();
        let text = fs::read_to_string(b.work("sentiment/Prompt.toml")).unwrap();
        let fp = text
            .lines()
            .find(|l| l.starts_with("fingerprint"))
            .and_then(|l| l.split('"').nth(1))
            .expect("fingerprint")
            .to_string();
        t += &b.ok(&["--project", &p, "init", "--name", "demo", "--model-fingerprint", &fp, "--model-path", model]);
        t += &b.ok(&["--project", &p, "add", "sentiment-prompt"]);
        let run = b.w("project/runs/a");
        let mut args = vec!["--project", &p, "--json", "train", "--task", "mood", "--run-dir", &run];
        args.extend_from_slice(small);
        t += &b.ok(&args);
        let pkg = b.w("mood-attempt");
        t += &b.ok(&["package", "--from-run", &run, "--task", "mood", "--name", "mood-attempt", "--out", &pkg]);
        t += &b.ok(&["publish", &pkg]);
        t += &b.ok(&["--project", &p, "add", "mood-attempt"]);
        t += &b.file("project/attempt.lock");
        t
    };
    let (local, _) = on_both(|b| scenario(b, &model));
    assert!(local.contains("Published mood-attempt@0.1.0"), "{local}");
}
