//! The attention module G and the prompt mixture against an independent
//! plain-Rust reference, gradient reachability and a finite-difference check.
#![allow(clippy::needless_range_loop, clippy::useless_vec)]

use attempt_pkg::compose::{AttentionConfig, AttentionModule, Method, PromptMixture};
use candle_core::{Device, IndexOp, Tensor, Var};

const B: usize = 2;
const L: usize = 3;
const D: usize = 4;
const R: usize = 3;
const M: usize = 2;
const T: usize = 2; // sources

/// Deterministic pseudo-random values in ±1 (no RNG dependency in the reference).
fn vals(n: usize, salt: u32) -> Vec<f32> {
    (0..n)
        .map(|i| {
            let x = ((i as u32).wrapping_mul(2654435761).wrapping_add(salt.wrapping_mul(40503))) % 20011;
            x as f32 / 10005.5 - 1.0
        })
        .collect()
}

struct Fixture {
    x: Vec<f32>,      // [B, L, D]
    mask: Vec<f32>,   // [B, L]
    w_down: Vec<f32>, // [R, D]
    w_up: Vec<f32>,   // [D, R]
    ln_w: Vec<f32>,   // [D]
    ln_b: Vec<f32>,   // [D]
    src: Vec<f32>,    // [T, M, D]
    tgt: Vec<f32>,    // [M, D]
}

fn fixture() -> Fixture {
    let mut x = vals(B * L * D, 1);
    // Make the padded position of example 1 dominate every feature, so
    // masked and unmasked pooling differ.
    for k in 0..D {
        x[(L + 2) * D + k] = 5.0;
    }
    Fixture {
        x,
        mask: vec![1., 1., 1., 1., 1., 0.],
        w_down: vals(R * D, 2),
        w_up: vals(D * R, 3),
        ln_w: vec![1.0, 0.5, -0.7, 1.3],
        ln_b: vec![0.1, -0.2, 0.0, 0.3],
        src: vals(T * M * D, 4),
        tgt: vals(M * D, 5),
    }
}

/// Plain f64 reference of ATTEMPT's composition: returns (prompt [B,M,D], weights [B,T+1]).
fn reference(f: &Fixture, unmasked: bool) -> (Vec<f64>, Vec<f64>) {
    let temp = D as f64 * std::f64::consts::E;
    let mut prompts = Vec::new();
    let mut weights = Vec::new();
    // All prompts: sources then target.
    let all: Vec<Vec<f64>> = (0..T)
        .map(|t| f.src[t * M * D..(t + 1) * M * D].iter().map(|&v| v as f64).collect())
        .chain(std::iter::once(f.tgt.iter().map(|&v| v as f64).collect()))
        .collect();
    let pooled: Vec<Vec<f64>> = all
        .iter()
        .map(|p| (0..D).map(|k| (0..M).map(|r| p[r * D + k]).fold(f64::NEG_INFINITY, f64::max)).collect())
        .collect();
    for b in 0..B {
        let mut pool = vec![f64::NEG_INFINITY; D];
        for l in 0..L {
            if unmasked || f.mask[b * L + l] > 0.5 {
                for k in 0..D {
                    pool[k] = pool[k].max(f.x[(b * L + l) * D + k] as f64);
                }
            }
        }
        let down: Vec<f64> = (0..R)
            .map(|r| {
                let z: f64 = (0..D).map(|k| f.w_down[r * D + k] as f64 * pool[k]).sum();
                z / (1.0 + (-z).exp()) // SiLU
            })
            .collect();
        let up: Vec<f64> = (0..D).map(|k| (0..R).map(|r| f.w_up[k * R + r] as f64 * down[r]).sum()).collect();
        let mean = up.iter().sum::<f64>() / D as f64;
        let var = up.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / D as f64;
        let h: Vec<f64> =
            (0..D).map(|k| (up[k] - mean) / (var + 1e-5).sqrt() * f.ln_w[k] as f64 + f.ln_b[k] as f64).collect();
        let scores: Vec<f64> =
            pooled.iter().map(|p| p.iter().zip(&h).map(|(a, b)| a * b).sum::<f64>() / temp).collect();
        let mx = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let z: f64 = scores.iter().map(|s| (s - mx).exp()).sum();
        let a: Vec<f64> = scores.iter().map(|s| (s - mx).exp() / z).collect();
        for i in 0..M * D {
            let mixed: f64 = (0..=T).map(|j| a[j] * all[j][i]).sum();
            prompts.push(all[T][i] + mixed); // P_target + Σ_j a_j P_j, target included in j
        }
        weights.extend(a);
    }
    (prompts, weights)
}

