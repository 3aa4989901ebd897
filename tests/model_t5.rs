//! T5 against transformers: tiny random v1.0 and v1.1 models and reference
//! outputs written by scripts/gen_fixtures_t5.py (tests/fixtures/t5/).

use std::collections::HashMap;
use std::path::PathBuf;

use attempt_pkg::model::t5::{T5Config, T5Model};
use attempt_pkg::model::Encoder;
use candle_core::{DType, Device, Tensor, Var};

const TOLERANCE: f32 = 1e-4;

struct Fixture {
    dir: PathBuf,
    config: T5Config,
    weights: HashMap<String, Tensor>,
    model: T5Model,
    reference: HashMap<String, Tensor>,
}

impl Fixture {
    fn load(variant: &str) -> Fixture {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/t5").join(variant);
        let config = T5Config::from_file(&dir.join("config.json")).unwrap();
        let weights = candle_core::safetensors::load(dir.join("model.safetensors"), &Device::Cpu).unwrap();
        let reference = candle_core::safetensors::load(dir.join("reference.safetensors"), &Device::Cpu).unwrap();
        let model = T5Model::from_weights(&config, &weights, &Device::Cpu).unwrap();
        Fixture { dir, config, weights, model, reference }
    }

    fn get(&self, name: &str) -> &Tensor {
        self.reference.get(name).unwrap_or_else(|| panic!("reference lacks {name}"))
    }

    fn input_ids(&self) -> Tensor {
        self.get("input_ids").to_dtype(DType::U32).unwrap()
    }

    fn encoder_hidden(&self) -> Tensor {
        let embeds = self.model.embed_tokens(&self.input_ids()).unwrap();
        self.model.encode(&embeds, self.get("attention_mask")).unwrap()
    }

    /// Prompt [P, d] broadcast over the batch and prepended to the token embeddings.
    fn prompted_embeds(&self, prompt: &Tensor) -> Tensor {
        let tokens = self.model.embed_tokens(&self.input_ids()).unwrap();
        let (b, _, d) = tokens.dims3().unwrap();
        let p = prompt.dim(0).unwrap();
        let prompt = prompt.unsqueeze(0).unwrap().broadcast_as((b, p, d)).unwrap();
        Tensor::cat(&[&prompt, &tokens], 1).unwrap()
    }

    fn prompted_loss(&self, embeds: &Tensor) -> Tensor {
        let mask = self.get("prompt_mask");
        let hidden = self.model.encode(embeds, mask).unwrap();
        self.model.loss(&hidden, mask, self.get("labels")).unwrap()
    }
}

fn max_abs_diff(a: &Tensor, b: &Tensor) -> f32 {
    assert_eq!(a.dims(), b.dims(), "shape mismatch");
    let a = a.to_dtype(DType::F32).unwrap();
    let b = b.to_dtype(DType::F32).unwrap();
    (a - b).unwrap().abs().unwrap().flatten_all().unwrap().max(0).unwrap().to_scalar::<f32>().unwrap()
}

fn assert_close(what: &str, ours: &Tensor, reference: &Tensor) {
    let err = max_abs_diff(ours, reference);
    let scale = max_abs_diff(reference, &reference.zeros_like().unwrap());
    eprintln!("{what}: max abs error {err:e} (reference max abs {scale})");
    assert!(err <= TOLERANCE, "{what}: max abs error {err} > {TOLERANCE}");
    // Small tensors (gradients) must also match relative to their size.
    assert!(err <= 1e-3 * scale + 1e-6, "{what}: max abs error {err} vs magnitude {scale}");
}

fn scalar(t: &Tensor) -> f32 {
    t.flatten_all().unwrap().to_vec1::<f32>().unwrap()[0]
}

fn check_forward(variant: &str) {
    let f = Fixture::load(variant);
    let hidden = f.encoder_hidden();
    assert_close("encoder hidden", &hidden, f.get("encoder_hidden"));

    let labels = f.get("labels");
    let dec_ids = f.model.shift_right(labels).unwrap();
    assert_eq!(
        dec_ids.to_vec2::<u32>().unwrap(),
        f.get("decoder_input_ids").to_dtype(DType::U32).unwrap().to_vec2::<u32>().unwrap()
    );
    let mask = f.get("attention_mask");
    let logits = f.model.decoder_logits(&hidden, mask, &dec_ids).unwrap();
    assert_close("decoder logits", &logits, f.get("decoder_logits"));

    let loss = f.model.loss(&hidden, mask, labels).unwrap();
    assert!((scalar(&loss) - scalar(f.get("loss"))).abs() <= TOLERANCE, "loss {loss} vs reference");
}

#[test]
fn v1_0_encoder_decoder_logits_and_loss_match_transformers() {
    check_forward("v1_0");
}

