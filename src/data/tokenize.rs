//! Text → token ids → padded batches. `TextEncoder` is the seam where the
//! real `tokenizers` tokenizer of a backbone plugs in.

use std::collections::BTreeMap;

use anyhow::{anyhow, Result};
use candle_core::{Device, Tensor};

use super::Example;

/// Turns one or two texts into token ids, special tokens included.
pub trait TextEncoder {
    /// Ids for `text_a` (and `text_b` as a pair), at most `max_len` long.
    fn encode(&self, text_a: &str, text_b: Option<&str>, max_len: usize) -> Result<Vec<u32>>;
    /// Id used for padding.
    fn pad_id(&self) -> u32;
    /// Vocabulary size (for sampling random vocabulary embeddings).
    fn vocab_size(&self) -> usize;
}

/// Truncate keeping the last id (usually the closing special token).
fn truncate_keep_last(mut ids: Vec<u32>, max_len: usize) -> Vec<u32> {
    if ids.len() > max_len && max_len > 0 {
        let last = ids[ids.len() - 1];
        ids.truncate(max_len);
        ids[max_len - 1] = last;
    }
    ids
}

/// A Hugging Face `tokenizers` tokenizer as a `TextEncoder`.
pub struct HfTextEncoder {
    pub tokenizer: tokenizers::Tokenizer,
    pub pad_id: u32,
}

impl HfTextEncoder {
    /// Pad id from the tokenizer's padding config, `[PAD]`, `<pad>`, else 0.
    /// The file's own padding is switched off: batches are padded by
    /// `collate`, which also builds the mask (a tokenizer.json that pads to a
    /// fixed length would otherwise turn padding into attended tokens).
    pub fn new(mut tokenizer: tokenizers::Tokenizer) -> Self {
        let pad_id = tokenizer
            .get_padding()
            .map(|p| p.pad_id)
            .or_else(|| tokenizer.token_to_id("[PAD]"))
            .or_else(|| tokenizer.token_to_id("<pad>"))
            .unwrap_or(0);
        tokenizer.with_padding(None);
        Self { tokenizer, pad_id }
    }

    /// Load a `tokenizer.json`.
    pub fn from_file(path: &std::path::Path) -> Result<Self> {
        let t = tokenizers::Tokenizer::from_file(path)
            .map_err(|e| anyhow!("{}: not a valid tokenizer.json: {e}", path.display()))?;
        Ok(Self::new(t))
    }
}

impl TextEncoder for HfTextEncoder {
    fn encode(&self, text_a: &str, text_b: Option<&str>, max_len: usize) -> Result<Vec<u32>> {
        let enc = match text_b {
            Some(b) => self.tokenizer.encode((text_a, b), true),
            None => self.tokenizer.encode(text_a, true),
        }
        .map_err(|e| anyhow!("tokenizer failed: {e}"))?;
        Ok(truncate_keep_last(enc.get_ids().to_vec(), max_len))
    }
    fn pad_id(&self) -> u32 {
        self.pad_id
    }
    fn vocab_size(&self) -> usize {
        self.tokenizer.get_vocab_size(true)
    }
}

/// Whitespace tokenizer over a fixed vocabulary (synthetic tasks and tests).
/// Ids: 0 = pad, 1 = unknown, 2 = separator, then the words in order.
#[derive(Debug, Clone)]
pub struct WordTokenizer {
    vocab: BTreeMap<String, u32>,
}

impl WordTokenizer {
    pub const PAD: u32 = 0;
    pub const UNK: u32 = 1;
    pub const SEP: u32 = 2;

    pub fn new<S: AsRef<str>>(words: impl IntoIterator<Item = S>) -> Self {
        let mut vocab = BTreeMap::new();
        for w in words {
            let next = vocab.len() as u32 + 3;
            vocab.entry(w.as_ref().to_lowercase()).or_insert(next);
        }
        Self { vocab }
    }
    fn ids<'a>(&'a self, text: &'a str) -> impl Iterator<Item = u32> + 'a {
        text.split_whitespace().map(move |w| self.vocab.get(&w.to_lowercase()).copied().unwrap_or(Self::UNK))
    }
}