struct Built {
    g: AttentionModule,
    mixture: PromptMixture,
    source_var: Var,
    target: Var,
    x: Tensor,
    mask: Tensor,
}

fn build(f: &Fixture, unmasked: bool) -> Built {
    let dev = Device::Cpu;
    let t = |v: &Vec<f32>, s: &[usize]| Tensor::from_vec(v.clone(), s, &dev).unwrap();
    let g = AttentionModule::from_tensors(
        &t(&f.w_down, &[R, D]),
        &t(&f.w_up, &[D, R]),
        &t(&f.ln_w, &[D]),
        &t(&f.ln_b, &[D]),
        AttentionConfig { unmasked_pooling: unmasked, ..AttentionConfig::default() },
    )
    .unwrap();
    // Sources as a Var on purpose: the mixture must still never pass a gradient to it.
    let source_var = Var::from_tensor(&t(&f.src, &[T, M, D])).unwrap();
    let mixture = PromptMixture::new(Method::Attempt, Some(source_var.as_tensor().clone())).unwrap();
    Built {
        g,
        mixture,
        source_var,
        target: Var::from_tensor(&t(&f.tgt, &[M, D])).unwrap(),
        x: t(&f.x, &[B, L, D]),
        mask: t(&f.mask, &[B, L]),
    }
}

fn assert_close(got: &[f32], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((*g as f64 - w).abs() <= tol * (1.0 + w.abs()), "{what}[{i}]: got {g}, want {w}");
    }
}

#[test]
fn g_and_mixture_match_hand_computed_reference() {
    let f = fixture();
    for unmasked in [false, true] {
        let b = build(&f, unmasked);
        let out = b.mixture.compose(b.target.as_tensor(), Some(&b.g), &b.x, &b.mask).unwrap();
        let (want_p, want_w) = reference(&f, unmasked);
        let got_w = out.weights.unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        let got_p = out.prompt.flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert_close(&got_w, &want_w, 1e-5, "weights");
        assert_close(&got_p, &want_p, 1e-5, "prompt");
    }
    // Masking matters for this fixture: the two references differ.
    assert_ne!(reference(&f, false).1, reference(&f, true).1);
}

#[test]
fn temperature_is_d_times_e_by_default_and_configurable() {
    assert!((AttentionConfig::default().temperature_for(384) - 384.0 * std::f64::consts::E).abs() < 1e-9);
    let c = AttentionConfig { temperature: Some(2.0), ..AttentionConfig::default() };
    assert_eq!(c.temperature_for(384), 2.0);
}

#[test]
fn gradients_reach_target_and_g_but_never_sources() {
    let f = fixture();
    let b = build(&f, false);
    let out = b.mixture.compose(b.target.as_tensor(), Some(&b.g), &b.x, &b.mask).unwrap();
    let r = Tensor::from_vec(vals(B * M * D, 9), (B, M, D), &Device::Cpu).unwrap();
    let loss = (out.prompt * r).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    for (name, v) in [
        ("target", &b.target),
        ("w_down", &b.g.w_down),
        ("w_up", &b.g.w_up),
        ("ln weight", &b.g.ln_weight),
        ("ln bias", &b.g.ln_bias),
    ] {
        let g = grads.get(v).unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 0.0 && norm.is_finite(), "{name} gradient norm {norm}");
    }
    assert!(grads.get(&b.source_var).is_none(), "a source prompt received a gradient");
}

#[test]
fn target_gradient_matches_finite_differences() {
    let f = fixture();
    let r = vals(B * M * D, 9);
    let c = vals(B * (T + 1), 10);
    let loss_of = |tgt: &Vec<f32>, want_grad: bool| -> (f64, Option<Vec<f32>>) {
        let mut f2 = fixture();
        f2.tgt = tgt.clone();
        let b = build(&f2, false);
        let out = b.mixture.compose(b.target.as_tensor(), Some(&b.g), &b.x, &b.mask).unwrap();
        let rt = Tensor::from_vec(r.clone(), (B, M, D), &Device::Cpu).unwrap();
        let ct = Tensor::from_vec(c.clone(), (B, T + 1), &Device::Cpu).unwrap();
        // Exercise both paths: the mixed prompt and the weights themselves.
        let loss = ((out.prompt * rt).unwrap().sum_all().unwrap()
            + (out.weights.unwrap() * ct).unwrap().sum_all().unwrap() * 10.0)
            .unwrap();
        let value = loss.to_scalar::<f32>().unwrap() as f64;
        let grad = want_grad.then(|| {
            let g = loss.backward().unwrap();
            g.get(&b.target).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        });
        (value, grad)
    };
    let (_, grad) = loss_of(&f.tgt, true);
    let grad = grad.unwrap();
    let eps = 1e-2f32;
    for i in 0..M * D {
        let mut plus = f.tgt.clone();
        plus[i] += eps;
        let mut minus = f.tgt.clone();
        minus[i] -= eps;
        let fd = (loss_of(&plus, false).0 - loss_of(&minus, false).0) / (2.0 * eps as f64);
        let an = grad[i] as f64;
        assert!((fd - an).abs() <= 2e-2 * (1.0 + an.abs()), "element {i}: finite difference {fd}, analytic {an}");
    }
}

