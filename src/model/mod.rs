//! Frozen backbones (BERT family, T5) written on plain candle tensors.
//!
//! Weights are loaded as plain `Tensor`s (never `Var`s), so backprop computes
//! no weight gradients; gradients flow only to the input embeddings, which is
//! where ATTEMPT's soft prompts are prepended.

use candle_core::Tensor;

/// A frozen encoder that takes input embeddings, so soft prompts can be prepended.
pub trait Encoder {
    /// token ids [b, L] (u32) -> input embeddings [b, L, d] (what the prompt is concatenated with)
    fn embed_tokens(&self, ids: &Tensor) -> candle_core::Result<Tensor>;
    /// input embeddings [b, L, d] + attention mask [b, L] (1 = attend, 0 = pad; f32 or u32) -> last hidden states [b, L, d]
    fn encode(&self, input_embeds: &Tensor, mask: &Tensor) -> candle_core::Result<Tensor>;
    fn hidden_size(&self) -> usize;
}

pub mod ops;
pub mod bert;
pub mod config;
pub mod weights;
