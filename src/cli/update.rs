use anyhow::Result;

use super::lock::report_lock;
use super::Context;
use crate::project::ops;

#[derive(Debug, clap::Args)]
#[command(after_help = "Without names every locked version may move to the newest version that \
attempt.toml allows; with names only those do. Yanked versions are left behind.\n\n\
Examples:\n  attempt-pkg update\n  attempt-pkg update mnli-prompt")]
pub struct Args {
    /// Only unlock these packages.
    #[arg(value_name = "NAME")]
    pub packages: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let (ws, _lock) = ctx.workspace_for_edit()?;
    let registries = ctx.registries()?;
    let outcome = ops::update(&ws, &args.packages, &registries, ctx.flags())?;
    report_lock(&outcome);
    Ok(())
}
