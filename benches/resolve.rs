//! Resolver and `add` latency on a synthetic registry.
//!
//! Writes an index of 10,000 packages × 20 versions (every tenth package a
//! prompt set depending on four others; some versions yanked, some for
//! another base model so the solver has to skip them) into a temp dir, then
//! measures:
//! - cold resolve of a 50-source project (new provider each time, so every
//!   index file is read and parsed again; the OS page cache is warm);
//! - `attempt-pkg add NAME` end to end through the built binary, on a project
//!   with 49 locked sources.
//!
//! Run: `cargo bench --bench resolve` (release). Targets: resolve < 50 ms,
//! add < 100 ms.

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use attempt_pkg::project::{parse_req, Lockfile};
use attempt_pkg::registry::{DirSource, RegistrySource};
use attempt_pkg::resolve::{resolve, ModelRequirement, ResolveRequest};
use registry_index::{index_path, write_index_file, Checksum, IndexDep, IndexEntry};

const PACKAGES: usize = 10_000;
const VERSIONS: usize = 20;
const SOURCES: usize = 50;

/// Deterministic xorshift, so every run benches the same index.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn name(i: usize) -> String {
    format!("prompt-{i:05}")
}

fn version(j: usize) -> semver::Version {
    // 1.0.0 … 1.9.0, 2.0.0 … 2.9.0
    semver::Version::new(1 + (j / 10) as u64, (j % 10) as u64, 0)
}

fn fingerprint(b: u8) -> Checksum {
    Checksum::from_digest(&[b; 32])
}

fn write_registry(root: &Path) -> usize {
    let model_a = fingerprint(0xaa);
    let model_b = fingerprint(0xbb);
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15);
    let mut bytes = 0;
    for i in 0..PACKAGES {
        let is_set = i % 10 == 0;
        let entries: Vec<IndexEntry> = (0..VERSIONS)
            .map(|j| {
                let deps = if is_set {
                    (0..4)
                        .map(|_| {
                            let k = 1 + rng.below(PACKAGES - 1);
                            let k = if k.is_multiple_of(10) { k + 1 } else { k } % PACKAGES;
                            IndexDep {
                                name: name(k),
                                req: parse_req(if rng.below(2) == 0 { "^1.2" } else { ">=1.5, <3" })
                                    .unwrap_or(semver::VersionReq::STAR),
                            }
                        })
                        .collect()
                } else {
                    Vec::new()
                };
                let mut d: Vec<IndexDep> = deps;
                d.sort_by(|a, b| a.name.cmp(&b.name));
                d.dedup_by(|a, b| a.name == b.name);
                IndexEntry {
                    name: name(i),
                    vers: version(j),
                    cksum: Checksum::from_digest(&[(i % 251) as u8; 32]),
                    deps: d,
                    yanked: rng.below(15) == 0,
                    task: "synthetic".into(),
                    // The newest version of every seventh package moved to another model.
                    base_model: if i % 7 == 3 && j == VERSIONS - 1 { model_b.clone() } else { model_a.clone() },
                    hidden_size: 384,
                    prompt_length: if is_set { 0 } else { 100 },
                    size: 153_600,
                    v: registry_index::FORMAT_VERSION,
                    sig: None,
                }
            })
            .collect();
        let text = write_index_file(&entries);
        bytes += text.len();
        let path = root.join("index").join(index_path(&name(i)).unwrap_or_default());
        if let Some(p) = path.parent() {
            fs::create_dir_all(p).expect("create index dir");
        }
        fs::write(&path, text).expect("write index file");
    }
    bytes
}

