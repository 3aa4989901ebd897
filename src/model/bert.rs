//! BERT-family encoder (BERT, MiniLM, sentence-transformers models):
//! learned absolute positions, token types, post-LN, erf GELU.
//!
//! Prompt handling: `encode` adds position and token-type embeddings to
//! whatever input embeddings it is given, so a soft prompt prepended to the
//! word embeddings is treated exactly like tokens — it takes positions
//! 0..P and the text follows at P..P+L (token type 0 throughout). This is how
//! prompt tuning is applied to BERT encoders in the reference implementations
//! and keeps the prompt position-aware.

use anyhow::{bail, Result};
use candle_core::{DType, Tensor, D};

use super::config::BertConfig;
use super::ops;
use super::packing::Packing;
use super::weights::Weights;
use super::Encoder;

struct Linear {
    w: Tensor,
    b: Tensor,
}

impl Linear {
    fn load(ws: &Weights, prefix: &str, out: usize, inp: usize) -> Result<Self> {
        Ok(Linear {
            w: ws.get(&format!("{prefix}.weight"), &[out, inp])?,
            b: ws.get(&format!("{prefix}.bias"), &[out])?,
        })
    }
}

struct LayerNorm {
    w: Tensor,
    b: Tensor,
    eps: f64,
}

impl LayerNorm {
    fn load(ws: &Weights, prefix: &str, d: usize, eps: f64) -> Result<Self> {
        let w = ws.get_any(&[format!("{prefix}.weight"), format!("{prefix}.gamma")], &[d])?;
        let b = ws.get_any(&[format!("{prefix}.bias"), format!("{prefix}.beta")], &[d])?;
        Ok(LayerNorm { w, b, eps })
    }
    fn forward(&self, x: &Tensor) -> candle_core::Result<Tensor> {
        ops::layer_norm(x, &self.w, &self.b, self.eps)
    }
}

fn load_layer(ws: &Weights, p: &str, cfg: &BertConfig) -> Result<ops::PostLnLayer> {
    let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
    let linear = |name: &str, out: usize, inp: usize| Linear::load(ws, &format!("{p}.{name}"), out, inp);
    let q = linear("attention.self.query", d, d)?;
    let k = linear("attention.self.key", d, d)?;
    let v = linear("attention.self.value", d, d)?;
    let attn_out = linear("attention.output.dense", d, d)?;
    let attn_ln = LayerNorm::load(ws, &format!("{p}.attention.output.LayerNorm"), d, cfg.layer_norm_eps)?;
    let intermediate = linear("intermediate.dense", i, d)?;
    let output = linear("output.dense", d, i)?;
    let output_ln = LayerNorm::load(ws, &format!("{p}.output.LayerNorm"), d, cfg.layer_norm_eps)?;
    Ok(ops::PostLnLayer {
        // Query, key and value projections fused into one [3d, d] matmul.
        qkv_w: Tensor::cat(&[&q.w, &k.w, &v.w], 0)?,
        qkv_b: Tensor::cat(&[&q.b, &k.b, &v.b], 0)?,
        attn_out_w: attn_out.w,
        attn_out_b: attn_out.b,
        attn_ln_w: attn_ln.w,
        attn_ln_b: attn_ln.b,
        intermediate_w: intermediate.w,
        intermediate_b: intermediate.b,
        output_w: output.w,
        output_b: output.b,
        output_ln_w: output_ln.w,
        output_ln_b: output_ln.b,
        heads: cfg.num_attention_heads,
        eps: cfg.layer_norm_eps,
    })
}

/// A frozen BERT encoder.
pub struct Bert {
    cfg: BertConfig,
    word_embeddings: Tensor,
    /// Position embeddings plus the token-type-0 embedding, [max_positions, d].
    position_and_type: Tensor,
    embeddings_ln: LayerNorm,
    layers: Vec<ops::PostLnLayer>,
}

/// Checkpoints saved from `BertFor*` heads prefix every name with `bert.`.
fn name_prefix(ws: &Weights) -> &'static str {
    if ws.contains_key("bert.embeddings.word_embeddings.weight") {
        "bert."
    } else {
        ""
    }
}

