#!/usr/bin/env python3
"""PyTorch side of benches/gemm.rs: the same fp32 matrix products.

For each shape M,N,K times y = x @ w.T (x [M, K], w [N, K], the forward of a
frozen linear layer) and dx = g @ w (g [M, N], its input gradient) and prints
one JSON line: {"torch": VERSION, "shapes": [{"m", "n", "k", "nt_ms", "nn_ms",
"bf16_nt_ms"}]}; bf16_nt_ms is the forward with x and w in bfloat16 (what bf16
frozen weights would run on; oneDNN's AVX512-BF16/AMX kernels where the CPU
has them).

    python scripts/bench_gemm_torch.py --threads 2 --reps 20 2624,384,384 2624,1536,384
"""
import argparse
import json
import time


def best_ms(f, reps):
    f()
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        f()
        times.append(time.perf_counter() - t)
    times.sort()
    return 1000 * times[len(times) // 2]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("shapes", nargs="+")
    args = ap.parse_args()

    import torch

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    out = []
    for shape in args.shapes:
        m, n, k = (int(v) for v in shape.split(","))
        x, w, g = torch.randn(m, k), torch.randn(n, k), torch.randn(m, n)
        with torch.no_grad():
            nt = best_ms(lambda: torch.matmul(x, w.t()), args.reps)
            nn = best_ms(lambda: torch.matmul(g, w), args.reps)
            xb, wb = x.bfloat16(), w.bfloat16()
            bf16_nt = best_ms(lambda: torch.matmul(xb, wb.t()), args.reps)
        out.append({"m": m, "n": n, "k": k, "nt_ms": nt, "nn_ms": nn, "bf16_nt_ms": bf16_nt})
    print(json.dumps({"torch": torch.__version__, "shapes": out}))


if __name__ == "__main__":
    main()
