use anyhow::{Context as _, Result};
use semver::Version;

use super::Context;
use crate::registry::YankOutcome;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  attempt-pkg yank mnli-prompt@1.0.1 --reason \"trained on the test split\"\n  attempt-pkg yank mnli-prompt@1.0.1 --undo\n\n\
A yanked version stays downloadable, and projects that already lock it keep working, but no new \
resolution picks it."
)]
pub struct Args {
    /// The version to yank, as NAME@VERSION.
    #[arg(value_name = "NAME@VERSION")]
    pub spec: String,
    /// Unyank: make the version selectable again.
    #[arg(long)]
    pub undo: bool,
    /// Why (shown with the yanked version on the registry's web pages), e.g. "trained on the wrong split".
    #[arg(long, value_name = "TEXT", conflicts_with = "undo")]
    pub reason: Option<String>,
    /// API token for a remote registry (overrides ATTEMPT_TOKEN and `attempt-pkg login`).
    #[arg(long)]
    pub token: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let (name, version) = args
        .spec
        .split_once('@')
        .with_context(|| format!("`{}` is not NAME@VERSION (e.g. mnli-prompt@1.0.1)", args.spec))?;
    let version =
        Version::parse(version).with_context(|| format!("`{version}` is not a semver version (e.g. 1.0.1)"))?;
    let outcome =
        ctx.registry(args.token.as_deref())?.set_yanked(name, &version, !args.undo, args.reason.as_deref())?;
    let verb = if args.undo { "Unyanked" } else { "Yanked" };
    match outcome {
        YankOutcome::Changed => println!("{verb} {name}@{version}"),
        YankOutcome::AlreadyInState => {
            println!("{name}@{version} is already {}", if args.undo { "not yanked" } else { "yanked" })
        }
    }
    Ok(())
}
