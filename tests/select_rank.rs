//! Source selection on the tiny test encoder: a prompt trained for the task
//! against random prompts of its norm, the "nothing helps" answer for a pool
//! of junk, determinism, and refusals.

use attempt_pkg::compose::Method;
use attempt_pkg::data::synthetic::{generate, synthetic_task, synthetic_vocabulary};
use attempt_pkg::data::{Example, TextEncoder, WordTokenizer};
use attempt_pkg::select::{rank, Candidate, SelectConfig, Selection};
use attempt_pkg::train::testing::TinyEncoder;
use attempt_pkg::train::{train, Backbone, TaskData, TrainConfig, TrainOptions, TrainRequest};
use candle_core::{Device, Tensor};

const D: usize = 16;
const M: usize = 4;

fn setup() -> (TinyEncoder, WordTokenizer) {
    let tok = WordTokenizer::new(synthetic_vocabulary());
    (TinyEncoder::new(tok.vocab_size(), D, 1, &Device::Cpu).unwrap(), tok)
}

fn examples(task: &str, n: usize, seed: u64) -> Vec<Example> {
    generate(task, n, seed).unwrap()
}

/// Plain prompt tuning of an `[M, D]` prompt for `task` (frozen random heads,
/// so only the prompt can carry what was learned).
fn trained_prompt(enc: &TinyEncoder, tok: &WordTokenizer, task: &str) -> Tensor {
    let all = examples(task, 240, 5);
    let data = TaskData { task: synthetic_task(task).unwrap(), train: all[..200].to_vec(), dev: all[200..].to_vec() };
    let config = TrainConfig {
        method: Method::Pt,
        prompt_length: M,
        epochs: 20,
        batch_size: 16,
        max_length: 16,
        train_heads: false,
        seed: 3,
        ..TrainConfig::default()
    };
    let request =
        TrainRequest { encoder: enc, tokenizer: tok, sources: vec![], tasks: vec![data], config, device: Device::Cpu };
    let outcome = train(request, &TrainOptions::default()).unwrap();
    outcome.model.tasks[0].target.as_tensor().copy().unwrap()
}

fn row_norm(t: &Tensor) -> f32 {
    let rows = t.to_vec2::<f32>().unwrap();
    rows.iter().map(|r| r.iter().map(|v| v * v).sum::<f32>().sqrt()).sum::<f32>() / rows.len() as f32
}

/// Gaussian-ish rows (sum of uniforms) scaled to `norm`.
fn junk(seed: u64, norm: f32) -> Tensor {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15).wrapping_add(1);
    let mut rows = Vec::new();
    for _ in 0..M {
        let row: Vec<f32> = (0..D)
            .map(|_| {
                (0..3)
                    .map(|_| {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                        (x >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                    })
                    .sum()
            })
            .collect();
        let len = row.iter().map(|v| v * v).sum::<f32>().sqrt();
        rows.extend(row.iter().map(|v| v * norm / len));
    }
    Tensor::from_vec(rows, (M, D), &Device::Cpu).unwrap()
}

fn candidate(name: &str, prompt: Tensor) -> Candidate {
    Candidate { name: name.to_string(), version: "1.0.0".to_string(), prompt, signature: None, own_task: None }
}

fn config() -> SelectConfig {
    SelectConfig { sample: 200, max_length: 16, resamples: 10, ..SelectConfig::default() }
}

fn select(
    enc: &TinyEncoder,
    tok: &WordTokenizer,
    task: &str,
    candidates: &[Candidate],
    config: &SelectConfig,
) -> anyhow::Result<Selection> {
    let train = examples(task, 300, 11);
    rank(
        Backbone { encoder: enc, tokenizer: tok, device: &Device::Cpu },
        &synthetic_task(task).unwrap(),
        &train,
        candidates,
        config,
        None,
        &|_| {},
    )
}

