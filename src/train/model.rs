//! The trainable state around a frozen encoder: one target prompt and one
//! head per task, the shared attention module G, and the frozen sources.

use std::collections::HashMap;

use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, Var, D};
use rand::rngs::StdRng;
use rand::Rng;

use crate::compose::{prepend_prompt, AttentionModule, Method, PromptMixture, TargetInit};
use crate::data::tasks::{TaskDef, TaskKind};
use crate::data::tokenize::{Batch, TextEncoder};
use crate::model::Encoder;

use super::config::TrainConfig;

/// A frozen source prompt `[m, d]` with the name it is reported under
/// (usually `package@version`).
#[derive(Debug, Clone)]
pub struct SourcePrompt {
    pub name: String,
    pub tensor: Tensor,
}

/// How a task's outputs are read off the frozen backbone.
#[derive(Debug, Clone)]
pub enum Head {
    /// Encoder-only backbones: a linear layer on the mean of the final hidden
    /// states over real positions (prompt positions included); trained.
    Linear { weight: Var, bias: Var },
    /// Text-to-text backbones (T5), as in the paper: each label string,
    /// tokenised as a decoder target, is scored by the frozen decoder (rank
    /// classification). Nothing to train: only prompts (and G) learn.
    Labels { candidates: Vec<Vec<u32>> },
}

impl Head {
    fn named_vars(&self, task: &str) -> Vec<(String, Var)> {
        match self {
            Head::Linear { weight, bias } => {
                let (w, b) = head_names(task);
                vec![(w, weight.clone()), (b, bias.clone())]
            }
            Head::Labels { .. } => Vec::new(),
        }
    }
}

/// Per-task trainable state.
#[derive(Debug, Clone)]
pub struct TaskState {
    pub task: TaskDef,
    pub target: Var,
    pub head: Head,
}

/// The whole trainable model (the encoder is passed in at each call).
#[derive(Debug, Clone)]
pub struct PromptModel {
    pub mixture: PromptMixture,
    pub attention: Option<AttentionModule>,
    pub tasks: Vec<TaskState>,
    pub source_names: Vec<String>,
    pub prompt_length: usize,
    pub hidden_size: usize,
}

/// One forward pass.
pub struct Forward {
    /// `[b, classes]` logits (summed label log-probabilities for a
    /// [`Head::Labels`] head), or `[b, 1]` for regression.
    pub outputs: Tensor,
    /// `[b, t+1]` weights over sources then target, when the method mixes.
    pub weights: Option<Tensor>,
}

pub fn prompt_name(task: &str) -> String {
    format!("task.{task}.prompt")
}
fn head_names(task: &str) -> (String, String) {
    (format!("task.{task}.head.weight"), format!("task.{task}.head.bias"))
}

/// The label strings of a classification task as decoder targets.
fn label_head(task: &TaskDef, tokenizer: &dyn TextEncoder) -> Result<Head> {
    let TaskKind::Classification { labels } = &task.kind else {
        bail!(
            "task `{}` is a regression task; a text-to-text backbone (T5) is trained here by scoring label strings, \
             which needs classification labels; use an encoder-only backbone for regression",
            task.name
        );
    };
    let mut candidates: Vec<Vec<u32>> = Vec::with_capacity(labels.len());
    for label in labels {
        let ids = tokenizer
            .encode(label, None, 64)
            .with_context(|| format!("tokenizing label `{label}` of task `{}`", task.name))?;
        if ids.is_empty() {
            bail!("label `{label}` of task `{}` tokenizes to nothing", task.name);
        }
        if let Some(i) = candidates.iter().position(|c| *c == ids) {
            bail!("labels `{}` and `{label}` of task `{}` tokenize to the same ids; rename one", labels[i], task.name);
        }
        candidates.push(ids);
    }
    Ok(Head::Labels { candidates })
}

/// Mean L2 norm of the rows of an `[m, d]` prompt.
pub fn mean_row_norm(prompt: &Tensor) -> Result<f64> {
    let norms = prompt.to_dtype(DType::F32)?.sqr()?.sum(1)?.sqrt()?.to_vec1::<f32>()?;
    Ok(norms.iter().map(|&v| v as f64).sum::<f64>() / norms.len().max(1) as f64)
}

