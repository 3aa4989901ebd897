use std::collections::HashSet;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context as _, Result};

use super::Context;
use crate::cache::{gc, Cache, GcOptions};
use crate::project::{Lockfile, LOCK_FILE};

#[derive(Debug, clap::Subcommand)]
pub enum Command {
    /// Remove cached blobs no project needs any more, and stale partial downloads, index copies and features.
    #[command(after_help = "The cache ($ATTEMPT_HOME/cache) is shared by all projects, so gc keeps \
every blob named by a lock you pass with --lock (default: the current project's attempt.lock, if \
any) and every blob used (fetched or verified) within --older-than days; everything else is \
removed. So are partial downloads untouched for an hour (never one a download is writing), copies \
of remote registries' index files not refreshed within --older-than days, and cached `suggest` \
features unused as long. What is removed is downloaded (or computed) again when next needed.\n\nExamples:\n  attempt-pkg cache gc --dry-run\n  \
attempt-pkg cache gc --lock ~/exp1/attempt.lock --lock ~/exp2/attempt.lock\n  \
attempt-pkg cache gc --older-than 0   # keep only what the given locks name")]
    Gc(GcArgs),
}

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    /// Lockfiles whose packages must stay (repeatable).
    #[arg(long = "lock", value_name = "FILE")]
    pub locks: Vec<PathBuf>,
    /// Keep unreferenced blobs, index copies and features used within this many days.
    #[arg(long, value_name = "DAYS", default_value_t = 30)]
    pub older_than: u64,
    /// Only report what would be removed.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(cmd: Command, ctx: &Context) -> Result<()> {
    match cmd {
        Command::Gc(args) => run_gc(args, ctx),
    }
}

fn run_gc(args: GcArgs, ctx: &Context) -> Result<()> {
    let mut locks = args.locks.clone();
    if locks.is_empty() {
        if let Ok(ws) = ctx.workspace() {
            locks.push(ws.lock_path());
        }
    }
    let mut keep = HashSet::new();
    for path in &locks {
        let lock = Lockfile::load(path)?
            .with_context(|| format!("{} does not exist (expected a {LOCK_FILE})", path.display()))?;
        keep.extend(lock.packages.into_iter().map(|p| p.checksum));
    }
    let opts = GcOptions {
        keep,
        older_than: Duration::from_secs(args.older_than.saturating_mul(86_400)),
        dry_run: args.dry_run,
    };
    let report = gc(&Cache::from_home(&ctx.home), &opts)?;
    let verb = if args.dry_run { "Would remove" } else { "Removed" };
    for c in &report.removed_blobs {
        eprintln!("  {verb} sha256:{c}");
    }
    eprintln!(
        "{verb} {} blob(s), {} partial download(s), {} index file(s) and {} cached feature file(s), {} bytes; kept {} blob(s)",
        report.removed_blobs.len(),
        report.removed_partials,
        report.removed_index_files,
        report.removed_features,
        report.freed_bytes,
        report.kept_blobs
    );
    Ok(())
}
