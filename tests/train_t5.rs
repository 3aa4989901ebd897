//! T5 as the frozen backbone, the paper's setup: no classifier head; each
//! label string is a decoder target, scored by the frozen decoder (rank
//! classification), and only the prompts (and G) train. Uses the tiny T5
//! v1.0 fixture (tests/fixtures/t5, made by scripts/gen_fixtures_t5.py).

use std::path::Path;

use attempt_pkg::compose::Method;
use attempt_pkg::data::collate;
use attempt_pkg::data::synthetic::{generate, synthetic_task, synthetic_vocabulary};
use attempt_pkg::data::tasks::{TaskDef, TaskKind};
use attempt_pkg::data::{TextEncoder, WordTokenizer};
use attempt_pkg::model::{load_model, LoadedModel};
use attempt_pkg::train::{train, PromptModel, SourcePrompt, TaskData, TrainConfig, TrainOptions, TrainRequest};
use candle_core::{Device, Tensor};
use rand::SeedableRng;

const M: usize = 4;

fn t5() -> LoadedModel {
    load_model(Path::new("tests/fixtures/t5/v1_0"), &Device::Cpu).expect("tiny T5 fixture")
}

/// Sentiment words, fillers and the two label words: within the fixture's 64-token vocabulary.
fn tokenizer() -> WordTokenizer {
    let mut words: Vec<&str> = synthetic_vocabulary().into_iter().take(40).collect();
    words.extend(["negative", "positive"]);
    let tok = WordTokenizer::new(words);
    assert!(tok.vocab_size() <= 64);
    tok
}

fn sources(d: usize) -> Vec<SourcePrompt> {
    use rand::Rng;
    (0..2u64)
        .map(|i| {
            let mut rng = rand::rngs::StdRng::seed_from_u64(50 + i);
            let v: Vec<f32> = (0..M * d).map(|_| rng.gen_range(-0.5f32..0.5)).collect();
            SourcePrompt { name: format!("src{i}@1.0.0"), tensor: Tensor::from_vec(v, (M, d), &Device::Cpu).unwrap() }
        })
        .collect()
}

fn config(method: Method) -> TrainConfig {
    TrainConfig {
        method,
        prompt_length: M,
        epochs: 20,
        batch_size: 16,
        max_length: 16,
        lr_prompt: 0.3,
        lr_other: 0.03,
        warmup_ratio: 0.05,
        seed: 5,
        ..TrainConfig::default()
    }
}

fn sentiment() -> TaskData {
    let all = generate("sentiment", 520, 11).unwrap();
    TaskData { task: synthetic_task("sentiment").unwrap(), train: all[..320].to_vec(), dev: all[320..].to_vec() }
}

#[test]
fn attempt_on_t5_learns_by_scoring_label_strings() {
    let model = t5();
    let enc = model.model.encoder();
    assert!(enc.label_scorer().is_some());
    let tok = tokenizer();
    let d = enc.hidden_size();
    let request = TrainRequest {
        encoder: enc,
        tokenizer: &tok,
        sources: sources(d),
        tasks: vec![sentiment()],
        config: config(Method::Attempt),
        device: Device::Cpu,
    };
    let outcome = train(request, &TrainOptions::default()).unwrap();

    // Only the target prompt and G are trainable: there is no head.
    let names: Vec<String> = outcome.model.named_vars().into_iter().map(|(n, _)| n).collect();
    assert!(names.iter().all(|n| !n.contains(".head.")), "{names:?}");
    assert!(names.contains(&"task.sentiment.prompt".to_string()));
    let attention: usize =
        outcome.model.attention.as_ref().unwrap().named_vars().iter().map(|(_, v)| v.elem_count()).sum();
    assert_eq!(outcome.model.trainable_parameter_count(), M * d + attention);

    // The objective is T5's own: token-mean cross-entropy of the gold label
    // string. It falls steadily. (The fixture's decoder is random and tiny,
    // so it cannot show a task being learnt to high accuracy: its outputs
    // hardly depend on the encoder. The encoder-only tests show that.)
    let losses: Vec<f64> = outcome.history.iter().map(|h| h.train_loss).collect();
    assert!(losses.windows(2).filter(|w| w[1] < w[0]).count() >= losses.len() * 3 / 4, "{losses:?}");
    assert!(losses[losses.len() - 1] < losses[0] - 0.1, "{losses:?}");
    // Evaluation is rank classification over the label strings.
    let accuracy = outcome.best_eval[0].metrics["accuracy"];
    assert!((0.0..=1.0).contains(&accuracy));
}

#[test]
fn gradients_reach_the_prompt_and_g_through_the_decoder() {
    let model = t5();
    let enc = model.model.encoder();
    let tok = tokenizer();
    let task = sentiment();
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let prompt_model = PromptModel::new(
        enc,
        &tok,
        &sources(enc.hidden_size()),
        std::slice::from_ref(&task.task),
        &config(Method::Attempt),
        &mut rng,
        &Device::Cpu,
    )
    .unwrap();
    let examples: Vec<_> = task.train.iter().take(8).collect();
    let batch = collate(&examples, &tok, 16, &Device::Cpu).unwrap();
    let forward = prompt_model.forward(enc, 0, &batch).unwrap();
    assert_eq!(forward.outputs.dims(), [8, 2]);
    let labels: Vec<_> = examples.iter().map(|e| e.label).collect();
    let loss = prompt_model.loss(0, &forward.outputs, &labels).unwrap();
    let grads = loss.backward().unwrap();
    for (name, var) in prompt_model.vars_for_task(0) {
        let g = grads.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
        let norm = g.sqr().unwrap().sum_all().unwrap().to_scalar::<f32>().unwrap();
        assert!(norm > 0.0 && norm.is_finite(), "{name}: gradient norm {norm}");
    }
}

#[test]
fn regression_on_t5_is_refused_with_a_reason() {
    let model = t5();
    let enc = model.model.encoder();
    let tok = tokenizer();
    let stsb = TaskDef { kind: TaskKind::Regression, ..synthetic_task("sentiment").unwrap() };
    let mut rng = rand::rngs::StdRng::seed_from_u64(1);
    let err = PromptModel::new(enc, &tok, &[], &[stsb], &config(Method::Pt), &mut rng, &Device::Cpu).err().unwrap();
    assert!(err.to_string().contains("regression") && err.to_string().contains("encoder-only"), "{err}");
}
