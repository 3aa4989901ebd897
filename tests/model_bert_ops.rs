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
fn add_layer_norm_backward() {
    let w = randn(&[24], 5).affine(0.3, 1.0).unwrap();
    let b = randn(&[24], 6);
    let residual = randn(&[4, 7, 24], 12);
    // Gradient to the first input...
    check(
        "add+layer norm (x)",
        &[4, 7, 24],
        |x| ops::add_layer_norm(x, &residual, &w, &b, 1e-12).unwrap(),
        |x| reference::layer_norm(&(x + &residual).unwrap(), &w, &b, 1e-12).unwrap(),
    );
    // ...and to the residual.
    let x = randn(&[4, 7, 24], 13);
    check(
        "add+layer norm (residual)",
        &[4, 7, 24],
        |r| ops::add_layer_norm(&x, r, &w, &b, 1e-12).unwrap(),
        |r| reference::layer_norm(&(&x + r).unwrap(), &w, &b, 1e-12).unwrap(),
    );
}

#[test]
fn gelu_erf_backward() {
    check("gelu_erf", &[5, 301], |x| ops::gelu_erf(x).unwrap(), |x| reference::gelu_erf(x).unwrap());
}

#[test]
fn gelu_tanh_and_relu_backward() {
    check("gelu_tanh", &[5, 301], |x| ops::gelu_tanh(x).unwrap(), |x| reference::gelu_tanh(x).unwrap());
    check("relu", &[5, 301], |x| ops::relu(x).unwrap(), |x| reference::relu(x).unwrap());
}

#[test]
fn biased_softmax_backward() {
    // T5's bias: a per-head, per-position table plus f32::MIN on masked keys,
    // broadcast over the batch.
    let mut table = randn(&[3 * 4 * 6], 21).to_vec1::<f32>().unwrap();
    for row in table.chunks_mut(6) {
        row[5] = f32::MIN;
    }
    let bias = Tensor::from_vec(table, (1, 3, 4, 6), &Device::Cpu).unwrap();
    check(
        "biased softmax",
        &[2, 3, 4, 6],
        |x| ops::biased_softmax(x, &bias).unwrap(),
        |x| reference::biased_softmax(x, &bias).unwrap(),
    );
    let p = ops::biased_softmax(&randn(&[2, 3, 4, 6], 3), &bias).unwrap();
    let masked = p.narrow(3, 5, 1).unwrap().abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    // Not exactly 0: the kernels' exp saturates at about 1e-38.
    assert!(masked < 1e-30, "keys with an f32::MIN bias get no probability ({masked})");
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
    check(
        "linear (no bias)",
        &[6, 24],
        |x| ops::linear(x, &w, None).unwrap(),
        |x| reference::linear(x, &w, None).unwrap(),
    );
}

#[test]
fn fused_attention_backward() {
    // [b=2, L=5, 3 * d] with d = 8, 2 heads; the second sequence is padded.
    let mask = Tensor::new(&[[1f32, 1., 1., 1., 1.], [1., 1., 1., 0., 0.]], &Device::Cpu).unwrap();
    check(
        "attention",
        &[2, 5, 24],
        |x| ops::attention(x, &mask, 2).unwrap(),
        |x| reference::attention(x, &mask, 2).unwrap(),
    );
}

#[test]
fn fused_ops_accept_non_contiguous_input() {
    let x = randn(&[6, 4], 1).t().unwrap();
    let a = ops::softmax_last_dim(&x).unwrap();
    let b = reference::softmax_last_dim(&x.contiguous().unwrap()).unwrap();
    assert!(max_abs_diff(&a, &b) < 1e-6);
}

/// A small post-LN layer (d = 8, 2 heads, FFN 12) with random weights; the
/// norms' weights are kept away from zero like trained ones.
fn small_post_ln_layer() -> ops::PostLnLayer {
    let (d, i) = (8, 12);
    let scaled = |shape: &[usize], seed: u64, s: f64| (randn(shape, seed) * s).unwrap();
    let norm_weight = |seed: u64| (scaled(&[d], seed, 0.2) + 1.0).unwrap();
    ops::PostLnLayer {
        qkv_w: scaled(&[3 * d, d], 21, 0.3),
        qkv_b: scaled(&[3 * d], 22, 0.1),
        attn_out_w: scaled(&[d, d], 23, 0.3),
        attn_out_b: scaled(&[d], 24, 0.1),
        attn_ln_w: norm_weight(25),
        attn_ln_b: scaled(&[d], 26, 0.1),
        intermediate_w: scaled(&[i, d], 27, 0.3),
        intermediate_b: scaled(&[i], 28, 0.1),
        output_w: scaled(&[d, i], 29, 0.3),
        output_b: scaled(&[d], 30, 0.1),
        output_ln_w: norm_weight(31),
        output_ln_b: scaled(&[d], 32, 0.1),
        heads: 2,
        eps: 1e-12,
    }
}

