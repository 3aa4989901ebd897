//! The run directory: checkpoints, `metrics.json`, attention weights (CSV and
//! SVG), `run.json` and the resume state. Every file is written atomically.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use serde::{Deserialize, Serialize};

use super::config::TrainConfig;
use crate::fsutil::{write_atomic, write_atomic_with};

pub const CHECKPOINT: &str = "checkpoint.safetensors";
pub const LAST_CHECKPOINT: &str = "last.safetensors";
pub const METRICS: &str = "metrics.json";
pub const RUN_RECORD: &str = "run.json";
pub const RESUME_STATE: &str = "resume.json";

/// Save tensors as safetensors, atomically.
pub fn save_tensors(path: &Path, tensors: &HashMap<String, Tensor>) -> Result<()> {
    write_atomic_with(path, |tmp| Ok(candle_core::safetensors::save(tensors, tmp)?))
}

pub fn load_tensors(path: &Path, device: &Device) -> Result<HashMap<String, Tensor>> {
    candle_core::safetensors::load(path, device)
        .with_context(|| format!("cannot read checkpoint {} (is it a safetensors file?)", path.display()))
}

/// Metrics of one evaluation of one task.
pub type TaskMetrics = BTreeMap<String, f64>;

/// One line of `metrics.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EpochRecord {
    pub epoch: usize,
    pub step: usize,
    pub train_loss: f64,
    pub tasks: BTreeMap<String, TaskMetrics>,
    /// Mean over tasks of each task's primary metric (selection score).
    pub score: f64,
    pub seconds: f64,
    /// Mean row norm of each task's target prompt at this evaluation (how
    /// far training moved the prompt's scale; word embeddings are ≈ 1–2).
    #[serde(default)]
    pub prompt_row_norms: BTreeMap<String, f64>,
}

/// Where a run came from; everything needed to reproduce it. The CLI fills
/// what the library cannot know (fingerprint, lock checksum, sources).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunProvenance {
    pub model_name: String,
    pub model_fingerprint: String,
    pub lock_checksum: Option<String>,
    /// Frozen backbone parameter count (for the trainable-% figure).
    pub backbone_parameters: usize,
    /// Source prompts as `name@version` with their blob checksums.
    pub sources: Vec<SourceRecord>,
    /// Anything else worth recording (data paths, command line…).
    pub extra: BTreeMap<String, String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SourceRecord {
    pub name: String,
    pub version: String,
    pub checksum: String,
}

/// `run.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRecord {
    pub tool: String,
    pub tool_version: String,
    pub candle_version: String,
    pub config: TrainConfig,
    pub tasks: Vec<String>,
    /// Full task definitions (labels, metrics) so `eval`/`predict` can
    /// rebuild the model from the run alone.
    pub task_defs: Vec<crate::data::tasks::TaskDef>,
    /// Source prompt names in mixture order.
    pub source_names: Vec<String>,
    pub prompt_length: usize,
    pub hidden_size: usize,
    pub provenance: RunProvenance,
    pub trainable_parameters: usize,
    pub trainable_percent_of_backbone: Option<f64>,
    pub steps: usize,
    pub best_epoch: Option<usize>,
    pub best_score: Option<f64>,
    pub interrupted: bool,
    /// The kernels the run computed with; fp32 results differ across them in
    /// the last bits, and `bf16` rounds the frozen products' operands to bf16.
    /// Absent in runs recorded before it was kept.
    #[serde(default)]
    pub kernels: Option<RunKernels>,
}

/// Which matrix-product backend and which build of attempt-pkg's own
/// kernels ran (see README, Kernel paths).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunKernels {
    /// `gemm`, `avx2`, `bf16`, `mkl`, `openblas` or `blis`.
    pub gemm: String,
    /// `avx2` or `portable`.
    pub kernel_path: String,
}

impl RunKernels {
    /// What this process runs.
    pub fn current() -> RunKernels {
        RunKernels {
            gemm: crate::model::ops::blas::gemm_backend().as_str().to_string(),
            kernel_path: crate::model::ops::kernel_path().as_str().to_string(),
        }
    }
}

