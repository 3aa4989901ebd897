//! Helpers for the registry integration tests: temp homes, authoring
//! directories with tiny prompt tensors, and the binary under test.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use tempfile::TempDir;

pub const FINGERPRINT: &str = "sha256:1111111111111111111111111111111111111111111111111111111111111111";
pub const OTHER_FINGERPRINT: &str = "sha256:2222222222222222222222222222222222222222222222222222222222222222";

/// Training flags small enough for a test: a few steps of a 4-token prompt on
/// a synthetic task (the last five are the synthetic sizes and `--quiet`).
pub const SMALL_TRAINING: &[&str] = &[
    "--max-steps",
    "6",
    "--epochs",
    "2",
    "--batch-size",
    "8",
    "--prompt-length",
    "4",
    "--max-length",
    "12",
    "--synthetic-train",
    "32",
    "--synthetic-dev",
    "16",
    "--quiet",
];

/// An isolated `ATTEMPT_HOME`; its default registry is `<home>/registry`.
pub struct Env {
    pub home: TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { home: tempfile::tempdir().expect("temp dir") }
    }

    pub fn registry(&self) -> PathBuf {
        self.home.path().join("registry")
    }

    pub fn cmd(&self) -> Command {
        let mut cmd = Command::cargo_bin("attempt-pkg").expect("binary");
        cmd.env("ATTEMPT_HOME", self.home.path()).env_remove("ATTEMPT_REGISTRY").env_remove("ATTEMPT_TEST_CRASH_AT");
        cmd
    }

    /// Runs the binary with `args`, returning its output (success or not).
    pub fn run(&self, args: &[&str]) -> Output {
        self.cmd().args(args).output().expect("run attempt-pkg")
    }

    /// Runs and asserts success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "attempt-pkg {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "attempt-pkg {args:?} should fail but printed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> serde_json::Value {
        let mut all = vec!["--json"];
        all.extend_from_slice(args);
        serde_json::from_str(&self.ok(&all)).expect("valid JSON output")
    }

    /// The index file of `name`, read as plain text (as a client would).
    pub fn index_text(&self, name: &str) -> Option<String> {
        let rel = registry_index::index_path(name).expect("valid name");
        fs::read_to_string(self.registry().join("index").join(rel)).ok()
    }

    pub fn index_entries(&self, name: &str) -> Vec<registry_index::IndexEntry> {
        match self.index_text(name) {
            Some(text) => registry_index::parse_index_file(name, &text).expect("index parses"),
            None => Vec::new(),
        }
    }

    /// A snapshot of every file in the registry except SQLite's WAL side
    /// files, to prove a refused operation changed nothing.
    pub fn snapshot(&self) -> Vec<(PathBuf, Vec<u8>)> {
        let mut files = Vec::new();
        let mut stack = vec![self.registry()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else { continue };
            for e in entries.flatten() {
                let p = e.path();
                if p.is_dir() {
                    stack.push(p);
                } else if !p.to_string_lossy().contains("registry.db") {
                    files.push((p.clone(), fs::read(&p).unwrap_or_default()));
                }
            }
        }
        files.sort();
        files
    }
}

/// An authoring directory under construction.
#[derive(Clone)]
pub struct Prompt {
    pub name: String,
    pub version: String,
    pub task: String,
    pub description: String,
    pub hidden: usize,
    pub length: usize,
    pub fingerprint: String,
    pub deps: Vec<(String, String)>,
    /// Seed for the values, so different packages get different bytes.
    pub seed: f32,
    /// `None` writes a pure prompt set (no `[prompt]`, no tensor file).
    pub with_tensor: bool,
}

impl Prompt {
    pub fn new(name: &str, version: &str) -> Prompt {
        Prompt {
            name: name.into(),
            version: version.into(),
            task: "mnli".into(),
            description: format!("{name} soft prompt for tests"),
            hidden: 8,
            length: 4,
            fingerprint: FINGERPRINT.into(),
            deps: Vec::new(),
            seed: 0.5,
            with_tensor: true,
        }
    }

    pub fn manifest(&self) -> String {
        let mut s = format!(
            "[package]\nname = \"{}\"\nversion = \"{}\"\ntask = \"{}\"\ndescription = \"{}\"\nlicense = \"Apache-2.0\"\n\n\
             [base-model]\nname = \"tiny-test-model\"\nfingerprint = \"{}\"\nhidden-size = {}\n",
            self.name, self.version, self.task, self.description, self.fingerprint, self.hidden
        );
        if self.with_tensor {
            s.push_str("\n[prompt]\nfile = \"prompt.safetensors\"\n");
        }
        if !self.deps.is_empty() {
            s.push_str("\n[dependencies]\n");
            for (n, r) in &self.deps {
                s.push_str(&format!("{n} = \"{r}\"\n"));
            }
        }
        s
    }

    pub fn values(&self) -> Vec<f32> {
        (0..self.length * self.hidden).map(|i| self.seed + i as f32 * 0.01).collect()
    }

    /// A valid tensor file for this prompt (written with the `safetensors` crate).
    pub fn tensor_bytes(&self) -> Vec<u8> {
        let data: Vec<u8> = self.values().iter().flat_map(|v| v.to_le_bytes()).collect();
        tensor_file("F32", &[self.length, self.hidden], &data)
    }

    /// Writes the directory and returns it (kept alive by the returned TempDir).
    pub fn write(&self) -> TempDir {
        let dir = tempfile::tempdir().expect("temp dir");
        self.write_to(dir.path());
        dir
    }

    pub fn write_to(&self, dir: &Path) {
        fs::create_dir_all(dir).expect("mkdir");
        fs::write(dir.join("Prompt.toml"), self.manifest()).expect("write manifest");
        if self.with_tensor {
            fs::write(dir.join("prompt.safetensors"), self.tensor_bytes()).expect("write tensor");
        }
    }
}

/// A one-tensor (`prompt`) safetensors file via the reference implementation.
pub fn tensor_file(dtype: &str, shape: &[usize], data: &[u8]) -> Vec<u8> {
    use safetensors::tensor::{Dtype, TensorView};
    let dtype = match dtype {
        "F32" => Dtype::F32,
        "F16" => Dtype::F16,
        "BF16" => Dtype::BF16,
        "F64" => Dtype::F64,
        "I32" => Dtype::I32,
        other => panic!("test helper: unknown dtype {other}"),
    };
    let view = TensorView::new(dtype, shape.to_vec(), data).expect("consistent test tensor");
    safetensors::serialize([("prompt", view)], &None).expect("serialize")
}

/// A safetensors file assembled by hand from a header string and data bytes.
pub fn raw_safetensors(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend_from_slice(header.as_bytes());
    out.extend_from_slice(data);
    out
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
