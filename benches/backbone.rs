//! Frozen-backbone speed: forward, and forward+backward to a prepended soft
//! prompt, against PyTorch eager doing the same computation in the same run.
//!
//!   cargo bench --bench backbone
//!   ATTEMPT_BENCH_PYTHON=/work/venv-dev/bin/python cargo bench --bench backbone
//!
//! Environment: ATTEMPT_BENCH_THREADS (default 2), ATTEMPT_BENCH_STEPS (5),
//! ATTEMPT_BENCH_PYTHON (a Python with torch + transformers; without it only
//! candle is measured), ATTEMPT_BENCH_CASES (comma list, default all).
//! Random weights: timing does not depend on their values.

#[path = "common/cpu.rs"]
mod cpu;
use std::collections::HashMap;
use std::process::Command;
use std::time::Instant;

use attempt_pkg::model::bert::Bert;
use attempt_pkg::model::config::BertConfig;
use attempt_pkg::model::weights::Weights;
use attempt_pkg::model::Encoder;
use candle_core::{DType, Device, Tensor, Var};

/// One benchmarked shape. T5-small joins here: add a variant, its builder in
/// `build`, and the matching `--arch` in scripts/bench_torch.py.
#[derive(Clone, Copy, Debug)]
enum Case {
    MiniLm,
}

impl Case {
    fn all() -> Vec<Case> {
        vec![Case::MiniLm]
    }
    fn name(self) -> &'static str {
        match self {
            Case::MiniLm => "minilm",
        }
    }
    fn torch_arch(self) -> &'static str {
        match self {
            Case::MiniLm => "bert",
        }
    }
    fn build(self) -> Box<dyn Encoder> {
        match self {
            Case::MiniLm => Box::new(random_bert(&minilm_config())),
        }
    }
}

const BATCH: usize = 16;
const PROMPT: usize = 100;
const TEXT: usize = 128;

fn minilm_config() -> BertConfig {
    serde_json::from_value(serde_json::json!({
        "vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
        "intermediate_size": 1536, "max_position_embeddings": 512, "type_vocab_size": 2,
        "hidden_act": "gelu", "layer_norm_eps": 1e-12
    }))
    .expect("static config")
}

fn random_bert(cfg: &BertConfig) -> Bert {
    let dev = Device::Cpu;
    let (d, i) = (cfg.hidden_size, cfg.intermediate_size);
    let mut w: HashMap<String, Tensor> = HashMap::new();
    let mut put = |name: String, shape: &[usize], std: f64| {
        let t = if std == 0.0 {
            Tensor::zeros(shape, DType::F32, &dev)
        } else if std < 0.0 {
            Tensor::ones(shape, DType::F32, &dev)
        } else {
            Tensor::randn(0f32, std as f32, shape, &dev)
        };
        w.insert(name, t.expect("tensor"));
    };
    put("embeddings.word_embeddings.weight".into(), &[cfg.vocab_size, d], 0.02);
    put("embeddings.position_embeddings.weight".into(), &[cfg.max_position_embeddings, d], 0.02);
    put("embeddings.token_type_embeddings.weight".into(), &[cfg.type_vocab_size, d], 0.02);
    put("embeddings.LayerNorm.weight".into(), &[d], -1.0);
    put("embeddings.LayerNorm.bias".into(), &[d], 0.0);
    for l in 0..cfg.num_hidden_layers {
        let p = format!("encoder.layer.{l}");
        for (n, o, inp) in [
            ("attention.self.query", d, d),
            ("attention.self.key", d, d),
            ("attention.self.value", d, d),
            ("attention.output.dense", d, d),
            ("intermediate.dense", i, d),
            ("output.dense", d, i),
        ] {
            put(format!("{p}.{n}.weight"), &[o, inp], 0.02);
            put(format!("{p}.{n}.bias"), &[o], 0.0);
        }
        for n in ["attention.output.LayerNorm", "output.LayerNorm"] {
            put(format!("{p}.{n}.weight"), &[d], -1.0);
            put(format!("{p}.{n}.bias"), &[d], 0.0);
        }
    }
    Bert::from_weights(cfg, &Weights::from(w)).expect("valid random BERT")
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.partial_cmp(b).unwrap_or(std::cmp::Ordering::Equal));
    v[v.len() / 2]
}

fn time_steps(warmup: usize, steps: usize, mut f: impl FnMut()) -> f64 {
    for _ in 0..warmup {
        f();
    }
    median(
        (0..steps)
            .map(|_| {
                let t = Instant::now();
                f();
                t.elapsed().as_secs_f64() * 1000.0
            })
            .collect(),
    )
}

fn peak_rss_mb() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    ru.ru_maxrss as f64 / 1024.0
}

struct Figures {
    forward_ms: f64,
    forward_backward_ms: f64,
    peak_rss_mb: f64,
}

