use anyhow::{anyhow, bail, Result};

use super::Context;
use crate::cache::Cache;
use crate::project::{verify, LOCK_FILE};

#[derive(Debug, clap::Args)]
#[command(after_help = "Re-hashes every cached blob attempt.lock names (a corrupt one is deleted) \
and, unless --offline, checks the lock's checksums against the registry index. Packages not yet \
cached are listed, not counted as errors (`fetch` gets them). Exits non-zero on any problem.\n\n\
Examples:\n  attempt-pkg verify\n  attempt-pkg verify --offline")]
pub struct Args {}

pub fn run(_args: Args, ctx: &Context) -> Result<()> {
    let ws = ctx.workspace()?;
    let lock = ws
        .lock
        .as_ref()
        .ok_or_else(|| anyhow!("no {LOCK_FILE} in {}; run `attempt-pkg lock` first", ws.dir.display()))?;
    let registries = match ctx.registries() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("warning: not checking the lock against the index: {e:#}");
            Vec::new()
        }
    };
    if ctx.global.offline() {
        eprintln!("  --offline: checking cached blobs only, not the registry index");
    }
    let report = verify(lock, &registries, &Cache::from_home(&ctx.home))?;
    for m in &report.missing {
        eprintln!("  not cached: {m} (run `attempt-pkg fetch`)");
    }
    for p in &report.problems {
        eprintln!("  error: {p}");
    }
    if !report.problems.is_empty() {
        bail!("verification failed: {} problem(s)", report.problems.len());
    }
    eprintln!("Verified {} cached package(s); {} not cached", report.verified.len(), report.missing.len());
    Ok(())
}
