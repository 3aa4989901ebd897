//! Hugging Face `config.json`: which architecture, and its hyper-parameters.

use std::path::Path;

use anyhow::{bail, Context, Result};
use serde::Deserialize;

pub use super::t5::T5Config;

/// The architectures attempt-pkg can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Architecture {
    Bert,
    T5,
}

impl Architecture {
    pub fn as_str(self) -> &'static str {
        match self {
            Architecture::Bert => "bert",
            Architecture::T5 => "t5",
        }
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A parsed `config.json`.
#[derive(Debug, Clone)]
pub enum ModelConfig {
    Bert(BertConfig),
    T5(T5Config),
}

impl ModelConfig {
    pub fn architecture(&self) -> Architecture {
        match self {
            ModelConfig::Bert(_) => Architecture::Bert,
            ModelConfig::T5(_) => Architecture::T5,
        }
    }

    /// Rows of the word-embedding matrix.
    pub fn vocab_size(&self) -> usize {
        match self {
            ModelConfig::Bert(c) => c.vocab_size,
            ModelConfig::T5(c) => c.vocab_size,
        }
    }

    pub fn hidden_size(&self) -> usize {
        match self {
            ModelConfig::Bert(c) => c.hidden_size,
            ModelConfig::T5(c) => c.d_model,
        }
    }

    /// The token id that pads a batch.
    pub fn pad_token_id(&self) -> u32 {
        match self {
            ModelConfig::Bert(c) => c.pad_token_id,
            ModelConfig::T5(c) => c.pad_token(),
        }
    }
}

/// BERT-family encoder hyper-parameters (BERT, MiniLM, sentence-transformers).
#[derive(Debug, Clone, Deserialize)]
pub struct BertConfig {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_hidden_act")]
    pub hidden_act: String,
    #[serde(default = "default_max_positions")]
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_ln_eps")]
    pub layer_norm_eps: f64,
    #[serde(default = "default_position_type")]
    pub position_embedding_type: String,
    #[serde(default)]
    pub pad_token_id: u32,
}

fn default_hidden_act() -> String {
    "gelu".into()
}
fn default_max_positions() -> usize {
    512
}
fn default_type_vocab() -> usize {
    2
}
fn default_ln_eps() -> f64 {
    1e-12
}
fn default_position_type() -> String {
    "absolute".into()
}

impl BertConfig {
    /// Reject configurations this implementation would compute wrongly.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if !matches!(self.hidden_act.as_str(), "gelu" | "gelu_python") {
            return Err(format!("hidden_act {:?} is not supported (only the erf GELU, \"gelu\")", self.hidden_act));
        }
        if self.position_embedding_type != "absolute" {
            return Err(format!(
                "position_embedding_type {:?} is not supported (only \"absolute\")",
                self.position_embedding_type
            ));
        }
        if self.num_attention_heads == 0 || !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return Err(format!(
                "hidden_size {} is not divisible by num_attention_heads {}",
                self.hidden_size, self.num_attention_heads
            ));
        }
        if self.type_vocab_size == 0 {
            return Err("type_vocab_size is 0".into());
        }
        Ok(())
    }
}

/// Read `config.json` from a model directory and detect the architecture
/// from `model_type`.
pub fn read_config(dir: &Path) -> Result<ModelConfig> {
    let path = dir.join("config.json");
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("cannot read {}: a model directory needs a Hugging Face config.json", path.display())
    })?;
    let value: serde_json::Value =
        serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?;
    let model_type = value.get("model_type").and_then(|v| v.as_str()).unwrap_or("");
    match model_type {
        "bert" => {
            let cfg: BertConfig = serde_json::from_value(value)
                .with_context(|| format!("{}: not a valid BERT configuration", path.display()))?;
            if let Err(msg) = cfg.validate() {
                bail!("{}: {msg}", path.display());
            }
            Ok(ModelConfig::Bert(cfg))
        }
        "t5" => {
            let cfg = T5Config::from_value(value)
                .with_context(|| format!("{}: not a valid T5 configuration", path.display()))?;
            Ok(ModelConfig::T5(cfg))
        }
        "" => bail!("{}: no \"model_type\" field; cannot tell the architecture (supported: bert, t5)", path.display()),
        other => bail!("{}: unknown architecture model_type {other:?} (supported: bert, t5)", path.display()),
    }
}
