use anyhow::Result;

use super::lock::report_lock;
use super::Context;
use crate::project::ops;

#[derive(Debug, clap::Args)]
#[command(after_help = "Removes the packages from [sources] and drops whatever only they needed \
from attempt.lock.\n\nExamples:\n  attempt-pkg remove sst2-prompt\n  attempt-pkg remove qqp squad")]
pub struct Args {
    /// Package names as written in [sources].
    #[arg(required = true, value_name = "NAME")]
    pub packages: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let (ws, _lock) = ctx.workspace_for_edit()?;
    let registries = ctx.registries()?;
    let outcome = ops::remove(&ws, &args.packages, &registries, ctx.flags())?;
    for name in &args.packages {
        eprintln!("Removing {name} from [sources]");
    }
    report_lock(&outcome);
    Ok(())
}
