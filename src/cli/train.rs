//! `attempt-pkg train`: ATTEMPT (or a baseline) on the project's locked prompts.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::Device;

use super::Context;
use crate::compose::Method;
use crate::train::{EvalResult, TrainOutcome};
use crate::workflow::project::{next_run_dir, prepare, PreparedProject};
use crate::workflow::TrainSection;

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TrainFlags {
    /// Task to train (repeatable; replaces [train] tasks): built-in, synthetic or [tasks.NAME].
    #[arg(long = "task", value_name = "NAME")]
    pub tasks: Vec<String>,
    /// Directory with the built-in tasks' files (GLUE layout, e.g. ../shared/data).
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// attempt | pt | spot | uniform.
    #[arg(long)]
    pub method: Option<Method>,
    #[arg(long)]
    pub epochs: Option<usize>,
    /// Stop after this many optimiser steps.
    #[arg(long)]
    pub max_steps: Option<usize>,
    #[arg(long)]
    pub batch_size: Option<usize>,
    /// Learning rate of the prompts (default 0.3).
    #[arg(long)]
    pub lr: Option<f64>,
    /// Learning rate of G and the heads.
    #[arg(long)]
    pub lr_other: Option<f64>,
    #[arg(long)]
    pub seed: Option<u64>,
    /// Prompt length when there are no sources (with sources it is theirs).
    #[arg(long)]
    pub prompt_length: Option<usize>,
    /// Maximum input tokens per example.
    #[arg(long)]
    pub max_length: Option<usize>,
    /// Train on k examples per class.
    #[arg(long, value_name = "K")]
    pub few_shot: Option<usize>,
    /// Use at most N training examples per task.
    #[arg(long, value_name = "N")]
    pub max_train_examples: Option<usize>,
    /// Evaluate on at most N dev examples per task.
    #[arg(long, value_name = "N")]
    pub max_eval_examples: Option<usize>,
    /// Evaluate on dev (and keep the best checkpoint) every N epochs and after the last.
    #[arg(long, value_name = "N")]
    pub eval_every: Option<usize>,
    /// Examples generated per synthetic task for training.
    #[arg(long, value_name = "N")]
    pub synthetic_train: Option<usize>,
    /// Examples generated per synthetic task for dev.
    #[arg(long, value_name = "N")]
    pub synthetic_dev: Option<usize>,
    /// How G scores prompts: dot (the paper) or cosine (norm-free).
    #[arg(long, value_name = "dot|cosine")]
    pub attention_scores: Option<crate::compose::AttentionScores>,
    /// G's softmax temperature (default d·e for dot, 0.1 for cosine scores).
    #[arg(long, value_name = "T")]
    pub attention_temperature: Option<f64>,
    /// Learn G's temperature (a trainable log-temperature).
    #[arg(long)]
    pub learn_temperature: bool,
    /// Standardise G's max-pooled input with the training set's per-feature
    /// mean and spread (folded into W_down and a W_down bias, then trained
    /// with G). Pooled inputs are nearly parallel, so without it G's weights
    /// barely differ between examples.
    #[arg(long)]
    pub standardise_attention_input: bool,
    /// Rescale the source prompts (and a target initialised from one) to this
    /// mean row norm before mixing (trained prompts: 25–45; word embeddings: 1–2).
    #[arg(long, value_name = "NORM")]
    pub prompt_row_norm: Option<f64>,
    /// Batch inputs of similar token length together, as the Hugging Face
    /// trainer's group_by_length: shuffled megabatches of 50 batches, each
    /// sorted by length. Less padding, so faster steps on inputs of mixed
    /// length; every example is still seen once per epoch, but the batches
    /// differ from an ungrouped run's, so results do too.
    #[arg(long)]
    pub group_by_length: bool,
}

