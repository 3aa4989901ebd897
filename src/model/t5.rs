//! T5 encoder–decoder (v1.0 and v1.1 / FLAN), frozen, with gradients flowing
//! to the encoder's input embeddings so a soft prompt can be prepended.
//!
//! Follows Hugging Face `T5ForConditionalGeneration` in eval mode: shared token
//! embeddings, relative position buckets (bidirectional in the encoder, causal
//! in the decoder; only the first layer of each stack owns the bias table, the
//! other layers reuse its output), mean-free RMS layer norm, no biases, no
//! 1/sqrt(d) attention scaling, ReLU (v1.0) or gated-GELU (v1.1) FFN, and a
//! head tied to the embeddings with a d_model^-0.5 rescale (v1.0) or a separate
//! `lm_head` without rescale (v1.1).
//!
//! Weights are plain tensors ([`Weights`]), never `Var`s: backward computes no
//! weight gradients. The kernels (frozen linear, biased softmax, activations,
//! RMS norm, the fused encoder block) are the shared ones in [`super::ops`];
//! this module holds the configuration and the layers.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context as _;
use candle_core::{DType, Device, Tensor, D};
use serde::Deserialize;

use super::ops::{self, linear, rms_norm, PreRmsFeedForward, PreRmsLayer};
use super::packing::Packing;
use super::weights::Weights;
use super::Encoder;

/// Added to attention scores of masked positions (what transformers uses).
const MASKED: f32 = f32::MIN;
/// Label value that the loss and scoring ignore (PyTorch's `ignore_index`).
pub const IGNORE_INDEX: i64 = -100;

// ---------------------------------------------------------------------------
// Configuration
// ---------------------------------------------------------------------------

/// The fields of a Hugging Face T5 `config.json` this implementation uses.
/// Shape-defining fields are required; the rest default as in transformers.
#[derive(Debug, Clone, Deserialize)]
pub struct T5Config {
    pub vocab_size: usize,
    pub d_model: usize,
    pub d_kv: usize,
    pub d_ff: usize,
    pub num_layers: usize,
    #[serde(default)]
    pub num_decoder_layers: Option<usize>,
    pub num_heads: usize,
    #[serde(default = "default_num_buckets")]
    pub relative_attention_num_buckets: usize,
    #[serde(default = "default_max_distance")]
    pub relative_attention_max_distance: usize,
    #[serde(default = "default_layer_norm_epsilon")]
    pub layer_norm_epsilon: f64,
    /// "relu" (v1.0), "gated-gelu" (v1.1 / FLAN), or `[gated-]{relu,gelu,gelu_new,silu}`.
    #[serde(default = "default_feed_forward_proj")]
    pub feed_forward_proj: String,
    /// true (v1.0): the head reuses `shared.weight` and outputs are rescaled by
    /// d_model^-0.5; false (v1.1): a separate `lm_head.weight`, no rescale.
    #[serde(default = "default_true")]
    pub tie_word_embeddings: bool,
    /// Written by transformers ≥ 5, which always ties in the config and keeps
    /// the v1.0/v1.1 difference here. Overrides the rescale when present.
    #[serde(default)]
    pub scale_decoder_outputs: Option<bool>,
    #[serde(default)]
    pub pad_token_id: Option<u32>,
    #[serde(default)]
    pub eos_token_id: Option<TokenIds>,
    #[serde(default)]
    pub decoder_start_token_id: Option<u32>,
    #[serde(default)]
    pub model_type: Option<String>,
}

/// `eos_token_id` is an integer or a list of integers in HF configs.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum TokenIds {
    One(u32),
    Many(Vec<u32>),
}

fn default_num_buckets() -> usize {
    32
}
fn default_max_distance() -> usize {
    128
}
fn default_layer_norm_epsilon() -> f64 {
    1e-6
}
fn default_feed_forward_proj() -> String {
    "relu".to_string()
}
fn default_true() -> bool {
    true
}

/// FFN non-linearity, as transformers maps `feed_forward_proj`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Activation {
    Relu,
    /// tanh approximation (`gelu_new`; what "gated-gelu" means).
    GeluNew,
    /// exact erf GELU (transformers' "gelu").
    Gelu,
    Silu,
}

impl Activation {
    fn apply(self, x: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Relu => ops::relu(x),
            Activation::GeluNew => ops::gelu_tanh(x),
            Activation::Gelu => ops::gelu_erf(x),
            Activation::Silu => x.silu(),
        }
    }
}

