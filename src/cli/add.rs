use anyhow::Result;

use super::lock::report_lock;
use super::Context;
use crate::project::ops::{self, AddSpec};

#[derive(Debug, clap::Args)]
#[command(after_help = "Requirements follow `cargo add`: a bare version is a caret requirement, \
`=` pins one version, no version means the newest non-yanked version that fits the project's \
base model (written as ^X.Y.Z). Versions already locked are kept unless they must move.\n\n\
Examples:\n  attempt-pkg add mnli-prompt            # newest compatible, e.g. ^1.3.0\n  \
attempt-pkg add mnli-prompt@1.2        # ^1.2\n  attempt-pkg add sst2-prompt@=1.0.3     # exactly 1.0.3\n  \
attempt-pkg add qqp@'>=0.2, <0.4' squad@~1.1")]
pub struct Args {
    /// Packages as NAME or NAME@REQ.
    #[arg(required = true, value_name = "NAME[@REQ]")]
    pub packages: Vec<String>,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    // Parse everything first: bad input changes nothing.
    let specs = args.packages.iter().map(|a| AddSpec::parse(a)).collect::<Result<Vec<_>>>()?;
    let (ws, _lock) = ctx.workspace_for_edit()?;
    let registries = ctx.registries()?;
    let (added, outcome) = ops::add(&ws, &specs, &registries, ctx.flags())?;
    for (name, req) in &added {
        eprintln!("Adding {name} {req} to [sources]");
    }
    report_lock(&outcome);
    Ok(())
}
