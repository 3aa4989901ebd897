//! The registry's web pages under load (`attempt-pkg serve`, src/server/pages/):
//!
//!     cargo bench --bench pages -- [--packages 10000] [--connections 64] [--seconds 10]
//!
//! Measures (a) package-page GETs (`/prompts/NAME`) on a registry of
//! `--packages` packages: requests/s and p50/p99 latency at N keep-alive
//! connections, first each page once (nothing cached), then every package in
//! turn for `--seconds`, then the home page; (b) blob download MB/s (one 32 MiB artifact, 4
//! connections) with download counting on and off (`--download-flush-ms 0`),
//! alternating five rounds each so both see the same machine load.
//! Packages are published through the library, as `publish` would.

use std::path::Path;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use attempt_pkg::package::{Artifact, Manifest, PromptTensor};
use attempt_pkg::registry::BlockingRegistry;

#[path = "common/http_load.rs"]
mod http_load;
#[path = "common/serve.rs"]
mod serve;
use http_load::{blob_throughput, load, load_once, report};
use serve::ServeProcess;

const FINGERPRINT: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

fn main() -> Result<()> {
    let (mut packages, mut connections, mut seconds) = (10_000usize, 64usize, 10.0f64);
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--packages" => packages = args.next().context("--packages N")?.parse()?,
            "--connections" => connections = args.next().context("--connections N")?.parse()?,
            "--seconds" => seconds = args.next().context("--seconds S")?.parse()?,
            "--bench" => {}
            other => bail!("unknown argument {other}; use --packages N --connections N --seconds S"),
        }
    }
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("registry");
    let t = Instant::now();
    let names = fill(&root, packages)?;
    println!("published {packages} packages in {:.0} s", t.elapsed().as_secs_f64());
    let registry = BlockingRegistry::open(&root)?;
    // 8192 × 1024 f32 = 32 MiB, as in benches/server.rs.
    let big = registry.publish(&artifact("bench-big", "1.0.0", 8192, 1024, 0.5, None)?)?.cksum.hex().to_string();
    drop(registry);
    let page_paths: Vec<String> = names.iter().map(|n| format!("/prompts/{n}")).collect();
    let blob_path = format!("/blobs/sha256/{big}");
    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;

    let server = ServeProcess::start(&root, &[])?;
    // First views: every package page once, so none comes from the server's
    // page cache (src/server/pages/cache.rs) and each costs its queries and
    // its render; SQLite's own page cache warms as it goes.
    let first = runtime.block_on(load_once(&server.addr, &page_paths, connections))?;
    report(&format!("package page GET, first view of each of {packages}, {connections} connections"), &first);
    // Then every package in turn for `seconds`: a page asked again within
    // the cache's 5 s is served from memory, one older is rendered anew.
    let pages = runtime.block_on(load(&server.addr, &page_paths, connections, seconds))?;
    report(&format!("package page GET, {packages} packages in turn, {connections} connections"), &pages);
    let home = runtime.block_on(load(&server.addr, &["/".to_string()], connections, seconds.min(5.0)))?;
    report(&format!("home page GET, {connections} connections"), &home);
    drop(server);

    let (mut on, mut off) = (Vec::new(), Vec::new());
    for _ in 0..5 {
        for (counting, out) in [(false, &mut off), (true, &mut on)] {
            let flags: &[&str] = if counting { &[] } else { &["--download-flush-ms", "0"] };
            let server = ServeProcess::start(&root, flags)?;
            out.push(runtime.block_on(blob_throughput(&server.addr, &blob_path, 4, seconds.min(3.0)))?);
        }
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    println!("blob download, counting off: {off:.0?} MB/s");
    println!("blob download, counting on:  {on:.0?} MB/s");
    let (m_on, m_off) = (median(&mut on), median(&mut off));
    println!(
        "blob download medians: {m_on:.0} MB/s counting vs {m_off:.0} MB/s not counting ({:+.1} %)",
        (m_on / m_off - 1.0) * 100.0
    );
    Ok(())
}

/// `packages` small packages (20 × 64 f32 prompts); every tenth depends on
/// the one before it, so pages have dependencies and dependents to look up.
fn fill(root: &Path, packages: usize) -> Result<Vec<String>> {
    let registry = BlockingRegistry::open(root)?;
    let mut names = Vec::with_capacity(packages);
    for p in 0..packages {
        let name = format!("bench-{p:05}");
        let dep = (p % 10 == 9).then(|| format!("bench-{:05}", p - 1));
        registry.publish(&artifact(&name, "1.0.0", 20, 64, p as f32, dep.as_deref())?)?;
        names.push(name);
    }
    Ok(names)
}

fn artifact(name: &str, version: &str, length: usize, hidden: usize, seed: f32, dep: Option<&str>) -> Result<Artifact> {
    let deps = dep.map(|d| format!("[dependencies]\n{d} = \"^1\"\n")).unwrap_or_default();
    let manifest = Manifest::from_toml(&format!(
        "[package]\nname = \"{name}\"\nversion = \"{version}\"\ntask = \"bench\"\n\
         description = \"synthetic benchmark prompt\"\n[base-model]\nname = \"bench-model\"\n\
         fingerprint = \"{FINGERPRINT}\"\nhidden-size = {hidden}\n[prompt]\nfile = \"prompt.safetensors\"\n\
         [provenance]\ntraining-method = \"attempt\"\nsource-attention = \"a=0.5, b=0.5\"\n[metrics]\naccuracy = 0.5\n{deps}"
    ))?;
    let values: Vec<f32> = (0..length * hidden).map(|i| seed + (i % 1000) as f32 * 1e-3).collect();
    Artifact::from_parts(manifest, Some(PromptTensor::from_f32(length, hidden, &values)?))
}
