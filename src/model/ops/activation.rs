//! Element-wise activations with backward passes: GELU in its exact erf form
//! (BERT's `gelu`) and in the tanh approximation (T5 v1.1's `gelu_new`), and
//! ReLU (T5 v1.0). Each runs one parallel pass each way; candle's own ReLU
//! backward takes four, and every candle backward also differentiates the
//! frozen side of an op.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{exp_f32, f32_slice, vectorized};

/// x · Φ(x), Φ the standard normal CDF (not the tanh approximation).
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !super::use_fused(x) {
        return super::reference::gelu_erf(x);
    }
    x.contiguous()?.apply_op1(Activation::GeluErf)
}

/// 0.5 · x · (1 + tanh(√(2/π) · (x + 0.044715 x³))).
pub fn gelu_tanh(x: &Tensor) -> Result<Tensor> {
    if !super::use_fused(x) {
        return super::reference::gelu_tanh(x);
    }
    x.contiguous()?.apply_op1(Activation::GeluTanh)
}

/// max(x, 0).
pub fn relu(x: &Tensor) -> Result<Tensor> {
    if !super::use_fused(x) {
        return super::reference::relu(x);
    }
    x.contiguous()?.apply_op1(Activation::Relu)
}

const CHUNK: usize = 4096;

/// erf(z) and e^(−z²) for z ≥ 0, by Abramowitz & Stegun 7.1.26
/// (|error| ≤ 1.5e-7): erf(z) = 1 − t·P(t)·e^(−z²), t = 1/(1 + p·z). GELU's
/// backward needs e^(−x²/2) for the normal density too, which is the same
/// exponential, so it costs one `exp` instead of two. Branch-free: the loops
/// over it vectorise (exp included, see [`exp_f32`]).
#[inline(always)]
fn erf_and_gaussian(z: f32) -> (f32, f32) {
    const P: f32 = 0.327_591_1;
    let t = 1.0 / (1.0 + P * z);
    let poly = t * (0.254_829_6 + t * (-0.284_496_74 + t * (1.421_413_8 + t * (-1.453_152_1 + t * 1.061_405_4))));
    let gaussian = exp_f32(-z * z);
    (1.0 - poly * gaussian, gaussian)
}

#[inline(always)]
fn gelu_erf_value(v: f32) -> f32 {
    let (erf, _) = erf_and_gaussian(v.abs() * std::f32::consts::FRAC_1_SQRT_2);
    0.5 * v * (1.0 + erf.copysign(v))
}

/// d/dx [x Φ(x)] = Φ(x) + x φ(x).
#[inline(always)]
fn gelu_derivative(x: f32) -> f32 {
    let inv_sqrt_2pi = 0.398_942_3_f32;
    // z = |x|/√2, so e^(−z²) = e^(−x²/2), the density's exponential.
    let (erf, gaussian) = erf_and_gaussian(x.abs() * std::f32::consts::FRAC_1_SQRT_2);
    let cdf = 0.5 * (1.0 + erf.copysign(x));
    cdf + x * inv_sqrt_2pi * gaussian
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_CUBIC: f32 = 0.044_715;

/// gelu_tanh(x) and its derivative 0.5(1+t) + 0.5x(1−t²)·k(1+3c·x²),
/// t = tanh(k(x+c·x³)). Also used by the fused T5 encoder block.
#[inline(always)]
pub(super) fn gelu_tanh_and_derivative(x: f32) -> (f32, f32) {
    let x2 = x * x;
    let t = (SQRT_2_OVER_PI * (x + GELU_CUBIC * x2 * x)).tanh();
    let dt = SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_CUBIC * x2);
    (0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * dt)
}

/// y = GELU(x) (erf form), in parallel chunks.
pub(super) fn gelu_into(y: &mut [f32], x: &[f32]) {
    Activation::GeluErf.forward_into(y, x)
}

/// g ← g ⊙ GELU′(x) (erf form), in place, in parallel chunks.
pub(super) fn gelu_backward_in_place(g: &mut [f32], x: &[f32]) {
    g.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(g, x)| {
        vectorized(
            #[inline(always)]
            || {
                for (g, &x) in g.iter_mut().zip(x) {
                    *g *= gelu_derivative(x);
                }
            },
        )
    });
}

#[derive(Clone, Copy)]
enum Activation {
    GeluErf,
    GeluTanh,
    Relu,
}

impl Activation {
    fn forward_into(self, y: &mut [f32], x: &[f32]) {
        y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
            // One loop per kind, each inside `vectorized` (AVX2 + FMA).
            vectorized(
                #[inline(always)]
                || match self {
                    Activation::GeluErf => y.iter_mut().zip(x).for_each(|(o, &v)| *o = gelu_erf_value(v)),
                    Activation::GeluTanh => y.iter_mut().zip(x).for_each(|(o, &v)| *o = gelu_tanh_and_derivative(v).0),
                    Activation::Relu => y.iter_mut().zip(x).for_each(|(o, &v)| *o = v.max(0.0)),
                },
            )
        });
    }

    /// dx = g ⊙ f′(x).
    fn backward_into(self, dx: &mut [f32], x: &[f32], g: &[f32]) {
        dx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK))).for_each(|(d, (x, g))| {
            let each = d.iter_mut().zip(x).zip(g);
            vectorized(
                #[inline(always)]
                || match self {
                    Activation::GeluErf => each.for_each(|((d, &x), &g)| *d = g * gelu_derivative(x)),
                    Activation::GeluTanh => each.for_each(|((d, &x), &g)| *d = g * gelu_tanh_and_derivative(x).1),
                    // Selected, not multiplied: an infinite gradient at a zeroed unit stays 0.
                    Activation::Relu => each.for_each(|((d, &x), &g)| *d = if x > 0.0 { g } else { 0.0 }),
                },
            )
        });
    }
}

impl CustomOp1 for Activation {
    fn name(&self) -> &'static str {
        match self {
            Activation::GeluErf => "attempt-gelu-erf",
            Activation::GeluTanh => "attempt-gelu-tanh",
            Activation::Relu => "attempt-relu",
        }
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s, l)?;
        let mut y = super::fill::zeros(x.len());
        self.forward_into(&mut y, x);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&g.contiguous()?, &Backward(*self))?))
    }
}

/// The input gradient of an [`Activation`], from (input, output gradient).
struct Backward(Activation);

impl CustomOp2 for Backward {
    fn name(&self) -> &'static str {
        "attempt-activation-bwd"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), xs, xl)?;
        let g = f32_slice(self.name(), gs, gl)?;
        if g.len() != x.len() {
            candle_core::bail!("{}: gradient and input differ in size", self.name());
        }
        let mut dx = super::fill::zeros(x.len());
        self.0.backward_into(&mut dx, x, g);
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}