/// `prompt` with its rows scaled so their mean norm is `norm` (directions kept).
fn with_mean_row_norm(prompt: &Tensor, norm: f64) -> Result<Tensor> {
    let current = mean_row_norm(prompt)?;
    if current <= 0.0 {
        return Ok(prompt.clone());
    }
    Ok((prompt * (norm / current))?)
}

fn uniform_tensor(rng: &mut StdRng, shape: (usize, usize), bound: f32, device: &Device) -> Result<Tensor> {
    if bound <= 0.0 || !bound.is_finite() {
        return Ok(Tensor::zeros(shape, DType::F32, device)?);
    }
    let data: Vec<f32> = (0..shape.0 * shape.1).map(|_| rng.gen_range(-bound..bound)).collect();
    Ok(Tensor::from_vec(data, shape, device)?)
}

impl PromptModel {
    /// Fresh state for `tasks`. The tokenizer gives the vocabulary size for
    /// vocabulary init and encodes label strings for text-to-text backbones.
    pub fn new(
        encoder: &dyn Encoder,
        tokenizer: &dyn TextEncoder,
        sources: &[SourcePrompt],
        tasks: &[TaskDef],
        config: &TrainConfig,
        rng: &mut StdRng,
        device: &Device,
    ) -> Result<Self> {
        let vocab_size = tokenizer.vocab_size();
        if tasks.is_empty() {
            bail!("no task to train");
        }
        let d = encoder.hidden_size();
        let mut m = config.prompt_length;
        for s in sources {
            let (sm, sd) = s.tensor.dims2().with_context(|| format!("source prompt `{}` must be [m, d]", s.name))?;
            if sd != d {
                bail!(
                    "source prompt `{}` has width {sd} but the model's hidden size is {d}; it was trained for another base model",
                    s.name
                );
            }
            if sm != sources[0].tensor.dims()[0] {
                bail!(
                    "source prompts `{}` and `{}` have different lengths; ATTEMPT needs equal lengths",
                    sources[0].name,
                    s.name
                );
            }
            m = sm;
        }
        // With `prompt_row_norm`, every source (and so a target copied from
        // one) is rescaled to that mean row norm before it is mixed.
        let scaled: Vec<Tensor> = sources
            .iter()
            .map(|s| {
                let t = s.tensor.to_dtype(DType::F32)?.to_device(device)?;
                match config.prompt_row_norm {
                    Some(norm) => with_mean_row_norm(&t, norm),
                    None => Ok(t),
                }
            })
            .collect::<Result<_>>()?;
        let stacked = if scaled.is_empty() { None } else { Some(Tensor::stack(&scaled, 0)?) };
        let method = config.method;
        let mixture = PromptMixture::new(method, if method.mixes_sources() { stacked.clone() } else { None })
            .map_err(|e| anyhow!("{e}"))?;
        let attention = if method.uses_attention() {
            Some(AttentionModule::new(d, config.attention.clone(), rng, device)?)
        } else {
            None
        };
        let init = config.effective_target_init(!sources.is_empty());
        let mut states = Vec::new();
        for task in tasks {
            let target = match &init {
                TargetInit::Source { index } => {
                    let s = scaled.get(*index).ok_or_else(|| {
                        anyhow!(
                            "target init from source #{index}, but only {} source prompt(s) are available",
                            sources.len()
                        )
                    })?;
                    s.copy()?
                }
                TargetInit::Vocab => {
                    if vocab_size < 2 {
                        bail!("vocabulary init needs a vocabulary; choose `random` init");
                    }
                    let range = config.vocab_range(vocab_size)?;
                    let ids: Vec<u32> = (0..m).map(|_| rng.gen_range(range.clone())).collect();
                    let ids = Tensor::from_vec(ids, (1, m), device)?;
                    encoder.embed_tokens(&ids)?.squeeze(0)?.to_dtype(DType::F32)?.detach()
                }
                TargetInit::Random { scale } => uniform_tensor(rng, (m, d), *scale, device)?,
            };
            let head = match encoder.label_scorer() {
                None => {
                    let out = task.kind.output_size();
                    let bound = 1.0 / (d as f32).sqrt();
                    Head::Linear {
                        weight: Var::from_tensor(&uniform_tensor(rng, (out, d), bound, device)?)?,
                        bias: Var::zeros(out, DType::F32, device)?,
                    }
                }
                Some(_) => label_head(task, tokenizer)?,
            };
            states.push(TaskState { task: task.clone(), target: Var::from_tensor(&target)?, head });
        }
        Ok(Self {
            mixture,
            attention,
            tasks: states,
            source_names: sources.iter().map(|s| s.name.clone()).collect(),
            prompt_length: m,
            hidden_size: d,
        })
    }