impl TrainFlags {
    pub fn section(&self) -> TrainSection {
        TrainSection {
            tasks: self.tasks.clone(),
            // A path typed on the command line is relative to where the
            // command runs (as every path flag is), not to the project: only
            // `[train] data-dir` in attempt.toml is relative to the project.
            data_dir: self.data_dir.as_ref().map(|d| std::path::absolute(d).unwrap_or_else(|_| d.clone())),
            method: self.method,
            epochs: self.epochs,
            max_steps: self.max_steps,
            batch_size: self.batch_size,
            lr: self.lr,
            lr_other: self.lr_other,
            seed: self.seed,
            prompt_length: self.prompt_length,
            max_length: self.max_length,
            few_shot: self.few_shot,
            max_train_examples: self.max_train_examples,
            max_eval_examples: self.max_eval_examples,
            eval_every: self.eval_every,
            synthetic_train: self.synthetic_train,
            synthetic_dev: self.synthetic_dev,
            attention_scores: self.attention_scores,
            attention_temperature: self.attention_temperature,
            learn_temperature: self.learn_temperature.then_some(true),
            standardise_attention_input: self.standardise_attention_input.then_some(true),
            prompt_row_norm: self.prompt_row_norm,
            group_by_length: self.group_by_length.then_some(true),
            init_source: None,
        }
    }
}

#[derive(Debug, clap::Args)]
#[command(after_help = "Reads attempt.toml ([model], [sources], [train], [tasks.*]) and attempt.lock, verifies \
every locked prompt's sha256, checks that the local model's fingerprint equals the lock's and every \
prompt's, then trains the target prompt(s) and G with the source prompts frozen. Flags override [train].\n\n\
Examples:\n  attempt-pkg train\n  attempt-pkg train --task rte --data-dir ../shared/data --method attempt --epochs 5\n  \
attempt-pkg train --method pt --run-dir runs/pt-baseline\n  attempt-pkg train --frozen     # CI: lock must be current, no registry\n  \
ATTEMPT_GEMM=bf16 attempt-pkg train --method pt   # frozen products in bf16 (CPUs with AVX512-BF16)\n\n\
Environment: ATTEMPT_GEMM picks the frozen products' backend (gemm, avx2, mkl, openblas, blis: fp32; \
bf16: operands rounded to bf16, faster, ~1e-3 off fp32; default: the fastest fp32 one measured for \
this CPU). run.json records it, and --resume refuses to change the precision.")]
pub struct Args {
    #[command(flatten)]
    pub flags: TrainFlags,
    /// Where the run goes (default runs/run-NNN in the project).
    #[arg(long, value_name = "DIR")]
    pub run_dir: Option<PathBuf>,
    /// Continue an interrupted run in --run-dir, with the settings, tasks and
    /// sources it was started with (only --epochs and --max-steps may change).
    #[arg(long, requires = "run_dir")]
    pub resume: bool,
    /// Model directory or imported model name (default: [model] path).
    #[arg(long, value_name = "DIR|NAME")]
    pub model: Option<String>,
    /// Choose the sources first, as `suggest --top K --apply` does: score every
    /// registry prompt for the task, keep at most K that are predicted to help
    /// (through the resolver and the lock), then train. When none is, train
    /// runs plain prompt tuning.
    #[arg(long, value_name = "K", conflicts_with = "resume")]
    pub select: Option<usize>,
    /// Start ATTEMPT's or SPoT's target prompt from this source (a locked
    /// package name) instead of the best-ranked one `suggest --apply` kept,
    /// or without a selection the first in the lock ([train] init-source).
    #[arg(long, value_name = "NAME")]
    pub init_source: Option<String>,
    /// Hide the progress bar.
    #[arg(long)]
    pub quiet: bool,
}

impl Args {
    fn section(&self) -> TrainSection {
        TrainSection { init_source: self.init_source.clone(), ..self.flags.section() }
    }
}

pub(super) fn open_project(ctx: &Context, model: Option<&str>) -> Result<PreparedProject> {
    let ws = ctx.workspace()?;
    // Opening is lazy, so what fails here is the configuration (config.toml, --registry): say so.
    let registries = ctx.registries()?;
    prepare(&ctx.home, ws, &registries, ctx.flags(), model, &Device::Cpu)
}

