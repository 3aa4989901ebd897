//! Turning a trained prompt into a package authoring directory
//! (`Prompt.toml` + `prompt.safetensors`), ready for `attempt-pkg publish`.

use std::collections::HashMap;
use std::path::Path;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use serde::Serialize;

use super::model::prompt_name;
use super::rundir::{load_tensors, save_tensors, CHECKPOINT};
use crate::fsutil::write_atomic;

pub const MANIFEST: &str = "Prompt.toml";
pub const PROMPT_FILE: &str = "prompt.safetensors";
/// Name of the tensor inside `prompt.safetensors`.
pub const PROMPT_TENSOR: &str = "prompt";

/// The `[package]` and `[base-model]` facts of the new package.
#[derive(Debug, Clone, PartialEq)]
pub struct PackageInfo {
    pub name: String,
    pub version: String,
    pub task: String,
    pub description: String,
    pub license: String,
    pub base_model_name: String,
    /// `sha256:<64 hex>` of the frozen base model.
    pub base_model_fingerprint: String,
    /// The source data's task signature (`select::signature`), when known.
    pub signature: Option<registry_index::Signature>,
}

/// Training facts, written as `[provenance]` strings and a `[metrics]` value.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct TrainingInfo {
    pub method: String,
    pub steps: usize,
    pub seed: u64,
    pub metric: String,
    pub metric_value: f64,
    /// Where the data came from: the task and, for `train-source`, the
    /// files (relative names) and a digest of the examples. Never a local
    /// absolute path: a package is public.
    pub dataset: String,
    /// Extra `[provenance]` strings (e.g. `dataset-sha256`).
    pub provenance: Vec<(String, String)>,
    /// For a source prompt: whether it beat an input-blind predictor on its
    /// own task, recorded in `[metrics]` for `suggest`'s gate.
    pub own_task: Option<crate::data::baseline::OwnTaskCheck>,
}

#[derive(Serialize)]
struct Manifest<'a> {
    /// 2 when there is a `[signature]`, else left out (format 1).
    #[serde(skip_serializing_if = "Option::is_none")]
    format: Option<u32>,
    package: PackageTable<'a>,
    #[serde(rename = "base-model")]
    base_model: BaseModelTable<'a>,
    prompt: PromptTable<'a>,
    /// The package format has free-form string `[provenance]` and finite
    /// `[metrics]`; training facts go there.
    provenance: std::collections::BTreeMap<String, String>,
    metrics: std::collections::BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    signature: Option<&'a registry_index::Signature>,
}

#[derive(Serialize)]
struct PackageTable<'a> {
    name: &'a str,
    version: &'a str,
    task: &'a str,
    description: &'a str,
    license: &'a str,
}

#[derive(Serialize)]
struct BaseModelTable<'a> {
    name: &'a str,
    fingerprint: &'a str,
    #[serde(rename = "hidden-size")]
    hidden_size: usize,
}

#[derive(Serialize)]
struct PromptTable<'a> {
    file: &'a str,
}