#[test]
fn a_prompt_trained_for_the_task_ranks_above_random_prompts() {
    let (enc, tok) = setup();
    let trained = trained_prompt(&enc, &tok, "sentiment");
    let norm = row_norm(&trained);
    let pool = vec![
        candidate("noise-a", junk(1, norm)),
        candidate("sentiment-prompt", trained),
        candidate("noise-big", junk(2, 3.0 * norm)),
    ];
    let s = select(&enc, &tok, "sentiment", &pool, &config()).unwrap();
    assert_eq!(s.ranking.len(), 3);
    assert!(s.ranking.windows(2).all(|w| w[0].score >= w[1].score), "ranked best first");
    assert_eq!(s.ranking[0].name, "sentiment-prompt", "{s:#?}");
    // On this one-layer random encoder a trained prompt's lead is within the
    // spread of random prompts (about 1.2 standard errors), so whether it
    // clears z = 2 is not the point here; junk must never be kept.
    assert!(s.keep.iter().all(|k| k == "sentiment-prompt"), "{s:#?}");
    assert_eq!(s.keep.len() + s.remove.len(), 3);
    assert!(s.ranking.iter().all(|r| r.stderr > 0.0 && r.seconds >= 0.0 && r.prompt_length == M));
    assert_eq!(s.sample_size, 200);
    // Same inputs, same kernels: the same numbers (wall times aside).
    let untimed = |mut s: Selection| {
        s.ranking.iter_mut().for_each(|r| r.seconds = 0.0);
        s
    };
    assert_eq!(untimed(select(&enc, &tok, "sentiment", &pool, &config()).unwrap()), untimed(s));
}

#[test]
fn a_pool_of_junk_gets_nothing_helps() {
    let (enc, tok) = setup();
    let pool: Vec<Candidate> =
        (0..4).map(|i| candidate(&format!("junk-{i}"), junk(10 + i, 2.0 + 3.0 * i as f32))).collect();
    let s = select(&enc, &tok, "sentiment", &pool, &config()).unwrap();
    assert!(s.keep.is_empty(), "{s:#?}");
    assert_eq!(s.remove.len(), 4);
    assert!(
        s.verdict.contains("no candidate is predicted to help") && s.verdict.contains("--method pt"),
        "{}",
        s.verdict
    );
}

#[test]
fn top_caps_the_kept_set() {
    let (enc, tok) = setup();
    let pool = vec![
        candidate("sentiment-a", trained_prompt(&enc, &tok, "sentiment")),
        candidate("sentiment-b", (trained_prompt(&enc, &tok, "sentiment") * 1.1).unwrap()),
    ];
    let all = select(&enc, &tok, "sentiment", &pool, &config()).unwrap();
    let capped = select(&enc, &tok, "sentiment", &pool, &SelectConfig { top: Some(1), ..config() }).unwrap();
    assert!(capped.keep.len() <= 1);
    assert_eq!(capped.keep.first(), all.keep.first());
    assert_eq!(capped.keep.len() + capped.remove.len(), 2);
}

#[test]
fn refuses_what_it_cannot_score() {
    let (enc, tok) = setup();
    let wide = candidate("wide", Tensor::zeros((M, D + 1), candle_core::DType::F32, &Device::Cpu).unwrap());
    let err = select(&enc, &tok, "sentiment", &[wide], &config()).unwrap_err().to_string();
    assert!(err.contains("hidden size") && err.contains("wide@1.0.0"), "{err}");
    let err = select(&enc, &tok, "sentiment", &[], &config()).unwrap_err().to_string();
    assert!(err.contains("no candidate"), "{err}");
    // Three classes, two examples.
    let task = synthetic_task("mood").unwrap();
    let few = examples("mood", 2, 1);
    let err = rank(
        Backbone { encoder: &enc, tokenizer: &tok, device: &Device::Cpu },
        &task,
        &few,
        &[candidate("x", junk(1, 1.0))],
        &config(),
        None,
        &|_| {},
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("2 training example(s) for 3 classes"), "{err}");
}

#[test]
fn task_signatures_are_deterministic_and_tell_tasks_apart() {
    let (enc, tok) = setup();
    let sentiment = examples("sentiment", 300, 2);
    let a = attempt_pkg::select::signature::task_signature(&enc, &tok, &sentiment, 16, &Device::Cpu).unwrap();
    let b = attempt_pkg::select::signature::task_signature(&enc, &tok, &sentiment, 16, &Device::Cpu).unwrap();
    assert_eq!(a, b, "recomputed identically");
    assert_eq!(a.examples, 300);
    let same = a.decode(D).unwrap();
    let other =
        attempt_pkg::select::signature::task_signature(&enc, &tok, &examples("topic", 300, 2), 16, &Device::Cpu)
            .unwrap()
            .decode(D)
            .unwrap();
    let fresh =
        attempt_pkg::select::signature::task_signature(&enc, &tok, &examples("sentiment", 300, 9), 16, &Device::Cpu)
            .unwrap()
            .decode(D)
            .unwrap();
    // Another sample of the same task is closer than another task.
    assert!(registry_index::cosine(&same, &fresh) > registry_index::cosine(&same, &other));
}