fn project_sources() -> BTreeMap<String, semver::VersionReq> {
    let mut rng = Rng(42);
    let mut sources = BTreeMap::new();
    while sources.len() < SOURCES {
        let i = rng.below(PACKAGES);
        let req = match rng.below(3) {
            0 => "^1.2",
            1 => "^2",
            _ => ">=1.0",
        };
        sources.insert(name(i), parse_req(req).unwrap_or(semver::VersionReq::STAR));
    }
    sources
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo bench` passes `--bench`; ignore arguments.
    let tmp = tempfile::tempdir().expect("temp dir");
    let reg_dir = tmp.path().join("registry");
    let t = Instant::now();
    let bytes = write_registry(&reg_dir);
    println!(
        "synthetic index: {PACKAGES} packages x {VERSIONS} versions, {:.1} MB, written in {:.1} s",
        bytes as f64 / 1e6,
        t.elapsed().as_secs_f64()
    );

    let request = ResolveRequest {
        project: "bench".into(),
        model: Some(ModelRequirement {
            fingerprint: fingerprint(0xaa),
            hidden_size: Some(384),
            prompt_length: Some(100),
        }),
        sources: project_sources(),
        locked: BTreeMap::new(),
    };
    let mut times = Vec::new();
    let mut resolved = 0;
    for _ in 0..15 {
        let registries: Vec<Box<dyn RegistrySource>> = vec![Box::new(DirSource::new(&reg_dir))];
        let t = Instant::now();
        let res = match resolve(&request, &registries) {
            Ok(r) => r,
            Err(e) => panic!("synthetic project does not resolve: {e}"),
        };
        times.push(t.elapsed());
        resolved = res.packages.len();
    }
    let first = times[0];
    println!(
        "cold resolve, {SOURCES} sources -> {resolved} packages: first {:.2} ms, median {:.2} ms, min {:.2} ms (target < 50 ms)",
        ms(first),
        ms(median(times.clone())),
        ms(*times.iter().min().unwrap_or(&first))
    );

    // `add` end to end: 49 sources locked, add the 50th.
    let bin = env!("CARGO_BIN_EXE_attempt-pkg");
    let proj = tmp.path().join("project");
    let home = tmp.path().join("home");
    fs::create_dir_all(&proj).expect("project dir");
    let mut sources: Vec<(String, semver::VersionReq)> = request.sources.clone().into_iter().collect();
    let (last, _) = sources.pop().unwrap_or_default();
    let mut manifest = format!(
        "[project]\nname = \"bench\"\n\n[model]\nfingerprint = \"{}\"\nhidden-size = 384\nprompt-length = 100\n\n[sources]\n",
        fingerprint(0xaa).prefixed()
    );
    for (n, r) in &sources {
        manifest.push_str(&format!("{n} = \"{r}\"\n"));
    }
    fs::write(proj.join("attempt.toml"), &manifest).expect("write manifest");
    let run = |args: &[&str]| {
        let t = Instant::now();
        let out = Command::new(bin)
            .args(args)
            .current_dir(&proj)
            .env("ATTEMPT_HOME", &home)
            .env("ATTEMPT_REGISTRY", &reg_dir)
            .output()
            .expect("run attempt-pkg");
        let took = t.elapsed();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        took
    };
    let lock_time = run(&["lock"]);
    let locked_before = fs::read_to_string(proj.join("attempt.lock")).expect("lock");
    let mut add_times = Vec::new();
    for _ in 0..10 {
        fs::write(proj.join("attempt.toml"), &manifest).expect("reset manifest");
        fs::write(proj.join("attempt.lock"), &locked_before).expect("reset lock");
        add_times.push(run(&["add", &last]));
    }
    let after = Lockfile::parse(&fs::read_to_string(proj.join("attempt.lock")).expect("lock")).expect("parse lock");
    let noop = run(&["lock"]);
    println!("`attempt-pkg lock` (49 sources, no lock yet): {:.1} ms", ms(lock_time));
    println!(
        "`attempt-pkg add {last}` end to end (49 locked sources, {} packages after): median {:.1} ms, min {:.1} ms (target < 100 ms)",
        after.packages.len(),
        ms(median(add_times.clone())),
        ms(*add_times.iter().min().unwrap_or(&lock_time))
    );
    println!("`attempt-pkg lock` no-op: {:.1} ms", ms(noop));
}
