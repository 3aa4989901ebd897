//! Helpers for the interop tests: a temp `ATTEMPT_HOME`, the binary, the
//! committed fixtures (scripts/gen_interop_fixtures.py) and their values.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Output;

use assert_cmd::Command;
use attempt_pkg::package::{Artifact, Dtype, PromptTensor};
use tempfile::TempDir;

pub const FINGERPRINT: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

/// The value the fixture script puts at flat index `i`: exact in f32/f16/bf16.
pub fn value(i: usize) -> f32 {
    (i as f32 - 64.0) / 16.0
}

/// `[rows, 32]` of [`value`], row-major.
pub fn values(rows: usize) -> Vec<f32> {
    (0..rows * 32).map(value).collect()
}

pub fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/interop").join(name)
}

pub struct Env {
    pub home: TempDir,
}

impl Env {
    pub fn new() -> Env {
        Env { home: tempfile::tempdir().expect("temp dir") }
    }

    pub fn path(&self, rel: &str) -> PathBuf {
        self.home.path().join(rel)
    }

    pub fn p(&self, rel: &str) -> String {
        self.path(rel).to_string_lossy().into_owned()
    }

    pub fn registry(&self) -> PathBuf {
        self.home.path().join("registry")
    }

    /// The tiny BERT of tests/fixtures/bert copied to `<home>/<name>`, so the
    /// directory name is the model name a PEFT adapter may record.
    pub fn model_dir(&self, name: &str) -> PathBuf {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert/model");
        let dst = self.home.path().join(name);
        fs::create_dir_all(&dst).expect("mkdir model");
        for f in ["config.json", "model.safetensors"] {
            fs::copy(src.join(f), dst.join(f)).expect("copy model file");
        }
        dst
    }

    pub fn run(&self, args: &[&str]) -> Output {
        let mut cmd = Command::cargo_bin("attempt-pkg").expect("binary");
        cmd.env("ATTEMPT_HOME", self.home.path()).env_remove("ATTEMPT_REGISTRY");
        cmd.args(args).output().expect("run attempt-pkg")
    }

    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "attempt-pkg {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Runs and asserts success; returns stderr (notes and warnings).
    pub fn ok_stderr(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "attempt-pkg {args:?} failed:\n{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            !out.status.success(),
            "attempt-pkg {args:?} should fail but printed:\n{}",
            String::from_utf8_lossy(&out.stdout)
        );
        String::from_utf8_lossy(&out.stderr).into_owned()
    }

    /// `import SOURCE --name N --version V --task t` + `extra`.
    pub fn import_args<'a>(source: &'a str, name: &'a str, version: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
        let mut args = vec!["import", source, "--name", name, "--version", version, "--task", "test-task"];
        args.extend_from_slice(extra);
        args
    }
}

/// Builds the authoring directory `dir` as `publish` would, returning the
/// checked prompt.
pub fn built_prompt(dir: &Path) -> (Artifact, PromptTensor) {
    let artifact = Artifact::build(dir).expect("the imported directory builds");
    let prompt = artifact.package().prompt.clone().expect("a prompt tensor");
    (artifact, prompt)
}

pub fn assert_prompt(prompt: &PromptTensor, dtype: Dtype, length: usize, expected: &[f32]) {
    assert_eq!((prompt.dtype(), prompt.length(), prompt.hidden()), (dtype, length, 32));
    assert_eq!(prompt.to_f32_vec(), expected);
}

/// The tensor `name` of a safetensors file: (dtype, shape, bytes).
pub fn safetensors_tensor(path: &Path, name: &str) -> (String, Vec<usize>, Vec<u8>) {
    let bytes = fs::read(path).expect("read safetensors");
    let st = safetensors::SafeTensors::deserialize(&bytes).expect("valid safetensors");
    let t = st.tensor(name).expect("tensor present");
    (format!("{:?}", t.dtype()), t.shape().to_vec(), t.data().to_vec())
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(bytes))
}
