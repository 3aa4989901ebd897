//! `attempt-pkg package --from-run`: a trained target prompt becomes a publishable package.

use std::path::PathBuf;

use anyhow::{bail, Result};

use super::Context;
use crate::train::rundir::{EpochRecord, RunDir, METRICS};
use crate::train::{export_from_run, PackageInfo, TrainingInfo};

#[derive(Debug, clap::Args)]
#[command(after_help = "Writes OUT/Prompt.toml + OUT/prompt.safetensors from the run's best checkpoint, \
with the run's base-model fingerprint, method, steps, seed and dev metric. Publish it with \
`attempt-pkg publish OUT`: trained targets become sources for later runs.\n\nExamples:\n  \
attempt-pkg package --from-run runs/run-001 --task rte --name rte-attempt --version 0.1.0 --out ./rte-attempt")]
pub struct Args {
    /// Run directory written by `attempt-pkg train`.
    #[arg(long, value_name = "DIR")]
    pub from_run: PathBuf,
    /// Which of the run's tasks.
    #[arg(long)]
    pub task: String,
    #[command(flatten)]
    pub package: AuthoringArgs,
}

/// The new package's identity and where its authoring directory goes; shared
/// by every command that writes one (`package`, `train-source`).
#[derive(Debug, clap::Args)]
pub struct AuthoringArgs {
    /// Package name of the new prompt.
    #[arg(long)]
    pub name: String,
    #[arg(long, default_value = "0.1.0")]
    pub version: String,
    #[arg(long)]
    pub description: Option<String>,
    #[arg(long, default_value = "MIT")]
    pub license: String,
    /// Authoring directory to write (Prompt.toml + prompt.safetensors).
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
    /// Replace an existing Prompt.toml in --out.
    #[arg(long)]
    pub force: bool,
}

impl AuthoringArgs {
    pub fn print_written(&self) {
        println!(
            "Wrote {}@{} to {} (publish it with `attempt-pkg publish {}`)",
            self.name,
            self.version,
            self.out.display(),
            self.out.display()
        );
    }
}

pub fn run(args: Args, ctx: &Context) -> Result<()> {
    let dir = RunDir { path: args.from_run.clone() };
    let record = dir.read_run_record()?;
    let Some(def) = record.task_defs.iter().find(|t| t.name == args.task) else {
        bail!("run {} has no task `{}`; it trained: {}", args.from_run.display(), args.task, record.tasks.join(", "));
    };
    let metric = def.primary_metric().as_str().to_string();
    let history: Vec<EpochRecord> = match std::fs::read_to_string(dir.file(METRICS)) {
        Ok(text) => serde_json::from_str(&text).unwrap_or_default(),
        Err(_) => Vec::new(),
    };
    let best = history.iter().find(|e| Some(e.epoch) == record.best_epoch).or(history.last());
    let Some(metric_value) = best.and_then(|e| e.tasks.get(&args.task)).and_then(|m| m.get(&metric)).copied() else {
        bail!(
            "run {} has no dev {metric} for `{}` in {METRICS}; was it trained to the end of an epoch?",
            args.from_run.display(),
            args.task
        );
    };
    let info = PackageInfo {
        name: args.package.name.clone(),
        version: args.package.version.clone(),
        task: args.task.clone(),
        description: args.package.description.clone().unwrap_or_else(|| {
            format!(
                "{} target prompt ({} over {} source prompt(s))",
                args.task,
                record.config.method,
                record.source_names.len()
            )
        }),
        license: args.package.license.clone(),
        base_model_name: record.provenance.model_name.clone(),
        base_model_fingerprint: record.provenance.model_fingerprint.clone(),
        // A run does not keep its data: `train-source` records signatures.
        signature: None,
    };
    let training = TrainingInfo {
        method: record.config.method.as_str().to_string(),
        steps: record.steps,
        seed: record.config.seed,
        metric,
        metric_value,
        dataset: args.task.clone(),
        provenance: source_attention(&dir, &args.task).into_iter().collect(),
        own_task: None,
    };
    export_from_run(&args.from_run, &args.task, &args.package.out, &info, &training, args.package.force)?;
    if ctx.global.json {
        println!(
            "{}",
            serde_json::json!({"out": args.package.out, "name": args.package.name, "version": args.package.version})
        );
    } else {
        args.package.print_written();
    }
    Ok(())
}

/// The run's mean attention over its sources for `task` (`attention-<task>.csv`,
/// written by ATTEMPT runs), as the `source-attention` provenance entry the
/// registry's package page plots: `name=weight` pairs joined by `, `.
/// `None` for methods without attention (pt) or a run that never evaluated.
fn source_attention(dir: &RunDir, task: &str) -> Option<(String, String)> {
    let text = std::fs::read_to_string(dir.file(&format!("attention-{task}.csv"))).ok()?;
    let pairs: Vec<String> = text
        .lines()
        .skip(1)
        .filter_map(|line| {
            let (name, weight) = line.rsplit_once(',')?;
            let weight: f64 = weight.trim().parse().ok()?;
            let name = name.trim().trim_matches('"');
            (!name.is_empty() && !name.contains([',', '=']) && weight.is_finite())
                .then(|| format!("{name}={weight:.4}"))
        })
        .collect();
    (!pairs.is_empty()).then(|| ("source-attention".to_string(), pairs.join(", ")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn source_attention_from_the_run_csv() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("attention-rte.csv"),
            "prompt,weight\nmnli-prompt,0.612500\nsst2-prompt,0.387500\n",
        )
        .unwrap();
        let run = super::RunDir { path: dir.path().to_path_buf() };
        assert_eq!(
            super::source_attention(&run, "rte"),
            Some(("source-attention".to_string(), "mnli-prompt=0.6125, sst2-prompt=0.3875".to_string()))
        );
        assert_eq!(super::source_attention(&run, "cb"), None);
    }
}