impl T5Config {
    /// Parses and validates `config.json` text.
    pub fn from_json_str(json: &str) -> anyhow::Result<Self> {
        Self::from_value(serde_json::from_str(json).context("not a valid T5 config.json")?)
    }

    /// Validates an already parsed `config.json`.
    pub fn from_value(json: serde_json::Value) -> anyhow::Result<Self> {
        let cfg: T5Config = serde_json::from_value(json).context("not a valid T5 config.json")?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Reads, parses and validates a `config.json` file; errors name the file.
    pub fn from_file(path: &Path) -> anyhow::Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("cannot read T5 config {}", path.display()))?;
        Self::from_json_str(&text).with_context(|| format!("in {}", path.display()))
    }

    fn validate(&self) -> anyhow::Result<()> {
        if let Some(t) = &self.model_type {
            // mT5 is the same architecture; UMT5 (per-layer position bias) is not.
            anyhow::ensure!(
                t == "t5" || t == "mt5",
                "model_type is {t:?}; this loader handles T5 (t5, mt5) models only"
            );
        }
        for (name, v) in [
            ("vocab_size", self.vocab_size),
            ("d_model", self.d_model),
            ("d_kv", self.d_kv),
            ("d_ff", self.d_ff),
            ("num_heads", self.num_heads),
            ("num_layers", self.num_layers),
            ("num_decoder_layers", self.decoder_layers()),
        ] {
            anyhow::ensure!(v > 0, "{name} must be positive, got 0");
        }
        // Bidirectional buckets halve the count, then half of those are exact.
        anyhow::ensure!(
            self.relative_attention_num_buckets >= 4,
            "relative_attention_num_buckets must be at least 4, got {}",
            self.relative_attention_num_buckets
        );
        anyhow::ensure!(
            self.relative_attention_max_distance > self.relative_attention_num_buckets / 2,
            "relative_attention_max_distance ({}) must exceed half the bucket count ({})",
            self.relative_attention_max_distance,
            self.relative_attention_num_buckets / 2
        );
        anyhow::ensure!(
            self.layer_norm_epsilon.is_finite() && self.layer_norm_epsilon >= 0.0,
            "layer_norm_epsilon must be a finite non-negative number"
        );
        self.ffn()?;
        Ok(())
    }

    /// (activation, gated) from `feed_forward_proj`.
    pub fn ffn(&self) -> anyhow::Result<(Activation, bool)> {
        let proj = self.feed_forward_proj.as_str();
        let (gated, act) = match proj.split_once('-') {
            Some(("gated", act)) => (true, act),
            None => (false, proj),
            Some(_) => {
                anyhow::bail!("feed_forward_proj {proj:?} is not `ACT` or `gated-ACT` (e.g. \"relu\", \"gated-gelu\")")
            }
        };
        let activation = match act {
            "relu" => Activation::Relu,
            // transformers maps "gated-gelu" to gelu_new for backwards compatibility.
            "gelu" if gated => Activation::GeluNew,
            "gelu" => Activation::Gelu,
            "gelu_new" => Activation::GeluNew,
            "silu" | "swish" => Activation::Silu,
            other => {
                anyhow::bail!("feed_forward_proj activation {other:?} is not supported (relu, gelu, gelu_new, silu)")
            }
        };
        Ok((activation, gated))
    }

    pub fn decoder_layers(&self) -> usize {
        self.num_decoder_layers.unwrap_or(self.num_layers)
    }

    pub fn pad_token(&self) -> u32 {
        self.pad_token_id.unwrap_or(0)
    }

    pub fn decoder_start_token(&self) -> u32 {
        self.decoder_start_token_id.unwrap_or_else(|| self.pad_token())
    }

    pub fn eos_tokens(&self) -> Vec<u32> {
        match &self.eos_token_id {
            None => vec![1],
            Some(TokenIds::One(t)) => vec![*t],
            Some(TokenIds::Many(ts)) => ts.clone(),
        }
    }

    /// Whether decoder outputs are multiplied by d_model^-0.5 before the head.
    pub fn rescales_decoder_output(&self) -> bool {
        self.scale_decoder_outputs.unwrap_or(self.tie_word_embeddings)
    }

    fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }

    /// Every tensor the model reads, with its expected shape, in Hub naming.
    /// `lm_head.weight` is listed only when the head is untied.
    pub fn weight_shapes(&self) -> anyhow::Result<Vec<(String, Vec<usize>)>> {
        let (_, gated) = self.ffn()?;
        let (d, inner, ff) = (self.d_model, self.inner_dim(), self.d_ff);
        let mut shapes = vec![("shared.weight".to_string(), vec![self.vocab_size, d])];
        let attention = |shapes: &mut Vec<(String, Vec<usize>)>, prefix: &str| {
            for p in ["q", "k", "v"] {
                shapes.push((format!("{prefix}.{p}.weight"), vec![inner, d]));
            }
            shapes.push((format!("{prefix}.o.weight"), vec![d, inner]));
        };
        let ffn = |shapes: &mut Vec<(String, Vec<usize>)>, prefix: &str| {
            if gated {
                shapes.push((format!("{prefix}.DenseReluDense.wi_0.weight"), vec![ff, d]));
                shapes.push((format!("{prefix}.DenseReluDense.wi_1.weight"), vec![ff, d]));
            } else {
                shapes.push((format!("{prefix}.DenseReluDense.wi.weight"), vec![ff, d]));
            }
            shapes.push((format!("{prefix}.DenseReluDense.wo.weight"), vec![d, ff]));
            shapes.push((format!("{prefix}.layer_norm.weight"), vec![d]));
        };
        for (stack, layers) in [("encoder", self.num_layers), ("decoder", self.decoder_layers())] {
            for i in 0..layers {
                let block = format!("{stack}.block.{i}.layer");
                attention(&mut shapes, &format!("{block}.0.SelfAttention"));
                if i == 0 {
                    shapes.push((
                        format!("{block}.0.SelfAttention.relative_attention_bias.weight"),
                        vec![self.relative_attention_num_buckets, self.num_heads],
                    ));
                }
                shapes.push((format!("{block}.0.layer_norm.weight"), vec![d]));
                if stack == "decoder" {
                    attention(&mut shapes, &format!("{block}.1.EncDecAttention"));
                    shapes.push((format!("{block}.1.layer_norm.weight"), vec![d]));
                    ffn(&mut shapes, &format!("{block}.2"));
                } else {
                    ffn(&mut shapes, &format!("{block}.1"));
                }
            }
            shapes.push((format!("{stack}.final_layer_norm.weight"), vec![d]));
        }
        if !self.tie_word_embeddings {
            shapes.push(("lm_head.weight".to_string(), vec![self.vocab_size, d]));
        }
        Ok(shapes)
    }
}

