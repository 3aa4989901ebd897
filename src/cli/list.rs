use anyhow::Result;

use super::Context;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  attempt-pkg list\n  attempt-pkg list --json\n  attempt-pkg list --registry /srv/prompts"
)]
pub struct Args {}

pub fn run(_args: Args, ctx: &Context) -> Result<()> {
    let registry = ctx.registry(None)?;
    let packages = registry.list()?;
    if ctx.global.json {
        println!("{}", serde_json::to_string_pretty(&packages)?);
        return Ok(());
    }
    if packages.is_empty() {
        println!("the registry at {} has no packages", registry.display());
    }
    for p in &packages {
        let yanked = if p.yanked { ", all yanked" } else { "" };
        let kind = if p.prompt_length == 0 {
            "prompt set".to_string()
        } else {
            format!("{}×{}", p.prompt_length, p.hidden_size)
        };
        println!(
            "{}@{}  [{}]  {kind}  ({} version{}{yanked})",
            p.name,
            p.latest,
            p.task,
            p.versions,
            if p.versions == 1 { "" } else { "s" }
        );
    }
    Ok(())
}
