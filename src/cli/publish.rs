use std::path::PathBuf;

use anyhow::Result;

use super::Context;
use crate::package::Artifact;
use crate::registry::Published;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  attempt-pkg publish                 # the current directory\n  \
attempt-pkg publish ./mnli-prompt\n  attempt-pkg publish ./mnli-prompt --registry /srv/prompts\n\n\
The directory holds Prompt.toml and the tensor file it names (see docs/format.md). The artifact \
is built deterministically, validated, and stored under its sha256; published versions are \
immutable.")]
pub struct Args {
    /// Authoring directory with `Prompt.toml` (default: the current directory).
    #[arg(value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// API token for a remote registry (overrides ATTEMPT_TOKEN and `attempt-pkg login`).
    #[arg(long)]
    pub token: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let dir = match args.dir {
        Some(d) => d,
        None => std::env::current_dir()?,
    };
    // Build and validate first: bad input must not even create a registry.
    let artifact = Artifact::build(&dir)?;
    let registry = ctx.registry(args.token.as_deref())?;
    let answer = registry.publish(&artifact)?;
    for warning in &answer.warnings {
        eprintln!("warning from registry {}: {warning}", registry.display());
    }
    report_published(ctx, &answer.published)
}

/// What `publish` prints: the same text and JSON whichever the registry
/// (tests/registry_matrix.rs compares them).
fn report_published(ctx: &Context, published: &Published) -> Result<()> {
    if ctx.global.json {
        println!("{}", serde_json::to_string_pretty(published)?);
    } else {
        println!("Published {}@{} ({})", published.name, published.version, published.cksum.prefixed());
    }
    Ok(())
}