// ---------------------------------------------------------------------------
// Layers
// ---------------------------------------------------------------------------

/// Projection weights are [out, in], applied by the frozen [`linear`] op.
struct Attention {
    q: Tensor,
    k: Tensor,
    v: Tensor,
    o: Tensor,
    num_heads: usize,
    d_kv: usize,
}

impl Attention {
    fn load(ws: &Weights, prefix: &str, cfg: &T5Config) -> anyhow::Result<Self> {
        let (d, inner) = (cfg.d_model, cfg.inner_dim());
        let w = |p: &str, shape: &[usize]| ws.get(&format!("{prefix}.{p}.weight"), shape);
        Ok(Self {
            q: w("q", &[inner, d])?,
            k: w("k", &[inner, d])?,
            v: w("v", &[inner, d])?,
            o: w("o", &[d, inner])?,
            num_heads: cfg.num_heads,
            d_kv: cfg.d_kv,
        })
    }

    /// [b, T, h·d_kv] -> [b, h, T, d_kv]
    fn split_heads(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        x.reshape((b, t, self.num_heads, self.d_kv))?.transpose(1, 2)?.contiguous()
    }

    /// `x` [b, Tq, d] attends to `kv` [b, Tk, d] (itself when None). `bias`
    /// (position bias + mask) is [b, h, Tq, Tk].
    fn forward(&self, x: &Tensor, kv: Option<&Tensor>, bias: &Tensor) -> candle_core::Result<Tensor> {
        let (b, tq, _) = x.dims3()?;
        let src = kv.unwrap_or(x);
        let q = self.split_heads(&linear(x, &self.q, None)?)?;
        let k = self.split_heads(&linear(src, &self.k, None)?)?;
        let v = self.split_heads(&linear(src, &self.v, None)?)?;
        // T5 folds the 1/sqrt(d_kv) scaling into its initialisation: none here.
        let probs = ops::biased_softmax(&q.matmul(&k.t()?)?, bias)?;
        let ctx = probs.matmul(&v)?.transpose(1, 2)?.reshape((b, tq, self.num_heads * self.d_kv))?;
        linear(&ctx, &self.o, None)
    }
}

/// The FFN's weights ([out, in]).
enum FeedForward {
    Plain { wi: Tensor, wo: Tensor },
    Gated { wi_0: Tensor, wi_1: Tensor, wo: Tensor },
}

