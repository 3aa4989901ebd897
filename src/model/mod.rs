//! Frozen backbones (BERT family, T5) written on plain candle tensors.
//!
//! Weights are loaded as plain `Tensor`s (never `Var`s), so backprop computes
//! no weight gradients; gradients flow only to the input embeddings, which is
//! where ATTEMPT's soft prompts are prepended.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use candle_core::{Device, Tensor};

pub mod alloc;
pub mod bert;
pub mod config;
pub mod fingerprint;
pub mod ops;
mod packing;
pub mod store;
pub mod t5;
pub mod tokenizer;
pub mod weights;

use config::{Architecture, ModelConfig};
use tokenizer::ModelTokenizer;
use weights::Weights;

/// A frozen encoder that takes input embeddings, so soft prompts can be prepended.
pub trait Encoder {
    /// token ids [b, L] (u32) -> input embeddings [b, L, d] (what the prompt is concatenated with)
    fn embed_tokens(&self, ids: &Tensor) -> candle_core::Result<Tensor>;
    /// input embeddings [b, L, d] + attention mask [b, L] (1 = attend, 0 = pad; f32 or u32) -> last hidden states [b, L, d]
    fn encode(&self, input_embeds: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor>;
    /// [`encode`](Self::encode) for input embeddings whose first
    /// `prompt_len` positions are a soft prompt and whose other positions are
    /// frozen text, as training and evaluation run it: the same hidden
    /// states at every attended position, but padded positions may come out
    /// zero (nothing reads them: pooling and decoders mask them) and
    /// backward may leave the text positions' gradient zero (nothing
    /// trainable lies upstream of them). Both save work. By default it is
    /// `encode`.
    fn encode_prompted(&self, input_embeds: &Tensor, mask: &Tensor, prompt_len: usize) -> candle_core::Result<Tensor> {
        let _ = prompt_len;
        self.encode(input_embeds, mask)
    }
    fn hidden_size(&self) -> usize;
    /// The decoder of a text-to-text backbone (T5), which scores label
    /// strings; `None` for encoder-only models (they get a classifier head).
    fn label_scorer(&self) -> Option<&dyn LabelScorer> {
        None
    }
}

/// Rank classification with a frozen decoder.
pub trait LabelScorer {
    /// Encoder output [b, L, d] + mask [b, L] + candidate target sequences
    /// (token ids, usually ending in EOS) -> [b, n] summed log-probability of
    /// each candidate under teacher forcing. Differentiable in `hidden`.
    fn score_candidates(&self, hidden: &Tensor, mask: &Tensor, candidates: &[Vec<u32>]) -> candle_core::Result<Tensor>;
}

/// Any supported backbone.
pub enum AnyModel {
    Bert(bert::Bert),
    T5(t5::T5Model),
}

impl AnyModel {
    pub fn encoder(&self) -> &dyn Encoder {
        match self {
            AnyModel::Bert(m) => m,
            AnyModel::T5(m) => m,
        }
    }
}

/// A model directory loaded for use: config, frozen weights, and the
/// tokenizer and sentence-embedding pooling when the directory has them.
pub struct LoadedModel {
    pub dir: PathBuf,
    pub config: ModelConfig,
    pub model: AnyModel,
    pub tokenizer: Option<ModelTokenizer>,
    pub pooling: Option<Pooling>,
}

/// Build the model in `dir` from its config and weights.
pub fn load_model(dir: &Path, device: &Device) -> Result<LoadedModel> {
    let config = config::read_config(dir)?;
    let model = match &config {
        ModelConfig::Bert(cfg) => {
            let ws = Weights::load(dir, device)?;
            AnyModel::Bert(bert::Bert::from_weights(cfg, &ws).with_context(|| format!("loading {}", dir.display()))?)
        }
        ModelConfig::T5(cfg) => {
            let ws = Weights::load(dir, device)?;
            AnyModel::T5(t5::T5Model::new(cfg, &ws).with_context(|| format!("loading {}", dir.display()))?)
        }
    };
    let tokenizer = if dir.join(tokenizer::TOKENIZER_FILE).is_file() {
        Some(ModelTokenizer::load(dir, config.vocab_size(), config.pad_token_id())?)
    } else {
        None
    };
    let pooling = Pooling::read(dir)?;
    Ok(LoadedModel { dir: dir.to_path_buf(), config, model, tokenizer, pooling })
}

/// Sentence-transformers pooling (`modules.json`, `1_Pooling/config.json`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Pooling {
    /// L2-normalise after pooling (a `Normalize` module follows).
    pub normalize: bool,
}

impl Pooling {
    /// `None` if the directory is not a sentence-transformers model.
    pub fn read(dir: &Path) -> Result<Option<Pooling>> {
        let modules_path = dir.join("modules.json");
        if !modules_path.is_file() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&modules_path)
            .with_context(|| format!("cannot read {}", modules_path.display()))?;
        let modules: Vec<serde_json::Value> = serde_json::from_str(&text)
            .with_context(|| format!("{} is not a JSON list of modules", modules_path.display()))?;
        let kind = |m: &serde_json::Value| m.get("type").and_then(|t| t.as_str()).unwrap_or("").to_string();
        let Some(pool) = modules.iter().find(|m| kind(m).ends_with(".Pooling")) else { return Ok(None) };
        let pool_dir = pool.get("path").and_then(|p| p.as_str()).unwrap_or("1_Pooling");
        let cfg_path = dir.join(pool_dir).join("config.json");
        let text = std::fs::read_to_string(&cfg_path).with_context(|| format!("cannot read {}", cfg_path.display()))?;
        let cfg: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", cfg_path.display()))?;
        let flag = |k: &str| cfg.get(k).and_then(|v| v.as_bool()).unwrap_or(false);
        let others = ["pooling_mode_cls_token", "pooling_mode_max_tokens", "pooling_mode_mean_sqrt_len_tokens"];
        if !flag("pooling_mode_mean_tokens") || others.iter().any(|k| flag(k)) {
            bail!("{}: only mean pooling (pooling_mode_mean_tokens alone) is supported", cfg_path.display());
        }
        let normalize = modules.iter().any(|m| kind(m).ends_with(".Normalize"));
        Ok(Some(Pooling { normalize }))
    }

    /// [b, L, d] hidden states + [b, L] mask → [b, d] sentence embeddings.
    pub fn apply(&self, hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        let pooled = bert::mean_pool(hidden, mask)?;
        if self.normalize {
            bert::l2_normalize(&pooled)
        } else {
            Ok(pooled)
        }
    }
}

/// The architecture a directory holds, from its config.json alone.
pub fn architecture(dir: &Path) -> Result<Architecture> {
    Ok(config::read_config(dir)?.architecture())
}
