"""Tables for scripts/experiment_mixture.sh (issue 14): each method's dev
metric per target and setting (mean ± std over seeds), its paired difference
from ATTEMPT as in the paper and from the best single-source SPoT (same seed),
trainable parameters, step time and the per-example spread of the attention.

    python3 scripts/mixture_table.py OUT > OUT/mixture.md
"""
import json
import os
import statistics
import sys
from collections import defaultdict

METRIC = {"cola": "matthews", "stsb": "pearson"}
ORDER = ["pt", "spot-default", "spot-best", "attempt", "attempt-cosine", "attempt-norm", "attempt-centred",
         "attempt-centred-cosine", "attempt-std", "attempt-std-cosine", "attempt-best-init", "attempt-std-cosine-best-init", "uniform",
         "attempt-without-", "attempt-multi"]  # attempt-without-A+B: every such method at that place


def ms(xs):
    if not xs:
        return "n/a"
    return f"{statistics.fmean(xs):.1f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.1f}"


def main():
    path = os.path.join(sys.argv[1], "mixture-methods.jsonl")
    rows = [json.loads(l) for l in open(path) if l.strip()] if os.path.exists(path) else []
    cell = defaultdict(dict)  # (target, setting, method) -> seed -> metric
    extra = defaultdict(list)
    for r in rows:
        key = (r["target"], r["setting"], r["method"])
        cell[key][r["seed"]] = 100.0 * r["metrics"][METRIC.get(r["target"], "accuracy")]
        extra[key].append(r)
    def rank(m):
        if m.startswith("attempt-without-"):
            m = "attempt-without-"
        return ORDER.index(m) if m in ORDER else len(ORDER)

    methods = sorted({k[2] for k in cell}, key=lambda m: (rank(m), m))  # ties by name: the same order every run
    print("# ATTEMPT's mixture against its baselines\n")
    print(f"{len(rows)} runs.\n")
    print("Paired differences are taken seed by seed over the seeds both methods have; ± is their std.\n")
    print("| target | setting | method | seeds | metric | − pt (paired) | − attempt (paired) | − spot-best (paired) | attention spread | trainable | s/step |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    target_means = defaultdict(dict)  # (setting, method) -> target -> mean over seeds
    for (t, s, m) in sorted(cell, key=lambda k: (k[0], k[1], methods.index(k[2]))):
        v = cell[(t, s, m)]
        diff = lambda other: [v[k] - cell[(t, s, other)][k] for k in v if k in cell.get((t, s, other), {})]
        spread = [r["attention_spread"] for r in extra[(t, s, m)] if r.get("attention_spread") is not None]
        e = extra[(t, s, m)][0]
        print(f"| {t} | {s} | {m} | {len(v)} | {ms(list(v.values()))} | {ms(diff('pt')) if m != 'pt' else ''} | {ms(diff('attempt')) if m != 'attempt' else ''} | "
              f"{ms(diff('spot-best')) if m != 'spot-best' else ''} | {f'{statistics.fmean(spread):.4f}' if spread else ''} | "
              f"{e['trainable']:,} | {statistics.fmean(r['step_s'] for r in extra[(t, s, m)]):.2f} |")
        target_means[(s, m)][t] = statistics.fmean(v.values())
    print("\n## Mean over targets\n")
    print("| setting | " + " | ".join(methods) + " |")
    print("|---|" + "---|" * len(methods))
    settings = list(dict.fromkeys(s for s, _ in target_means))
    for s in settings:
        by = {m: target_means[(s, m)] for m in methods if (s, m) in target_means}
        print(f"| {s} | " + " | ".join(f"{statistics.fmean(by[m].values()):.1f} ({len(by[m])})" if m in by else "n/a" for m in methods) + " |")
    # The means above are over different targets when a method has not run on
    # all of them; differences of per-target means over the targets both
    # methods have are comparable.
    print("\n## Mean difference of per-target means, over the targets both methods have\n")
    print("| setting | method | − pt (targets) | − spot-best (targets) | − attempt (targets) |")
    print("|---|---|---|---|---|")
    for s in settings:
        for m in methods:
            mine = target_means.get((s, m))
            if not mine:
                continue
            cols = []
            for other in ("pt", "spot-best", "attempt"):
                theirs = target_means.get((s, other), {})
                both = sorted(set(mine) & set(theirs))
                cols.append("" if m == other or not both else
                            f"{statistics.fmean(mine[t] - theirs[t] for t in both):+.1f} ({len(both)})")
            print(f"| {s} | {m} | " + " | ".join(cols) + " |")


if __name__ == "__main__":
    main()
