//! `attempt-pkg serve` throughput on loopback, compared in the same run with
//! nginx serving the same registry directory as static files:
//!
//!     scripts/bench-server.sh                 # installs nginx if missing, then runs this
//!     cargo bench --bench server -- --seconds 5 --connections 64
//!
//! Measures (a) index-file GETs: requests/s and p50/p99 latency at N
//! concurrent keep-alive connections over a set of index files, and (b) blob
//! download MB/s (one 32 MiB artifact, 4 connections). The load generator is
//! a minimal HTTP/1.1 keep-alive client so it costs both servers the same.
//! Without an `nginx` binary on PATH the comparison is skipped.

use std::fs;
use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use attempt_pkg::package::{Artifact, Manifest, PromptTensor};
use attempt_pkg::registry::BlockingRegistry;

#[path = "common/http_load.rs"]
mod http_load;
#[path = "common/serve.rs"]
mod serve;
use http_load::{blob_throughput, load, report};
use serve::ServeProcess;

const FINGERPRINT: &str = "sha256:3333333333333333333333333333333333333333333333333333333333333333";

struct Options {
    seconds: f64,
    connections: usize,
    packages: usize,
}

fn main() -> Result<()> {
    let mut opts = Options { seconds: 5.0, connections: 64, packages: 200 };
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--seconds" => opts.seconds = args.next().context("--seconds S")?.parse()?,
            "--connections" => opts.connections = args.next().context("--connections N")?.parse()?,
            "--packages" => opts.packages = args.next().context("--packages N")?.parse()?,
            "--bench" => {}
            other => bail!("unknown argument {other}; use --seconds S --connections N --packages N"),
        }
    }
    let tmp = tempfile::tempdir()?;
    let root = tmp.path().join("registry");
    let names = fill(&root, opts.packages)?;
    let big = publish_big(&root)?;
    let cold_names = publish_cold_set(&root)?;
    let index_paths: Vec<String> =
        names.iter().map(|n| format!("/index/{}", registry_index::index_path(n).unwrap_or_default())).collect();
    let blob_path = format!("/blobs/sha256/{}/{}", &big[..2], big);

    let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build()?;
    let server = ServeProcess::start(&root, &[])?;
    println!("attempt-pkg serve on {} ({} index files, 32 MiB blob)", server.addr, index_paths.len());
    let cpu0 = cpu_seconds(&[server.pid()]);
    let ours = runtime.block_on(load(&server.addr, &index_paths, opts.connections, opts.seconds))?;
    let ours_cpu = (cpu_seconds(&[server.pid()]) - cpu0) / ours.requests as f64;
    report("attempt-pkg serve: index GET", &ours);
    println!("attempt-pkg serve: {:.1} µs of server CPU per index request", ours_cpu * 1e6);
    let ours_blob = runtime.block_on(blob_throughput(&server.addr, &blob_path, 4, opts.seconds))?;
    println!("attempt-pkg serve: blob download {ours_blob:.0} MB/s (4 connections)");
    cold_add(&server.addr, &cold_names, tmp.path())?;
    drop(server);

    match Nginx::start(&root, tmp.path())? {
        None => println!("nginx not found on PATH: comparison skipped (scripts/bench-server.sh installs it)"),
        Some(nginx) => {
            let pids = nginx.pids();
            let cpu0 = cpu_seconds(&pids);
            let theirs = runtime.block_on(load(&nginx.addr, &index_paths, opts.connections, opts.seconds))?;
            let nginx_cpu = (cpu_seconds(&pids) - cpu0) / theirs.requests as f64;
            report("nginx (static files): index GET", &theirs);
            println!("nginx (static files): {:.1} µs of server CPU per index request", nginx_cpu * 1e6);
            let nginx_blob = runtime.block_on(blob_throughput(&nginx.addr, &blob_path, 4, opts.seconds))?;
            println!("nginx (static files): blob download {nginx_blob:.0} MB/s (4 connections)");
            println!(
                "ratio attempt-pkg/nginx: index throughput {:.2}x, CPU per request {:.2}x, p99 {:.2}x (lower is better), blob {:.2}x",
                ours.rps / theirs.rps,
                ours_cpu / nginx_cpu,
                ours.p99.as_secs_f64() / theirs.p99.as_secs_f64(),
                ours_blob / nginx_blob
            );
        }
    }
    Ok(())
}

/// `packages` small packages, published through the library.
fn fill(root: &Path, packages: usize) -> Result<Vec<String>> {
    let registry = BlockingRegistry::open(root)?;
    let mut names = Vec::with_capacity(packages);
    for p in 0..packages {
        let name = format!("bench-{p:05}");
        for v in 0..3 {
            registry.publish(&artifact(&name, &format!("1.{v}.0"), 20, 64, (p * 3 + v) as f32)?)?;
        }
        names.push(name);
    }
    Ok(names)
}

/// Twenty prompts of T5-base size (100 × 768 f32, 300 KiB each), as a user
/// would add for an ATTEMPT run with many sources.
fn publish_cold_set(root: &Path) -> Result<Vec<String>> {
    let registry = BlockingRegistry::open(root)?;
    (0..COLD_PROMPTS)
        .map(|i| {
            let name = format!("source-{i:02}");
            registry.publish(&artifact(&name, "1.0.0", 100, 768, i as f32)?)?;
            Ok(name)
        })
        .collect()
}

const COLD_PROMPTS: usize = 20;