impl FeedForward {
    fn load(ws: &Weights, prefix: &str, cfg: &T5Config, gated: bool) -> anyhow::Result<Self> {
        let (d, ff) = (cfg.d_model, cfg.d_ff);
        let w = |p: &str, shape: &[usize]| ws.get(&format!("{prefix}.DenseReluDense.{p}.weight"), shape);
        Ok(if gated {
            FeedForward::Gated { wi_0: w("wi_0", &[ff, d])?, wi_1: w("wi_1", &[ff, d])?, wo: w("wo", &[d, ff])? }
        } else {
            FeedForward::Plain { wi: w("wi", &[ff, d])?, wo: w("wo", &[d, ff])? }
        })
    }

    fn forward(&self, x: &Tensor, act: Activation) -> candle_core::Result<Tensor> {
        match self {
            FeedForward::Plain { wi, wo } => linear(&act.apply(&linear(x, wi, None)?)?, wo, None),
            FeedForward::Gated { wi_0, wi_1, wo } => {
                let h = (act.apply(&linear(x, wi_0, None)?)? * linear(x, wi_1, None)?)?;
                linear(&h, wo, None)
            }
        }
    }
}

struct Block {
    self_attn: Attention,
    self_attn_norm: Tensor,
    /// Decoder only: attention over the encoder output.
    cross_attn: Option<(Attention, Tensor)>,
    ffn: FeedForward,
    ffn_norm: Tensor,
}

struct Stack {
    blocks: Vec<Block>,
    /// Encoder only, where the FFN kind allows: each block as one fused op
    /// (same weights, shared tensors).
    fused: Option<Vec<PreRmsLayer>>,
    final_norm: Tensor,
    /// [num_buckets, num_heads], owned by the first block and shared by all.
    relative_bias: Tensor,
    bidirectional: bool,
}

impl Block {
    /// This (encoder) block as one fused op, for the FFN kinds it covers.
    fn fused(&self, cfg: &T5Config, gated: bool) -> Option<PreRmsLayer> {
        let (activation, _) = cfg.ffn().ok()?;
        let (ffn, wo) = match (&self.ffn, activation, gated) {
            (FeedForward::Plain { wi, wo }, Activation::Relu, false) => {
                (PreRmsFeedForward::Relu { wi: wi.clone() }, wo)
            }
            (FeedForward::Gated { wi_0, wi_1, wo }, Activation::GeluNew, true) => {
                (PreRmsFeedForward::GatedGeluTanh { wi_0: wi_0.clone(), wi_1: wi_1.clone() }, wo)
            }
            _ => return None,
        };
        let attn = &self.self_attn;
        Some(PreRmsLayer {
            attn_norm: self.self_attn_norm.clone(),
            q: attn.q.clone(),
            k: attn.k.clone(),
            v: attn.v.clone(),
            o: attn.o.clone(),
            ffn_norm: self.ffn_norm.clone(),
            ffn,
            wo: wo.clone(),
            heads: attn.num_heads,
            eps: cfg.layer_norm_epsilon,
        })
    }
}

struct StackSettings {
    eps: f64,
    activation: Activation,
    num_buckets: usize,
    max_distance: usize,
}

impl Stack {
    fn load(ws: &Weights, name: &str, layers: usize, cfg: &T5Config, gated: bool) -> anyhow::Result<Self> {
        let d = cfg.d_model;
        let mut blocks = Vec::with_capacity(layers);
        for i in 0..layers {
            let p = format!("{name}.block.{i}.layer");
            let cross_attn = if name == "decoder" {
                Some((
                    Attention::load(ws, &format!("{p}.1.EncDecAttention"), cfg)?,
                    ws.get(&format!("{p}.1.layer_norm.weight"), &[d])?,
                ))
            } else {
                None
            };
            let ffn_layer = if name == "decoder" { 2 } else { 1 };
            blocks.push(Block {
                self_attn: Attention::load(ws, &format!("{p}.0.SelfAttention"), cfg)?,
                self_attn_norm: ws.get(&format!("{p}.0.layer_norm.weight"), &[d])?,
                cross_attn,
                ffn: FeedForward::load(ws, &format!("{p}.{ffn_layer}"), cfg, gated)?,
                ffn_norm: ws.get(&format!("{p}.{ffn_layer}.layer_norm.weight"), &[d])?,
            });
        }
        let fused = if name == "encoder" {
            blocks.iter().map(|block| block.fused(cfg, gated)).collect::<Option<Vec<_>>>()
        } else {
            None
        };
        Ok(Self {
            blocks,
            fused,
            final_norm: ws.get(&format!("{name}.final_layer_norm.weight"), &[d])?,
            relative_bias: ws.get(
                &format!("{name}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"),
                &[cfg.relative_attention_num_buckets, cfg.num_heads],
            )?,
            bidirectional: name == "encoder",
        })
    }

