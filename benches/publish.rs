//! `publish` latency against a populated local registry (release build):
//!
//!     cargo bench --bench publish                       # 1,000 packages × 5 versions
//!     cargo bench --bench publish -- --packages 10000 --versions 2
//!
//! Fills a temporary registry through the library API, then times (a) the
//! in-process `publish_dir` (build + validate + blob + DB + index) and (b) the
//! end-to-end `attempt-pkg publish` process, plus `search`/`info`/`list`.

use std::fs;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use attempt_pkg::registry::BlockingRegistry;

const FINGERPRINT: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

fn main() -> Result<()> {
    let mut packages = 1000usize;
    let mut versions = 5usize;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--packages" => packages = args.next().context("--packages N")?.parse()?,
            "--versions" => versions = args.next().context("--versions N")?.parse()?,
            "--bench" => {}
            other => bail!("unknown argument {other}; use --packages N --versions N"),
        }
    }
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("registry");
    let authoring = tmp.path().join("authoring");
    let registry = BlockingRegistry::open(&root)?;

    // Fill: small prompts (20 × 384) so the blob store stays small.
    let start = Instant::now();
    let mut fill = Vec::with_capacity(packages * versions);
    for p in 0..packages {
        for v in 0..versions {
            write_authoring(
                &authoring,
                &format!("bench-{p:05}"),
                &format!("1.{v}.0"),
                20,
                384,
                (p * versions + v) as f32,
            )?;
            let t = Instant::now();
            registry.publish_dir(&authoring)?;
            fill.push(t.elapsed());
        }
    }
    println!(
        "fill: {} packages × {} versions = {} publishes in {:.1} s",
        packages,
        versions,
        packages * versions,
        start.elapsed().as_secs_f64()
    );
    report("  in-process publish during fill (20×384 f32)", &mut fill);

    // Realistic ATTEMPT prompt: 100 × 384 f32 (~150 KB).
    let mut in_process = Vec::new();
    for i in 0..50 {
        write_authoring(&authoring, "bench-inproc", &format!("1.0.{i}"), 100, 384, 1e6 + i as f32)?;
        let t = Instant::now();
        registry.publish_dir(&authoring)?;
        in_process.push(t.elapsed());
    }
    report("in-process publish_dir, 100×384 f32", &mut in_process);
    drop(registry);

    let bin = env!("CARGO_BIN_EXE_attempt-pkg");
    let mut e2e = Vec::new();
    for i in 0..20 {
        write_authoring(&authoring, "bench-cli", &format!("1.0.{i}"), 100, 384, 2e6 + i as f32)?;
        e2e.push(run(bin, &root, &["publish", authoring.to_str().context("utf-8 path")?])?);
    }
    report("end-to-end `attempt-pkg publish`, 100×384 f32", &mut e2e);

    for (label, args) in [
        ("end-to-end `attempt-pkg search bench`", &["search", "bench", "--limit", "20"][..]),
        ("end-to-end `attempt-pkg info bench-00042`", &["info", "bench-00042"][..]),
        ("end-to-end `attempt-pkg list`", &["list"][..]),
    ] {
        let mut times = Vec::new();
        for _ in 0..10 {
            times.push(run(bin, &root, args)?);
        }
        report(label, &mut times);
    }
    Ok(())
}

fn run(bin: &str, root: &Path, args: &[&str]) -> Result<Duration> {
    let t = Instant::now();
    let out = Command::new(bin).args(args).arg("--registry").arg(root).output()?;
    let elapsed = t.elapsed();
    if !out.status.success() {
        bail!("attempt-pkg {args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(elapsed)
}

fn report(label: &str, times: &mut [Duration]) {
    times.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    let pct = |p: f64| times[((times.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{label}: n={} p50 {:.2} ms, p95 {:.2} ms, max {:.2} ms",
        times.len(),
        ms(pct(0.5)),
        ms(pct(0.95)),
        ms(times[times.len() - 1])
    );
}

fn write_authoring(dir: &Path, name: &str, version: &str, length: usize, hidden: usize, seed: f32) -> Result<()> {
    fs::create_dir_all(dir)?;
    let manifest = format!(
        "[package]\nname = \"{name}\"\nversion = \"{version}\"\ntask = \"bench\"\n\
         description = \"synthetic benchmark prompt\"\n[base-model]\nname = \"bench-model\"\n\
         fingerprint = \"{FINGERPRINT}\"\nhidden-size = {hidden}\n[prompt]\nfile = \"prompt.safetensors\"\n"
    );
    fs::write(dir.join("Prompt.toml"), manifest)?;
    let data: Vec<u8> = (0..length * hidden).flat_map(|i| (seed + i as f32 * 1e-3).to_le_bytes()).collect();
    let view = safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![length, hidden], &data)?;
    fs::write(dir.join("prompt.safetensors"), safetensors::serialize([("prompt", view)], &None)?)?;
    Ok(())
}