#[test]
fn v1_1_encoder_decoder_logits_and_loss_match_transformers() {
    check_forward("v1_1");
}

fn check_generation_and_scoring(variant: &str) {
    let f = Fixture::load(variant);
    let hidden = f.encoder_hidden();
    let mask = f.get("attention_mask");
    let reference = f.get("generated").to_dtype(DType::U32).unwrap().to_vec2::<u32>().unwrap();
    let max_new = reference[0].len() - 1;
    let generated = f.model.generate(&hidden, mask, max_new).unwrap();
    // transformers includes the decoder start token; we return only new tokens.
    let expected: Vec<Vec<u32>> = reference.iter().map(|r| r[1..].to_vec()).collect();
    assert_eq!(generated, expected);
    // The fixtures were made so greedy decoding is not one repeated token.
    assert!(expected.iter().flatten().collect::<std::collections::HashSet<_>>().len() > 1);

    let candidates = vec![vec![5, 9, 1], vec![7, 1], vec![11, 12, 13, 1]];
    let scores = f.model.score_candidates(&hidden, mask, &candidates).unwrap();
    assert_close("candidate scores", &scores, f.get("candidate_scores"));
}

#[test]
fn v1_0_greedy_generation_and_candidate_scores_match_transformers() {
    check_generation_and_scoring("v1_0");
}

#[test]
fn v1_1_greedy_generation_and_candidate_scores_match_transformers() {
    check_generation_and_scoring("v1_1");
}

fn check_prompt_gradient(variant: &str) {
    let f = Fixture::load(variant);
    let prompt = Var::from_tensor(f.get("prompt")).unwrap();
    let embeds = f.prompted_embeds(prompt.as_tensor());
    let mask = f.get("prompt_mask");
    let hidden = f.model.encode(&embeds, mask).unwrap();
    assert_close("prompted encoder hidden", &hidden, f.get("prompt_encoder_hidden"));
    let loss = f.model.loss(&hidden, mask, f.get("labels")).unwrap();
    assert!((scalar(&loss) - scalar(f.get("prompt_loss"))).abs() <= TOLERANCE);

    let grads = loss.backward().unwrap();
    let grad = grads.get(prompt.as_tensor()).expect("the prompt must receive a gradient");
    assert_close("prompt gradient", grad, f.get("prompt_grad"));
    // Frozen weights get no gradient (the frozen-linear op skips them).
    for name in ["encoder.block.0.layer.0.SelfAttention.q.weight", "decoder.block.1.layer.1.EncDecAttention.k.weight"] {
        assert!(grads.get(&f.weights[name]).is_none(), "{name} received a gradient");
    }

    // Gradient w.r.t. the whole input embedding sequence (prompt + tokens).
    let all = Var::from_tensor(&f.prompted_embeds(f.get("prompt"))).unwrap();
    let grads = f.prompted_loss(all.as_tensor()).backward().unwrap();
    let grad = grads.get(all.as_tensor()).expect("input embeddings must receive a gradient");
    assert_close("input embedding gradient", grad, f.get("prompt_embeds_grad"));
}

/// Training encodes with `encode_prompted`, which packs the real positions
/// of the padded batch: the decoder reads only those, so the loss and the
/// prompt gradient are transformers' too.
fn check_packed_prompt_gradient(variant: &str) {
    let f = Fixture::load(variant);
    let prompt = Var::from_tensor(f.get("prompt")).unwrap();
    let embeds = f.prompted_embeds(prompt.as_tensor());
    let mask = f.get("prompt_mask");
    let real = mask.to_dtype(DType::F32).unwrap();
    assert!(scalar(&real.sum_all().unwrap()) < real.elem_count() as f32, "the fixture pads");
    let p = prompt.as_tensor().dim(0).unwrap();
    let hidden = f.model.encode_prompted(&embeds, mask, p).unwrap();
    let attended = real.unsqueeze(2).unwrap().broadcast_as(hidden.shape()).unwrap().contiguous().unwrap();
    let reference = (f.get("prompt_encoder_hidden") * &attended).unwrap();
    assert_close("packed encoder hidden at attended positions", &(&hidden * &attended).unwrap(), &reference);
    let padded = (attended.ones_like().unwrap() - &attended).unwrap();
    assert_eq!(scalar(&(&hidden * &padded).unwrap().abs().unwrap().sum_all().unwrap()), 0.0, "padding comes out zero");
    let loss = f.model.loss(&hidden, mask, f.get("labels")).unwrap();
    assert!((scalar(&loss) - scalar(f.get("prompt_loss"))).abs() <= TOLERANCE);
    let grads = loss.backward().unwrap();
    let grad = grads.get(prompt.as_tensor()).expect("the prompt must receive a gradient");
    assert_close("prompt gradient through the packed encoder", grad, f.get("prompt_grad"));
}

