#!/usr/bin/env python3
"""Mean ± std table of an experiment_glue.sh results.jsonl (also usable on a
partial file while the experiment runs). Usage: glue_table.py RESULTS.jsonl OUT.md"""
import json, statistics, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
primary = {"cola": "matthews", "stsb": "pearson", "cb": "accuracy", "mrpc": "accuracy"}
groups = {}
for r in rows:
    key = (r["target"], r["setting"], r["method"])
    m = primary.get(r["target"], "accuracy")
    groups.setdefault(key, []).append((100 * r["metrics"].get(m, float("nan")), r))
out = ["| task | setting | method | metric | mean ± std | seeds | trainable params (% backbone) | step time |",
       "|---|---|---|---|---|---|---|---|"]
for (t, s, m), vals in sorted(groups.items()):
    xs = [v for v, _ in vals]
    sd = statistics.stdev(xs) if len(xs) > 1 else 0.0
    r = vals[0][1]
    step = statistics.mean(v[1]["step_s"] for v in vals) * 1000
    out.append(f"| {t} | {s} | {m} | {primary.get(t, 'accuracy')} | {statistics.mean(xs):.1f} ± {sd:.1f} | {len(xs)} | "
               f"{r['trainable']:,} ({100 * r['trainable'] / max(r['backbone'], 1):.3f} %) | {step:.0f} ms |")
# Mean over the targets of each (setting, method), from the per-seed means, for
# the targets every method of that setting has rows for (a fair comparison on a partial run).
settings = sorted({s for _, s, _ in groups})
order = ["pt", "spot", "uniform", "attempt"]
methods = sorted({m for _, _, m in groups}, key=lambda m: order.index(m) if m in order else len(order))
summary = ["", "Mean of the primary metric over the targets (per-task means over seeds):", "",
           "| setting | targets | " + " | ".join(methods) + " |", "|---|---|" + "---|" * len(methods)]
for s in settings:
    targets = sorted(t for t in {t for t, s2, _ in groups if s2 == s} if all((t, s, m) in groups for m in methods))
    if not targets:
        continue
    cells = [statistics.mean(statistics.mean(v for v, _ in groups[(t, s, m)]) for t in targets) for m in methods]
    summary.append(f"| {s} | {len(targets)} | " + " | ".join(f"{c:.1f}" for c in cells) + " |")
out += summary
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
