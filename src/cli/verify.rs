use anyhow::{anyhow, bail, Result};

use super::Context;
use crate::cache::Cache;
use crate::project::{verify, LOCK_FILE};

#[derive(Debug, clap::Args)]
#[command(after_help = "Re-hashes every cached blob attempt.lock names (a corrupt one is deleted) \
and, unless --offline, checks the lock's checksums against the index of the registry each package was \
locked from; a package locked from another registry than the one this command reads (--registry, \
config.toml), or a registry that cannot be opened, is a problem, since the check could not be made. \
Packages not yet cached are listed, not counted as errors (`fetch` gets them). Exits non-zero on any problem.\n\n\
Examples:\n  attempt-pkg verify\n  attempt-pkg verify --offline")]
pub struct Args {}

pub fn run(_args: Args, ctx: &Context) -> Result<()> {
    let ws = ctx.workspace()?;
    let lock = ws
        .lock
        .as_ref()
        .ok_or_else(|| anyhow!("no {LOCK_FILE} in {}; run `attempt-pkg lock` first", ws.dir.display()))?;
    // A registry that cannot be opened still leaves the cached blobs to
    // check; without --offline it fails the verification, since the lock was
    // not checked against the index as asked.
    let mut problems = Vec::new();
    let registries = match ctx.registries() {
        Ok(r) => r,
        Err(e) if ctx.global.offline() => {
            eprintln!("warning: {e:#}");
            Vec::new()
        }
        Err(e) => {
            problems.push(format!("the lock was not checked against the registry index: {e:#}"));
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
    problems.extend(report.problems.iter().map(ToString::to_string));
    for p in &problems {
        eprintln!("  error: {p}");
    }
    if !problems.is_empty() {
        bail!("verification failed: {} problem(s)", problems.len());
    }
    eprintln!("Verified {} cached package(s); {} not cached", report.verified.len(), report.missing.len());
    Ok(())
}