impl TextEncoder for WordTokenizer {
    fn encode(&self, text_a: &str, text_b: Option<&str>, max_len: usize) -> Result<Vec<u32>> {
        let mut ids: Vec<u32> = self.ids(text_a).collect();
        if let Some(b) = text_b {
            ids.push(Self::SEP);
            ids.extend(self.ids(b));
        }
        if ids.is_empty() {
            ids.push(Self::UNK);
        }
        ids.truncate(max_len.max(1));
        Ok(ids)
    }
    fn pad_id(&self) -> u32 {
        Self::PAD
    }
    fn vocab_size(&self) -> usize {
        self.vocab.len() + 3
    }
}

/// A padded batch: ids `[b, L]` u32, mask `[b, L]` f32 (1 real, 0 pad).
#[derive(Debug, Clone)]
pub struct Batch {
    pub ids: Tensor,
    pub mask: Tensor,
}

/// Tokenise and right-pad `examples` to the longest one.
pub fn collate(examples: &[&Example], tokenizer: &dyn TextEncoder, max_len: usize, device: &Device) -> Result<Batch> {
    let seqs: Vec<Vec<u32>> =
        examples.iter().map(|e| tokenizer.encode(&e.text_a, e.text_b.as_deref(), max_len)).collect::<Result<_>>()?;
    collate_ids(&seqs, tokenizer.pad_id(), device)
}

/// The token ids of one fixed list of examples (a task's training set),
/// each tokenised the first time it is asked for and kept: later epochs, and
/// the lengths that `group_by_length` sorts by, reuse them, so a run
/// tokenises every example once. Nothing is tokenised up front, so a short
/// run over a large set pays only for the examples it takes.
pub struct TokenCache {
    ids: Vec<Option<Vec<u32>>>,
    max_len: usize,
}

impl TokenCache {
    /// For `examples` examples, truncated to `max_len` ids.
    pub fn new(examples: usize, max_len: usize) -> Self {
        TokenCache { ids: vec![None; examples], max_len }
    }

    /// The ids of example number `index`, which is `example`.
    pub fn ids(&mut self, index: usize, example: &Example, tokenizer: &dyn TextEncoder) -> Result<&[u32]> {
        let (max_len, size) = (self.max_len, self.ids.len());
        let slot = self
            .ids
            .get_mut(index)
            .ok_or_else(|| anyhow!("example {index} is outside a token cache of {size} examples"))?;
        if slot.is_none() {
            *slot = Some(tokenizer.encode(&example.text_a, example.text_b.as_deref(), max_len)?);
        }
        Ok(slot.as_deref().unwrap_or_default())
    }

    /// [`collate`] through the cache: `examples` are (index, example) pairs.
    pub fn collate(
        &mut self,
        examples: &[(usize, &Example)],
        tokenizer: &dyn TextEncoder,
        device: &Device,
    ) -> Result<Batch> {
        let seqs: Vec<Vec<u32>> =
            examples.iter().map(|&(i, e)| Ok(self.ids(i, e, tokenizer)?.to_vec())).collect::<Result<_>>()?;
        collate_ids(&seqs, tokenizer.pad_id(), device)
    }
}

/// Right-pad token id sequences.
pub fn collate_ids(seqs: &[Vec<u32>], pad_id: u32, device: &Device) -> Result<Batch> {
    let b = seqs.len();
    let l = seqs.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let mut ids = vec![pad_id; b * l];
    let mut mask = vec![0f32; b * l];
    for (i, s) in seqs.iter().enumerate() {
        for (j, &t) in s.iter().enumerate() {
            ids[i * l + j] = t;
            mask[i * l + j] = 1.0;
        }
    }
    Ok(Batch { ids: Tensor::from_vec(ids, (b, l), device)?, mask: Tensor::from_vec(mask, (b, l), device)? })
}
