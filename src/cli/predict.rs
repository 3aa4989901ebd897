//! `attempt-pkg predict`: label one input with a trained run.

use std::path::PathBuf;

use anyhow::Result;

use super::train::open_project;
use super::Context;
use crate::train::{predict, PredictedLabel};

#[derive(Debug, clap::Args)]
#[command(after_help = "Prints the predicted label and the attention G gives each source prompt (and the \
target prompt) for this input.\n\nExamples:\n  attempt-pkg predict --run runs/run-001 --task sentiment --text \"a wonderful concert\"\n  \
attempt-pkg predict --run runs/run-001 --task rte --text \"A man sleeps.\" --text-b \"Someone rests.\"")]
pub struct Args {
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Task of the run to predict for.
    #[arg(long)]
    pub task: String,
    /// The input (first text of a pair task).
    #[arg(long)]
    pub text: String,
    /// Second text of a pair task.
    #[arg(long)]
    pub text_b: Option<String>,
    /// Model directory or imported model name (default: [model] path).
    #[arg(long, value_name = "DIR|NAME")]
    pub model: Option<String>,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let project = open_project(ctx, args.model.as_deref())?;
    let (model, record) = project.load_run(&args.run)?;
    let backbone = project.frozen();
    let p = predict(&model, backbone, &args.task, &args.text, args.text_b.as_deref(), record.config.max_length)?;
    if ctx.global.json {
        println!("{}", serde_json::to_string_pretty(&p)?);
        return Ok(());
    }
    match &p.label {
        PredictedLabel::Class { label, .. } => println!("label: {label}"),
        PredictedLabel::Score { score } => println!("score: {score:.4}"),
    }
    if !p.attention.is_empty() {
        println!("attention:");
        for (name, w) in &p.attention {
            println!("  {name:<32} {w:.3}");
        }
    }
    Ok(())
}
