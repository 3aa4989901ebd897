//! The frozen products' precision, end to end: the BERT fixture (Hugging
//! Face transformers, fp32) encoded and differentiated on whatever backend
//! this process runs (`ATTEMPT_GEMM`), held to that backend's tolerance —
//! fp32's 1e-4, or bf16's looser one. scripts/test.sh runs this binary once
//! more with `ATTEMPT_GEMM=bf16` on CPUs with AVX512-BF16, so the bf16
//! backend is checked through a whole model: hidden states, the training
//! encoder's packed path, and the prompt's gradient.

use std::collections::HashMap;
use std::path::PathBuf;

use attempt_pkg::model::bert::Bert;
use attempt_pkg::model::config::{read_config, ModelConfig};
use attempt_pkg::model::ops::blas::gemm_backend;
use attempt_pkg::model::weights::Weights;
use attempt_pkg::model::Encoder;
use candle_core::{DType, Device, Tensor, Var};

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/bert")
}

fn load() -> (Bert, HashMap<String, Tensor>) {
    let dir = fixture_dir().join("model");
    let ModelConfig::Bert(cfg) = read_config(&dir).unwrap() else { panic!("fixture is not BERT") };
    let model = Bert::from_weights(&cfg, &Weights::load(&dir, &Device::Cpu).unwrap()).unwrap();
    let reference = candle_core::safetensors::load(fixture_dir().join("reference.safetensors"), &Device::Cpu).unwrap();
    (model, reference)
}

/// ‖got − want‖ / ‖want‖ over the elements where `weight` is non-zero.
fn relative_error(got: &Tensor, want: &Tensor, weight: &Tensor) -> f32 {
    let norm = |t: &Tensor| (t * weight).unwrap().sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap().sqrt();
    norm(&(got - want).unwrap()) / norm(want)
}

/// The largest relative errors (hidden states, prompt gradient) the checks
/// allow on this process's backend. bf16: measured on the fixture
/// (2026-12-07, Zen 4) at 0.0058 for the hidden states and 0.025 for the
/// prompt gradient (a sum over every layer's backward, each rounded); the
/// bounds leave about 3× room. fp32 lands near 1e-6.
fn tolerances() -> (f32, f32) {
    if gemm_backend().precision() == "bf16" {
        (2e-2, 7.5e-2)
    } else {
        (1e-5, 1e-5)
    }
}

#[test]
fn the_prompted_encoder_and_its_prompt_gradient_match_the_reference_in_this_precision() {
    let (model, r) = load();
    let ids = r["ids"].to_dtype(DType::U32).unwrap();
    let prompt = Var::from_tensor(&r["prompt"]).unwrap();
    let (b, _) = ids.dims2().unwrap();
    let (p, d) = prompt.as_tensor().dims2().unwrap();
    let words = model.embed_tokens(&ids).unwrap();
    let embeds =
        Tensor::cat(&[&prompt.as_tensor().unsqueeze(0).unwrap().broadcast_as((b, p, d)).unwrap(), &words], 1).unwrap();
    let mask = Tensor::cat(&[&Tensor::ones((b, p), DType::F32, &Device::Cpu).unwrap(), &r["mask"]], 1).unwrap();
    let attended = mask.unsqueeze(2).unwrap().broadcast_as(r["prompt_hidden"].shape()).unwrap().contiguous().unwrap();
    let (state_tolerance, gradient_tolerance) = tolerances();
    let backend = gemm_backend().as_str();
    // `encode` (every position) and `encode_prompted` (training's packed path).
    for (name, out) in [
        ("encode", model.encode(&embeds, &mask).unwrap()),
        ("encode_prompted", model.encode_prompted(&embeds, &mask, p).unwrap()),
    ] {
        let err = relative_error(&out, &r["prompt_hidden"], &attended);
        eprintln!("{backend}: {name} hidden states off by {err:.2e} (relative)");
        assert!(
            err < state_tolerance,
            "{backend}: {name}'s hidden states are off by {err} (relative; allowed {state_tolerance})"
        );
        // The reference's loss weighs every position; the packed path's
        // padded positions are zero, so it is checked for a gradient only.
        let loss = (&out * &r["loss_weights"]).unwrap().sum_all().unwrap();
        let grads = loss.backward().unwrap();
        let grad = grads.get(prompt.as_tensor()).expect("the prompt must receive a gradient");
        if name == "encode" {
            let all = r["prompt_grad"].ones_like().unwrap();
            let err = relative_error(grad, &r["prompt_grad"], &all);
            eprintln!("{backend}: prompt gradient off by {err:.2e} (relative)");
            assert!(
                err < gradient_tolerance,
                "{backend}: the prompt gradient is off by {err} (relative; allowed {gradient_tolerance})"
            );
        } else {
            assert!(
                grad.abs().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap() > 0.0,
                "no gradient reached the prompt"
            );
        }
    }
}
