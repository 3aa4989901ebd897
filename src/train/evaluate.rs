//! Evaluation on labelled examples and prediction on raw inputs.

use anyhow::Result;
use candle_core::{Device, D};
use serde::Serialize;

use crate::data::metrics::{compute, Predictions};
use crate::data::tasks::TaskKind;
use crate::data::tokenize::{collate, TextEncoder};
use crate::data::{Example, Label};
use crate::model::Encoder;

use super::model::PromptModel;
use super::rundir::TaskMetrics;

/// Metrics and mean mixture weights of one task on one split.
#[derive(Debug, Clone, Serialize)]
pub struct EvalResult {
    pub task: String,
    pub metrics: TaskMetrics,
    /// Mean weights over the evaluated examples (sources then target).
    pub mean_attention: Option<Vec<f32>>,
    /// How instance-wise the mixture is: the standard deviation of each
    /// weight across the evaluated examples, averaged over the prompts
    /// (0 when every example gets the same mixture).
    pub attention_spread: Option<f32>,
    pub mixture_names: Vec<String>,
    pub predictions: Vec<PredictedLabel>,
}

/// A prediction: a class (with its name and probabilities) or a score.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum PredictedLabel {
    Class { index: usize, label: String, probabilities: Vec<f32> },
    Score { score: f32 },
}

/// The frozen side of a model: encoder, its tokenizer and the device.
#[derive(Clone, Copy)]
pub struct Backbone<'a> {
    pub encoder: &'a dyn Encoder,
    pub tokenizer: &'a dyn TextEncoder,
    pub device: &'a Device,
}

/// Raw outputs for a set of examples.
struct Outputs {
    labels: Vec<PredictedLabel>,
    weights: Vec<Vec<f32>>,
}

fn run(
    model: &PromptModel,
    backbone: Backbone<'_>,
    task: usize,
    examples: &[&Example],
    batch_size: usize,
    max_length: usize,
) -> Result<Outputs> {
    let Backbone { encoder, tokenizer, device } = backbone;
    let mut labels = Vec::with_capacity(examples.len());
    let mut weights = Vec::new();
    let names = model.tasks[task].task.labels().to_vec();
    let regression = matches!(model.tasks[task].task.kind, TaskKind::Regression);
    for chunk in examples.chunks(batch_size.max(1)) {
        let batch = collate(chunk, tokenizer, max_length, device)?;
        let fwd = model.forward(encoder, task, &batch)?;
        let out = fwd.outputs.detach();
        if regression {
            for s in out.squeeze(1)?.to_vec1::<f32>()? {
                labels.push(PredictedLabel::Score { score: s });
            }
        } else {
            let probs = candle_nn::ops::softmax(&out, D::Minus1)?.to_vec2::<f32>()?;
            for p in probs {
                let index = p.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
                let label = names.get(index).cloned().unwrap_or_else(|| index.to_string());
                labels.push(PredictedLabel::Class { index, label, probabilities: p });
            }
        }
        if let Some(w) = fwd.weights {
            weights.extend(w.detach().to_vec2::<f32>()?);
        }
    }
    Ok(Outputs { labels, weights })
}

/// Mean over columns of each column's standard deviation across rows.
fn column_spread(rows: &[Vec<f32>]) -> Option<f32> {
    let mean = mean_rows(rows)?;
    let n = rows.len() as f64;
    let total: f64 = (0..mean.len())
        .map(|j| (rows.iter().map(|r| (r[j] as f64 - mean[j] as f64).powi(2)).sum::<f64>() / n).sqrt())
        .sum();
    Some((total / mean.len().max(1) as f64) as f32)
}

fn mean_rows(rows: &[Vec<f32>]) -> Option<Vec<f32>> {
    let first = rows.first()?;
    let mut acc = vec![0f32; first.len()];
    for r in rows {
        for (a, v) in acc.iter_mut().zip(r) {
            *a += v;
        }
    }
    Some(acc.into_iter().map(|a| a / rows.len() as f32).collect())
}

/// Evaluate task number `task` on labelled `examples`.
pub fn evaluate(
    model: &PromptModel,
    backbone: Backbone<'_>,
    task: usize,
    examples: &[Example],
    batch_size: usize,
    max_length: usize,
) -> Result<EvalResult> {
    let refs: Vec<&Example> = examples.iter().collect();
    let out = run(model, backbone, task, &refs, batch_size, max_length)?;
    let preds = as_predictions(&model.tasks[task].task.kind, &out.labels);
    let gold: Vec<Label> = examples.iter().map(|e| e.label).collect();
    let def = &model.tasks[task].task;
    let metrics = def.metrics.iter().map(|m| (m.as_str().to_string(), compute(*m, &preds, &gold))).collect();
    Ok(EvalResult {
        task: def.name.clone(),
        metrics,
        mean_attention: mean_rows(&out.weights),
        attention_spread: column_spread(&out.weights),
        mixture_names: model.mixture_names(task),
        predictions: out.labels,
    })
}

/// Predicted labels as the metrics take them.
pub fn as_predictions(kind: &TaskKind, labels: &[PredictedLabel]) -> Predictions {
    match kind {
        TaskKind::Regression => Predictions::Scores(
            labels.iter().map(|p| if let PredictedLabel::Score { score } = p { *score } else { f32::NAN }).collect(),
        ),
        TaskKind::Classification { .. } => Predictions::Classes(
            labels.iter().map(|p| if let PredictedLabel::Class { index, .. } = p { *index } else { 0 }).collect(),
        ),
    }
}

/// One prediction with the mixture weights used for it.
#[derive(Debug, Clone, Serialize)]
pub struct Prediction {
    pub task: String,
    pub label: PredictedLabel,
    /// `(prompt name, weight)`: sources then the target; empty for pt/spot.
    pub attention: Vec<(String, f32)>,
}

/// Predict one input of task `task` (by name).
pub fn predict(
    model: &PromptModel,
    backbone: Backbone<'_>,
    task: &str,
    text_a: &str,
    text_b: Option<&str>,
    max_length: usize,
) -> Result<Prediction> {
    let t = model.task_index(task)?;
    let ex = Example { text_a: text_a.to_string(), text_b: text_b.map(str::to_string), label: Label::Class(0) };
    let out = run(model, backbone, t, &[&ex], 1, max_length)?;
    let label = out.labels.into_iter().next().ok_or_else(|| anyhow::anyhow!("the model produced no output"))?;
    let attention = out
        .weights
        .first()
        .map(|w| model.mixture_names(t).into_iter().zip(w.iter().copied()).collect())
        .unwrap_or_default();
    Ok(Prediction { task: task.to_string(), label, attention })
}