/// The text of `Prompt.toml`.
pub fn manifest_toml(info: &PackageInfo, hidden_size: usize, training: &TrainingInfo) -> Result<String> {
    let manifest = Manifest {
        format: info.signature.as_ref().map(|_| crate::package::SIGNATURE_FORMAT),
        package: PackageTable {
            name: &info.name,
            version: &info.version,
            task: &info.task,
            description: &info.description,
            license: &info.license,
        },
        base_model: BaseModelTable {
            name: &info.base_model_name,
            fingerprint: &info.base_model_fingerprint,
            hidden_size,
        },
        prompt: PromptTable { file: PROMPT_FILE },
        provenance: [
            ("training-method", training.method.clone()),
            ("training-steps", training.steps.to_string()),
            ("training-seed", training.seed.to_string()),
            ("dataset", training.dataset.clone()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .chain(training.provenance.iter().cloned())
        .collect(),
        metrics: if training.metric_value.is_finite() {
            std::iter::once((training.metric.clone(), training.metric_value))
                .chain(training.own_task.iter().flat_map(|c| c.manifest_entries()))
                .filter(|(_, v)| v.is_finite())
                .collect()
        } else {
            Default::default()
        },
        signature: info.signature.as_ref(),
    };
    Ok(toml::to_string(&manifest)?)
}

fn check_info(info: &PackageInfo) -> Result<()> {
    semver::Version::parse(&info.version)
        .with_context(|| format!("package version `{}` is not semver (e.g. 0.1.0)", info.version))?;
    let fp = &info.base_model_fingerprint;
    let hex = fp.strip_prefix("sha256:").unwrap_or("");
    if hex.len() != 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()) {
        bail!("base-model fingerprint `{fp}` must look like sha256:<64 lowercase hex digits>");
    }
    if info.name.is_empty() {
        bail!("package name is empty");
    }
    Ok(())
}

/// Write `dir/Prompt.toml` and `dir/prompt.safetensors` for `prompt` `[m, d]`.
/// Refuses to replace an existing manifest unless `overwrite`.
pub fn write_authoring_dir(
    dir: &Path,
    info: &PackageInfo,
    training: &TrainingInfo,
    prompt: &Tensor,
    overwrite: bool,
) -> Result<()> {
    check_info(info)?;
    let (_, d) = prompt.dims2().context("the prompt must be a [m, d] matrix")?;
    let manifest_path = dir.join(MANIFEST);
    if manifest_path.exists() && !overwrite {
        bail!("{} already exists; choose another directory or allow overwriting", manifest_path.display());
    }
    let toml = manifest_toml(info, d, training)?;
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let tensors: HashMap<String, Tensor> =
        [(PROMPT_TENSOR.to_string(), prompt.to_dtype(DType::F32)?.to_device(&Device::Cpu)?.contiguous()?)].into();
    // Tensor first: a directory with a manifest always has its tensor.
    save_tensors(&dir.join(PROMPT_FILE), &tensors)?;
    write_atomic(&manifest_path, toml.as_bytes())
}

/// Read the trained target prompt of `task` from a run's best checkpoint.
pub fn target_prompt_from_run(run_dir: &Path, task: &str) -> Result<Tensor> {
    let path = run_dir.join(CHECKPOINT);
    let tensors = load_tensors(&path, &Device::Cpu)?;
    let key = prompt_name(task);
    tensors.get(&key).cloned().ok_or_else(|| {
        let mut tasks: Vec<String> = tensors
            .keys()
            .filter_map(|k| k.strip_prefix("task.").and_then(|k| k.strip_suffix(".prompt")).map(str::to_string))
            .collect();
        tasks.sort();
        anyhow!("run {} has no target prompt for task `{task}`; it has: {}", run_dir.display(), tasks.join(", "))
    })
}

/// `package --from-run RUN --task T`: the trained target prompt of `task`
/// becomes an authoring directory (a new source for later runs).
pub fn export_from_run(
    run_dir: &Path,
    task: &str,
    out_dir: &Path,
    info: &PackageInfo,
    training: &TrainingInfo,
    overwrite: bool,
) -> Result<()> {
    let prompt = target_prompt_from_run(run_dir, task)?;
    write_authoring_dir(out_dir, info, training, &prompt, overwrite)
}

/// `[training]` facts of task number `task` of a finished run.
pub fn training_info(
    outcome: &super::trainer::TrainOutcome,
    config: &super::config::TrainConfig,
    task: usize,
    dataset: &str,
) -> Result<TrainingInfo> {
    let state = outcome.model.tasks.get(task).ok_or_else(|| anyhow!("no task #{task} in this run"))?;
    let metric = state.task.primary_metric().as_str().to_string();
    let metric_value = outcome.best_eval.get(task).and_then(|e| e.metrics.get(&metric).copied()).unwrap_or(f64::NAN);
    Ok(TrainingInfo {
        method: config.method.as_str().to_string(),
        steps: outcome.steps,
        seed: config.seed,
        metric,
        metric_value,
        dataset: dataset.to_string(),
        provenance: Vec::new(),
        own_task: None,
    })
}