/// The layer written out with the composed reference ops only.
fn reference_post_ln_layer(layer: &ops::PostLnLayer, x: &Tensor, mask: &Tensor) -> Tensor {
    let qkv = reference::linear(x, &layer.qkv_w, Some(&layer.qkv_b)).unwrap();
    let ctx = reference::attention(&qkv, mask, layer.heads).unwrap();
    let attn = reference::linear(&ctx, &layer.attn_out_w, Some(&layer.attn_out_b)).unwrap();
    let h = reference::layer_norm(&(attn + x).unwrap(), &layer.attn_ln_w, &layer.attn_ln_b, layer.eps).unwrap();
    let u = reference::linear(&h, &layer.intermediate_w, Some(&layer.intermediate_b)).unwrap();
    let out = reference::linear(&reference::gelu_erf(&u).unwrap(), &layer.output_w, Some(&layer.output_b)).unwrap();
    reference::layer_norm(&(out + h).unwrap(), &layer.output_ln_w, &layer.output_ln_b, layer.eps).unwrap()
}

#[test]
fn fused_post_ln_layer_backward() {
    let layer = small_post_ln_layer();
    let mask = Tensor::new(&[[1f32, 1., 1., 1., 1.], [1., 1., 0., 0., 0.]], &Device::Cpu).unwrap();
    check(
        "post-LN layer",
        &[2, 5, 8],
        |x| layer.forward(x, &mask).unwrap(),
        |x| reference_post_ln_layer(&layer, x, &mask),
    );
    // Two stacked layers: each one's backward feeds the next.
    check(
        "two post-LN layers",
        &[2, 5, 8],
        |x| layer.forward(&layer.forward(x, &mask).unwrap(), &mask).unwrap(),
        |x| reference_post_ln_layer(&layer, &reference_post_ln_layer(&layer, x, &mask), &mask),
    );
    // The single-op path computes the same.
    let x = randn(&[2, 5, 8], 5);
    let err = max_abs_diff(&layer.forward(&x, &mask).unwrap(), &layer.forward_unfused(&x, &mask).unwrap());
    assert!(err < 1e-5, "fused and single-op layer differ by {err}");
}

#[test]
fn a_prompted_layer_gives_the_prompt_positions_their_gradient_and_the_text_none() {
    let layer = small_post_ln_layer();
    let mask = Tensor::new(&[[1f32, 1., 1., 1., 1.], [1., 1., 1., 0., 0.]], &Device::Cpu).unwrap();
    let x = Var::from_tensor(&randn(&[2, 5, 8], 13)).unwrap();
    let w = randn(&[2, 5, 8], 17);
    let grad_of = |y: &Tensor| {
        let loss = (y * &w).unwrap().sum_all().unwrap();
        loss.backward().unwrap().get(x.as_tensor()).expect("no input gradient").clone()
    };
    let full_y = layer.forward(x.as_tensor(), &mask).unwrap();
    let full = grad_of(&full_y);
    for p in [0, 2, 5] {
        let y = layer.forward_prompted(x.as_tensor(), &mask, p).unwrap();
        assert_eq!(max_abs_diff(&y, &full_y), 0.0, "prompt of {p}: the output changed");
        let g = grad_of(&y);
        if p > 0 {
            let lead = |t: &Tensor| t.narrow(1, 0, p).unwrap();
            let err = max_abs_diff(&lead(&g), &lead(&full));
            assert!(err < 1e-6, "prompt of {p}: prompt positions' gradient differs by {err}");
        }
        let rest = g.narrow(1, p, 5 - p).unwrap().abs().unwrap().flatten_all().unwrap();
        let rest = rest.to_vec1::<f32>().unwrap();
        assert!(rest.iter().all(|&v| v == 0.0), "prompt of {p}: text positions got a gradient");
    }
    let err = layer.forward_prompted(x.as_tensor(), &mask, 6).unwrap_err().to_string();
    assert!(err.contains("does not fit"), "{err}");
}

