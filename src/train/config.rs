//! Training hyper-parameters. Serialisable so `run.json` records them and
//! `attempt.toml` can set them.

use serde::{Deserialize, Serialize};

use crate::compose::{AttentionConfig, Method, TargetInit};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case", deny_unknown_fields)]
pub struct TrainConfig {
    pub method: Method,
    /// Prompt length m when there are no sources (with sources, m is theirs).
    pub prompt_length: usize,
    pub epochs: usize,
    /// Stop after this many optimiser steps (overrides `epochs` when smaller).
    pub max_steps: Option<usize>,
    pub batch_size: usize,
    /// Maximum input tokens per example (prompt excluded).
    pub max_length: usize,
    /// Learning rate of the target prompts.
    pub lr_prompt: f64,
    /// Learning rate of the attention module G and the heads.
    pub lr_other: f64,
    pub weight_decay: f64,
    /// Fraction of the steps spent in linear warm-up, then linear decay to 0.
    pub warmup_ratio: f64,
    /// Global gradient-norm clipping threshold (0 disables).
    pub max_grad_norm: f64,
    pub seed: u64,
    /// Target initialisation; `None` = method default (first source for
    /// attempt/uniform/spot, vocabulary embeddings for pt).
    pub target_init: Option<TargetInit>,
    /// Rescale every source prompt (and a target initialised from one) to
    /// this mean row norm before mixing; `None` keeps them as trained (the
    /// paper). Trained prompts here have row norms of 25–45.
    pub prompt_row_norm: Option<f64>,
    pub attention: AttentionConfig,
    /// Token-id range `[start, end)` sampled for vocabulary init. Default:
    /// ids 1000..6000 for vocabularies of 10,000+ (past BERT's special and
    /// `[unused]` ids, among frequent word pieces, after Lester et al.'s
    /// "5,000 most common tokens"), else every id but 0.
    pub vocab_init_range: Option<[u32; 2]>,
    /// Train the per-task heads (default). When false they keep their seeded
    /// random init, so only the prompts (and G) can fit the task.
    pub train_heads: bool,
    /// Evaluate at most this many dev examples per task (None = all).
    pub max_eval_examples: Option<usize>,
    /// Evaluate on dev (and select the best checkpoint) every this many
    /// epochs and after the last; few-shot epochs are a step or two long.
    pub eval_every: usize,
    pub eval_batch_size: usize,
    /// Batch inputs of similar token length together (shuffled megabatches
    /// sorted by length, see `train::batches`): less padding, the same
    /// examples each epoch. Off by default, so runs stay as they were.
    pub group_by_length: bool,
}

impl Default for TrainConfig {
    fn default() -> Self {
        Self {
            method: Method::Attempt,
            prompt_length: 100,
            epochs: 3,
            max_steps: None,
            batch_size: 16,
            max_length: 128,
            lr_prompt: 0.3,
            lr_other: 5e-3,
            weight_decay: 1e-5,
            warmup_ratio: 0.06,
            max_grad_norm: 1.0,
            seed: 42,
            target_init: None,
            prompt_row_norm: None,
            attention: AttentionConfig::default(),
            vocab_init_range: None,
            train_heads: true,
            max_eval_examples: None,
            eval_every: 1,
            eval_batch_size: 64,
            group_by_length: false,
        }
    }
}

impl TrainConfig {
    /// The target initialisation actually used.
    pub fn effective_target_init(&self, has_sources: bool) -> TargetInit {
        match (&self.target_init, self.method, has_sources) {
            (Some(init), _, _) => init.clone(),
            (None, crate::compose::Method::Pt, _) | (None, _, false) => TargetInit::Vocab,
            (None, _, true) => TargetInit::Source { index: 0 },
        }
    }

    /// The id range used for vocabulary init with a vocabulary of `vocab_size`.
    pub fn vocab_range(&self, vocab_size: usize) -> anyhow::Result<std::ops::Range<u32>> {
        let v = vocab_size as u32;
        let [start, end] = self.vocab_init_range.unwrap_or(if v >= 10_000 { [1000, 6000] } else { [1, v] });
        if start >= end || end > v {
            anyhow::bail!("vocabulary init range {start}..{end} does not fit a vocabulary of {vocab_size} ids");
        }
        Ok(start..end)
    }

    /// Check values a user could get wrong.
    pub fn validate(&self) -> anyhow::Result<()> {
        if self.batch_size == 0 || self.eval_batch_size == 0 {
            anyhow::bail!("batch size must be at least 1");
        }
        if self.prompt_length == 0 {
            anyhow::bail!("prompt length must be at least 1");
        }
        if !(0.0..=1.0).contains(&self.warmup_ratio) {
            anyhow::bail!("warmup ratio must be within 0..=1, got {}", self.warmup_ratio);
        }
        if self.epochs == 0 && self.max_steps.is_none() {
            anyhow::bail!("set epochs ≥ 1 or max-steps");
        }
        if !(self.lr_prompt > 0.0 && self.lr_other > 0.0) {
            anyhow::bail!("learning rates must be positive");
        }
        if let Some(n) = self.prompt_row_norm {
            if !(n > 0.0 && n.is_finite()) {
                anyhow::bail!("the prompt row norm must be a positive number, got {n}");
            }
        }
        if let Some(t) = self.attention.temperature {
            if !(t > 0.0 && t.is_finite()) {
                anyhow::bail!("the attention temperature must be a positive number, got {t}");
            }
        }
        Ok(())
    }
}
