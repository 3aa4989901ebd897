//! A served registry for the server tests: the real binary on 127.0.0.1
//! with a free port (port 0, read back from its first line of output).
#![allow(dead_code)]

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use tempfile::TempDir;

pub struct Server {
    pub root: TempDir,
    /// The served directory: `root`'s path, or a directory another server owns.
    dir: PathBuf,
    pub url: String,
    child: Child,
    /// Environment of the server, also given to `token` commands (e.g. ATTEMPT_DATABASE_URL).
    env: Vec<(String, String)>,
}

impl Server {
    pub fn start(extra: &[&str]) -> Server {
        Server::start_with_env(extra, &[])
    }

    pub fn start_with_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let root = tempfile::tempdir().expect("temp dir");
        Server::start_at(root, extra, env)
    }

    pub fn start_at(root: TempDir, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let dir = root.path().to_path_buf();
        Server::spawn(root, dir, extra, env)
    }

    /// A second server process on the directory another server serves.
    pub fn start_sharing(dir: &Path, extra: &[&str], env: &[(&str, &str)]) -> Server {
        Server::spawn(tempfile::tempdir().expect("temp dir"), dir.to_path_buf(), extra, env)
    }

    fn spawn(root: TempDir, dir: PathBuf, extra: &[&str], env: &[(&str, &str)]) -> Server {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_attempt-pkg"));
        cmd.args(["serve", "--root", dir.to_str().expect("utf-8 path"), "--addr", "127.0.0.1:0"])
            .args(extra)
            .env("ATTEMPT_HOME", root.path().join("server-home"))
            .env("ATTEMPT_LOG", "error")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in env {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("start attempt-pkg serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).expect("read the serve banner");
        let addr = line.trim().rsplit("http://").next().expect("banner has the address").to_string();
        assert!(line.starts_with("Serving "), "unexpected banner: {line}");
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Server { root, dir, url: format!("http://{addr}"), child, env }
    }

    pub fn root(&self) -> &Path {
        &self.dir
    }

    pub fn addr(&self) -> &str {
        self.url.trim_start_matches("http://")
    }

    pub fn index_url(&self) -> String {
        format!("{}/index/", self.url)
    }

    /// `attempt-pkg token create` against the served directory; the token is the last line.
    pub fn token(&self, name: &str, extra: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_attempt-pkg"))
            .args(["token", "create", "--name", name, "--root", self.root().to_str().expect("utf-8")])
            .args(extra)
            .env("ATTEMPT_HOME", self.root().join("server-home"))
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .output()
            .expect("run token create");
        assert!(out.status.success(), "token create failed: {}", String::from_utf8_lossy(&out.stderr));
        let stdout = String::from_utf8(out.stdout).expect("utf-8");
        stdout.lines().last().expect("a token line").trim().to_string()
    }

    pub fn blob_file(&self, hex: &str) -> PathBuf {
        self.root().join("blobs/sha256").join(&hex[..2]).join(hex)
    }

    /// Everything under the registry except the database files and the
    /// server's own home, to prove a refused request wrote nothing.
    pub fn files(&self) -> Vec<PathBuf> {
        let mut out = Vec::new();
        let mut stack = vec![self.root().to_path_buf()];
        while let Some(dir) = stack.pop() {
            for e in std::fs::read_dir(&dir).expect("read dir").flatten() {
                let p = e.path();
                let s = p.to_string_lossy();
                if s.contains("server-home") || s.contains("registry.db") || p.ends_with(".lock") {
                    continue;
                }
                if p.is_dir() {
                    stack.push(p);
                } else {
                    out.push(p);
                }
            }
        }
        out.sort();
        out
    }

    /// Stops the server like `kill -9`.
    pub fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

pub fn http() -> reqwest::blocking::Client {
    reqwest::blocking::Client::builder().timeout(Duration::from_secs(30)).build().expect("client")
}

/// Sends `request` verbatim (no URL normalisation, unlike HTTP clients) and
/// returns the status code and the raw response.
pub fn raw_request(addr: &str, request: &str) -> (u16, Vec<u8>) {
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(Duration::from_secs(10))).expect("timeout");
    stream.write_all(request.as_bytes()).expect("send");
    let mut response = Vec::new();
    let _ = stream.read_to_end(&mut response);
    let head = String::from_utf8_lossy(&response);
    let status = head.split_whitespace().nth(1).and_then(|s| s.parse().ok()).unwrap_or(0);
    (status, response)
}