#[test]
fn a_packed_layer_computes_what_the_padded_one_does_at_real_positions() {
    let layer = small_post_ln_layer();
    let lengths = [5usize, 3, 1];
    let (b, l, d) = (3, 5, 8);
    let mask: Vec<f32> = lengths.iter().flat_map(|&n| (0..l).map(move |i| if i < n { 1.0 } else { 0.0 })).collect();
    let mask = Tensor::from_vec(mask, (b, l), &Device::Cpu).unwrap();
    let x = Var::from_tensor(&randn(&[b, l, d], 23)).unwrap();
    let w = randn(&[b, l, d], 29);
    let real: Vec<u32> =
        lengths.iter().enumerate().flat_map(|(s, &n)| (0..n).map(move |i| (s * l + i) as u32)).collect();
    let real = Tensor::new(real.as_slice(), &Device::Cpu).unwrap();
    let rows = |t: &Tensor| t.reshape((b * l, d)).unwrap().index_select(&real, 0).unwrap();
    // Two stacked layers: the second one's backward feeds the first's.
    let padded = layer.forward(&layer.forward(x.as_tensor(), &mask).unwrap(), &mask).unwrap();
    let packed_in = rows(x.as_tensor());
    let packed = layer.forward_packed(&layer.forward_packed(&packed_in, &lengths, 2).unwrap(), &lengths, l).unwrap();
    let err = max_abs_diff(&packed, &rows(&padded));
    assert!(err < 1e-5, "packed output differs by {err}");
    // A loss on real positions only: the same gradient, for the first two
    // positions of each sequence (the "prompt"); none for the others.
    let grad_of = |loss: Tensor| loss.backward().unwrap().get(x.as_tensor()).expect("no input gradient").clone();
    let real_w = w.broadcast_mul(&mask.unsqueeze(2).unwrap()).unwrap();
    let want = rows(&grad_of((&padded * &real_w).unwrap().sum_all().unwrap()));
    let got = rows(&grad_of((&packed * &rows(&w)).unwrap().sum_all().unwrap()));
    let (want, got) = (want.to_vec2::<f32>().unwrap(), got.to_vec2::<f32>().unwrap());
    let mut row = 0;
    for &n in &lengths {
        for pos in 0..n {
            for (a, e) in got[row].iter().zip(&want[row]) {
                if pos < 2 {
                    assert!((a - e).abs() < 1e-5, "position {pos}: gradient {a}, padded layer's {e}");
                } else {
                    assert_eq!(*a, 0.0, "position {pos} is text: no gradient");
                }
            }
            row += 1;
        }
    }
    let err = layer.forward_packed(&packed_in, &[5, 3], 2).unwrap_err().to_string();
    assert!(err.contains("do not fit"), "{err}");
}

#[test]
fn fused_post_ln_layer_without_gradient_tracking_and_twice_backward() {
    let layer = small_post_ln_layer();
    let mask = Tensor::ones((2, 5), DType::F32, &Device::Cpu).unwrap();
    // A plain tensor: nothing is kept for backward, the output is the same.
    let x = randn(&[2, 5, 8], 9);
    let want = reference_post_ln_layer(&layer, &x, &mask);
    assert!(max_abs_diff(&layer.forward(&x, &mask).unwrap(), &want) < 1e-5);
    // A graph can be differentiated once; a second backward says why it fails.
    let v = Var::from_tensor(&x).unwrap();
    let loss = layer.forward(v.as_tensor(), &mask).unwrap().sum_all().unwrap();
    assert!(loss.backward().unwrap().get(v.as_tensor()).is_some());
    let err = loss.backward().unwrap_err().to_string();
    assert!(err.contains("backward runs once per forward"), "{err}");
}

#[test]
fn the_kernel_path_is_the_one_asked_for() {
    // scripts/test.sh runs this binary once per path the CPU supports; each
    // run must really exercise the path it names.
    let supported = ops::supported_kernel_paths();
    match std::env::var(ops::KERNEL_PATH_VAR) {
        Ok(name) if !name.is_empty() && name != "auto" => assert_eq!(ops::kernel_path().as_str(), name),
        _ => assert_eq!(ops::kernel_path(), supported[0], "unforced: the best path this CPU runs"),
    }
    assert_eq!(supported.last(), Some(&ops::KernelPath::Portable), "the portable path runs everywhere");
}