pub fn run(mut args: Args, ctx: &Context) -> Result<()> {
    let mut candidate_length = None;
    if let Some(k) = args.select {
        if k == 0 {
            anyhow::bail!("--select 0 would keep no source; use --method pt for plain prompt tuning");
        }
        let proposal =
            super::suggest::propose(&super::suggest::Args::for_train(&args.flags, k, args.model.clone()), ctx)?;
        eprintln!("{}", proposal.selection.verdict);
        candidate_length = proposal.selection.ranking.first().map(|r| r.prompt_length);
    }
    let project = open_project(ctx, args.model.as_deref())?;
    if args.select.is_some() && project.sources.sources.is_empty() {
        let method = project.section.overridden_by(&args.section()).config().method;
        if method != Method::Pt {
            eprintln!("No source was selected: training plain prompt tuning instead of {method}");
            args.flags.method = Some(Method::Pt);
        }
        // The same prompt length as the candidates, unless one is set.
        if project.section.prompt_length.is_none() && args.flags.prompt_length.is_none() {
            args.flags.prompt_length = candidate_length;
        }
    }
    let run_dir = args.run_dir.clone().unwrap_or_else(|| next_run_dir(&project.ws.dir));
    let names: Vec<String> = project.sources.sources.iter().map(|s| s.name.clone()).collect();
    eprintln!(
        "Training with {} on model {} ({}), {} source prompt(s){}",
        project.section.overridden_by(&args.section()).config().method,
        project.backbone.name,
        project.backbone.fingerprint,
        names.len(),
        if names.is_empty() { String::new() } else { format!(": {}", names.join(", ")) }
    );
    let outcome = project.train(&args.section(), &run_dir, !args.quiet && !ctx.global.json, args.resume)?;
    for note in &outcome.notes {
        eprintln!("note: {note}");
    }
    report(ctx, &project, &outcome, &run_dir)
}

pub(super) fn report(
    ctx: &Context,
    project: &PreparedProject,
    outcome: &TrainOutcome,
    run_dir: &std::path::Path,
) -> Result<()> {
    if ctx.global.json {
        let tasks: Vec<_> = outcome.best_eval.iter().map(eval_json).collect();
        println!(
            "{}",
            serde_json::to_string_pretty(&serde_json::json!({
                "run_dir": run_dir, "steps": outcome.steps, "best_epoch": outcome.best_epoch,
                "trainable_parameters": outcome.trainable_parameters, "backbone_parameters": project.backbone.parameters,
                "mean_step_seconds": outcome.mean_step_seconds(), "interrupted": outcome.interrupted, "tasks": tasks,
                "kernels": crate::train::rundir::RunKernels::current(),
            }))?
        );
        return Ok(());
    }
    if outcome.interrupted {
        println!(
            "Interrupted after {} steps; continue with `attempt-pkg train --resume --run-dir {}`",
            outcome.steps,
            run_dir.display()
        );
    }
    println!(
        "Run {} ({} steps, {:.1} ms/step)",
        run_dir.display(),
        outcome.steps,
        1000.0 * outcome.mean_step_seconds()
    );
    println!("{}", project.parameter_summary(outcome.trainable_parameters));
    for e in &outcome.best_eval {
        print_eval(e);
    }
    Ok(())
}

pub(super) fn eval_json(e: &EvalResult) -> serde_json::Value {
    let attention: Option<Vec<_>> = e
        .mean_attention
        .as_ref()
        .map(|w| e.mixture_names.iter().zip(w).map(|(n, w)| serde_json::json!({"prompt": n, "weight": w})).collect());
    serde_json::json!({"task": e.task, "metrics": e.metrics, "attention": attention, "attention_spread": e.attention_spread})
}

/// `task  accuracy 0.912  f1 0.900` and the mean attention over the mixture.
pub(super) fn print_eval(e: &EvalResult) {
    let metrics: Vec<String> = e.metrics.iter().map(|(k, v)| format!("{k} {v:.4}")).collect();
    println!("  {:<16} {}", e.task, metrics.join("  "));
    if let Some(w) = &e.mean_attention {
        let spread = e.attention_spread.map(|s| format!(", per-example spread {s:.4}")).unwrap_or_default();
        println!("    attention over sources (mean on dev{spread}):");
        for (n, w) in e.mixture_names.iter().zip(w) {
            println!("      {n:<32} {w:.3} {}", bar(*w));
        }
    }
}

fn bar(w: f32) -> String {
    "#".repeat((w.clamp(0.0, 1.0) * 30.0).round() as usize)
}