    pub fn method(&self) -> Method {
        self.mixture.method
    }

    pub fn task_index(&self, name: &str) -> Result<usize> {
        self.tasks.iter().position(|t| t.task.name == name).ok_or_else(|| {
            let known: Vec<&str> = self.tasks.iter().map(|t| t.task.name.as_str()).collect();
            anyhow!("task `{name}` is not part of this model; it has: {}", known.join(", "))
        })
    }

    /// Names of the mixture's columns: sources, then `target:<task>`.
    pub fn mixture_names(&self, task: usize) -> Vec<String> {
        let mut names = if self.mixture.sources.is_some() { self.source_names.clone() } else { Vec::new() };
        names.push(format!("target:{}", self.tasks[task].task.name));
        names
    }

    /// Target prompts (learning rate `lr_prompt`).
    pub fn prompt_vars(&self) -> Vec<(String, Var)> {
        self.tasks.iter().map(|t| (prompt_name(&t.task.name), t.target.clone())).collect()
    }

    /// G and heads (learning rate `lr_other`).
    pub fn other_vars(&self) -> Vec<(String, Var)> {
        let mut v = self.attention.as_ref().map(|a| a.named_vars()).unwrap_or_default();
        for t in &self.tasks {
            v.extend(t.head.named_vars(&t.task.name));
        }
        v
    }

    pub fn named_vars(&self) -> Vec<(String, Var)> {
        let mut v = self.prompt_vars();
        v.extend(self.other_vars());
        v
    }

    pub fn trainable_parameter_count(&self) -> usize {
        self.named_vars().iter().map(|(_, v)| v.elem_count()).sum()
    }

    /// Vars that must receive a gradient from a batch of `task`.
    pub fn vars_for_task(&self, task: usize) -> Vec<(String, Var)> {
        let t = &self.tasks[task];
        let mut v = vec![(prompt_name(&t.task.name), t.target.clone())];
        v.extend(t.head.named_vars(&t.task.name));
        if let Some(a) = &self.attention {
            v.extend(a.named_vars());
        }
        v
    }

    /// Forward a batch of examples of task number `task`.
    pub fn forward(&self, encoder: &dyn Encoder, task: usize, batch: &Batch) -> Result<Forward> {
        let state = &self.tasks[task];
        let embeds = encoder.embed_tokens(&batch.ids)?;
        let composed = self.mixture.compose(state.target.as_tensor(), self.attention.as_ref(), &embeds, &batch.mask)?;
        let (x, mask) = prepend_prompt(&composed.prompt, &embeds, &batch.mask)?;
        // The text after the prompt is frozen: no input gradient for it.
        let hidden = encoder.encode_prompted(&x, &mask, composed.prompt.dim(1)?)?;
        let mask = mask.to_dtype(hidden.dtype())?;
        let outputs = match &state.head {
            Head::Linear { weight, bias } => {
                let summed = hidden.broadcast_mul(&mask.unsqueeze(D::Minus1)?)?.sum(1)?;
                let pooled = summed.broadcast_div(&mask.sum_keepdim(1)?)?;
                pooled.matmul(&weight.as_tensor().t()?)?.broadcast_add(bias.as_tensor())?
            }
            Head::Labels { candidates } => {
                let scorer = encoder.label_scorer().ok_or_else(|| {
                    anyhow!("task `{}` scores label strings, but this backbone has no decoder", state.task.name)
                })?;
                scorer.score_candidates(&hidden, &mask, candidates)?
            }
        };
        Ok(Forward { outputs, weights: composed.weights })
    }

