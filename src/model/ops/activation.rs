//! GELU with the exact erf form (BERT's `gelu`), with backward.

use candle_core::{CpuStorage, CustomOp1, CustomOp2, Layout, Result, Shape, Tensor};
use rayon::prelude::*;

use super::cpu::{exp_f32, f32_slice, vectorized};

/// x · Φ(x), Φ the standard normal CDF (not the tanh approximation).
pub fn gelu_erf(x: &Tensor) -> Result<Tensor> {
    if !super::use_fused(x) {
        return super::reference::gelu_erf(x);
    }
    x.contiguous()?.apply_op1(GeluErf)
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

// Loop bodies are `inline(always)` so they compile inside `vectorized`'s
// AVX2 + FMA function.
#[inline(always)]
fn gelu_chunk(y: &mut [f32], x: &[f32]) {
    for (o, &v) in y.iter_mut().zip(x) {
        let (erf, _) = erf_and_gaussian(v.abs() * std::f32::consts::FRAC_1_SQRT_2);
        *o = 0.5 * v * (1.0 + erf.copysign(v));
    }
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

#[inline(always)]
fn gelu_backward_chunk(d: &mut [f32], x: &[f32], g: &[f32]) {
    for ((d, &x), &g) in d.iter_mut().zip(x).zip(g) {
        *d = g * gelu_derivative(x);
    }
}

/// y = GELU(x), in parallel chunks.
pub(super) fn gelu_into(y: &mut [f32], x: &[f32]) {
    y.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(y, x)| {
        vectorized(#[inline(always)] || gelu_chunk(y, x))
    });
}

/// g ← g ⊙ GELU′(x), in place, in parallel chunks.
pub(super) fn gelu_backward_in_place(g: &mut [f32], x: &[f32]) {
    g.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK)).for_each(|(g, x)| {
        vectorized(#[inline(always)] || {
            for (g, &x) in g.iter_mut().zip(x) {
                *g *= gelu_derivative(x);
            }
        })
    });
}

struct GeluErf;

impl CustomOp1 for GeluErf {
    fn name(&self) -> &'static str {
        "attempt-gelu-erf"
    }

    fn cpu_fwd(&self, s: &CpuStorage, l: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), s, l)?;
        let mut y = vec![0f32; x.len()];
        gelu_into(&mut y, x);
        Ok((CpuStorage::F32(y), l.shape().clone()))
    }

    fn bwd(&self, x: &Tensor, _y: &Tensor, g: &Tensor) -> Result<Option<Tensor>> {
        Ok(Some(x.apply_op2_no_bwd(&g.contiguous()?, &GeluErfBackward)?))
    }
}

struct GeluErfBackward;

impl CustomOp2 for GeluErfBackward {
    fn name(&self) -> &'static str {
        "attempt-gelu-erf-bwd"
    }

    fn cpu_fwd(&self, xs: &CpuStorage, xl: &Layout, gs: &CpuStorage, gl: &Layout) -> Result<(CpuStorage, Shape)> {
        let x = f32_slice(self.name(), xs, xl)?;
        let g = f32_slice(self.name(), gs, gl)?;
        let mut dx = vec![0f32; x.len()];
        dx.par_chunks_mut(CHUNK).zip(x.par_chunks(CHUNK).zip(g.par_chunks(CHUNK))).for_each(|(d, (x, g))| {
            vectorized(#[inline(always)] || gelu_backward_chunk(d, x, g))
        });
        Ok((CpuStorage::F32(dx), xl.shape().clone()))
    }
}