/// `attempt-pkg add` of the twenty prompts, then `fetch`, from an empty
/// `$ATTEMPT_HOME` (no index cache, no blobs) against the running server.
/// Five runs; prints each phase's median.
fn cold_add(addr: &str, names: &[String], tmp: &Path) -> Result<()> {
    let bin = env!("CARGO_BIN_EXE_attempt-pkg");
    let registry = format!("http://{addr}/index/");
    let (mut adds, mut fetches) = (Vec::new(), Vec::new());
    for run in 0..5 {
        let home = tmp.join(format!("cold-home-{run}"));
        let project = tmp.join(format!("cold-project-{run}"));
        let attempt = |args: &[&str]| -> Result<Duration> {
            let started = Instant::now();
            let out = Command::new(bin)
                .arg("--project")
                .arg(&project)
                .args(args)
                .env("ATTEMPT_HOME", &home)
                .env("ATTEMPT_REGISTRY", &registry)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .output()?;
            if !out.status.success() {
                bail!("attempt-pkg {} failed: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
            }
            Ok(started.elapsed())
        };
        attempt(&["init", "--name", "cold", "--model-fingerprint", FINGERPRINT])?;
        let mut add: Vec<&str> = vec!["add"];
        add.extend(names.iter().map(String::as_str));
        adds.push(attempt(&add)?);
        fetches.push(attempt(&["fetch"])?);
    }
    adds.sort();
    fetches.sort();
    let (add, fetch) = (adds[adds.len() / 2], fetches[fetches.len() / 2]);
    println!(
        "cold cache, {} prompts of 300 KiB over HTTP: `add` (index fetch + resolve + lock) {:.0} ms, `fetch` (blobs, verified) {:.0} ms, total {:.0} ms (median of 5)",
        names.len(),
        add.as_secs_f64() * 1e3,
        fetch.as_secs_f64() * 1e3,
        (add + fetch).as_secs_f64() * 1e3
    );
    Ok(())
}

fn publish_big(root: &Path) -> Result<String> {
    let registry = BlockingRegistry::open(root)?;
    // 8192 × 1024 f32 = 32 MiB.
    let published = registry.publish(&artifact("bench-big", "1.0.0", 8192, 1024, 0.5)?)?;
    Ok(published.cksum.hex().to_string())
}

fn artifact(name: &str, version: &str, length: usize, hidden: usize, seed: f32) -> Result<Artifact> {
    let manifest = Manifest::from_toml(&format!(
        "[package]\nname = \"{name}\"\nversion = \"{version}\"\ntask = \"bench\"\n\
         description = \"synthetic benchmark prompt\"\n[base-model]\nname = \"bench-model\"\n\
         fingerprint = \"{FINGERPRINT}\"\nhidden-size = {hidden}\n[prompt]\nfile = \"prompt.safetensors\"\n"
    ))?;
    let values: Vec<f32> = (0..length * hidden).map(|i| seed + (i % 1000) as f32 * 1e-3).collect();
    Artifact::from_parts(manifest, Some(PromptTensor::from_f32(length, hidden, &values)?))
}

struct Nginx {
    child: Child,
    addr: String,
}

impl Nginx {
    fn start(root: &Path, tmp: &Path) -> Result<Option<Nginx>> {
        let Some(bin) = find_on_path("nginx") else { return Ok(None) };
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let prefix = tmp.join("nginx");
        fs::create_dir_all(prefix.join("logs"))?;
        let conf = prefix.join("nginx.conf");
        // Comparable to the server: 2 workers, keep-alive, no access log, ETags on.
        let mut f = fs::File::create(&conf)?;
        // As root, nginx workers would drop to `nobody`, who cannot read the temp dir.
        // SAFETY: geteuid has no preconditions.
        let user = if unsafe { libc::geteuid() } == 0 { "user root root;\n" } else { "" };
        write!(
            f,
            "{user}worker_processes 2;\nerror_log {prefix}/logs/error.log;\npid {prefix}/nginx.pid;\n\
             events {{ worker_connections 1024; }}\n\
             http {{\n  access_log off;\n  sendfile on;\n  keepalive_requests 1000000;\n  etag on;\n\
               client_body_temp_path {prefix}/body;\n  proxy_temp_path {prefix}/proxy;\n  fastcgi_temp_path {prefix}/fcgi;\n\
               uwsgi_temp_path {prefix}/uwsgi;\n  scgi_temp_path {prefix}/scgi;\n\
               server {{\n    listen 127.0.0.1:{port};\n    root {root};\n  }}\n}}\n",
            prefix = prefix.display(),
            root = root.display()
        )?;
        let child = Command::new(bin)
            .args(["-p", &prefix.to_string_lossy(), "-c", &conf.to_string_lossy(), "-g", "daemon off;"])
            .stdout(Stdio::null())
            .spawn()
            .context("starting nginx")?;
        let addr = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if std::net::TcpStream::connect(&addr).is_ok() {
                return Ok(Some(Nginx { child, addr }));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("nginx did not start; see {}/logs/error.log", prefix.display())
    }
}

impl Nginx {
    /// The master and its worker processes.
    fn pids(&self) -> Vec<u32> {
        let master = self.child.id();
        let children = fs::read_to_string(format!("/proc/{master}/task/{master}/children")).unwrap_or_default();
        std::iter::once(master).chain(children.split_whitespace().filter_map(|p| p.parse().ok())).collect()
    }
}

/// User + system CPU seconds of processes so far (Linux /proc).
fn cpu_seconds(pids: &[u32]) -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as f64;
    pids.iter()
        .filter_map(|pid| fs::read_to_string(format!("/proc/{pid}/stat")).ok())
        .filter_map(|stat| {
            // Fields after the `(comm)`; utime and stime are the 12th and 13th.
            let rest = stat.rsplit_once(')')?.1;
            let fields: Vec<&str> = rest.split_whitespace().collect();
            Some(fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?)
        })
        .sum::<f64>()
        / ticks
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn find_on_path(bin: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")])
        .map(|d| d.join(bin))
        .find(|p| p.is_file())
}
