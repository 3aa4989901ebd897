//! The load generator the server benches share: keep-alive connections
//! GETting paths round-robin, with latency percentiles and blob MB/s. Written
//! here rather than taken from a crate so a run needs nothing but the bench
//! binary and measures the server, not a client library's overhead.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};

pub struct LoadResult {
    pub requests: usize,
    pub rps: f64,
    pub p50: Duration,
    pub p99: Duration,
}

pub fn report(label: &str, r: &LoadResult) {
    println!(
        "{label}: {:.0} req/s ({} requests), p50 {:.2} ms, p99 {:.2} ms",
        r.rps,
        r.requests,
        r.p50.as_secs_f64() * 1e3,
        r.p99.as_secs_f64() * 1e3
    );
}

/// `connections` keep-alive connections, each GETting the paths round-robin
/// for `seconds`; every response must be 200.
pub async fn load(addr: &str, paths: &[String], connections: usize, seconds: f64) -> Result<LoadResult> {
    load_until(addr, paths, connections, Some(Instant::now() + Duration::from_secs_f64(seconds))).await
}

/// As [`load`], but every path is asked for exactly once (first views).
#[allow(dead_code)] // used by the pages bench only
pub async fn load_once(addr: &str, paths: &[String], connections: usize) -> Result<LoadResult> {
    load_until(addr, paths, connections, None).await
}

/// Until `deadline`, or with none, until each path was asked for once.
async fn load_until(addr: &str, paths: &[String], connections: usize, deadline: Option<Instant>) -> Result<LoadResult> {
    let paths = Arc::new(paths.to_vec());
    let start = Instant::now();
    let mut tasks = Vec::new();
    for c in 0..connections {
        let paths = paths.clone();
        let addr = addr.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let mut latencies = Vec::new();
            let mut i = c;
            while deadline.map_or(i < paths.len(), |d| Instant::now() < d) {
                let t = Instant::now();
                let (status, _) = conn.get(&paths[i % paths.len()]).await?;
                if status != 200 {
                    bail!("GET {} answered {status}", paths[i % paths.len()]);
                }
                latencies.push(t.elapsed());
                i += connections;
            }
            Ok::<_, anyhow::Error>(latencies)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let elapsed = start.elapsed().as_secs_f64();
    all.sort();
    let pct = |p: f64| {
        all.get(((all.len() as f64 * p) as usize).min(all.len().saturating_sub(1))).copied().unwrap_or_default()
    };
    Ok(LoadResult { requests: all.len(), rps: all.len() as f64 / elapsed, p50: pct(0.50), p99: pct(0.99) })
}

/// MB/s of whole-blob GETs over `connections` connections.
pub async fn blob_throughput(addr: &str, path: &str, connections: usize, seconds: f64) -> Result<f64> {
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let addr = addr.to_string();
        let path = path.to_string();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::open(&addr).await?;
            let mut bytes = 0usize;
            while Instant::now() < deadline {
                let (status, len) = conn.get(&path).await?;
                if status != 200 {
                    bail!("GET {path} answered {status}");
                }
                bytes += len;
            }
            Ok::<_, anyhow::Error>(bytes)
        }));
    }
    let mut total = 0usize;
    for t in tasks {
        total += t.await??;
    }
    Ok(total as f64 / 1e6 / start.elapsed().as_secs_f64())
}

/// A minimal HTTP/1.1 keep-alive client (Content-Length bodies only).
struct Conn {
    stream: BufReader<tokio::net::TcpStream>,
    body: Vec<u8>,
}

impl Conn {
    async fn open(addr: &str) -> Result<Conn> {
        let stream = tokio::net::TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        Ok(Conn { stream: BufReader::with_capacity(256 * 1024, stream), body: Vec::new() })
    }

    async fn get(&mut self, path: &str) -> Result<(u16, usize)> {
        let request = format!("GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n");
        self.stream.get_mut().write_all(request.as_bytes()).await?;
        let mut line = String::new();
        self.stream.read_line(&mut line).await?;
        let status: u16 = line.split_whitespace().nth(1).context("bad status line")?.parse()?;
        let mut length = 0usize;
        loop {
            line.clear();
            self.stream.read_line(&mut line).await?;
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse()?;
                }
            }
        }
        self.body.resize(length.min(1 << 20), 0);
        let mut left = length;
        while left > 0 {
            let n = left.min(self.body.len());
            self.stream.read_exact(&mut self.body[..n]).await?;
            left -= n;
        }
        Ok((status, length))
    }
}