#[test]
fn uniform_pt_and_spot_compose_as_defined() {
    let f = fixture();
    let b = build(&f, false);
    let uniform = PromptMixture::new(Method::Uniform, Some(b.source_var.as_tensor().clone())).unwrap();
    let out = uniform.compose(b.target.as_tensor(), None, &b.x, &b.mask).unwrap();
    let got = out.prompt.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    for bi in 0..B {
        for i in 0..M * D {
            let mean = (f.src[i] + f.src[M * D + i] + f.tgt[i]) as f64 / 3.0;
            let want = f.tgt[i] as f64 + mean;
            assert!((got[bi * M * D + i] as f64 - want).abs() < 1e-5);
        }
    }
    assert_eq!(out.weights.unwrap().to_vec2::<f32>().unwrap(), vec![vec![1.0 / 3.0; 3]; B]);
    for m in [Method::Pt, Method::Spot] {
        let pt = PromptMixture::new(m, None).unwrap();
        let out = pt.compose(b.target.as_tensor(), None, &b.x, &b.mask).unwrap();
        assert!(out.weights.is_none());
        assert_eq!(out.prompt.i(1).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(), f.tgt);
    }
    // ATTEMPT without G, or mixing methods without sources, are refused.
    assert!(b.mixture.compose(b.target.as_tensor(), None, &b.x, &b.mask).is_err());
    assert!(PromptMixture::new(Method::Uniform, None).is_err());
    assert_eq!("SPOT".parse::<Method>().unwrap(), Method::Spot);
    assert!("lora".parse::<Method>().is_err());
}

#[test]
fn prompt_is_prepended_and_mask_extended() {
    let dev = Device::Cpu;
    let p = Tensor::ones((2, 3, 4), candle_core::DType::F32, &dev).unwrap();
    let x = Tensor::zeros((2, 5, 4), candle_core::DType::F32, &dev).unwrap();
    let mask = Tensor::new(&[[1f32, 1., 1., 0., 0.], [1., 1., 1., 1., 1.]], &dev).unwrap();
    let (e, m) = attempt_pkg::compose::prepend_prompt(&p, &x, &mask).unwrap();
    assert_eq!(e.dims(), &[2, 8, 4]);
    assert_eq!(m.to_vec2::<f32>().unwrap()[0], vec![1., 1., 1., 1., 1., 1., 0., 0.]);
    assert_eq!(e.i((0, 2, 0)).unwrap().to_scalar::<f32>().unwrap(), 1.0);
    assert_eq!(e.i((0, 3, 0)).unwrap().to_scalar::<f32>().unwrap(), 0.0);
}

fn build_with(f: &Fixture, config: AttentionConfig) -> Built {
    let dev = Device::Cpu;
    let t = |v: &Vec<f32>, s: &[usize]| Tensor::from_vec(v.clone(), s, &dev).unwrap();
    let mut b = build(f, false);
    b.g = AttentionModule::from_tensors(
        &t(&f.w_down, &[R, D]),
        &t(&f.w_up, &[D, R]),
        &t(&f.ln_w, &[D]),
        &t(&f.ln_b, &[D]),
        config,
    )
    .unwrap();
    b
}

