//! ATTEMPT prompt composition: the attention module G that reads an input,
//! and the mixture that turns frozen source prompts plus a trainable target
//! prompt into one instance-specific prompt prepended to the encoder input.
//!
//! Everything here is written with composed candle ops whose backward pass is
//! known to be correct (see `layer_norm`); the fused candle-nn kernels silently
//! detach gradients in candle 0.11.

pub mod attention;
pub mod mixture;

pub use attention::{layer_norm, max_pool, AttentionConfig, AttentionModule, AttentionScores};
pub use mixture::{prepend_prompt, ComposedPrompt, Method, PromptMixture, TargetInit};
