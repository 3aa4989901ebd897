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
open(sys.argv[2], "w").write("\n".join(out) + "\n")
print("\n".join(out))