#[test]
fn cosine_scores_ignore_the_prompts_norms() {
    use attempt_pkg::compose::AttentionScores;
    let f = fixture();
    let b = build_with(&f, AttentionConfig { scores: AttentionScores::Cosine, ..AttentionConfig::default() });
    assert_eq!(b.g.temperature().unwrap(), attempt_pkg::compose::attention::COSINE_TEMPERATURE);
    let h = b.g.instance_representation(&b.x, &b.mask).unwrap();
    let pooled = Tensor::from_vec(vals((T + 1) * D, 4), (T + 1, D), &Device::Cpu).unwrap();
    let s1 = b.g.scores(&h, &pooled).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    let s3 = b.g.scores(&h, &(pooled.clone() * 3.0).unwrap()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(s1.iter().zip(&s3).all(|(a, c)| (a - c).abs() < 1e-4), "{s1:?} vs {s3:?}");
    assert!(s1.iter().all(|v| v.abs() <= 1.0 / 0.1 + 1e-3), "cosine / 0.1 stays within ±10: {s1:?}");
    // Dot scores (the default) do grow with the norm.
    let d = build(&f, false);
    let d1 = d.g.scores(&h, &pooled).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    let d3 = d.g.scores(&h, &(pooled * 3.0).unwrap()).unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
    assert!((d3 - 3.0 * d1).abs() < 1e-3 * d1.abs().max(1.0));
}

#[test]
fn a_learned_temperature_is_a_trained_tensor_that_gets_a_gradient() {
    let f = fixture();
    let b = build_with(&f, AttentionConfig { learn_temperature: true, ..AttentionConfig::default() });
    let names: Vec<String> = b.g.named_vars().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"attention.log_temperature".to_string()), "{names:?}");
    assert!((b.g.temperature().unwrap() - D as f64 * std::f64::consts::E).abs() < 1e-2, "starts at d·e");
    let out = b.mixture.compose(b.target.as_tensor(), Some(&b.g), &b.x, &b.mask).unwrap();
    let c = Tensor::from_vec(vals(B * (T + 1), 10), (B, T + 1), &Device::Cpu).unwrap();
    let loss = (out.weights.unwrap() * c).unwrap().sum_all().unwrap();
    let grads = loss.backward().unwrap();
    let g = grads.get(b.g.log_temperature.as_ref().unwrap()).expect("a gradient for the log-temperature");
    assert!(g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
    // The default has no such tensor: the official setting's trainable set is unchanged.
    assert_eq!(build(&f, false).g.named_vars().len(), 4);
}

#[test]
fn a_standardised_input_is_the_paper_g_applied_to_the_standardised_input() {
    let f = fixture();
    let plain = build(&f, false);
    let std_g = build_with(&f, AttentionConfig { standardise_input: true, ..AttentionConfig::default() });
    let names: Vec<String> = std_g.g.named_vars().into_iter().map(|(n, _)| n).collect();
    assert!(names.contains(&"attention.b_down".to_string()), "{names:?}");
    let pooled = plain.g.pool(&plain.x, &plain.mask).unwrap(); // [B, D]
    let mean = pooled.mean(0).unwrap(); // [D]
    let std = Tensor::new(&[0.5f32, 2.0, 0.25, 1.5], &Device::Cpu).unwrap();
    std_g.g.standardise_on(&mean, &std).unwrap();
    // Subtracting a constant and dividing by a positive one per feature
    // commute with the max-pool, so the folded W_down and bias must equal
    // the paper's G on (X − μ)/σ.
    let shifted = plain
        .x
        .broadcast_sub(&mean.reshape((1, 1, D)).unwrap())
        .unwrap()
        .broadcast_div(&std.reshape((1, 1, D)).unwrap())
        .unwrap();
    let want = plain
        .g
        .instance_representation(&shifted, &plain.mask)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    let got = std_g
        .g
        .instance_representation(&std_g.x, &std_g.mask)
        .unwrap()
        .flatten_all()
        .unwrap()
        .to_vec1::<f32>()
        .unwrap();
    assert!(want.iter().zip(&got).all(|(a, b)| (a - b).abs() < 1e-4), "{want:?} vs {got:?}");
    assert_ne!(
        got,
        plain
            .g
            .instance_representation(&plain.x, &plain.mask)
            .unwrap()
            .flatten_all()
            .unwrap()
            .to_vec1::<f32>()
            .unwrap(),
        "standardising changes G's view of the input"
    );
    // A feature that does not vary is divided by a floor, not by zero.
    let flat = build_with(&f, AttentionConfig { standardise_input: true, ..AttentionConfig::default() });
    flat.g.standardise_on(&mean, &Tensor::new(&[1f32, 1.0, 0.0, 1.0], &Device::Cpu).unwrap()).unwrap();
    let w = flat.g.w_down.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert!(w.iter().all(|v| v.is_finite()), "{w:?}");
    // The bias is trained with G.
    let out = std_g.mixture.compose(std_g.target.as_tensor(), Some(&std_g.g), &std_g.x, &std_g.mask).unwrap();
    let c = Tensor::from_vec(vals(B * (T + 1), 11), (B, T + 1), &Device::Cpu).unwrap();
    let grads = (out.weights.unwrap() * c).unwrap().sum_all().unwrap().backward().unwrap();
    let g = grads.get(std_g.g.b_down.as_ref().unwrap()).expect("a gradient for b_down");
    assert!(g.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0);
    // A module built without it refuses rather than ignoring the call.
    assert!(plain.g.standardise_on(&mean, &std).is_err());
}