/// An in-memory feature cache that counts what it is asked.
#[derive(Default)]
struct CountingCache {
    rows: std::cell::RefCell<std::collections::HashMap<String, Vec<Vec<f32>>>>,
    hits: std::cell::Cell<usize>,
}

impl attempt_pkg::select::FeatureCache for CountingCache {
    fn load(&self, key: &str) -> Option<Vec<Vec<f32>>> {
        let got = self.rows.borrow().get(key).cloned();
        if got.is_some() {
            self.hits.set(self.hits.get() + 1);
        }
        got
    }
    fn store(&self, key: &str, rows: &[Vec<f32>]) {
        self.rows.borrow_mut().insert(key.to_string(), rows.to_vec());
    }
}

#[test]
fn cached_features_give_the_same_selection_and_bad_entries_are_recomputed() {
    let (enc, tok) = setup();
    let pool: Vec<Candidate> = (0..2).map(|i| candidate(&format!("junk-{i}"), junk(20 + i, 3.0))).collect();
    let train = examples("sentiment", 300, 11);
    let task = synthetic_task("sentiment").unwrap();
    let cache = CountingCache::default();
    let run = |cache: &CountingCache| {
        rank(
            Backbone { encoder: &enc, tokenizer: &tok, device: &Device::Cpu },
            &task,
            &train,
            &pool,
            &config(),
            Some(cache),
            &|_| {},
        )
        .unwrap()
    };
    let untimed = |mut s: Selection| {
        s.ranking.iter_mut().for_each(|r| r.seconds = 0.0);
        s
    };
    let first = untimed(run(&cache));
    // No prompt, 3 controls (one norm level: both candidates have norm 3), 2 candidates.
    assert_eq!((cache.rows.borrow().len(), cache.hits.get()), (6, 0));
    let second = untimed(run(&cache));
    assert_eq!(cache.hits.get(), 6, "everything came from the cache");
    assert_eq!(first, second);
    // An entry of the wrong size is not trusted.
    for rows in cache.rows.borrow_mut().values_mut() {
        rows.pop();
    }
    assert_eq!(untimed(run(&cache)), first);
}

#[test]
fn a_prompt_that_did_not_learn_its_own_task_is_never_proposed() {
    use attempt_pkg::data::baseline::OwnTaskCheck;
    let (enc, tok) = setup();
    // z = 0: anything that beats the random prompts at all is proposed.
    let z0 = SelectConfig { z: 0.0, ..config() };
    let mut c = candidate("sentiment-prompt", trained_prompt(&enc, &tok, "sentiment"));
    let unchecked = select(&enc, &tok, "sentiment", std::slice::from_ref(&c), &z0).unwrap();
    assert_eq!(unchecked.keep, ["sentiment-prompt"], "{unchecked:#?}");
    assert_eq!(unchecked.ranking[0].learned_own_task, None);

    let check = |value: f64| OwnTaskCheck {
        metric: "accuracy".into(),
        value,
        baseline: 0.509,
        gain_stderr: 0.017,
        examples: 872,
    };
    c.own_task = Some(check(0.515));
    let s = select(&enc, &tok, "sentiment", std::slice::from_ref(&c), &z0).unwrap();
    assert!(s.keep.is_empty(), "{s:#?}");
    assert_eq!(s.remove, ["sentiment-prompt"]);
    assert_eq!(s.ranking[0].learned_own_task, Some(false));
    assert_eq!(s.ranking[0].score, unchecked.ranking[0].score, "the gate does not change the score");
    assert!(s.verdict.contains("did not learn its own task") && s.verdict.contains("--method pt"), "{}", s.verdict);

    c.own_task = Some(check(0.80));
    let s = select(&enc, &tok, "sentiment", std::slice::from_ref(&c), &z0).unwrap();
    assert_eq!(s.keep, ["sentiment-prompt"]);
    assert_eq!(s.ranking[0].learned_own_task, Some(true));
}
