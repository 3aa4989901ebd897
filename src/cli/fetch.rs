use anyhow::Result;

use super::Context;
use crate::cache::Cache;
use crate::project::ops;

#[derive(Debug, clap::Args)]
#[command(after_help = "Brings attempt.lock up to date (like `lock`), then downloads every locked \
package into the shared cache ($ATTEMPT_HOME/cache). Each blob is verified against the lock's \
sha256 before it enters the cache; cached blobs are re-hashed, and a corrupt one is deleted and \
reported.\n\nExamples:\n  attempt-pkg fetch\n  attempt-pkg fetch --locked   # CI: never change the lock\n  \
attempt-pkg fetch --offline  # only check that everything is cached")]
pub struct Args {}

pub fn run(_args: Args, ctx: &Context) -> Result<()> {
    let ws = ctx.workspace()?;
    let registries = ctx.registries()?;
    let cache = Cache::from_home(&ctx.home);
    let (outcome, blobs) = ops::fetch_locked(&ws, &registries, &cache, ctx.flags())?;
    if outcome.written {
        super::lock::report_lock(&outcome);
    }
    let downloaded = blobs.iter().filter(|b| b.downloaded).count();
    for b in blobs.iter().filter(|b| b.downloaded) {
        eprintln!("  Downloaded {}@{}", b.package.name, b.package.version);
    }
    eprintln!(
        "Fetched {} package(s): {downloaded} downloaded, {} already cached",
        blobs.len(),
        blobs.len() - downloaded
    );
    Ok(())
}