/// `encode_prompted` gives the prompt positions of the input their
/// gradient (transformers', on the packed path of a padded batch; the full
/// encoder's, on an unpadded one) and the frozen text positions none: the
/// first block skips their input products.
fn check_text_positions_get_no_gradient(variant: &str) {
    let f = Fixture::load(variant);
    let p = f.get("prompt").dim(0).unwrap();
    let input = Var::from_tensor(&f.prompted_embeds(f.get("prompt"))).unwrap();
    let (b, l, _) = input.as_tensor().dims3().unwrap();
    let text_is_zero = |what: &str, grad: &Tensor| {
        let text = grad.narrow(1, p, l - p).unwrap().abs().unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap();
        assert!(text.iter().all(|&v| v == 0.0), "{what}: text positions got a gradient");
    };
    let grad_of = |hidden: &Tensor, mask: &Tensor| {
        let loss = f.model.loss(hidden, mask, f.get("labels")).unwrap();
        loss.backward().unwrap().get(input.as_tensor()).expect("the input must receive a gradient").clone()
    };
    let lead = |t: &Tensor| t.narrow(1, 0, p).unwrap();

    let mask = f.get("prompt_mask");
    let grad = grad_of(&f.model.encode_prompted(input.as_tensor(), mask, p).unwrap(), mask);
    assert_close("prompt positions' gradient (packed)", &lead(&grad), &lead(f.get("prompt_embeds_grad")));
    text_is_zero("packed", &grad);

    let unpadded = Tensor::ones((b, l), mask.dtype(), &Device::Cpu).unwrap();
    let full = grad_of(&f.model.encode(input.as_tensor(), &unpadded).unwrap(), &unpadded);
    let grad = grad_of(&f.model.encode_prompted(input.as_tensor(), &unpadded, p).unwrap(), &unpadded);
    assert_close("prompt positions' gradient (unpadded)", &lead(&grad), &lead(&full));
    text_is_zero("unpadded", &grad);

    let err = f.model.encode_prompted(input.as_tensor(), mask, l + 1).unwrap_err().to_string();
    assert!(err.contains("does not fit"), "{err}");
}

#[test]
fn v1_0_prompted_encoder_gives_text_positions_no_gradient() {
    check_text_positions_get_no_gradient("v1_0");
}

#[test]
fn v1_1_prompted_encoder_gives_text_positions_no_gradient() {
    check_text_positions_get_no_gradient("v1_1");
}

#[test]
fn v1_0_packed_encoder_gives_the_prompt_transformers_gradient() {
    check_packed_prompt_gradient("v1_0");
}

#[test]
fn v1_1_packed_encoder_gives_the_prompt_transformers_gradient() {
    check_packed_prompt_gradient("v1_1");
}

#[test]
fn v1_0_gradient_to_prepended_prompt_matches_transformers() {
    check_prompt_gradient("v1_0");
}

#[test]
fn v1_1_gradient_to_prepended_prompt_matches_transformers() {
    check_prompt_gradient("v1_1");
}

/// Central finite differences of the loss along random directions in prompt
/// space agree with the analytic directional derivative.
fn check_prompt_gradient_finite_differences(variant: &str) {
    let f = Fixture::load(variant);
    let prompt0 = f.get("prompt").clone();
    let prompt = Var::from_tensor(&prompt0).unwrap();
    let loss = f.prompted_loss(&f.prompted_embeds(prompt.as_tensor()));
    let grads = loss.backward().unwrap();
    let grad = grads.get(prompt.as_tensor()).unwrap().clone();
    let grad_norm = scalar(&grad.sqr().unwrap().sum_all().unwrap()).sqrt();
    assert!(grad_norm > 1e-3, "gradient suspiciously small: {grad_norm}");

    let h = 1e-2f64;
    for seed in 0..4u64 {
        // Deterministic pseudo-random direction, unit norm; one along the gradient.
        let direction = if seed == 0 {
            grad.clone()
        } else {
            let n = prompt0.elem_count();
            let v: Vec<f32> =
                (0..n).map(|i| (((i as u64 * 2654435761 + seed * 40503) % 1000) as f32 / 500.0) - 1.0).collect();
            Tensor::from_vec(v, prompt0.shape(), &Device::Cpu).unwrap()
        };
        let norm = scalar(&direction.sqr().unwrap().sum_all().unwrap()).sqrt() as f64;
        let u = (direction / norm).unwrap();
        let analytic = scalar(&(&grad * &u).unwrap().sum_all().unwrap());
        let at = |s: f64| {
            let p = (&prompt0 + (&u * s).unwrap()).unwrap();
            scalar(&f.prompted_loss(&f.prompted_embeds(&p)))
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h as f32);
        let err = (numeric - analytic).abs();
        assert!(
            err <= 2e-3 + 1e-2 * analytic.abs(),
            "direction {seed}: finite difference {numeric} vs analytic {analytic}"
        );
    }
}

