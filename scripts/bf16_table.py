#!/usr/bin/env python3
"""Summarises scripts/experiment_bf16.sh: per task and backend the dev
accuracy (mean ± std over seeds) and step time, and the paired differences
(same seed) of each backend from the first fp32 one. The spread between the
two fp32 backends is the noise floor: they differ only in summation order.

    python3 scripts/bf16_table.py OUT
"""
import json
import statistics as st
import sys
from collections import defaultdict


def mean_sd(xs):
    return (st.mean(xs), st.stdev(xs) if len(xs) > 1 else 0.0)


def main(out):
    rows = [json.loads(line) for line in open(f"{out}/bf16.jsonl") if line.strip()]
    if not rows:
        sys.exit(f"no runs in {out}/bf16.jsonl yet: run scripts/experiment_bf16.sh DATA_DIR {out}")
    by = defaultdict(dict)  # (task, gemm) -> seed -> row
    for r in rows:
        by[(r["task"], r["gemm"])][r["seed"]] = r
    tasks = sorted({r["task"] for r in rows})
    gemms = list(dict.fromkeys(r["gemm"] for r in rows))
    base = gemms[0]
    print(f"| task | backend | seeds | dev accuracy, mean ± sd | paired difference from {base} (points), mean ± sd | mean step, ms |")
    print("|---|---|---|---|---|---|")
    for task in tasks:
        for gemm in gemms:
            runs = by.get((task, gemm), {})
            if not runs:
                continue
            acc = [100 * r["metrics"]["accuracy"] for r in runs.values()]
            step = st.mean(r["mean_step_ms"] for r in runs.values())
            m, sd = mean_sd(acc)
            diff = ""
            if gemm != base:
                pairs = [100 * (runs[s]["metrics"]["accuracy"] - by[(task, base)][s]["metrics"]["accuracy"])
                         for s in runs if s in by.get((task, base), {})]
                if pairs:
                    dm, dsd = mean_sd(pairs)
                    diff = f"{dm:+.2f} ± {dsd:.2f} (n = {len(pairs)})"
            ran = ", ".join(sorted({r["ran_on"] for r in runs.values()}))
            print(f"| {task} | {gemm} (ran on {ran}) | {len(acc)} | {m:.2f} ± {sd:.2f} | {diff} | {step:.0f} |")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else ".")
