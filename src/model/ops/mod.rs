//! Differentiable building blocks for frozen backbones (BERT and T5).
//!
//! candle 0.11's fused `candle_nn::ops::{layer_norm, rms_norm, softmax_last_dim}`
//! (and `candle_nn::LayerNorm` on contiguous input) silently return *no*
//! gradient, so a prompt trained through them never moves. The functions here
//! always carry a correct backward pass:
//!
//! * on CPU they run fused custom ops (row-parallel kernels whose backward
//!   returns only the input gradient: the weights are frozen), which is what
//!   makes a training step competitive with PyTorch eager;
//! * elsewhere (CUDA) they fall back to composed candle ops, which are
//!   differentiable everywhere.

mod activation;
mod attention;
pub mod blas;
mod cpu;
mod fill;
mod layer_norm;
mod linear;
mod post_ln_layer;
mod pre_rms_layer;
#[cfg(test)]
mod product_cases;
pub mod rms_norm;
mod scratch;
mod sgemm_avx2;
pub mod sgemm_bf16;
mod softmax;

pub use activation::{gelu_erf, gelu_tanh, relu};
pub use attention::attention;
pub(crate) use cpu::vectorized;
pub use cpu::{kernel_path, supported_kernel_paths, KernelPath, KERNEL_PATH_VAR};
pub use layer_norm::{add_layer_norm, layer_norm};
pub use linear::{linear, linear_backward_on, linear_on};
pub use post_ln_layer::PostLnLayer;
pub use pre_rms_layer::{PreRmsFeedForward, PreRmsLayer};
pub use rms_norm::rms_norm;
pub use softmax::{biased_softmax, masked_softmax, softmax_last_dim};

use candle_core::{Result, Tensor};

/// Composed (always differentiable) reference implementations, used on
/// non-CPU devices and by the tests that check the fused kernels.
pub mod reference {
    use super::*;
    use candle_core::D;

    pub fn softmax_last_dim(x: &Tensor) -> Result<Tensor> {
        let max = x.max_keepdim(D::Minus1)?.detach();
        let e = x.broadcast_sub(&max)?.exp()?;
        e.broadcast_div(&e.sum_keepdim(D::Minus1)?)
    }

    /// softmax(scale * scores + bias) where bias is 0 for attended keys and a
    /// large negative number for masked ones; `mask` is [b, Lk] (1 = attend).
    pub fn masked_softmax(scores: &Tensor, mask: &Tensor, scale: f64) -> Result<Tensor> {
        let (b, lk) = mask.dims2()?;
        let m = mask.to_dtype(scores.dtype())?;
        // (1 - mask) * (very negative): what Hugging Face adds to the scores.
        let bias = ((m.ones_like()? - m)? * (f32::MIN as f64 * 0.5))?.reshape((b, 1, 1, lk))?;
        softmax_last_dim(&(scores * scale)?.broadcast_add(&bias)?)
    }

    /// softmax(scores + bias), the bias constant (detached: no gradient).
    pub fn biased_softmax(scores: &Tensor, bias: &Tensor) -> Result<Tensor> {
        softmax_last_dim(&scores.broadcast_add(&bias.detach())?)
    }

    pub fn layer_norm(x: &Tensor, w: &Tensor, b: &Tensor, eps: f64) -> Result<Tensor> {
        let mean = x.mean_keepdim(D::Minus1)?;
        let xc = x.broadcast_sub(&mean)?;
        let var = xc.sqr()?.mean_keepdim(D::Minus1)?;
        let xn = xc.broadcast_div(&(var + eps)?.sqrt()?)?;
        xn.broadcast_mul(w)?.broadcast_add(b)
    }

    pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
        x.gelu_erf()
    }

    /// candle's `gelu` is the tanh approximation.
    pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
        x.gelu()
    }

    pub fn relu(x: &Tensor) -> Result<Tensor> {
        x.relu()
    }

    pub use super::attention::reference as attention;

    pub fn linear(x: &Tensor, w: &Tensor, b: Option<&Tensor>) -> Result<Tensor> {
        let y = x.broadcast_matmul(&w.t()?)?;
        match b {
            Some(b) => y.broadcast_add(b),
            None => Ok(y),
        }
    }
}

/// True when the fused CPU kernels can run on this tensor.
pub(crate) fn use_fused(x: &Tensor) -> bool {
    x.device().is_cpu() && x.dtype() == candle_core::DType::F32
}