impl Bert {
    pub fn from_weights(cfg: &BertConfig, ws: &Weights) -> Result<Self> {
        if let Err(msg) = cfg.validate() {
            bail!("config.json: {msg}");
        }
        let p = name_prefix(ws);
        let d = cfg.hidden_size;
        let word_embeddings = ws.get(&format!("{p}embeddings.word_embeddings.weight"), &[cfg.vocab_size, d])?;
        let positions =
            ws.get(&format!("{p}embeddings.position_embeddings.weight"), &[cfg.max_position_embeddings, d])?;
        let types = ws.get(&format!("{p}embeddings.token_type_embeddings.weight"), &[cfg.type_vocab_size, d])?;
        let position_and_type = positions.broadcast_add(&types.get(0)?)?;
        let embeddings_ln = LayerNorm::load(ws, &format!("{p}embeddings.LayerNorm"), d, cfg.layer_norm_eps)?;
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| load_layer(ws, &format!("{p}encoder.layer.{i}"), cfg))
            .collect::<Result<Vec<_>>>()?;
        Ok(Bert { cfg: cfg.clone(), word_embeddings, position_and_type, embeddings_ln, layers })
    }

    pub fn config(&self) -> &BertConfig {
        &self.cfg
    }
}

impl Encoder for Bert {
    fn embed_tokens(&self, ids: &Tensor) -> candle_core::Result<Tensor> {
        let (b, l) = ids.dims2()?;
        let flat = ids.to_dtype(DType::U32)?.flatten_all()?;
        let max = flat.max(0)?.to_scalar::<u32>().unwrap_or(0);
        if b * l > 0 && max as usize >= self.cfg.vocab_size {
            candle_core::bail!("token id {max} is out of range for a vocabulary of {}", self.cfg.vocab_size);
        }
        self.word_embeddings.index_select(&flat, 0)?.reshape((b, l, self.cfg.hidden_size))
    }

    fn encode(&self, input_embeds: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
        // Every position, padded ones too, as Hugging Face computes them.
        self.run(input_embeds, mask, input_embeds.dim(1)?, false)
    }

    fn encode_prompted(&self, input_embeds: &Tensor, mask: &Tensor, prompt_len: usize) -> candle_core::Result<Tensor> {
        self.run(input_embeds, mask, prompt_len, true)
    }

    fn hidden_size(&self) -> usize {
        self.cfg.hidden_size
    }
}

impl Bert {
    /// The encoder; input gradient for positions below `prompt_len` only
    /// (after the first layer, for all); `pack`: padded positions are
    /// skipped and come out zero.
    fn run(&self, input_embeds: &Tensor, mask: &Tensor, prompt_len: usize, pack: bool) -> candle_core::Result<Tensor> {
        let (b, l, d) = input_embeds.dims3()?;
        if d != self.cfg.hidden_size {
            candle_core::bail!("input embeddings have width {d}, the model {}", self.cfg.hidden_size);
        }
        if l > self.cfg.max_position_embeddings {
            candle_core::bail!(
                "sequence of {l} positions (prompt + text) exceeds the model's max_position_embeddings {}",
                self.cfg.max_position_embeddings
            );
        }
        if mask.dims() != [b, l] {
            candle_core::bail!("attention mask has shape {:?}, expected [{b}, {l}]", mask.dims());
        }
        if prompt_len > l {
            candle_core::bail!("a prompt of {prompt_len} positions does not fit an input of {l}");
        }
        let x = input_embeds.broadcast_add(&self.position_and_type.narrow(0, 0, l)?)?;
        let mut x = self.embeddings_ln.forward(&x)?;
        if let Some(packing) = if pack { Packing::of(&x, mask)? } else { None } {
            return packing.run(&x, |rows| {
                let mut rows = rows.clone();
                for (i, layer) in self.layers.iter().enumerate() {
                    // Past the first layer every position depends on the prompt.
                    rows = layer.forward_packed(&rows, &packing.lengths, if i == 0 { prompt_len } else { l })?;
                }
                Ok(rows)
            });
        }
        for (i, layer) in self.layers.iter().enumerate() {
            x = if i == 0 { layer.forward_prompted(&x, mask, prompt_len)? } else { layer.forward(&x, mask)? };
        }
        Ok(x)
    }
}

/// Sentence-transformers mean pooling: the average of the hidden states of
/// attended tokens, [b, L, d] + [b, L] → [b, d].
pub fn mean_pool(hidden: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor> {
    let m = mask.to_dtype(hidden.dtype())?.unsqueeze(2)?;
    let sum = hidden.broadcast_mul(&m)?.sum(1)?;
    let count = m.sum(1)?.clamp(1e-9, f64::MAX)?;
    sum.broadcast_div(&count)
}

/// Row-wise L2 normalisation (sentence-transformers' `Normalize`).
pub fn l2_normalize(x: &Tensor) -> candle_core::Result<Tensor> {
    let norm = x.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?.clamp(1e-12, f64::MAX)?;
    x.broadcast_div(&norm)
}
