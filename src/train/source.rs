//! `train-source`: plain prompt tuning of one prompt on one task, written
//! out as a package authoring directory.

use std::path::Path;

use anyhow::{bail, Result};

use crate::compose::Method;
use crate::data::baseline::own_task_check;

use super::evaluate::as_predictions;
use super::export::{training_info, write_authoring_dir, PackageInfo};
use super::trainer::{train, TrainOptions, TrainOutcome, TrainRequest};

/// Train a source prompt (method forced to `pt`, no sources) and write
/// `out_dir/Prompt.toml` + `prompt.safetensors`. `dataset` (the task) and
/// `provenance` (e.g. the data files and their digest) are recorded as
/// provenance, and in `[metrics]` whether the prompt beat an input-blind
/// predictor on its own dev examples (`data::baseline`).
pub fn train_source_prompt(
    mut request: TrainRequest<'_>,
    options: &TrainOptions,
    package: &PackageInfo,
    dataset: &str,
    provenance: &[(String, String)],
    out_dir: &Path,
    overwrite: bool,
) -> Result<TrainOutcome> {
    if request.tasks.len() != 1 {
        bail!("a source prompt is trained on exactly one task, got {}", request.tasks.len());
    }
    if !request.sources.is_empty() {
        bail!("source prompt training takes no source prompts");
    }
    if out_dir.join(super::export::MANIFEST).exists() && !overwrite {
        bail!("{} already holds a Prompt.toml; choose another output directory", out_dir.display());
    }
    request.config.method = Method::Pt;
    let config = request.config.clone();
    // What the own-task check needs, kept before `train` takes the data.
    let task = &request.tasks[0];
    let evaluated = config.max_eval_examples.unwrap_or(task.dev.len()).min(task.dev.len());
    let (def, train_examples, dev) = (task.task.clone(), task.train.clone(), task.dev[..evaluated].to_vec());
    let outcome = train(request, options)?;
    let mut info = training_info(&outcome, &config, 0, dataset)?;
    info.provenance = provenance.to_vec();
    info.own_task = outcome.best_eval.first().and_then(|e| {
        own_task_check(&def, &train_examples, &dev, &as_predictions(&def.kind, &e.predictions), config.seed)
    });
    write_authoring_dir(out_dir, package, &info, outcome.model.tasks[0].target.as_tensor(), overwrite)?;
    Ok(outcome)
}

/// "trainable parameters: 12,345 (0.054 % of 22,713,216)".
pub fn parameter_summary(trainable: usize, backbone: usize) -> String {
    let pct = if backbone > 0 {
        format!(" ({:.3} % of {})", 100.0 * trainable as f64 / backbone as f64, thousands(backbone))
    } else {
        String::new()
    };
    format!("trainable parameters: {}{pct}", thousands(trainable))
}

fn thousands(n: usize) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn summary_formats_counts() {
        assert_eq!(super::parameter_summary(12345, 22713216), "trainable parameters: 12,345 (0.054 % of 22,713,216)");
        assert_eq!(super::parameter_summary(999, 0), "trainable parameters: 999");
    }
}
