use anyhow::{anyhow, bail, Result};

use super::Context;
use crate::cache::Cache;
use crate::project::{verify, Lockfile, LOCK_FILE};
use crate::registry::RegistrySource;

#[derive(Debug, clap::Args)]
#[command(after_help = "Re-hashes every cached blob attempt.lock names (a corrupt one is deleted) \
and, unless --offline, checks the lock's checksums against the index of the registry each package was \
locked from (the one this command reads, --registry or config.toml, and any other the lock names); a \
registry whose index cannot be read is a problem, since the check could not be made. \
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
        Ok(mut r) => {
            if !ctx.global.offline() {
                open_lock_sources(lock, &mut r, ctx, &mut problems);
            }
            r
        }
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

/// Adds, beside the registry this command reads, the registry each locked
/// package came from (its `source` in the lock), as Cargo reads a package's
/// source from Cargo.lock: a lock made against two registries, or verified
/// under another `--registry`, is still checked against the index each
/// package came from. The registry this command reads comes first, so a
/// `replace-with` mirror in config.toml still stands in for its origin.
fn open_lock_sources(
    lock: &Lockfile,
    registries: &mut Vec<Box<dyn RegistrySource>>,
    ctx: &Context,
    problems: &mut Vec<String>,
) {
    // Each distinct source once: a registry that cannot be opened is one problem, not one per package.
    let sources: std::collections::BTreeSet<&String> = lock.packages.iter().map(|p| &p.source).collect();
    let reading: Vec<String> = registries.iter().map(|r| r.source_id()).collect();
    for source in sources.into_iter().filter(|s| !reading.contains(s)) {
        // Another kind of id stays unmatched: verify() reports its packages.
        let Some(location) = source.strip_prefix("registry+") else { continue };
        match crate::registry::open(Some(location), &ctx.home, false, None) {
            Ok(registry) if &registry.source_id() == source => registries.push(Box::new(registry)),
            Ok(_) => {}
            Err(e) => problems.push(format!(
                "could not open {source}, which the lock names: {e:#}; fix config.toml, or pass --offline to check the cache only"
            )),
        }
    }
}
