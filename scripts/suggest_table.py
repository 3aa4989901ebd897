#!/usr/bin/env python3
"""Scores `suggest`'s source rankings against per-source SPoT transfer, from
experiment_suggest.sh's suggest.jsonl. Usage: suggest_table.py SUGGEST.jsonl"""
import json, sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
primary = {"cola": "matthews", "stsb": "pearson"}


def ranks(values):
    """Ranks 1..n (average ranks for ties), highest value first."""
    order = sorted(range(len(values)), key=lambda i: -values[i])
    r = [0.0] * len(values)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
            j += 1
        for k in range(i, j + 1):
            r[order[k]] = (i + j) / 2 + 1
        i = j + 1
    return r


def spearman(a, b):
    ra, rb = ranks(a), ranks(b)
    n = len(a)
    ma, mb = sum(ra) / n, sum(rb) / n
    cov = sum((x - ma) * (y - mb) for x, y in zip(ra, rb))
    va = sum((x - ma) ** 2 for x in ra) ** 0.5
    vb = sum((y - mb) ** 2 for y in rb) ** 0.5
    return cov / (va * vb) if va and vb else float("nan")


targets = sorted({r["target"] for r in rows})
out = ["| target | metric | suggest ranking (attention) | SPoT from each source | rho | top-1 is best | regret |",
       "|---|---|---|---|---|---|---|"]
rhos, hits, regrets = [], 0, []
for t in targets:
    sug = next((r for r in rows if r["target"] == t and r["kind"] == "suggest"), None)
    spot = {r["source"]: 100 * r["metrics"].get(primary.get(t, "accuracy"), float("nan"))
            for r in rows if r["target"] == t and r["kind"] == "spot"}
    if sug is None or not spot:
        continue
    names = [n.split("@")[0].removesuffix("-prompt") for n, _ in sug["ranking"]]
    # Registry prompts without a SPoT run (other than the experiment's) are left out.
    kept = [(n, a) for n, (_, a) in zip(names, sug["ranking"]) if n in spot]
    if len(kept) < 2:
        continue
    names, attention = [n for n, _ in kept], [a for _, a in kept]
    transfer = [spot[n] for n in names]
    rho = spearman(attention, transfer)
    best = max(transfer)
    hit = transfer[0] == best
    rhos.append(rho)
    hits += hit
    regrets.append(best - transfer[0])
    out.append(f"| {t} | {primary.get(t, 'accuracy')} | " + ", ".join(f"{n} {a:.3f}" for n, a in zip(names, attention))
               + " | " + ", ".join(f"{n} {spot[n]:.1f}" for n in sorted(spot)) + f" | {rho:.2f} | {'yes' if hit else 'no'} | {best - transfer[0]:.1f} |")
if rhos:
    defined = [r for r in rhos if r == r]  # nan where every source transfers the same
    rho = f"{sum(defined) / len(defined):.2f} over the {len(defined)} targets where sources differ" if defined else "undefined (all ties)"
    out += ["", f"Over {len(rhos)} targets: mean Spearman rho {rho}; the top suggestion is the best source "
            f"(or tied) for {hits}/{len(rhos)}; mean regret {sum(regrets) / len(regrets):.1f} points."]
print("\n".join(out))
