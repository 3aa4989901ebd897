//! The frozen-linear matrix products of one MiniLM training step, on every
//! backend this machine has (the gemm crate, attempt-pkg's AVX2 kernel where
//! the CPU has AVX2 and FMA, and OpenBLAS / BLIS / oneMKL when their
//! libraries load), side by side with PyTorch's (MKL) in the same run when
//! `ATTEMPT_BENCH_PYTHON` names a Python with torch:
//!
//! `ATTEMPT_BENCH_PYTHON=.venv/bin/python cargo bench --bench gemm`
//!
//! Shapes: 16 × (100 prompt + 64 text) = 2,624 rows through d = 384 and the
//! 1,536-wide feed-forward; `nt` is the forward y = x·wᵀ, `nn` the input
//! gradient dx = g·w, `nnT` the same gradient as an nt product over a copy of
//! w transposed once (left out of the totals). Prints the CPU, median milliseconds, GFLOP/s and each
//! backend's time over PyTorch's. The figures choose `blas::auto_backend`.

use anyhow::Result;

#[path = "common/cpu.rs"]
mod cpu;
use attempt_pkg::model::ops::blas::{available_backends, gemm_backend, GemmBackend};
use attempt_pkg::model::ops::{linear_backward_on, linear_on};

const SHAPES: [(usize, usize, usize); 3] = [(2624, 384, 384), (2624, 1536, 384), (2624, 384, 1536)];