fn bench_candle(case: Case, steps: usize) -> Figures {
    let model = case.build();
    let dev = Device::Cpu;
    let d = model.hidden_size();
    let vocab = 30522u32;
    let ids = Tensor::rand(0f32, vocab as f32, (BATCH, TEXT), &dev).and_then(|t| t.to_dtype(DType::U32)).expect("ids");
    let mask = Tensor::ones((BATCH, PROMPT + TEXT), DType::F32, &dev).expect("mask");
    let prompt = Var::randn(0f32, 0.02, (PROMPT, d), &dev).expect("prompt");
    let weights = Tensor::randn(0f32, 1.0, (BATCH, PROMPT + TEXT, d), &dev).expect("loss weights");
    let inputs = |p: &Tensor| -> Tensor {
        let words = model.embed_tokens(&ids).expect("embed");
        let p = p.unsqueeze(0).and_then(|p| p.broadcast_as((BATCH, PROMPT, d))).expect("prompt");
        Tensor::cat(&[&p, &words], 1).expect("cat")
    };
    let forward_ms = time_steps(2, steps, || {
        let h = model.encode(&inputs(&prompt.as_tensor().detach()), &mask).expect("forward");
        std::hint::black_box(h);
    });
    let forward_backward_ms = time_steps(2, steps, || {
        // As training encodes: the first layer gives the text rows no input
        // gradient (nothing trainable is upstream of them); PyTorch computes it.
        let h = model.encode_prompted(&inputs(prompt.as_tensor()), &mask, PROMPT).expect("forward");
        let loss = (h * &weights).and_then(|t| t.sum_all()).expect("loss");
        let grads = loss.backward().expect("backward");
        assert!(grads.get(prompt.as_tensor()).is_some(), "the prompt must get a gradient");
    });
    Figures { forward_ms, forward_backward_ms, peak_rss_mb: peak_rss_mb() }
}

fn bench_torch(python: &str, case: Case, threads: usize, steps: usize, attn: &str) -> Option<(String, Figures)> {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_torch.py");
    let out = Command::new(python)
        .arg(script)
        .args(["--arch", case.torch_arch(), "--attn", attn])
        .args(["--batch", &BATCH.to_string(), "--prompt", &PROMPT.to_string(), "--text", &TEXT.to_string()])
        .args(["--threads", &threads.to_string(), "--steps", &steps.to_string()])
        .env("OMP_NUM_THREADS", threads.to_string())
        .output();
    let out = match out {
        Ok(o) if o.status.success() => o,
        Ok(o) => {
            eprintln!("PyTorch benchmark failed:\n{}", String::from_utf8_lossy(&o.stderr));
            return None;
        }
        Err(e) => {
            eprintln!("cannot run {python}: {e}");
            return None;
        }
    };
    let line = String::from_utf8_lossy(&out.stdout).lines().last()?.to_string();
    let v: serde_json::Value = serde_json::from_str(&line).ok()?;
    Some((
        v["impl"].as_str().unwrap_or("pytorch").to_string(),
        Figures {
            forward_ms: v["forward_ms"].as_f64()?,
            forward_backward_ms: v["forward_backward_ms"].as_f64()?,
            peak_rss_mb: v["peak_rss_mb"].as_f64()?,
        },
    ))
}

fn main() {
    attempt_pkg::model::alloc::tune_allocator();
    let threads: usize = std::env::var("ATTEMPT_BENCH_THREADS").ok().and_then(|v| v.parse().ok()).unwrap_or(2);
    let steps: usize = std::env::var("ATTEMPT_BENCH_STEPS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    // candle's kernels and gemm use rayon's global pool, sized from this variable.
    std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    let python = std::env::var("ATTEMPT_BENCH_PYTHON").ok().filter(|p| !p.is_empty());
    let wanted: Option<Vec<String>> =
        std::env::var("ATTEMPT_BENCH_CASES").ok().map(|v| v.split(',').map(|s| s.trim().to_string()).collect());
    println!("CPU: {}", cpu::describe(threads));
    println!("batch {BATCH} x ({PROMPT} prompt + {TEXT} text) tokens, f32, {threads} threads, median of {steps} steps");
    for case in Case::all() {
        if wanted.as_ref().is_some_and(|w| !w.iter().any(|n| n == case.name())) {
            continue;
        }
        let c = bench_candle(case, steps);
        println!(
            "{:<8} candle    forward {:8.1} ms  fwd+bwd {:8.1} ms  peak RSS {:7.0} MB",
            case.name(),
            c.forward_ms,
            c.forward_backward_ms,
            c.peak_rss_mb
        );
        let Some(py) = &python else {
            println!("(set ATTEMPT_BENCH_PYTHON to a Python with torch + transformers to compare with PyTorch)");
            continue;
        };
        for attn in ["sdpa", "eager"] {
            if let Some((name, t)) = bench_torch(py, case, threads, steps, attn) {
                println!(
                    "{:<8} {name}: forward {:8.1} ms  fwd+bwd {:8.1} ms  peak RSS {:7.0} MB",
                    case.name(),
                    t.forward_ms,
                    t.forward_backward_ms,
                    t.peak_rss_mb
                );
                println!(
                    "{:<8} ratio candle/PyTorch ({attn}): forward {:.2}  fwd+bwd {:.2}  peak RSS {:.2}",
                    case.name(),
                    c.forward_ms / t.forward_ms,
                    c.forward_backward_ms / t.forward_backward_ms,
                    c.peak_rss_mb / t.peak_rss_mb
                );
            }
        }
    }
}