    /// Position bias [1, h, q_len, k_len] (causal mask folded in for the decoder).
    fn position_bias(&self, q_len: usize, k_len: usize, s: &StackSettings) -> candle_core::Result<Tensor> {
        let device = self.relative_bias.device();
        let num_heads = self.relative_bias.dim(1)?;
        let mut buckets = Vec::with_capacity(q_len * k_len);
        for q in 0..q_len {
            for k in 0..k_len {
                let relative = k as i64 - q as i64;
                buckets.push(relative_position_bucket(relative, self.bidirectional, s.num_buckets, s.max_distance));
            }
        }
        let buckets = Tensor::from_vec(buckets, q_len * k_len, device)?;
        let bias = self.relative_bias.index_select(&buckets, 0)?.t()?.reshape((1, num_heads, q_len, k_len))?;
        if self.bidirectional {
            return Ok(bias);
        }
        let causal: Vec<f32> =
            (0..q_len).flat_map(|q| (0..k_len).map(move |k| if k > q { MASKED } else { 0.0 })).collect();
        bias.broadcast_add(&Tensor::from_vec(causal, (1, 1, q_len, k_len), device)?)
    }

    fn forward(
        &self,
        mut x: Tensor,
        self_bias: &Tensor,
        cross: Option<(&Tensor, &Tensor)>,
        s: &StackSettings,
    ) -> candle_core::Result<Tensor> {
        for block in &self.blocks {
            let h = rms_norm(&x, &block.self_attn_norm, s.eps)?;
            x = (x + block.self_attn.forward(&h, None, self_bias)?)?;
            if let (Some((attn, norm)), Some((memory, cross_bias))) = (&block.cross_attn, cross) {
                let h = rms_norm(&x, norm, s.eps)?;
                x = (x + attn.forward(&h, Some(memory), cross_bias)?)?;
            }
            let h = rms_norm(&x, &block.ffn_norm, s.eps)?;
            x = (x + block.ffn.forward(&h, s.activation)?)?;
        }
        rms_norm(&x, &self.final_norm, s.eps)
    }
}

/// T5's relative position bucket, replicating transformers' float32 arithmetic
/// so boundary cases land in the same bucket. `relative` = key − query.
pub fn relative_position_bucket(relative: i64, bidirectional: bool, num_buckets: usize, max_distance: usize) -> u32 {
    let mut num_buckets = num_buckets as i64;
    let mut bucket = 0i64;
    let distance = if bidirectional {
        num_buckets /= 2;
        if relative > 0 {
            bucket += num_buckets;
        }
        relative.abs()
    } else {
        (-relative).max(0)
    };
    let max_exact = num_buckets / 2;
    if distance < max_exact {
        bucket += distance;
    } else {
        let log_ratio = (distance as f32 / max_exact as f32).ln();
        let log_span = (max_distance as f64 / max_exact as f64).ln() as f32;
        let large = max_exact + (log_ratio / log_span * (num_buckets - max_exact) as f32) as i64;
        bucket += large.min(num_buckets - 1);
    }
    bucket as u32
}

// ---------------------------------------------------------------------------
// Model
// ---------------------------------------------------------------------------

/// A frozen T5 encoder–decoder. The encoder implements [`Encoder`].
pub struct T5Model {
    config: T5Config,
    settings: StackSettings,
    shared: Tensor,
    encoder: Stack,
    decoder: Stack,
    /// [vocab, d_model]: `shared` itself when tied.
    lm_head: Tensor,
    device: Device,
}

impl T5Model {
    /// Builds the model from Hub-named tensors (e.g. `candle_core::safetensors::load`).
    /// Tensors are converted to f32 and copied to `device`; errors name the tensor.
    pub fn from_weights(config: &T5Config, weights: &HashMap<String, Tensor>, device: &Device) -> anyhow::Result<Self> {
        Self::new(config, &Weights::on_device(weights, device)?)
    }