fn median_ms(reps: usize, mut f: impl FnMut() -> Result<()>) -> Result<f64> {
    f()?;
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = std::time::Instant::now();
        f()?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

/// Deterministic values in [-1, 1) (the products' speed does not depend on them).
fn values(len: usize, seed: u64) -> Vec<f32> {
    let mut h = seed.wrapping_mul(6364136223846793005) | 1;
    (0..len)
        .map(|_| {
            h = h.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            ((h >> 40) as f32 / (1u64 << 23) as f32) - 1.0
        })
        .collect()
}

fn main() -> Result<()> {
    let reps: usize = std::env::var("BENCH_REPS").ok().and_then(|s| s.parse().ok()).unwrap_or(20);
    println!("CPU: {}", cpu::describe(candle_core::utils::get_num_threads()));
    println!("default backend here: {}", gemm_backend().as_str());
    let backends = available_backends();
    let missing: Vec<&str> = GemmBackend::ALL.iter().filter(|b| !backends.contains(b)).map(|b| b.as_str()).collect();
    if !missing.is_empty() {
        println!("not available here: {}", missing.join(", "));
    }
    let torch = match std::env::var_os("ATTEMPT_BENCH_PYTHON").filter(|p| !p.is_empty()) {
        Some(python) => {
            let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/bench_gemm_torch.py");
            let threads = candle_core::utils::get_num_threads().to_string();
            let shapes: Vec<String> = SHAPES.iter().map(|(m, n, k)| format!("{m},{n},{k}")).collect();
            let out = std::process::Command::new(python)
                .arg(script)
                .args(["--threads", &threads, "--reps", &reps.to_string()])
                .args(&shapes)
                .output()?;
            if !out.status.success() {
                anyhow::bail!("{script} failed: {}", String::from_utf8_lossy(&out.stderr));
            }
            let stdout = String::from_utf8_lossy(&out.stdout);
            let line = stdout.lines().rev().find(|l| l.starts_with('{')).unwrap_or("{}").to_string();
            Some(serde_json::from_str::<serde_json::Value>(&line)?)
        }
        None => {
            println!("(set ATTEMPT_BENCH_PYTHON to a Python with torch to compare with PyTorch)");
            None
        }
    };
    if let Some(t) = &torch {
        println!("PyTorch {}", t["torch"].as_str().unwrap_or("?"));
    }
    println!("{:<18} {:<4} {:<9} {:>9} {:>9} {:>8}", "shape m×n×k", "op", "backend", "ms", "GFLOP/s", "/torch");
    let mut totals = vec![0f64; backends.len()];
    let mut torch_total = 0f64;
    // The default backend's fp32 forward per shape, for the bf16 rows below.
    let mut default_nt_ms = vec![f64::NAN; SHAPES.len()];
    for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
        let (x, w, g) = (values(m * k, 1), values(n * k, 2), values(m * n, 3));
        let flop = 2.0 * (m * n * k) as f64;
        // w transposed once: the input gradient as an nt product over [k, n].
        let wt: Vec<f32> = (0..k * n).map(|j| w[(j % n) * k + j / n]).collect();
        for op in ["nt", "nn", "nnT"] {
            // nnT is the same input gradient as nn, through a transposed copy of
            // w (what a cached transpose of a frozen weight would cost); it is
            // compared with PyTorch's nn and left out of the totals.
            let torch_op = if op == "nnT" { "nn" } else { op };
            let torch_ms = torch.as_ref().and_then(|t| t["shapes"][i][format!("{torch_op}_ms")].as_f64());
            if op != "nnT" {
                torch_total += torch_ms.unwrap_or(0.0);
            }
            for (b, &backend) in backends.iter().enumerate() {
                let ms = if op == "nt" {
                    let mut y = vec![0f32; m * n];
                    median_ms(reps, || Ok(linear_on(backend, &mut y, &x, &w, (n, k), false)?))?
                } else if op == "nn" {
                    let mut dx = vec![0f32; m * k];
                    median_ms(reps, || Ok(linear_backward_on(backend, &mut dx, &g, &w, (n, k), false)?))?
                } else {
                    let mut dx = vec![0f32; m * k];
                    median_ms(reps, || Ok(linear_on(backend, &mut dx, &g, &wt, (k, n), false)?))?
                };
                if op != "nnT" {
                    totals[b] += ms;
                }
                if op == "nt" && backend == gemm_backend() {
                    default_nt_ms[i] = ms;
                }
                let ratio = torch_ms.map(|t| format!("{:.2}", ms / t)).unwrap_or_else(|| "-".into());
                println!(
                    "{:<18} {op:<4} {:<9} {ms:>9.2} {:>9.1} {ratio:>8}",
                    format!("{m}×{n}×{k}"),
                    backend.as_str(),
                    flop / ms / 1e6
                );
            }
            if let (Some(t), false) = (torch_ms, op == "nnT") {
                println!("{:<18} {op:<4} {:<9} {t:>9.2} {:>9.1}", format!("{m}×{n}×{k}"), "torch", flop / t / 1e6);
            }
        }
    }
    // bf16 frozen weights (issue 17: an option only if it wins): candle's own
    // BF16 matmul beside PyTorch's, the forward only, against the fp32 rows above.
    println!("bf16 forward (nt), against fp32 on the default backend:");
    for (i, &(m, n, k)) in SHAPES.iter().enumerate() {
        let flop = 2.0 * (m * n * k) as f64;
        let dev = candle_core::Device::Cpu;
        let x = candle_core::Tensor::from_vec(values(m * k, 1), (m, k), &dev)?.to_dtype(candle_core::DType::BF16)?;
        let w = candle_core::Tensor::from_vec(values(n * k, 2), (n, k), &dev)?.to_dtype(candle_core::DType::BF16)?;
        let wt = w.t()?;
        let ms = median_ms(reps, || {
            x.matmul(&wt)?;
            Ok(())
        })?;
        let torch_ms = torch.as_ref().and_then(|t| t["shapes"][i]["bf16_nt_ms"].as_f64());
        let torch_txt =
            torch_ms.map(|t| format!("; torch bf16 {t:.2} ms ({:.1} GFLOP/s)", flop / t / 1e6)).unwrap_or_default();
        println!(
            "{:<18} candle bf16 {ms:.2} ms ({:.1} GFLOP/s), {:.2}× its fp32{torch_txt}",
            format!("{m}×{n}×{k}"),
            flop / ms / 1e6,
            ms / default_nt_ms[i]
        );
    }
    for (b, backend) in backends.iter().enumerate() {
        let ratio =
            if torch_total > 0.0 { format!(", {:.2}× PyTorch", totals[b] / torch_total) } else { String::new() };
        println!("total {:<9} {:.1} ms{ratio}", backend.as_str(), totals[b]);
    }
    if torch_total > 0.0 {
        println!("total torch     {torch_total:.1} ms");
    }
    Ok(())
}
