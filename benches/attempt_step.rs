//! One ATTEMPT training step on MiniLM shapes (6 layers, d = 384), to compare
//! with `scripts/bench_attempt_torch.py` (the same step in PyTorch):
//! batch 16, 64 input tokens, 4 frozen source prompts of 100 rows, target
//! prompt + G + head trainable, AdamW. Prints mean step time and peak RSS.
//! Both sides run BENCH_STEPS + 1 steps and time all but the first (warm-up:
//! first-touch allocations, lazy initialisation), in BENCH_ROUNDS (3) rounds
//! of candle then PyTorch; the ratio printed last is the median round's.
//!
//! `ATTEMPT_BENCH_PYTHON=.venv/bin/python cargo bench --bench attempt_step`
//! runs both and prints the ratio (model: $ATTEMPT_BENCH_MODEL, else
//! $ATTEMPT_HOME/models/all-MiniLM-L6-v2; `attempt-pkg model fetch minilm`).

#[path = "common/cpu.rs"]
mod cpu;
use std::path::PathBuf;

use anyhow::Result;
use attempt_pkg::compose::Method;
use attempt_pkg::data::synthetic::{generate, synthetic_task};
use attempt_pkg::data::TextEncoder;
use attempt_pkg::model::load_model;
use attempt_pkg::train::{train, SourcePrompt, TaskData, TrainConfig, TrainOptions, TrainRequest};
use candle_core::{Device, Tensor};

const BATCH: usize = 16;
const TOKENS: usize = 64;
const PROMPT: usize = 100;
const SOURCES: usize = 4;

/// Exactly `max_len` ids per input, derived from the text, so both
/// implementations see the same shapes.
struct FixedLength;
impl TextEncoder for FixedLength {
    fn encode(&self, text_a: &str, _b: Option<&str>, max_len: usize) -> Result<Vec<u32>> {
        let mut h = text_a.bytes().fold(1469598103u64, |h, b| (h ^ b as u64).wrapping_mul(1099511628211));
        Ok((0..max_len)
            .map(|_| {
                h = h.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                1000 + (h >> 33) as u32 % 20000
            })
            .collect())
    }
    fn pad_id(&self) -> u32 {
        0
    }
    fn vocab_size(&self) -> usize {
        30522
    }
}

fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines().find(|l| l.starts_with("VmHWM")).and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kb| kb / 1024.0)
        .unwrap_or(f64::NAN)
}

fn main() -> Result<()> {
    // As the CLI does (src/main.rs): the glibc thresholds training runs with.
    attempt_pkg::model::alloc::tune_allocator();
    let dir = std::env::var_os("ATTEMPT_BENCH_MODEL").map(PathBuf::from).unwrap_or_else(|| {
        let home = std::env::var_os("ATTEMPT_HOME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(".attempt"));
        home.join("models/all-MiniLM-L6-v2")
    });
    if !dir.join("config.json").is_file() {
        eprintln!("attempt_step: no model at {} (set ATTEMPT_BENCH_MODEL); skipped", dir.display());
        return Ok(());
    }
    println!("CPU: {}", cpu::describe(candle_core::utils::get_num_threads()));
    let steps: usize = std::env::var("BENCH_STEPS").ok().and_then(|s| s.parse().ok()).unwrap_or(10);
    let device = Device::Cpu;
    let model = load_model(&dir, &device)?;
    let d = model.model.encoder().hidden_size();
    let sources = (0..SOURCES)
        .map(|i| {
            Ok(SourcePrompt {
                name: format!("s{i}@1.0.0"),
                tensor: (Tensor::randn(0f32, 1.0, (PROMPT, d), &device)? * 0.5)?,
            })
        })
        .collect::<Result<Vec<_>>>()?;
    let def = synthetic_task("sentiment").ok_or_else(|| anyhow::anyhow!("no synthetic task"))?;
    let examples = generate("sentiment", BATCH * (steps + 2) + 16, 1)?;
    let (train_ex, dev) = examples.split_at(BATCH * (steps + 2));
    let config = TrainConfig {
        method: Method::Attempt,
        prompt_length: PROMPT,
        epochs: 1,
        max_steps: Some(steps + 1),
        batch_size: BATCH,
        max_length: TOKENS,
        max_eval_examples: Some(16),
        ..TrainConfig::default()
    };
    // Rounds of (candle, PyTorch) one after the other: on a shared machine
    // the speed drifts by ±20 % within minutes, so one pair of runs can say
    // 0.9 or 1.2 for the same code. Each round's ratio compares runs made
    // seconds apart; the median over rounds is the figure to quote.
    let rounds: usize = std::env::var("BENCH_ROUNDS").ok().and_then(|s| s.parse().ok()).unwrap_or(3).max(1);
    let python = std::env::var_os("ATTEMPT_BENCH_PYTHON").filter(|p| !p.is_empty());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_attempt_torch.py");
    let (mut ratios, mut torch_rss) = (Vec::new(), f64::NAN);
    for round in 1..=rounds {
        let request = TrainRequest {
            encoder: model.model.encoder(),
            tokenizer: &FixedLength,
            sources: sources.clone(),
            tasks: vec![TaskData { task: def.clone(), train: train_ex.to_vec(), dev: dev.to_vec() }],
            config: config.clone(),
            device: device.clone(),
        };
        let outcome = train(request, &TrainOptions::default())?;
        let (warmup, timed) = outcome.step_seconds.split_first().ok_or_else(|| anyhow::anyhow!("no step ran"))?;
        let step_ms = 1000.0 * timed.iter().sum::<f64>() / timed.len().max(1) as f64;
        println!(
            "{{\"impl\": \"candle\", \"round\": {round}, \"steps\": {}, \"mean_step_ms\": {step_ms:.1}, \"warmup_step_ms\": {:.1}, \"peak_rss_mb\": {:.0}, \"trainable\": {}}}",
            timed.len(),
            1000.0 * warmup,
            peak_rss_mb(),
            outcome.trainable_parameters
        );
        // The same step in PyTorch, in the same run, when a Python with torch is named.
        let Some(python) = &python else { continue };
        let out = std::process::Command::new(python).arg(script).arg(&dir).arg(steps.to_string()).output()?;
        if !out.status.success() {
            anyhow::bail!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
        }
        let stdout = String::from_utf8_lossy(&out.stdout);
        let line = stdout
            .lines()
            .rev()
            .find(|l| l.starts_with('{'))
            .ok_or_else(|| anyhow::anyhow!("{script} printed no JSON"))?;
        println!("{line}");
        let torch: serde_json::Value = serde_json::from_str(line)?;
        torch_rss = torch["peak_rss_mb"].as_f64().unwrap_or(f64::NAN);
        let ratio = step_ms / torch["mean_step_ms"].as_f64().unwrap_or(f64::NAN);
        println!("round {round}: step time candle/PyTorch {ratio:.2}");
        ratios.push(ratio);
    }
    if python.is_none() {
        println!("(set ATTEMPT_BENCH_PYTHON to a Python with torch + transformers to compare with PyTorch)");
        return Ok(());
    }
    ratios.sort_by(f64::total_cmp);
    let listed: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
    println!(
        "ratio candle/PyTorch: step time {:.2} (median of {} rounds: {}), peak RSS {:.2}",
        ratios[ratios.len() / 2],
        ratios.len(),
        listed.join(" "),
        peak_rss_mb() / torch_rss
    );
    Ok(())
}
