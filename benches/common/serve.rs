//! `attempt-pkg serve` as a child process for the server benches: started on
//! a free port (the address read from its banner), killed when dropped.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use anyhow::{Context, Result};

pub struct ServeProcess {
    child: Child,
    pub addr: String,
}

impl ServeProcess {
    /// `serve --root ROOT` with `extra` flags.
    pub fn start(root: &Path, extra: &[&str]) -> Result<ServeProcess> {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_attempt-pkg"))
            .args(["serve", "--root", &root.to_string_lossy(), "--addr", "127.0.0.1:0"])
            .args(extra)
            .env("ATTEMPT_LOG", "warn")
            .stdout(Stdio::piped())
            .spawn()
            .context("starting attempt-pkg serve")?;
        let stdout = child.stdout.take().context("no stdout")?;
        let mut line = String::new();
        std::io::BufReader::new(stdout).read_line(&mut line)?;
        let addr = line.trim().rsplit("http://").next().context("no address in the banner")?.to_string();
        Ok(ServeProcess { child, addr })
    }

    /// For CPU accounting (benches/server.rs); a module shared by several
    /// bench binaries, so not every one uses it.
    #[allow(dead_code)]
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServeProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