    /// Builds the model from loaded weights ([`Weights::load`]), on their device.
    pub fn new(config: &T5Config, ws: &Weights) -> anyhow::Result<Self> {
        config.validate()?;
        let (activation, gated) = config.ffn()?;
        let vocab = [config.vocab_size, config.d_model];
        let shared =
            ws.get_any(&["shared.weight", "encoder.embed_tokens.weight", "decoder.embed_tokens.weight"], &vocab)?;
        // A present lm_head wins (untied v1.1 checkpoints; tied ones that store
        // a copy hold the same values); tied configs may omit it.
        let lm_head = if ws.contains_key("lm_head.weight") || !config.tie_word_embeddings {
            ws.get("lm_head.weight", &vocab)?
        } else {
            shared.clone()
        };
        Ok(Self {
            settings: StackSettings {
                eps: config.layer_norm_epsilon,
                activation,
                num_buckets: config.relative_attention_num_buckets,
                max_distance: config.relative_attention_max_distance,
            },
            encoder: Stack::load(ws, "encoder", config.num_layers, config, gated)?,
            decoder: Stack::load(ws, "decoder", config.decoder_layers(), config, gated)?,
            device: shared.device().clone(),
            shared,
            lm_head,
            config: config.clone(),
        })
    }

    pub fn config(&self) -> &T5Config {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    fn check_mask(mask: &Tensor, batch: usize, len: usize) -> candle_core::Result<()> {
        if mask.dims() != [batch, len] {
            candle_core::bail!(
                "attention mask has shape {:?}, expected [{batch}, {len}] to match the inputs",
                mask.dims()
            )
        }
        Ok(())
    }

    /// Additive encoder mask [b, 1, 1, L] from a 1/0 mask [b, L].
    fn mask_bias(&self, mask: &Tensor, batch: usize, len: usize) -> candle_core::Result<Tensor> {
        Self::check_mask(mask, batch, len)?;
        let keep = mask.to_dtype(DType::F32)?;
        let bias = ((keep.ones_like()? - keep)? * MASKED as f64)?;
        bias.reshape((batch, 1, 1, len))
    }

    fn check_hidden(&self, x: &Tensor, what: &str) -> candle_core::Result<(usize, usize)> {
        let (b, l, d) = x.dims3()?;
        if d != self.config.d_model {
            candle_core::bail!("{what} width {d} != T5 d_model {}", self.config.d_model)
        }
        Ok((b, l))
    }

    /// Final decoder hidden states [b, T, d] (teacher forcing).
    pub fn decoder_hidden(
        &self,
        encoder_hidden: &Tensor,
        encoder_mask: &Tensor,
        decoder_input_ids: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let (b, l) = self.check_hidden(encoder_hidden, "encoder hidden states")?;
        let (db, t) = decoder_input_ids.dims2()?;
        if db != b {
            candle_core::bail!("decoder inputs have batch {db}, encoder outputs have batch {b}")
        }
        let x = self.embed_tokens(decoder_input_ids)?;
        let h = self.config.num_heads;
        let self_bias = self.decoder.position_bias(t, t, &self.settings)?.broadcast_as((b, h, t, t))?.contiguous()?;
        let cross_bias = self.mask_bias(encoder_mask, b, l)?.broadcast_as((b, h, t, l))?.contiguous()?;
        self.decoder.forward(x, &self_bias, Some((encoder_hidden, &cross_bias)), &self.settings)
    }

    /// Teacher-forced decoder logits [b, T, vocab]. `decoder_input_ids` are
    /// the labels shifted right ([`T5Model::shift_right`]).
    pub fn decoder_logits(
        &self,
        encoder_hidden: &Tensor,
        encoder_mask: &Tensor,
        decoder_input_ids: &Tensor,
    ) -> candle_core::Result<Tensor> {
        let h = self.decoder_hidden(encoder_hidden, encoder_mask, decoder_input_ids)?;
        let h = if self.config.rescales_decoder_output() { (h * (self.config.d_model as f64).powf(-0.5))? } else { h };
        linear(&h, &self.lm_head, None)
    }

    /// Decoder inputs from labels [b, T] (i64, [`IGNORE_INDEX`] allowed):
    /// prepend the decoder start token, drop the last label, ignored → pad.
    pub fn shift_right(&self, labels: &Tensor) -> candle_core::Result<Tensor> {
        let (b, t) = labels.dims2()?;
        let labels = labels.to_dtype(DType::I64)?;
        let pad = labels.zeros_like()?.affine(1.0, self.config.pad_token() as f64)?;
        let labels = labels.ge(0i64)?.where_cond(&labels, &pad)?;
        let start = Tensor::full(self.config.decoder_start_token() as i64, (b, 1), labels.device())?;
        Tensor::cat(&[start, labels.narrow(1, 0, t.saturating_sub(1))?], 1)?.to_dtype(DType::U32)
    }

    /// Mean token cross-entropy of `labels` [b, T] (i64; [`IGNORE_INDEX`]
    /// positions skipped), as transformers' `T5ForConditionalGeneration` loss.
    pub fn loss(&self, encoder_hidden: &Tensor, encoder_mask: &Tensor, labels: &Tensor) -> candle_core::Result<Tensor> {
        let labels = labels.to_dtype(DType::I64)?;
        let logits = self.decoder_logits(encoder_hidden, encoder_mask, &self.shift_right(&labels)?)?;
        let (log_probs, valid) = label_log_probs(&logits, &labels)?;
        let count = valid.sum_all()?.to_scalar::<f32>()?;
        if count == 0.0 {
            candle_core::bail!("loss: every label is {IGNORE_INDEX}; nothing to score")
        }
        log_probs.sum_all()?.neg()? / count as f64
    }

    /// Greedy decoding: up to `max_len` tokens per row after the start token,
    /// stopping a row at EOS (kept) and padding it afterwards, stopping early
    /// when every row has finished. Recomputes the decoder each step.
    pub fn generate(
        &self,
        encoder_hidden: &Tensor,
        encoder_mask: &Tensor,
        max_len: usize,
    ) -> candle_core::Result<Vec<Vec<u32>>> {
        let encoder_hidden = encoder_hidden.detach();
        let (b, _) = self.check_hidden(&encoder_hidden, "encoder hidden states")?;
        let eos = self.config.eos_tokens();
        let pad = self.config.pad_token();
        let start = self.config.decoder_start_token();
        let mut tokens: Vec<u32> = vec![start; b];
        let mut out: Vec<Vec<u32>> = vec![Vec::new(); b];
        let mut finished = vec![false; b];
        for step in 0..max_len {
            let t = step + 1;
            let ids = Tensor::from_vec(tokens.clone(), (b, t), &self.device)?;
            let logits = self.decoder_logits(&encoder_hidden, encoder_mask, &ids)?;
            let next = logits.narrow(1, t - 1, 1)?.squeeze(1)?.argmax(D::Minus1)?.to_vec1::<u32>()?;
            let mut grown = Vec::with_capacity(b * (t + 1));
            for (row, &tok) in next.iter().enumerate() {
                let tok = if finished[row] { pad } else { tok };
                if eos.contains(&tok) {
                    finished[row] = true;
                }
                out[row].push(tok);
                grown.extend_from_slice(&tokens[row * t..(row + 1) * t]);
                grown.push(tok);
            }
            tokens = grown;
            if finished.iter().all(|&f| f) {
                break;
            }
        }
        Ok(out)
    }

    /// Rank classification: for each example and each candidate label
    /// sequence (token ids, usually ending in EOS), the summed log-probability
    /// of the candidate under teacher forcing. Returns [b, n_candidates];
    /// argmax over dim 1 picks the label. Differentiable.
    pub fn score_candidates(
        &self,
        encoder_hidden: &Tensor,
        encoder_mask: &Tensor,
        candidates: &[Vec<u32>],
    ) -> candle_core::Result<Tensor> {
        let (b, l) = self.check_hidden(encoder_hidden, "encoder hidden states")?;
        let n = candidates.len();
        if n == 0 || candidates.iter().any(|c| c.is_empty()) {
            candle_core::bail!("score_candidates: need at least one candidate, none of them empty")
        }
        if let Some(bad) = candidates.iter().flatten().find(|&&t| t as usize >= self.config.vocab_size) {
            candle_core::bail!(
                "score_candidates: token id {bad} is outside the vocabulary ({})",
                self.config.vocab_size
            )
        }
        let t = candidates.iter().map(Vec::len).max().unwrap_or(0);
        let mut labels = Vec::with_capacity(b * n * t);
        let mut rows = Vec::with_capacity(b * n);
        for row in 0..b as u32 {
            for cand in candidates {
                rows.push(row);
                labels.extend(cand.iter().map(|&x| x as i64));
                labels.extend(std::iter::repeat_n(IGNORE_INDEX, t - cand.len()));
            }
        }
        let rows = Tensor::from_vec(rows, b * n, &self.device)?;
        let labels = Tensor::from_vec(labels, (b * n, t), &self.device)?;
        let hidden = encoder_hidden.index_select(&rows, 0)?;
        let mask = encoder_mask.reshape((b, l))?.index_select(&rows, 0)?;
        let logits = self.decoder_logits(&hidden, &mask, &self.shift_right(&labels)?)?;
        let (log_probs, _) = label_log_probs(&logits, &labels)?;
        log_probs.sum(1)?.reshape((b, n))
    }
}

/// Log-probability of each label [b, T] (0 where ignored) and the 0/1 f32
/// validity mask, from logits [b, T, V].
fn label_log_probs(logits: &Tensor, labels: &Tensor) -> candle_core::Result<(Tensor, Tensor)> {
    let (b, t, v) = logits.dims3()?;
    if labels.dims() != [b, t] {
        candle_core::bail!("labels have shape {:?}, expected [{b}, {t}]", labels.dims())
    }
    let valid = labels.ge(0i64)?;
    let safe = valid.where_cond(labels, &labels.zeros_like()?)?;
    if let Some(bad) = safe.flatten_all()?.to_vec1::<i64>()?.into_iter().find(|&x| x as usize >= v) {
        candle_core::bail!("label {bad} is outside the vocabulary ({v})")
    }
    let log_probs = candle_nn::ops::log_softmax(logits, D::Minus1)?;
    let picked = log_probs.gather(&safe.to_dtype(DType::U32)?.unsqueeze(2)?, 2)?.squeeze(2)?;
    let valid = valid.to_dtype(DType::F32)?;
    Ok(((picked * &valid)?, valid))
}

impl Encoder for T5Model {
    fn embed_tokens(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let flat = ids.flatten_all()?.to_dtype(DType::U32)?;
        if let Some(bad) = flat.to_vec1::<u32>()?.into_iter().find(|&x| x as usize >= self.config.vocab_size) {
            candle_core::bail!("token id {bad} is outside the vocabulary ({})", self.config.vocab_size)
        }
        self.shared.index_select(&flat, 0)?.reshape((b, l, self.config.d_model))
    }

