use anyhow::Result;

use super::Context;

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
    let query = args.query.join(" ");
    let hits = ctx.registry(None)?.search(&query, args.limit)?;
    if ctx.global.json {
        println!("{}", serde_json::to_string_pretty(&hits)?);
        return Ok(());
    }
    if hits.is_empty() {
        println!("no packages match `{query}`");
    }
    for hit in &hits {
        let yanked = if hit.yanked { " (yanked)" } else { "" };
        println!("{}@{}{yanked}  [{}]  {}", hit.name, hit.latest, hit.task, hit.description);
    }
    Ok(())
}