/// Resume bookkeeping (`resume.json`) next to `last.safetensors`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ResumeState {
    /// Epochs fully done.
    pub epochs_done: usize,
    /// Optimiser steps taken.
    pub step: usize,
    pub best_score: Option<f64>,
    pub best_epoch: Option<usize>,
    pub history: Vec<EpochRecord>,
    /// What a run interrupted mid-epoch had done of epoch `epochs_done`.
    #[serde(default)]
    pub partial_epoch: PartialEpoch,
    /// What the run was started with (absent in a resume state written by
    /// an older attempt-pkg, which is then resumed unchecked).
    #[serde(default)]
    pub started_with: Option<RunIdentity>,
}

/// What makes a run the same run: `--resume` refuses to continue one with
/// other settings, tasks or sources, which would silently make a run that
/// neither command describes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunIdentity {
    /// The training configuration, as JSON so that a resume state written by
    /// another version still reads (and a changed field still shows).
    pub config: serde_json::Value,
    pub tasks: Vec<TaskIdentity>,
    /// The source prompts, `name@version`, in mixture order.
    pub sources: Vec<String>,
    /// The frozen products' precision, `fp32` or `bf16` (`ATTEMPT_GEMM=bf16`):
    /// a run continued in the other would be neither. Absent when recorded
    /// by an older attempt-pkg (then not checked).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub precision: Option<String>,
}

/// A task by name and its number of training and dev examples (a changed
/// data file, `--max-train-examples` or `--few-shot` changes the counts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TaskIdentity {
    pub name: String,
    pub train: usize,
    pub dev: usize,
}

impl RunIdentity {
    /// Settings a resumed run may change: how long it goes on (a finished
    /// run can be extended) and the evaluation batch size (speed only).
    const MAY_CHANGE: [&'static str; 3] = ["epochs", "max-steps", "eval-batch-size"];

    /// One line per difference between the run as started and `now`, each
    /// naming the setting as `resume.json` does; empty if `now` continues it.
    pub fn differences(&self, now: &RunIdentity) -> Vec<String> {
        let (mut then_fields, mut now_fields) = (BTreeMap::new(), BTreeMap::new());
        flatten("", &self.config, &mut then_fields);
        flatten("", &now.config, &mut now_fields);
        let keys: std::collections::BTreeSet<&String> = then_fields.keys().chain(now_fields.keys()).collect();
        let mut lines = Vec::new();
        for key in keys {
            if Self::MAY_CHANGE.contains(&key.as_str()) {
                continue;
            }
            let (a, b) = (then_fields.get(key), now_fields.get(key));
            if a != b {
                let show = |v: Option<&serde_json::Value>| v.map_or_else(|| "not set".to_string(), |v| v.to_string());
                lines.push(format!("{key}: {} when started, {} now", show(a), show(b)));
            }
        }
        let tasks = |t: &[TaskIdentity]| {
            t.iter().map(|t| format!("{} ({} train, {} dev)", t.name, t.train, t.dev)).collect::<Vec<_>>().join(", ")
        };
        if self.tasks != now.tasks {
            lines.push(format!("tasks: {} when started, {} now", tasks(&self.tasks), tasks(&now.tasks)));
        }
        if self.sources != now.sources {
            let list = |s: &[String]| if s.is_empty() { "none".to_string() } else { s.join(", ") };
            lines.push(format!("sources: {} when started, {} now", list(&self.sources), list(&now.sources)));
        }
        if let (Some(then), Some(now)) = (&self.precision, &now.precision) {
            if then != now {
                lines.push(format!(
                    "precision of the frozen products: {then} when started, {now} now (set ATTEMPT_GEMM as when it started)"
                ));
            }
        }
        lines
    }
}

/// `{"attention": {"scores": "dot"}}` → `attention.scores = "dot"`.
fn flatten(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, serde_json::Value>) {
    match value {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                let key = if prefix.is_empty() { k.clone() } else { format!("{prefix}.{k}") };
                flatten(&key, v, out);
            }
        }
        other => {
            out.insert(prefix.to_string(), other.clone());
        }
    }
}

/// The mini-batches already taken in an unfinished epoch, and their summed
/// training loss and example count.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PartialEpoch {
    pub batches: usize,
    pub loss_sum: f64,
    pub examples: usize,
}

/// A run directory.
#[derive(Debug, Clone)]
pub struct RunDir {
    pub path: PathBuf,
}

