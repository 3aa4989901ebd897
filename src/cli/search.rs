use anyhow::Result;

use super::Context;
use crate::registry::{registry_dir, BlockingRegistry};

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:\n  attempt-pkg search sentiment\n  attempt-pkg search \"nli mnli\" --limit 5\n  \
attempt-pkg search squad --json\n\nEvery word must match the start of a word in a package's name, task or \
description; name matches rank first.")]
pub struct Args {
    /// Words to search for.
    #[arg(value_name = "QUERY", required = true, num_args = 1..)]
    pub query: Vec<String>,
    /// Show at most this many results.
    #[arg(long, default_value_t = 20)]
    pub limit: usize,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    if let crate::client::RegistryTarget::Remote(target) = crate::client::resolve_target(ctx.global.registry.as_deref(), &ctx.home)? {
        let remote = crate::client::open_remote(&target, None, &ctx.home, ctx.global.offline())?;
        let hits = remote.search(&args.query.join(" "), args.limit)?;
        if ctx.global.json {
            println!("{}", serde_json::to_string_pretty(&hits)?);
            return Ok(());
        }
        if hits.is_empty() {
            println!("no packages match `{}`", args.query.join(" "));
        }
        for hit in &hits {
            let field = |k: &str| hit.get(k).and_then(|v| v.as_str()).unwrap_or_default().to_string();
            let yanked = if hit.get("yanked").and_then(|v| v.as_bool()).unwrap_or(false) { " (yanked)" } else { "" };
            println!("{}@{}{yanked}  [{}]  {}", field("name"), field("latest"), field("task"), field("description"));
        }
        return Ok(());
    }
    let registry = BlockingRegistry::open_existing(&registry_dir(ctx.global.registry.as_deref(), &ctx.home)?)?;
    let hits = registry.search(&args.query.join(" "), args.limit)?;
    if ctx.global.json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("no packages match `{}`", args.query.join(" "));
    }
    for hit in &hits {
        let yanked = if hit.yanked { " (yanked)" } else { "" };
        println!("{}@{}{yanked}  [{}]  {}", hit.name, hit.latest, hit.task, hit.description);
    }
    Ok(())
}
