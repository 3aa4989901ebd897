//! Interoperability with the formats soft prompts already exist in:
//! PyTorch checkpoints (read with a restricted unpickler, never executing
//! code), Hugging Face PEFT prompt-tuning adapters and plain safetensors.
//!
//! - import: [`import::read_source`] → [`import::build`] (all checks, nothing
//!   written) → [`import::write_authoring_dir`] or a registry publish;
//! - export: [`export::export`] writes a verified package in a foreign format.

pub mod export;
pub mod import;
pub mod output;
pub mod peft;
pub mod pickle;
pub mod safetensors_io;
pub mod torch_file;

use anyhow::{bail, Result};

use crate::package::{Dtype, PromptTensor};

/// A tensor read from a foreign file: dtype, shape and contiguous
/// little-endian bytes in row-major order.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceTensor {
    pub dtype: Dtype,
    pub shape: Vec<usize>,
    pub data: Vec<u8>,
}

impl SourceTensor {
    /// Describes the tensor for messages: `[100, 768] F32`.
    pub fn describe(&self) -> String {
        format!("{:?} {}", self.shape, self.dtype.as_str())
    }

    /// The prompt matrix `[length, hidden]`. Leading size-1 axes (a batch
    /// dimension, `[1, 100, 768]`) are dropped; any other rank is refused.
    pub fn into_prompt(self) -> Result<PromptTensor> {
        let mut shape: &[usize] = &self.shape;
        while shape.len() > 2 && shape[0] == 1 {
            shape = &shape[1..];
        }
        match shape {
            [length, hidden] if *length > 0 && *hidden > 0 => {
                PromptTensor::from_bytes(self.dtype, *length, *hidden, self.data)
            }
            _ => bail!(
                "the tensor has shape {:?}; a prompt is a matrix [length, hidden] (one row per virtual token)",
                self.shape
            ),
        }
    }
}
