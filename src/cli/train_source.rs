//! `attempt-pkg train-source`: prompt-tune one source prompt into an authoring directory.

use std::collections::BTreeMap;

use anyhow::Result;
use candle_core::Device;

use super::train::TrainFlags;
use super::Context;
use crate::model::store;
use crate::workflow::settings::read_sections;
use crate::workflow::source::{train_source, SourceJob};
use crate::workflow::Backbone;

#[derive(Debug, clap::Args)]
#[command(after_help = "Trains one prompt (plain prompt tuning, Lester et al.) with the model frozen and \
writes OUT/Prompt.toml + OUT/prompt.safetensors with the task, the dev metric, the model's \
fingerprint and the training provenance filled in, ready for `attempt-pkg publish OUT`.\n\n\
Examples:\n  attempt-pkg train-source --model all-MiniLM-L6-v2 --task sentiment --name sentiment-prompt --out ./sentiment-prompt\n  \
attempt-pkg train-source --model all-MiniLM-L6-v2 --task mnli --data-dir ../shared/data --prompt-length 100 \\\n      --name mnli-prompt --version 1.0.0 --out ./mnli-prompt")]
pub struct Args {
    #[command(flatten)]
    pub flags: TrainFlags,
    /// Model directory or imported model name.
    #[arg(long, value_name = "DIR|NAME")]
    pub model: String,
    #[command(flatten)]
    pub package: super::package::AuthoringArgs,
    #[arg(long)]
    pub quiet: bool,
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    // User-defined tasks come from the project's attempt.toml when there is one.
    let (mut section, user, base) = match ctx.workspace() {
        Ok(ws) => {
            let (s, u) = read_sections(&ws.manifest.path)?;
            (s, u, ws.dir)
        }
        Err(_) => (Default::default(), BTreeMap::new(), std::env::current_dir()?),
    };
    section.tasks.clear();
    let section = section.overridden_by(&args.flags.section());
    let dir = store::resolve(&ctx.home, &args.model)?;
    let backbone = Backbone::load(&ctx.home, &dir, &Device::Cpu)?;
    let outcome = train_source(&SourceJob {
        backbone: &backbone,
        section: &section,
        user_tasks: &user,
        project_dir: &base,
        name: &args.package.name,
        version: &args.package.version,
        description: args.package.description.as_deref(),
        license: &args.package.license,
        out_dir: &args.package.out,
        overwrite: args.package.force,
        progress: !args.quiet && !ctx.global.json,
    })?;
    if ctx.global.json {
        let evals: Vec<_> = outcome.best_eval.iter().map(super::train::eval_json).collect();
        println!(
            "{}",
            serde_json::json!({"out": args.package.out, "steps": outcome.steps, "tasks": evals, "fingerprint": backbone.fingerprint})
        );
        return Ok(());
    }
    for e in &outcome.best_eval {
        super::train::print_eval(e);
    }
    println!("{}", crate::train::parameter_summary(outcome.trainable_parameters, backbone.parameters));
    args.package.print_written();
    Ok(())
}
