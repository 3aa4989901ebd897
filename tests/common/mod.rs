//! Test helpers: a registry written directly as index files and blobs (the
//! layout `publish` produces), and the binary run with a private ATTEMPT_HOME.
#![allow(dead_code)]

use std::fs;
use std::path::{Path, PathBuf};

use assert_cmd::Command;
use registry_index::{blob_path, index_path, parse_index_file, write_index_file, Checksum, IndexDep, IndexEntry};
use sha2::{Digest, Sha256};
use tempfile::TempDir;

pub const MODEL_A: &str = "aaaa111122223333aaaa111122223333aaaa111122223333aaaa111122223333";
pub const MODEL_B: &str = "bbbb444455556666bbbb444455556666bbbb444455556666bbbb444455556666";

pub fn sha256(bytes: &[u8]) -> Checksum {
    Checksum::from_digest(&Sha256::digest(bytes).into())
}

/// A registry directory built entry by entry.
pub struct Registry {
    pub root: PathBuf,
}

/// What a published version looks like in the index.
#[derive(Clone)]
pub struct Version<'a> {
    pub name: &'a str,
    pub vers: &'a str,
    pub deps: Vec<(&'a str, &'a str)>,
    pub model: &'a str,
    pub hidden: u32,
    pub length: u32,
    pub yanked: bool,
}

impl<'a> Version<'a> {
    pub fn new(name: &'a str, vers: &'a str) -> Self {
        Version { name, vers, deps: Vec::new(), model: MODEL_A, hidden: 8, length: 4, yanked: false }
    }
    pub fn deps(mut self, deps: &[(&'a str, &'a str)]) -> Self {
        self.deps = deps.to_vec();
        self.length = 0;
        self
    }
    pub fn model(mut self, m: &'a str) -> Self {
        self.model = m;
        self
    }
    pub fn hidden(mut self, h: u32) -> Self {
        self.hidden = h;
        self
    }
    pub fn length(mut self, l: u32) -> Self {
        self.length = l;
        self
    }
    pub fn yanked(mut self) -> Self {
        self.yanked = true;
        self
    }
}

impl Registry {
    pub fn new(root: PathBuf) -> Self {
        fs::create_dir_all(root.join("index")).unwrap();
        fs::create_dir_all(root.join("blobs")).unwrap();
        Registry { root }
    }

    /// The artifact bytes of a version (any bytes do: the cache only hashes them).
    pub fn blob_bytes(name: &str, vers: &str) -> Vec<u8> {
        format!("artifact of {name}@{vers}").into_bytes()
    }

    pub fn publish(&self, v: Version<'_>) -> Checksum {
        let bytes = Self::blob_bytes(v.name, v.vers);
        let cksum = sha256(&bytes);
        let blob = self.root.join("blobs").join(blob_path(&cksum));
        fs::create_dir_all(blob.parent().unwrap()).unwrap();
        fs::write(&blob, &bytes).unwrap();
        let entry = IndexEntry {
            name: v.name.to_string(),
            vers: v.vers.parse().unwrap(),
            cksum: cksum.clone(),
            deps: v.deps.iter().map(|(n, r)| IndexDep { name: n.to_string(), req: r.parse().unwrap() }).collect(),
            yanked: v.yanked,
            task: "test".into(),
            base_model: Checksum::parse(v.model).unwrap(),
            hidden_size: v.hidden,
            prompt_length: v.length,
            size: bytes.len() as u64,
            v: registry_index::FORMAT_VERSION,
            sig: None,
        };
        self.update_entries(v.name, |entries| entries.push(entry));
        cksum
    }

    pub fn yank(&self, name: &str, vers: &str) {
        self.update_entries(name, |entries| {
            for e in entries.iter_mut().filter(|e| e.vers.to_string() == vers) {
                e.yanked = true;
            }
        });
    }

    fn update_entries(&self, name: &str, f: impl FnOnce(&mut Vec<IndexEntry>)) {
        let path = self.root.join("index").join(index_path(name).unwrap());
        let mut entries = match fs::read_to_string(&path) {
            Ok(t) => parse_index_file(name, &t).unwrap(),
            Err(_) => Vec::new(),
        };
        f(&mut entries);
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(&path, write_index_file(&entries)).unwrap();
    }

    pub fn blob_file(&self, cksum: &Checksum) -> PathBuf {
        self.root.join("blobs").join(blob_path(cksum))
    }
}

/// A sandbox: ATTEMPT_HOME, a registry and a project directory.
pub struct Env {
    pub tmp: TempDir,
    pub home: PathBuf,
    pub project: PathBuf,
    pub registry: Registry,
}

impl Env {
    pub fn new() -> Self {
        let tmp = TempDir::new().unwrap();
        let home = tmp.path().join("home");
        let project = tmp.path().join("proj");
        fs::create_dir_all(&home).unwrap();
        fs::create_dir_all(&project).unwrap();
        let registry = Registry::new(tmp.path().join("registry"));
        Env { tmp, home, project, registry }
    }

    /// `attempt-pkg ARGS` in the project directory, with this sandbox's home and registry.
    pub fn cmd(&self, args: &[&str]) -> Command {
        let mut c = Command::cargo_bin("attempt-pkg").unwrap();
        c.current_dir(&self.project)
            .env("ATTEMPT_HOME", &self.home)
            .env("ATTEMPT_REGISTRY", &self.registry.root)
            .env_remove("RUST_LOG")
            .args(args);
        c
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(
            out.status.success(),
            "`attempt-pkg {}` failed:\n{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs and expects failure; returns stderr.
    pub fn fails(&self, args: &[&str]) -> String {
        let out = self.cmd(args).output().unwrap();
        assert!(!out.status.success(), "`attempt-pkg {}` unexpectedly succeeded", args.join(" "));
        String::from_utf8(out.stderr).unwrap()
    }

    /// `init` with model A.
    pub fn init(&self) {
        self.ok(&["init", "--name", "demo", "--model-fingerprint", &format!("sha256:{MODEL_A}")]);
    }

    pub fn manifest(&self) -> String {
        fs::read_to_string(self.project.join("attempt.toml")).unwrap()
    }

    pub fn lock(&self) -> String {
        fs::read_to_string(self.project.join("attempt.lock")).unwrap()
    }

    pub fn lock_path(&self) -> PathBuf {
        self.project.join("attempt.lock")
    }

    /// The locked version of `name`, read from attempt.lock.
    pub fn locked_version(&self, name: &str) -> Option<String> {
        let lock: toml::Value = toml::from_str(&self.lock()).unwrap();
        lock.get("package")?
            .as_array()?
            .iter()
            .find(|p| p["name"].as_str() == Some(name))
            .map(|p| p["version"].as_str().unwrap().to_string())
    }

    pub fn cached_blob(&self, cksum: &Checksum) -> PathBuf {
        self.home.join("cache").join("blobs").join(blob_path(cksum))
    }
}

pub fn write(path: &Path, text: &str) {
    fs::write(path, text).unwrap();
}
