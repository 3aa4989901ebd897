//! The quickstart flow on the tiny test encoder: train source prompts on
//! synthetic tasks, then the target task with pt, spot, uniform and attempt.
//! `cargo run --example synthetic_transfer [-- TARGET]`

use attempt_pkg::compose::Method;
use attempt_pkg::data::synthetic::{generate, synthetic_task, synthetic_vocabulary};
use attempt_pkg::data::{TextEncoder, WordTokenizer};
use attempt_pkg::train::testing::TinyEncoder;
use attempt_pkg::train::{parameter_summary, train, SourcePrompt, TaskData, TrainConfig, TrainOptions, TrainRequest};
use candle_core::Device;

fn task(name: &str, n: usize, seed: u64) -> anyhow::Result<TaskData> {
    let def = synthetic_task(name).ok_or_else(|| anyhow::anyhow!("no task {name}"))?;
    let mut all = generate(name, n + 300, seed)?;
    let dev = all.split_off(n);
    Ok(TaskData { task: def, train: all, dev })
}

fn main() -> anyhow::Result<()> {
    let target = std::env::args().nth(1).unwrap_or_else(|| "mood".into());
    let n_target: usize = std::env::args().nth(2).and_then(|s| s.parse().ok()).unwrap_or(48);
    let device = Device::Cpu;
    let tok = WordTokenizer::new(synthetic_vocabulary());
    let enc = TinyEncoder::new(tok.vocab_size(), 64, 7, &device)?;
    let base = TrainConfig {
        prompt_length: 8,
        epochs: 6,
        batch_size: 16,
        max_length: 32,
        lr_other: 0.03,
        seed: 1,
        ..TrainConfig::default()
    };
    let mut sources = Vec::new();
    for name in ["sentiment", "topic", "same-topic"] {
        if name == "same-topic" && std::env::var("WITH_PAIR").is_err() {
            continue;
        }
        if name == target {
            continue;
        }
        let t0 = std::time::Instant::now();
        let o = train(
            TrainRequest {
                encoder: &enc,
                tokenizer: &tok,
                sources: vec![],
                tasks: vec![task(name, 800, 1)?],
                config: TrainConfig { method: Method::Pt, ..base.clone() },
                device: device.clone(),
            },
            &TrainOptions::default(),
        )?;
        println!("source {name:10} acc {:.3} ({:.1}s)", o.best_eval[0].metrics["accuracy"], t0.elapsed().as_secs_f64());
        sources.push(SourcePrompt {
            name: format!("{name}-prompt@0.1.0"),
            tensor: o.model.tasks[0].target.as_tensor().copy()?,
        });
    }
    for method in [Method::Pt, Method::Spot, Method::Uniform, Method::Attempt] {
        let t0 = std::time::Instant::now();
        let o = train(
            TrainRequest {
                encoder: &enc,
                tokenizer: &tok,
                sources: sources.clone(),
                tasks: vec![task(&target, n_target, 2)?],
                config: TrainConfig { method, ..base.clone() },
                device: device.clone(),
            },
            &TrainOptions::default(),
        )?;
        let e = &o.best_eval[0];
        let att = e
            .mean_attention
            .as_ref()
            .map(|w| e.mixture_names.iter().zip(w).map(|(n, w)| format!("{n}={w:.3}")).collect::<Vec<_>>().join(" "))
            .unwrap_or_default();
        println!(
            "{target} {method:8} acc {:.3} step {:.2} ms, {} ({:.1}s) {att}",
            e.metrics["accuracy"],
            1000.0 * o.mean_step_seconds(),
            parameter_summary(o.trainable_parameters, enc.parameter_count()),
            t0.elapsed().as_secs_f64()
        );
    }
    Ok(())
}