    /// Mean loss of a forward pass against gold labels.
    pub fn loss(&self, task: usize, outputs: &Tensor, labels: &[crate::data::Label]) -> Result<Tensor> {
        let device = outputs.device();
        match self.tasks[task].task.kind {
            TaskKind::Classification { .. } => {
                let ids: Vec<u32> = labels
                    .iter()
                    .map(|l| match l {
                        crate::data::Label::Class(c) => Ok(*c as u32),
                        crate::data::Label::Score(_) => Err(anyhow!("a classification task got a numeric label")),
                    })
                    .collect::<Result<_>>()?;
                let n = ids.len();
                if let Head::Labels { candidates } = &self.tasks[task].head {
                    // T5's own objective: token-mean cross-entropy of the gold label string.
                    let tokens: usize = ids.iter().map(|&c| candidates.get(c as usize).map_or(0, Vec::len)).sum();
                    let gold = outputs.gather(&Tensor::from_vec(ids, (n, 1), device)?, 1)?;
                    return Ok((gold.sum_all()?.neg()? / tokens.max(1) as f64)?);
                }
                Ok(candle_nn::loss::cross_entropy(outputs, &Tensor::from_vec(ids, n, device)?)?)
            }
            TaskKind::Regression => {
                let ys: Vec<f32> = labels.iter().map(|l| l.as_score() as f32).collect();
                let n = ys.len();
                let y = Tensor::from_vec(ys, (n, 1), device)?;
                Ok(outputs.sub(&y)?.sqr()?.mean_all()?)
            }
        }
    }

    /// Start task `task`'s regression head at the mean of its training labels
    /// (a no-op for classification). With a zero bias the squared error is
    /// mostly the labels' offset (STS-B: mean 2.7 on 0–5 against a variance
    /// of 2.1) and the bias moves by at most the head's learning rate a step,
    /// so for a short run's first hundred steps every gradient, the prompt's
    /// included, mostly says "predict higher" instead of which pairs are more
    /// similar. Whether a run then learned STS-B at all was a matter of luck
    /// (docs/experiments/select-stsb-2026-12-07.md).
    pub fn start_at_label_mean<'a>(
        &self,
        task: usize,
        labels: impl IntoIterator<Item = &'a crate::data::Label>,
    ) -> Result<()> {
        let state = self.tasks.get(task).ok_or_else(|| anyhow!("no task #{task}"))?;
        let (TaskKind::Regression, Head::Linear { bias, .. }) = (&state.task.kind, &state.head) else {
            return Ok(());
        };
        let scores: Vec<f64> = labels.into_iter().map(|l| l.as_score()).collect();
        if scores.is_empty() {
            return Ok(());
        }
        let mean = scores.iter().sum::<f64>() / scores.len() as f64;
        bias.set(&Tensor::full(mean as f32, bias.shape(), bias.device())?)?;
        Ok(())
    }

    /// Current values of every trainable tensor, by checkpoint name.
    pub fn state_dict(&self) -> Result<HashMap<String, Tensor>> {
        self.named_vars().into_iter().map(|(n, v)| Ok((n, v.as_tensor().copy()?))).collect()
    }

    /// Overwrite trainable tensors from `state` (names and shapes must match).
    pub fn load_state_dict(&self, state: &HashMap<String, Tensor>) -> Result<()> {
        for (name, var) in self.named_vars() {
            let t = state.get(&name).ok_or_else(|| anyhow!("checkpoint has no tensor `{name}`"))?;
            if t.shape() != var.shape() {
                bail!("checkpoint tensor `{name}` is {:?} but the model expects {:?}", t.shape(), var.shape());
            }
            var.set(&t.to_dtype(DType::F32)?.to_device(var.device())?)?;
        }
        Ok(())
    }
}
