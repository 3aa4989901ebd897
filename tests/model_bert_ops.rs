//! Every fused op's forward and backward against the composed candle ops
//! (whose gradients candle computes itself) and against finite differences.

use attempt_pkg::model::ops::{self, reference};
use candle_core::{DType, Device, Tensor, Var};

fn randn(shape: &[usize], seed: u64) -> Tensor {
    // Deterministic pseudo-random values without depending on candle's RNG.
    let n: usize = shape.iter().product();
    let mut state = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    let v: Vec<f32> = (0..n)
        .map(|_| {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((state >> 40) as f32 / (1u64 << 24) as f32) * 4.0 - 2.0
        })
        .collect();
    Tensor::from_vec(v, shape, &Device::Cpu).unwrap()
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

/// Forward and gradient of sum(f(x) * w) for the fused and reference versions.
fn check(name: &str, shape: &[usize], fused: impl Fn(&Tensor) -> Tensor, composed: impl Fn(&Tensor) -> Tensor) {
    let x = Var::from_tensor(&randn(shape, 7)).unwrap();
    let yf = fused(x.as_tensor());
    let yr = composed(x.as_tensor());
    let err = max_abs_diff(&yf, &yr);
    assert!(err < 1e-5, "{name}: forward differs by {err}");
    let w = randn(yf.dims(), 11);
    let gf = (&yf * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gf = gf.get(x.as_tensor()).unwrap_or_else(|| panic!("{name}: fused op gave no gradient")).clone();
    let gr = (&yr * &w).unwrap().sum_all().unwrap().backward().unwrap();
    let gr = gr.get(x.as_tensor()).unwrap().clone();
    let scale = gr.abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap();
    let err = max_abs_diff(&gf, &gr);
    assert!(err < 1e-5 * scale.max(1.0), "{name}: gradient differs by {err} (scale {scale})");

    // Finite differences on the fused op itself (f32: coarse step, loose tolerance).
    let base = x.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let gflat = gf.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let eps = 1e-2f32;
    for &i in &[0, base.len() / 3, base.len() / 2, base.len() - 1] {
        let loss_at = |delta: f32| -> f64 {
            let mut v = base.clone();
            v[i] += delta;
            let t = Tensor::from_vec(v, shape, &Device::Cpu).unwrap();
            let y = fused(&t).to_dtype(DType::F64).unwrap();
            (y * w.to_dtype(DType::F64).unwrap()).unwrap().sum_all().unwrap().to_scalar::<f64>().unwrap()
        };
        let fd = (loss_at(eps) - loss_at(-eps)) / (2.0 * eps as f64);
        let an = gflat[i] as f64;
        assert!((fd - an).abs() < 2e-2 * an.abs().max(1.0), "{name}[{i}]: finite difference {fd}, analytic {an}");
    }
}

#[test]
fn softmax_backward() {
    check("softmax", &[3, 5, 17], |x| ops::softmax_last_dim(x).unwrap(), |x| reference::softmax_last_dim(x).unwrap());
}

#[test]
fn masked_softmax_backward() {
    let mask = Tensor::new(&[[1f32, 1., 1., 0., 0., 1.], [1., 0., 1., 1., 1., 1.]], &Device::Cpu).unwrap();
    let scale = 0.35;
    check(
        "masked softmax",
        &[2, 3, 4, 6],
        |x| ops::masked_softmax(x, &mask, scale).unwrap(),
        |x| reference::masked_softmax(x, &mask, scale).unwrap(),
    );
    // Masked keys get exactly zero probability.
    let p = ops::masked_softmax(&randn(&[2, 3, 4, 6], 3), &mask, scale).unwrap();
    let masked = p.narrow(0, 0, 1).unwrap().narrow(3, 3, 2).unwrap();
    assert_eq!(masked.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap(), 0.0);
}

#[test]
fn layer_norm_backward() {
    let w = randn(&[24], 5).affine(0.3, 1.0).unwrap();
    let b = randn(&[24], 6);
    check(
        "layer norm",
        &[4, 7, 24],
        |x| ops::layer_norm(x, &w, &b, 1e-12).unwrap(),
        |x| reference::layer_norm(x, &w, &b, 1e-12).unwrap(),
    );
}

#[test]
fn gelu_erf_backward() {
    check("gelu_erf", &[5, 301], |x| ops::gelu_erf(x).unwrap(), |x| reference::gelu_erf(x).unwrap());
}

#[test]
fn frozen_linear_backward() {
    let w = randn(&[13, 24], 8);
    let b = randn(&[13], 9);
    check(
        "linear",
        &[2, 5, 24],
        |x| ops::linear(x, &w, Some(&b)).unwrap(),
        |x| reference::linear(x, &w, Some(&b)).unwrap(),
    );
    check("linear (no bias)", &[6, 24], |x| ops::linear(x, &w, None).unwrap(), |x| reference::linear(x, &w, None).unwrap());
}

#[test]
fn fused_ops_accept_non_contiguous_input() {
    let x = randn(&[6, 4], 1).t().unwrap();
    let a = ops::softmax_last_dim(&x).unwrap();
    let b = reference::softmax_last_dim(&x.contiguous().unwrap()).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-6);
}