#[test]
fn v1_0_prompt_gradient_matches_finite_differences() {
    check_prompt_gradient_finite_differences("v1_0");
}

#[test]
fn v1_1_prompt_gradient_matches_finite_differences() {
    check_prompt_gradient_finite_differences("v1_1");
}

#[test]
fn config_distinguishes_v1_0_from_v1_1() {
    let v10 = Fixture::load("v1_0");
    let v11 = Fixture::load("v1_1");
    assert!(v10.config.rescales_decoder_output() && v10.config.tie_word_embeddings);
    assert!(!v11.config.rescales_decoder_output() && !v11.config.tie_word_embeddings);
    assert_eq!(v11.config.decoder_layers(), 3);
    assert_eq!(v10.model.hidden_size(), 32);
    assert!(v10.dir.join("config.json").exists());
}

// ----- bad input ------------------------------------------------------------

fn fixture_config_json(variant: &str) -> serde_json::Value {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/t5").join(variant);
    serde_json::from_str(&std::fs::read_to_string(dir.join("config.json")).unwrap()).unwrap()
}

fn config_error(json: &serde_json::Value) -> String {
    format!("{:#}", T5Config::from_json_str(&json.to_string()).unwrap_err())
}

#[test]
fn config_missing_field_is_named() {
    let mut json = fixture_config_json("v1_0");
    json.as_object_mut().unwrap().remove("d_model");
    let err = config_error(&json);
    assert!(err.contains("d_model"), "{err}");
}

#[test]
fn config_unknown_activation_and_architecture_are_rejected() {
    let mut json = fixture_config_json("v1_1");
    json["feed_forward_proj"] = "gated-tanhshrink".into();
    let err = config_error(&json);
    assert!(err.contains("tanhshrink"), "{err}");

    let mut json = fixture_config_json("v1_1");
    json["model_type"] = "bert".into();
    let err = config_error(&json);
    assert!(err.contains("bert"), "{err}");
}

#[test]
fn config_file_error_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("config.json");
    std::fs::write(&path, "{\"d_model\": 8}").unwrap();
    let err = format!("{:#}", T5Config::from_file(&path).unwrap_err());
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("missing field"), "{err}");
}

#[test]
fn weight_shape_mismatch_names_the_tensor() {
    let f = Fixture::load("v1_0");
    let mut weights = f.weights.clone();
    let name = "decoder.block.1.layer.2.DenseReluDense.wo.weight";
    weights.insert(name.to_string(), Tensor::zeros((32, 63), DType::F32, &Device::Cpu).unwrap());
    let err = format!("{:#}", T5Model::from_weights(&f.config, &weights, &Device::Cpu).err().unwrap());
    assert!(err.contains(name) && err.contains("[32, 63]") && err.contains("[32, 64]"), "{err}");
}

#[test]
fn missing_weight_is_named() {
    let f = Fixture::load("v1_1");
    let mut weights = f.weights.clone();
    weights.remove("lm_head.weight");
    let err = format!("{:#}", T5Model::from_weights(&f.config, &weights, &Device::Cpu).err().unwrap());
    assert!(err.contains("lm_head.weight"), "{err}");

    let mut weights = f.weights.clone();
    weights.remove("encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
    let err = format!("{:#}", T5Model::from_weights(&f.config, &weights, &Device::Cpu).err().unwrap());
    assert!(err.contains("relative_attention_bias"), "{err}");
}

#[test]
fn out_of_vocabulary_ids_and_bad_masks_are_errors() {
    let f = Fixture::load("v1_0");
    let ids = Tensor::new(&[[3u32, 64]], &Device::Cpu).unwrap();
    let err = f.model.embed_tokens(&ids).unwrap_err().to_string();
    assert!(err.contains("64"), "{err}");

    let embeds = f.model.embed_tokens(&Tensor::new(&[[3u32, 4]], &Device::Cpu).unwrap()).unwrap();
    let bad_mask = Tensor::ones((1, 3), DType::F32, &Device::Cpu).unwrap();
    let err = f.model.encode(&embeds, &bad_mask).unwrap_err().to_string();
    assert!(err.contains("mask"), "{err}");
}

#[test]
fn weight_listing_covers_every_fixture_tensor() {
    for variant in ["v1_0", "v1_1"] {
        let f = Fixture::load(variant);
        let listed: HashMap<String, Vec<usize>> = f.config.weight_shapes().unwrap().into_iter().collect();
        assert_eq!(listed.len(), f.weights.len(), "{variant}");
        for (name, t) in &f.weights {
            assert_eq!(listed.get(name), Some(&t.dims().to_vec()), "{variant}: {name}");
        }
    }
}
