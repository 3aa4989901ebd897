//! T5-small shapes (random weights): a soft prompt prepended to a batch,
//! encoder + teacher-forced decoder + loss; forward, and forward+backward to
//! the prompt. Compares with PyTorch eager (scripts/bench_torch_t5.py) when
//! ATTEMPT_BENCH_PYTHON names a python with torch + transformers.
//!
//!   ATTEMPT_BENCH_PYTHON=/path/venv/bin/python cargo bench --bench t5
//!
//! Env: ATTEMPT_BENCH_THREADS (default 2), ATTEMPT_BENCH_STEPS (default 5).

#[path = "common/cpu.rs"]
mod cpu;
use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

use anyhow::{bail, Context, Result};
use attempt_pkg::model::t5::{T5Config, T5Model};
use attempt_pkg::model::Encoder;
use candle_core::{DType, Device, Tensor, Var};

const BATCH: usize = 16;
const PROMPT: usize = 100;
const TEXT: usize = 128;
const TARGET: usize = 4;

fn env_usize(name: &str, default: usize) -> Result<usize> {
    match std::env::var(name) {
        Ok(v) => v.parse().with_context(|| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

fn t5_small() -> Result<T5Config> {
    T5Config::from_json_str(
        r#"{"model_type": "t5", "vocab_size": 32128, "d_model": 512, "d_kv": 64, "d_ff": 2048,
            "num_layers": 6, "num_heads": 8, "relative_attention_num_buckets": 32,
            "relative_attention_max_distance": 128, "feed_forward_proj": "relu",
            "tie_word_embeddings": true}"#,
    )
}

fn random_weights(cfg: &T5Config, dev: &Device) -> Result<HashMap<String, Tensor>> {
    let mut weights = HashMap::new();
    for (name, shape) in cfg.weight_shapes()? {
        let t = if name.ends_with("layer_norm.weight") {
            Tensor::ones(shape.as_slice(), DType::F32, dev)?
        } else {
            let fan_in = *shape.last().unwrap_or(&1) as f32;
            let std = if name == "shared.weight" { 1.0 } else { fan_in.powf(-0.5) };
            Tensor::randn(0f32, std, shape.as_slice(), dev)?
        };
        weights.insert(name, t);
    }
    Ok(weights)
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// CPU time (user + system, all threads) of this process in ms, from
/// /proc/self/stat (clock ticks of 10 ms). Robust to other load on the machine,
/// unlike wall time.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are 14 and 15.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let tick = |i: usize| fields.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(f64::NAN);
    (tick(11) + tick(12)) * 10.0
}

/// (wall ms, cpu ms) per step after one warm-up step.
fn time_ms(steps: usize, mut step: impl FnMut() -> Result<()>) -> Result<(f64, f64)> {
    step()?; // warm-up
    let (t0, c0) = (Instant::now(), cpu_ms());
    for _ in 0..steps {
        step()?;
    }
    let n = steps as f64;
    Ok((t0.elapsed().as_secs_f64() * 1e3 / n, (cpu_ms() - c0) / n))
}

struct Figures {
    forward_ms: f64,
    train_ms: f64,
    forward_cpu_ms: f64,
    train_cpu_ms: f64,
    peak_rss_mb: f64,
}

fn bench_candle(steps: usize) -> Result<Figures> {
    let dev = Device::Cpu;
    let cfg = t5_small()?;
    let model = T5Model::from_weights(&cfg, &random_weights(&cfg, &dev)?, &dev)?;
    let d = cfg.d_model;
    let ids = Tensor::rand(2f32, cfg.vocab_size as f32, (BATCH, TEXT), &dev)?.to_dtype(DType::U32)?;
    let labels = Tensor::rand(2f32, cfg.vocab_size as f32, (BATCH, TARGET), &dev)?.to_dtype(DType::I64)?;
    let mask = Tensor::ones((BATCH, PROMPT + TEXT), DType::F32, &dev)?;
    let prompt = Var::from_tensor(&(Tensor::randn(0f32, 1.0, (PROMPT, d), &dev)? * 0.5)?)?;

    let loss_of = |prompt: &Tensor| -> Result<Tensor> {
        let tokens = model.embed_tokens(&ids)?;
        let prompt = prompt.unsqueeze(0)?.broadcast_as((BATCH, PROMPT, d))?;
        let embeds = Tensor::cat(&[&prompt, &tokens], 1)?;
        // As training encodes: the first block gives the text rows no input
        // gradient (nothing trainable is upstream of them); PyTorch computes it.
        let hidden = model.encode_prompted(&embeds, &mask, PROMPT)?;
        Ok(model.loss(&hidden, &mask, &labels)?)
    };
    let (forward_ms, forward_cpu_ms) = time_ms(steps, || {
        let loss = loss_of(&prompt.as_tensor().detach())?;
        loss.to_scalar::<f32>()?;
        Ok(())
    })?;
    let (train_ms, train_cpu_ms) = time_ms(steps, || {
        let loss = loss_of(prompt.as_tensor())?;
        let grads = loss.backward()?;
        if grads.get(prompt.as_tensor()).is_none() {
            bail!("the prompt received no gradient");
        }
        Ok(())
    })?;
    Ok(Figures { forward_ms, train_ms, forward_cpu_ms, train_cpu_ms, peak_rss_mb: peak_rss_mb() })
}

fn bench_torch(python: &str, steps: usize, threads: usize) -> Result<Figures> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_torch_t5.py");
    let out = Command::new(python)
        .args([script, "--steps", &steps.to_string(), "--threads", &threads.to_string()])
        .args(["--batch", &BATCH.to_string(), "--prompt", &PROMPT.to_string()])
        .args(["--text", &TEXT.to_string(), "--target", &TARGET.to_string()])
        .output()
        .with_context(|| format!("cannot run {python} {script}"))?;
    if !out.status.success() {
        bail!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
    }
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().last().context("no output from the PyTorch benchmark")?;
    let v: serde_json::Value = serde_json::from_str(line).with_context(|| format!("bad output {line:?}"))?;
    let num = |k: &str| v[k].as_f64().with_context(|| format!("{k} missing in {line}"));
    Ok(Figures {
        forward_ms: num("forward_ms")?,
        train_ms: num("train_ms")?,
        forward_cpu_ms: num("forward_cpu_ms")?,
        train_cpu_ms: num("train_cpu_ms")?,
        peak_rss_mb: num("peak_rss_mb")?,
    })
}

fn main() -> Result<()> {
    let threads = env_usize("ATTEMPT_BENCH_THREADS", 2)?;
    let steps = env_usize("ATTEMPT_BENCH_STEPS", 5)?;
    // Before the first candle op: rayon sizes its pool from this.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    attempt_pkg::model::alloc::tune_allocator();

    println!("CPU: {}", cpu::describe(threads));
    println!(
        "T5-small shapes (random weights), batch {BATCH} x ({PROMPT} prompt + {TEXT} text), \
         target {TARGET}, f32, {threads} threads, {steps} steps"
    );
    let candle = bench_candle(steps)?;
    println!(
        "candle: forward {:.0} ms (cpu {:.0}), forward+backward {:.0} ms (cpu {:.0}), peak RSS {:.0} MB",
        candle.forward_ms, candle.forward_cpu_ms, candle.train_ms, candle.train_cpu_ms, candle.peak_rss_mb
    );
    let torch = match std::env::var("ATTEMPT_BENCH_PYTHON") {
        Ok(python) => Some(bench_torch(&python, steps, threads)?),
        Err(_) => {
            println!("(set ATTEMPT_BENCH_PYTHON to a python with torch+transformers to compare)");
            None
        }
    };
    println!("{:<18} {:>14} {:>14} {:>8}", "", "candle", "pytorch", "ratio");
    let row = |name: &str, c: f64, t: Option<f64>, unit: &str| {
        let (ts, rs) = match t {
            Some(t) => (format!("{t:.0} {unit}"), format!("{:.2}", c / t)),
            None => ("-".into(), "-".into()),
        };
        println!("{name:<18} {:>14} {ts:>14} {rs:>8}", format!("{c:.0} {unit}"));
    };
    row("forward", candle.forward_ms, torch.as_ref().map(|t| t.forward_ms), "ms");
    row("forward+backward", candle.train_ms, torch.as_ref().map(|t| t.train_ms), "ms");
    row("forward cpu", candle.forward_cpu_ms, torch.as_ref().map(|t| t.forward_cpu_ms), "ms");
    row("fwd+bwd cpu", candle.train_cpu_ms, torch.as_ref().map(|t| t.train_cpu_ms), "ms");
    row("peak RSS", candle.peak_rss_mb, torch.as_ref().map(|t| t.peak_rss_mb), "MB");
    Ok(())
}