    fn encode(&self, input_embeds: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        // Every position, padded ones too, as transformers computes them.
        self.run_encoder(input_embeds, mask, input_embeds.dim(1)?, false)
    }

    fn encode_prompted(&self, input_embeds: &Tensor, mask: &Tensor, prompt_len: usize) -> candle_core::Result<Tensor> {
        self.run_encoder(input_embeds, mask, prompt_len, true)
    }

    fn hidden_size(&self) -> usize {
        self.config.d_model
    }

    fn label_scorer(&self) -> Option<&dyn super::LabelScorer> {
        Some(self)
    }
}

impl T5Model {
    /// The encoder stack; input gradient for positions below `prompt_len`
    /// only (after the first block, for all; on the fused path); `pack`:
    /// padded positions are skipped (on the fused path) and come out zero.
    fn run_encoder(
        &self,
        input_embeds: &Tensor,
        mask: &Tensor,
        prompt_len: usize,
        pack: bool,
    ) -> candle_core::Result<Tensor> {
        let (b, l) = self.check_hidden(input_embeds, "input embeddings")?;
        if prompt_len > l {
            candle_core::bail!("a prompt of {prompt_len} positions does not fit an input of {l}");
        }
        if let (Some(fused), true) = (&self.encoder.fused, PreRmsLayer::supports(input_embeds)) {
            Self::check_mask(mask, b, l)?;
            // Relative positions: a packed sequence of n positions reads the
            // top-left n × n block of the padded length's bias.
            let bias = self.encoder.position_bias(l, l, &self.settings)?;
            let bias = Arc::new(bias.flatten_all()?.to_vec1::<f32>()?);
            if let Some(packing) = if pack { Packing::of(input_embeds, mask)? } else { None } {
                return packing.run(input_embeds, |rows| {
                    let mut x = rows.clone();
                    for (i, block) in fused.iter().enumerate() {
                        // Past the first block every position depends on the prompt.
                        let grad_positions = if i == 0 { prompt_len } else { l };
                        x = block.forward_packed(&x, &packing.lengths, &bias, grad_positions)?;
                    }
                    rms_norm(&x, &self.encoder.final_norm, self.settings.eps)
                });
            }
            let mut x = input_embeds.clone();
            for (i, block) in fused.iter().enumerate() {
                x = block.forward_prompted(&x, mask, &bias, if i == 0 { prompt_len } else { l })?;
            }
            return rms_norm(&x, &self.encoder.final_norm, self.settings.eps);
        }
        let bias = self.encoder.position_bias(l, l, &self.settings)?.broadcast_add(&self.mask_bias(mask, b, l)?)?;
        self.encoder.forward(input_embeds.clone(), &bias, None, &self.settings)
    }
}

impl super::LabelScorer for T5Model {
    fn score_candidates(&self, hidden: &Tensor, mask: &Tensor, candidates: &[Vec<u32>]) -> candle_core::Result<Tensor> {
        T5Model::score_candidates(self, hidden, mask, candidates)
    }
}
