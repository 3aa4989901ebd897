//! Forward-only features of target examples under a candidate prompt: the
//! prompt prepended to the input embeddings, the frozen encoder run once, the
//! final hidden states of the text tokens mean-pooled. No gradient, no
//! training.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, D};

use crate::compose::prepend_prompt;
use crate::data::tokenize::{collate_ids, TextEncoder};
use crate::data::Example;
use crate::model::Encoder;

/// Where pooled features can be kept between runs: `suggest` then
/// `suggest --apply` (or `train --select`) score the same prompts on the same
/// sample. Keys are hex sha256 digests of the sample and the prompt's values;
/// the implementation scopes them to one model.
pub trait FeatureCache {
    fn load(&self, key: &str) -> Option<Vec<Vec<f32>>>;
    /// Failing to store is not an error worth stopping for; implementations
    /// report it themselves.
    fn store(&self, key: &str, rows: &[Vec<f32>]);
}

/// sha256 of a prompt's values (f32, little-endian), for cache keys.
pub fn prompt_digest(prompt: &Tensor) -> Result<String> {
    use sha2::Digest;
    let values = prompt.to_dtype(DType::F32)?.flatten_all()?.to_vec1::<f32>()?;
    let mut h = sha2::Sha256::new();
    h.update(format!("{:?}", prompt.dims()).as_bytes());
    for v in values {
        h.update(v.to_le_bytes());
    }
    Ok(hex::encode(h.finalize()))
}

/// sha256 of a sample (texts, labels, truncation), for cache keys.
pub fn sample_digest(examples: &[&Example], max_length: usize) -> String {
    use sha2::Digest;
    let mut h = sha2::Sha256::new();
    h.update(max_length.to_le_bytes());
    for e in examples {
        h.update(e.text_a.as_bytes());
        h.update([0]);
        h.update(e.text_b.as_deref().unwrap_or("").as_bytes());
        h.update([0]);
        h.update(format!("{:?}", e.label).as_bytes());
        h.update([1]);
    }
    hex::encode(h.finalize())
}

/// [`TokenisedSample::pooled_features`] through `cache`: the rows stored
/// under (`sample_key`, the prompt's digest) when present and of the
/// sample's size, else computed and stored. `sample_key` is the
/// [`sample_digest`] of the examples `sample` was built from.
pub fn cached_pooled_features(
    sample: &TokenisedSample,
    sample_key: &str,
    encoder: &dyn Encoder,
    prompt: Option<&Tensor>,
    device: &Device,
    cache: Option<&dyn FeatureCache>,
) -> Result<Vec<Vec<f32>>> {
    let Some(cache) = cache else { return sample.pooled_features(encoder, prompt, device) };
    let key = match prompt {
        Some(p) => format!("{sample_key}-{}", prompt_digest(p)?),
        None => format!("{sample_key}-none"),
    };
    if let Some(rows) = cache.load(&key).filter(|rows| rows.len() == sample.len()) {
        return Ok(rows);
    }
    let rows = sample.pooled_features(encoder, prompt, device)?;
    cache.store(&key, &rows);
    Ok(rows)
}

/// A target sample tokenised once and cut into batches of similar length (so
/// short inputs are not padded to the longest), reused for every candidate.
pub struct TokenisedSample {
    /// Batches of token ids; `order[i]` is the sample row of the i-th sequence
    /// over all batches, so features come back in sample order.
    batches: Vec<Vec<Vec<u32>>>,
    order: Vec<usize>,
    pad_id: u32,
}

impl TokenisedSample {
    pub fn new(
        examples: &[&Example],
        tokenizer: &dyn TextEncoder,
        max_length: usize,
        batch_size: usize,
    ) -> Result<Self> {
        if examples.is_empty() {
            bail!("no examples to compute features on");
        }
        let mut seqs: Vec<(usize, Vec<u32>)> = examples
            .iter()
            .enumerate()
            .map(|(i, e)| Ok((i, tokenizer.encode(&e.text_a, e.text_b.as_deref(), max_length)?)))
            .collect::<Result<_>>()?;
        seqs.sort_by_key(|(i, s)| (s.len(), *i));
        let order = seqs.iter().map(|(i, _)| *i).collect();
        let batches = seqs.chunks(batch_size.max(1)).map(|c| c.iter().map(|(_, s)| s.clone()).collect()).collect();
        Ok(Self { batches, order, pad_id: tokenizer.pad_id() })
    }

    pub fn len(&self) -> usize {
        self.order.len()
    }

    pub fn is_empty(&self) -> bool {
        self.order.is_empty()
    }

    /// Mean-pooled final hidden states of the text tokens (prompt rows left
    /// out), one row per sample example in sample order. `prompt` is `[m, d]`.
    pub fn pooled_features(
        &self,
        encoder: &dyn Encoder,
        prompt: Option<&Tensor>,
        device: &Device,
    ) -> Result<Vec<Vec<f32>>> {
        let d = encoder.hidden_size();
        if let Some(p) = prompt {
            let (_, pd) = p.dims2()?;
            if pd != d {
                bail!("prompt width {pd} differs from the encoder's hidden size {d}");
            }
        }
        let mut rows: Vec<Vec<f32>> = Vec::with_capacity(self.len());
        for seqs in &self.batches {
            let batch = collate_ids(seqs, self.pad_id, device)?;
            let embeds = encoder.embed_tokens(&batch.ids)?;
            let b = seqs.len();
            let (hidden, skip) = match prompt {
                Some(p) => {
                    let (m, _) = p.dims2()?;
                    let p = p
                        .to_dtype(embeds.dtype())?
                        .to_device(device)?
                        .unsqueeze(0)?
                        .broadcast_as((b, m, d))?
                        .contiguous()?;
                    let (x, mask) = prepend_prompt(&p, &embeds, &batch.mask)?;
                    (encoder.encode(&x, &mask)?, m)
                }
                None => (encoder.encode(&embeds, &batch.mask)?, 0),
            };
            let l = batch.mask.dims()[1];
            let text = hidden.narrow(1, skip, l)?.to_dtype(DType::F32)?;
            let mask = batch.mask.to_dtype(DType::F32)?.unsqueeze(D::Minus1)?;
            let pooled = text.broadcast_mul(&mask)?.sum(1)?.broadcast_div(&mask.sum(1)?.clamp(1.0, f64::MAX)?)?;
            rows.extend(pooled.to_vec2::<f32>()?);
        }
        let mut out = vec![Vec::new(); rows.len()];
        for (row, &i) in rows.into_iter().zip(&self.order) {
            out[i] = row;
        }
        Ok(out)
    }
}
