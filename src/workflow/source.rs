//! `train-source` as a library call: prompt-tune one task on a backbone and
//! write a publishable authoring directory with the fingerprint filled in.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{bail, Result};

use super::backbone::Backbone;
use super::settings::{load_tasks, TaskSelection, TrainSection};
use crate::data::TaskSpec;
use crate::select::signature::task_signature;
use crate::train::{train_source_prompt, PackageInfo, RunProvenance, TrainOptions, TrainOutcome, TrainRequest};

pub struct SourceJob<'a> {
    pub backbone: &'a Backbone,
    /// `[train]` values (tasks must name exactly one task).
    pub section: &'a TrainSection,
    pub user_tasks: &'a BTreeMap<String, TaskSpec>,
    /// Base of user-defined task paths.
    pub project_dir: &'a Path,
    pub name: &'a str,
    pub version: &'a str,
    pub description: Option<&'a str>,
    pub license: &'a str,
    pub out_dir: &'a Path,
    pub overwrite: bool,
    pub progress: bool,
}

pub fn train_source(job: &SourceJob<'_>) -> Result<TrainOutcome> {
    if job.section.tasks.len() != 1 {
        bail!("a source prompt is trained on exactly one task; pass one --task");
    }
    let task = job.section.tasks[0].clone();
    let tasks = load_tasks(&TaskSelection {
        names: &job.section.tasks,
        user: job.user_tasks,
        project_dir: job.project_dir,
        data_dir: job.section.data_dir.as_deref(),
        section: job.section,
    })?;
    // The task, its files by relative name and a digest of the examples:
    // enough to tell which data trained the prompt, without publishing a
    // path of the publisher's machine.
    let dataset = task.clone();
    let mut provenance = Vec::new();
    let def = &tasks[0].task;
    let files: Vec<String> = [&def.train, &def.dev].into_iter().flatten().map(|s| relative_name(&s.file)).collect();
    if !files.is_empty() {
        provenance.push(("dataset-files".to_string(), files.join(", ")));
    }
    let examples: Vec<&crate::data::Example> = tasks[0].train.iter().chain(&tasks[0].dev).collect();
    provenance.push(("dataset-sha256".to_string(), crate::select::features::sample_digest(&examples, 0)));
    let package = PackageInfo {
        name: job.name.to_string(),
        version: job.version.to_string(),
        task: task.clone(),
        description: job
            .description
            .map(str::to_string)
            .unwrap_or_else(|| format!("{task} source prompt (prompt tuning on {})", job.backbone.name)),
        license: job.license.to_string(),
        base_model_name: job.backbone.name.clone(),
        base_model_fingerprint: job.backbone.fingerprint.clone(),
        // What the source data looks like to the model, for `suggest`'s
        // index-only pre-filter (one forward pass over at most 1,000 inputs).
        signature: Some(task_signature(
            job.backbone.encoder(),
            &job.backbone.tokenizer,
            &tasks[0].train,
            job.section.config().max_length,
            &candle_core::Device::Cpu,
        )?),
    };
    let request = TrainRequest {
        encoder: job.backbone.encoder(),
        tokenizer: &job.backbone.tokenizer,
        sources: Vec::new(),
        tasks,
        config: job.section.config(),
        device: candle_core::Device::Cpu,
    };
    let options = TrainOptions {
        run_dir: None,
        resume: false,
        progress: job.progress,
        provenance: RunProvenance {
            model_name: job.backbone.name.clone(),
            model_fingerprint: job.backbone.fingerprint.clone(),
            backbone_parameters: job.backbone.parameters,
            ..RunProvenance::default()
        },
        interrupt: None,
    };
    train_source_prompt(request, &options, &package, &dataset, &provenance, job.out_dir, job.overwrite)
}

/// A data file's name as recorded in a package: relative paths as written
/// (`SST-2/train.tsv`), absolute ones by their file name only.
fn relative_name(file: &str) -> String {
    let path = Path::new(file);
    if path.is_absolute() {
        path.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned())
    } else {
        file.to_string()
    }
}
