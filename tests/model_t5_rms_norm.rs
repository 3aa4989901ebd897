//! The fused T5 RMS-norm op: forward equals the composed formula, and its
//! backward (input, and weight when trained) matches composed autograd and
//! finite differences.

use attempt_pkg::model::ops::rms_norm::{rms_norm, rms_norm_composed};
use candle_core::{DType, Device, Tensor, Var, D};

const EPS: f64 = 1e-6;

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims());
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn scalar(t: &Tensor) -> f32 {
    t.to_scalar::<f32>().unwrap()
}

/// Inputs with rows of unequal scale (width 37: not a multiple of the 8-lane loop).
fn inputs() -> (Tensor, Tensor) {
    let dev = Device::Cpu;
    let x = Tensor::randn(0f32, 1.0, (3, 5, 37), &dev).unwrap();
    let row_scale = Tensor::arange(1u32, 16, &dev).unwrap().to_dtype(DType::F32).unwrap().reshape((3, 5, 1)).unwrap();
    let x = x.broadcast_mul(&row_scale).unwrap();
    let w = (Tensor::randn(0f32, 0.3, 37, &dev).unwrap() + 1.0).unwrap();
    (x, w)
}

/// A loss whose gradient differs per element.
fn weighted_sum(y: &Tensor, probe: &Tensor) -> Tensor {
    (y * probe).unwrap().sum_all().unwrap()
}

#[test]
fn forward_matches_composed_ops() {
    let (x, w) = inputs();
    let fused = rms_norm(&x, &w, EPS).unwrap();
    let composed = rms_norm_composed(&x, &w, EPS).unwrap();
    assert!(max_abs_diff(&fused, &composed) < 1e-5);
    // Unit RMS per row before the weight.
    let ones = Tensor::ones(37, DType::F32, &Device::Cpu).unwrap();
    let normed = rms_norm(&x, &ones, EPS).unwrap();
    let rms = normed.sqr().unwrap().mean(D::Minus1).unwrap();
    assert!(max_abs_diff(&rms, &rms.ones_like().unwrap()) < 1e-4);
}

#[test]
fn non_contiguous_input_is_handled() {
    let (x, w) = inputs();
    let xt = x.transpose(0, 1).unwrap(); // [5, 3, 37], strided
    let fused = rms_norm(&xt, &w, EPS).unwrap();
    let composed = rms_norm_composed(&xt.contiguous().unwrap(), &w, EPS).unwrap();
    assert!(max_abs_diff(&fused, &composed) < 1e-5);
}

#[test]
fn input_gradient_matches_composed_autograd() {
    let (x, w) = inputs();
    let probe = Tensor::randn(0f32, 1.0, x.shape(), &Device::Cpu).unwrap();
    let xv = Var::from_tensor(&x).unwrap();
    let g_fused = weighted_sum(&rms_norm(xv.as_tensor(), &w, EPS).unwrap(), &probe).backward().unwrap();
    let g_composed = weighted_sum(&rms_norm_composed(xv.as_tensor(), &w, EPS).unwrap(), &probe).backward().unwrap();
    let a = g_fused.get(xv.as_tensor()).expect("fused op must return an input gradient");
    let b = g_composed.get(xv.as_tensor()).unwrap();
    assert!(max_abs_diff(a, b) < 1e-5, "{}", max_abs_diff(a, b));
    // The frozen (plain tensor) weight gets nothing.
    assert!(g_fused.get(&w).is_none());
}

#[test]
fn input_gradient_matches_finite_differences() {
    let (x, w) = inputs();
    let probe = Tensor::randn(0f32, 1.0, x.shape(), &Device::Cpu).unwrap();
    let xv = Var::from_tensor(&x).unwrap();
    let grads = weighted_sum(&rms_norm(xv.as_tensor(), &w, EPS).unwrap(), &probe).backward().unwrap();
    let grad = grads.get(xv.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let base = x.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let h = 1e-2f32;
    let loss_at = |v: &[f32]| {
        let t = Tensor::from_slice(v, x.shape(), &Device::Cpu).unwrap();
        scalar(&weighted_sum(&rms_norm(&t, &w, EPS).unwrap(), &probe))
    };
    // Coordinates spread over rows of small and large scale.
    for i in (0..base.len()).step_by(23) {
        let (mut plus, mut minus) = (base.clone(), base.clone());
        plus[i] += h;
        minus[i] -= h;
        let numeric = (loss_at(&plus) - loss_at(&minus)) / (2.0 * h);
        let err = (numeric - grad[i]).abs();
        assert!(err <= 2e-3 + 2e-2 * grad[i].abs(), "x[{i}]: numeric {numeric} vs analytic {}", grad[i]);
    }
}

#[test]
fn trained_weight_gets_its_gradient() {
    let (x, w) = inputs();
    let probe = Tensor::randn(0f32, 1.0, x.shape(), &Device::Cpu).unwrap();
    let wv = Var::from_tensor(&w).unwrap();
    let fused = weighted_sum(&rms_norm(&x, wv.as_tensor(), EPS).unwrap(), &probe).backward().unwrap();
    let composed = weighted_sum(&rms_norm_composed(&x, wv.as_tensor(), EPS).unwrap(), &probe).backward().unwrap();
    let a = fused.get(wv.as_tensor()).expect("a trained weight must get a gradient");
    let b = composed.get(wv.as_tensor()).unwrap();
    assert!(max_abs_diff(a, b) < 1e-4, "{}", max_abs_diff(a, b));
}

#[test]
fn weight_width_mismatch_is_an_error() {
    let (x, _) = inputs();
    let w = Tensor::ones(36, DType::F32, &Device::Cpu).unwrap();
    let err = rms_norm(&x, &w, EPS).unwrap_err().to_string();
    assert!(err.contains("[36]") && err.contains("37"), "{err}");
}