impl RunDir {
    pub fn create(path: impl Into<PathBuf>) -> Result<Self> {
        let path = path.into();
        std::fs::create_dir_all(&path).with_context(|| format!("cannot create run directory {}", path.display()))?;
        Ok(Self { path })
    }
    pub fn file(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }
    pub fn write_json<T: Serialize>(&self, name: &str, value: &T) -> Result<()> {
        let mut s = serde_json::to_string_pretty(value)?;
        s.push('\n');
        write_atomic(&self.file(name), s.as_bytes())
    }
    pub fn read_run_record(&self) -> Result<RunRecord> {
        let p = self.file(RUN_RECORD);
        let text = std::fs::read_to_string(&p).with_context(|| {
            format!("{} is missing: is {} a finished training run?", p.display(), self.path.display())
        })?;
        serde_json::from_str(&text).with_context(|| format!("{} is not a valid run record", p.display()))
    }
    pub fn read_resume_state(&self) -> Result<ResumeState> {
        let p = self.file(RESUME_STATE);
        let text = std::fs::read_to_string(&p).with_context(|| format!("cannot resume: {} is missing", p.display()))?;
        serde_json::from_str(&text)
            .with_context(|| format!("cannot resume: {} is not a valid resume state", p.display()))
    }
    /// `attention-<task>.csv` and `.svg`.
    pub fn write_attention(&self, task: &str, names: &[String], weights: &[f32]) -> Result<()> {
        let mut csv = String::from("prompt,weight\n");
        for (n, w) in names.iter().zip(weights) {
            csv.push_str(&format!("{},{w:.6}\n", csv_field(n)));
        }
        write_atomic(&self.file(&format!("attention-{task}.csv")), csv.as_bytes())?;
        let svg = attention_svg(&format!("Attention over prompts — {task}"), names, weights);
        write_atomic(&self.file(&format!("attention-{task}.svg")), svg.as_bytes())
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}

fn xml_escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

/// A horizontal bar chart of weights in [0, 1], as standalone SVG.
pub fn attention_svg(title: &str, names: &[String], weights: &[f32]) -> String {
    let label_w = 12.0 * names.iter().map(|n| n.chars().count()).max().unwrap_or(4).min(40) as f32 * 0.62 + 20.0;
    let bar_max = 360.0;
    let row_h = 26.0;
    let width = label_w + bar_max + 80.0;
    let height = 50.0 + row_h * names.len() as f32 + 10.0;
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width:.0}\" height=\"{height:.0}\" font-family=\"sans-serif\" font-size=\"12\">\n\
<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
<text x=\"10\" y=\"22\" font-size=\"14\" font-weight=\"bold\">{}</text>\n",
        xml_escape(title)
    );
    for (i, (n, w)) in names.iter().zip(weights).enumerate() {
        let y = 40.0 + row_h * i as f32;
        let len = bar_max * w.clamp(0.0, 1.0);
        let colour = if n.starts_with("target:") { "#d95f02" } else { "#1b9e77" };
        s.push_str(&format!(
            "<text x=\"{:.0}\" y=\"{:.0}\" text-anchor=\"end\">{}</text>\n\
<rect x=\"{:.0}\" y=\"{:.0}\" width=\"{len:.1}\" height=\"{:.0}\" fill=\"{colour}\"/>\n\
<text x=\"{:.1}\" y=\"{:.0}\">{w:.3}</text>\n",
            label_w - 8.0,
            y + 15.0,
            xml_escape(n),
            label_w,
            y + 3.0,
            row_h - 8.0,
            label_w + len + 6.0,
            y + 15.0,
        ));
    }
    s.push_str("</svg>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn identity(precision: Option<&str>) -> RunIdentity {
        RunIdentity {
            config: serde_json::json!({"lr": 0.3}),
            tasks: vec![TaskIdentity { name: "rte".into(), train: 10, dev: 5 }],
            sources: vec![],
            precision: precision.map(str::to_string),
        }
    }

    #[test]
    fn a_run_is_not_continued_in_another_precision() {
        let lines = identity(Some("fp32")).differences(&identity(Some("bf16")));
        assert_eq!(lines.len(), 1, "{lines:?}");
        assert!(lines[0].contains("fp32 when started, bf16 now") && lines[0].contains("ATTEMPT_GEMM"), "{}", lines[0]);
        assert!(identity(Some("bf16")).differences(&identity(Some("bf16"))).is_empty());
        // Recorded by an older attempt-pkg: nothing to compare with.
        assert!(identity(None).differences(&identity(Some("bf16"))).is_empty());
        let old: RunIdentity = serde_json::from_str(r#"{"config": {}, "tasks": [], "sources": []}"#).unwrap();
        assert_eq!(old.precision, None);
    }
}