#[test]
fn the_gemm_backend_is_the_one_asked_for() {
    // scripts/test.sh runs the numerical tests once per backend this machine
    // has; each run must really use the backend it names.
    use ops::blas::{available_backends, gemm_backend, GemmBackend, GEMM_BACKEND_VAR};
    let available = available_backends();
    assert_eq!(available.first(), Some(&GemmBackend::Gemm), "the built-in gemm crate is always there");
    match std::env::var(GEMM_BACKEND_VAR) {
        Ok(name) if !name.is_empty() && name != "auto" => assert_eq!(gemm_backend().as_str(), name),
        _ => assert_eq!(gemm_backend(), ops::blas::auto_backend()),
    }
    assert!(available.contains(&gemm_backend()));
}

/// y = x·wᵀ and dx = g·w in f64, the reference for every backend.
fn products_f64(x: &[f32], w: &[f32], g: &[f32], (m, n, k): (usize, usize, usize)) -> (Vec<f64>, Vec<f64>) {
    let mut y = vec![0f64; m * n];
    let mut dx = vec![0f64; m * k];
    for r in 0..m {
        for c in 0..n {
            y[r * n + c] = (0..k).map(|i| x[r * k + i] as f64 * w[c * k + i] as f64).sum();
        }
        for c in 0..k {
            dx[r * k + c] = (0..n).map(|j| g[r * n + j] as f64 * w[j * k + c] as f64).sum();
        }
    }
    (y, dx)
}

#[test]
fn every_gemm_backend_computes_the_same_products() {
    use ops::blas::{available_backends, GemmBackend};
    let data = |t: Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let rounded = |v: &[f32]| v.iter().map(|&x| ops::sgemm_bf16::round_to_bf16(x)).collect::<Vec<f32>>();
    // Odd sizes: partial register tiles on every edge; m large enough to split across threads.
    for (m, n, k) in [(1, 1, 1), (7, 5, 3), (133, 67, 45), (301, 384, 130)] {
        let (x, w, g) = (data(randn(&[m, k], 1)), data(randn(&[n, k], 2)), data(randn(&[m, n], 3)));
        let (y_exact, dx_exact) = products_f64(&x, &w, &g, (m, n, k));
        // The bf16 backend computes the product of the operands rounded to
        // bf16 (its fp32 sums are checked as tightly as the others').
        let (y_bf16, dx_bf16) = products_f64(&rounded(&x), &rounded(&w), &rounded(&g), (m, n, k));
        for backend in available_backends() {
            let (y_ref, dx_ref) =
                if backend == GemmBackend::Bf16 { (&y_bf16, &dx_bf16) } else { (&y_exact, &dx_exact) };
            let mut y = vec![f32::NAN; m * n];
            ops::linear_on(backend, &mut y, &x, &w, (n, k), false).unwrap();
            let mut dx = vec![f32::NAN; m * k];
            ops::linear_backward_on(backend, &mut dx, &g, &w, (n, k), false).unwrap();
            // Inputs in [-2, 2): |terms| ≤ 4, sums of up to 384 terms in f32.
            let tol = 1e-5 * 4.0 * k.max(n) as f64;
            let worst = |a: &[f32], b: &[f64]| a.iter().zip(b).map(|(a, b)| (*a as f64 - b).abs()).fold(0f64, f64::max);
            let (ey, edx) = (worst(&y, y_ref), worst(&dx, dx_ref));
            assert!(ey < tol && edx < tol, "{} at {m}×{n}×{k}: y off by {ey}, dx by {edx}", backend.as_str());
        }
    }
}

#[test]
fn a_product_that_does_not_fit_its_buffers_is_refused_on_every_backend() {
    for backend in ops::blas::available_backends() {
        let mut y = vec![0f32; 5];
        let err = ops::linear_on(backend, &mut y, &[0f32; 6], &[0f32; 6], (3, 2), false).unwrap_err().to_string();
        assert!(err.contains("do not fit"), "{}: {err}", backend.as_str());
    }
}
