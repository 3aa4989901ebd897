//! `tokenizer.json` via the `tokenizers` crate, checked against the model.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};

pub const TOKENIZER_FILE: &str = "tokenizer.json";

/// A tokenizer known to fit a model's vocabulary.
pub struct ModelTokenizer {
    inner: tokenizers::Tokenizer,
    path: PathBuf,
    pad_id: u32,
}

/// Token ids padded to the longest sequence, with the attention mask.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch {
    pub ids: Vec<Vec<u32>>,
    pub mask: Vec<Vec<u32>>,
}

impl Batch {
    /// Pad ragged id lists with `pad_id` to the longest one.
    pub fn from_ids(seqs: Vec<Vec<u32>>, pad_id: u32) -> Batch {
        let len = seqs.iter().map(Vec::len).max().unwrap_or(0);
        let mut ids = Vec::with_capacity(seqs.len());
        let mut mask = Vec::with_capacity(seqs.len());
        for mut s in seqs {
            let n = s.len();
            s.resize(len, pad_id);
            ids.push(s);
            let mut m = vec![1u32; n];
            m.resize(len, 0);
            mask.push(m);
        }
        Batch { ids, mask }
    }

    pub fn len(&self) -> usize {
        self.ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn seq_len(&self) -> usize {
        self.ids.first().map(Vec::len).unwrap_or(0)
    }
}

impl ModelTokenizer {
    /// Load `dir/tokenizer.json`; its vocabulary must fit in the model's
    /// embedding matrix (`vocab_size` rows). A smaller tokenizer is fine — T5
    /// pads its embedding matrix beyond the tokenizer's 32100 ids.
    pub fn load(dir: &Path, model_vocab: usize, pad_id: u32) -> Result<Self> {
        let path = dir.join(TOKENIZER_FILE);
        if !path.is_file() {
            bail!("{}: no tokenizer; pass token ids with --ids instead of --text", path.display());
        }
        let mut inner = tokenizers::Tokenizer::from_file(&path)
            .map_err(|e| anyhow::anyhow!("{}: not a valid tokenizer.json: {e}", path.display()))?;
        let vocab = inner.get_vocab_size(true);
        if vocab > model_vocab {
            bail!(
                "{}: the tokenizer has {vocab} tokens but the model's vocab_size is {model_vocab}; \
                 it belongs to a different model",
                path.display()
            );
        }
        // Padding is done here (to the longest sequence), not by the file's settings.
        inner.with_padding(None);
        Ok(ModelTokenizer { inner, path, pad_id })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Tokenise texts (with the tokenizer's special tokens and truncation).
    pub fn encode(&self, texts: &[String]) -> Result<Batch> {
        let mut seqs = Vec::with_capacity(texts.len());
        for t in texts {
            let enc = self
                .inner
                .encode(t.as_str(), true)
                .map_err(|e| anyhow::anyhow!("{}: cannot tokenise {t:?}: {e}", self.path.display()))?;
            seqs.push(enc.get_ids().to_vec());
        }
        Ok(Batch::from_ids(seqs, self.pad_id))
    }

    pub fn vocab_size(&self) -> usize {
        self.inner.get_vocab_size(true)
    }
}

/// Parse `5,6,7` into token ids.
pub fn parse_ids(s: &str) -> Result<Vec<u32>> {
    let ids = s
        .split(',')
        .map(|p| p.trim().parse::<u32>().with_context(|| format!("{p:?} in --ids {s:?} is not a token id")))
        .collect::<Result<Vec<_>>>()?;
    if ids.is_empty() {
        bail!("--ids {s:?} has no token ids");
    }
    Ok(ids)
}
