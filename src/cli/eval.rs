//! `attempt-pkg eval --run RUN`: re-evaluate a run's best checkpoint on dev data.

use std::path::PathBuf;

use anyhow::Result;

use super::train::{eval_json, open_project, print_eval};
use super::Context;
use crate::train::evaluate;
use crate::workflow::project::recorded_section;
use crate::workflow::settings::{load_tasks, TaskSelection};

#[derive(Debug, clap::Args)]
#[command(after_help = "Loads the run's best checkpoint with the project's locked source prompts (verified \
again) and evaluates every task of the run on its dev data.\n\nExamples:\n  attempt-pkg eval --run runs/run-001\n  \
attempt-pkg eval --run runs/run-001 --max-eval-examples 200 --json")]
pub struct Args {
    /// Run directory written by `attempt-pkg train`.
    #[arg(long, value_name = "DIR")]
    pub run: PathBuf,
    /// Model directory or imported model name (default: [model] path).
    #[arg(long, value_name = "DIR|NAME")]
    pub model: Option<String>,
    /// Evaluate at most N dev examples per task.
    #[arg(long, value_name = "N")]
    pub max_eval_examples: Option<usize>,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let project = open_project(ctx, args.model.as_deref())?;
    let (model, record) = project.load_run(&args.run)?;
    let section = recorded_section(&record)?;
    let tasks = load_tasks(&TaskSelection {
        names: &record.tasks,
        user: &project.user_tasks,
        project_dir: &project.ws.dir,
        data_dir: section.data_dir.as_deref(),
        section: &section,
    })?;
    let mut results = Vec::new();
    for (i, t) in tasks.iter().enumerate() {
        let n = args.max_eval_examples.or(record.config.max_eval_examples).unwrap_or(t.dev.len()).min(t.dev.len());
        let backbone = project.frozen();
        results.push(evaluate(
            &model,
            backbone,
            i,
            &t.dev[..n],
            record.config.eval_batch_size,
            record.config.max_length,
        )?);
    }
    if ctx.global.json {
        println!("{}", serde_json::to_string_pretty(&results.iter().map(eval_json).collect::<Vec<_>>())?);
    } else {
        println!("Run {} ({}, {} steps)", args.run.display(), record.config.method, record.steps);
        for e in &results {
            print_eval(e);
        }
    }
    Ok(())
}
