"""Tables for scripts/experiment_select.sh: how well each selection signal
predicts single-source transfer, with the noise next to it.

    python3 scripts/select_table.py OUT > OUT/select.md

Reads OUT/truth.jsonl (PT and single-source SPoT runs per target and seed),
OUT/select.jsonl (`suggest --json` per target) and OUT/mixture.jsonl (ATTEMPT
over suggest's top 3 vs over all sources). Standard library only.

Ground truth: a candidate's transfer on a target is the mean over seeds of
(SPoT from it - PT), both with the same seed. The oracle is the best of
{PT (gain 0), SPoT from each candidate}, so a selector that always adds
something is penalised where transfer hurts. A real source "transfers" only
where its mean gain beats every control's.

Exact permutation p-values (one-sided, positive association) enumerate every
ordering of the candidates (10! for ten): the statistic for Spearman is
sum(rank_signal * rank_truth), for Kendall the tau-b numerator.
"""
import itertools
import json
import math
import os
import random
import statistics
import sys
from collections import defaultdict

CONTROLS = {"shuffled-sst2", "noise", "noise-low", "noise-high"}
# Training examples of each source task in ../shared/data (the "data size" baseline).
DATA_SIZE = {"mnli": 8999, "qnli": 8999, "qqp": 8999, "sst2": 67349, "sst5": 7689, "subj": 7200,
             "agnews": 10001, "wnli": 635, "shuffled-sst2": 67349, "noise": 0, "noise-low": 0, "noise-high": 0}
METRIC = {"cola": "matthews", "stsb": "pearson"}


def rows(path):
    if not os.path.exists(path):
        return []
    return [json.loads(l) for l in open(path) if l.strip()]


def metric(target, m):
    return 100.0 * m[METRIC.get(target, "accuracy")]


def short(name):
    return name[:-len("-prompt")] if name.endswith("-prompt") else name


def ranks(values):
    """Average ranks (1 = smallest), ties sharing their mean rank."""
    order = sorted(range(len(values)), key=lambda i: values[i])
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


def pearson(x, y):
    mx, my = statistics.fmean(x), statistics.fmean(y)
    sx = math.sqrt(sum((a - mx) ** 2 for a in x))
    sy = math.sqrt(sum((b - my) ** 2 for b in y))
    if sx == 0 or sy == 0:
        return float("nan")
    return sum((a - mx) * (b - my) for a, b in zip(x, y)) / (sx * sy)


def sign(v):
    return (v > 0) - (v < 0)


def kendall_numerator(x, y):
    return sum(sign(x[i] - x[j]) * sign(y[i] - y[j]) for i in range(len(x)) for j in range(i + 1, len(x)))


def kendall_tau_b(x, y):
    n0 = len(x) * (len(x) - 1) / 2
    tx = sum(1 for i in range(len(x)) for j in range(i + 1, len(x)) if x[i] == x[j])
    ty = sum(1 for i in range(len(y)) for j in range(i + 1, len(y)) if y[i] == y[j])
    d = math.sqrt((n0 - tx) * (n0 - ty))
    return kendall_numerator(x, y) / d if d else float("nan")


_null_cache = {}


# Exact permutation nulls up to this many candidates (9! = 362,880 orders);
# beyond it, this many random orders (seeded), whose p-values are good to
# about ±0.002 at p = 0.05.
EXACT_UP_TO = 9
RANDOM_ORDERS = 100_000


def null_distributions(a, b):
    """Every permutation's Spearman statistic and Kendall numerator (or, for
    more than EXACT_UP_TO candidates, those of RANDOM_ORDERS random
    permutations), cached by the two rank multisets (with untied ranks all
    signals share one)."""
    key = (tuple(sorted(a)), tuple(sorted(b)))
    if key not in _null_cache:
        sa, sb = list(key[0]), key[1]
        spear, kend = [], []
        if len(sb) <= EXACT_UP_TO:
            orders = itertools.permutations(sb)
        else:
            rng = random.Random(1)
            orders = (rng.sample(sb, len(sb)) for _ in range(RANDOM_ORDERS))
        for p in orders:
            spear.append(sum(map(float.__mul__, sa, p)))
            kend.append(kendall_numerator(sa, p))
        _null_cache[key] = (sorted(spear), sorted(kend))
    return _null_cache[key]


def p_at_least(sorted_null, observed):
    # Fraction of permutations at least as extreme (with a float tolerance).
    lo, hi = 0, len(sorted_null)
    while lo < hi:
        mid = (lo + hi) // 2
        if sorted_null[mid] < observed - 1e-9:
            lo = mid + 1
        else:
            hi = mid
    return (len(sorted_null) - lo) / len(sorted_null)


def ndcg(signal, gains):
    rel = [g - min(gains) for g in gains]
    order = sorted(range(len(signal)), key=lambda i: -signal[i])
    dcg = sum(rel[i] / math.log2(k + 2) for k, i in enumerate(order))
    ideal = sum(r / math.log2(k + 2) for k, r in enumerate(sorted(rel, reverse=True)))
    return dcg / ideal if ideal else float("nan")


def fmt(v, digits=2):
    return "n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{digits}f}"


def main():
    out = sys.argv[1]
    truth = rows(os.path.join(out, "truth.jsonl"))
    selects = {r["target"]: r for r in rows(os.path.join(out, "select.jsonl"))}
    mixture = rows(os.path.join(out, "mixture.jsonl"))
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import prompt_similarity
    # From the prompts when OUT has them, else from a saved similarity.jsonl
    # (docs/experiments keeps the rows, not the prompt tensors).
    if os.path.isdir(os.path.join(out, "truth", "seed1")):
        similarity = list(prompt_similarity.rows(out, 1))
    else:
        similarity = rows(os.path.join(out, "similarity.jsonl")) if os.path.exists(os.path.join(out, "similarity.jsonl")) else []
    pt = defaultdict(dict)
    spot = defaultdict(lambda: defaultdict(dict))
    step_s = []
    for r in truth:
        v = metric(r["target"], r["metrics"])
        step_s.append(r["step_s"])
        if r["method"] == "pt":
            pt[r["target"]][r["seed"]] = v
        else:
            spot[r["target"]][r["source"]][r["seed"]] = v
    # A target enters the tables once its first seed has PT and every
    # candidate (a run in progress would otherwise look like a tie).
    pool = max((len(v) for v in spot.values()), default=0)
    # A target that is also a source (sst2) is left out of its own pool.
    targets = [t for t in pt if spot.get(t) and len(spot[t]) >= min(pool, 10) - (t in DATA_SIZE and t not in CONTROLS)]
    in_progress = [t for t in pt if t not in targets]
    print("# Source selection against single-source transfer\n")
    print(f"Rows: {len(truth)} training runs, {len(selects)} selections, {len(mixture)} mixture runs."
          + (f" Still in progress (left out below): {', '.join(in_progress)}." if in_progress else "") + "\n")

    # Ground truth and noise.
    gains = {}
    print("## Ground truth: SPoT gain over PT (same seed), mean ± std over seeds\n")
    print("| target | PT | seeds | " + " | ".join(["candidate gains"]) + " | seed std (mean) | gap between sources (std of means) |")
    print("|---|---|---|---|---|---|")
    for t in targets:
        seeds = sorted(pt[t])
        per = {}
        for src, by_seed in spot[t].items():
            d = [by_seed[s] - pt[t][s] for s in seeds if s in by_seed]
            if d:
                per[src] = d
        gains[t] = {s: statistics.fmean(d) for s, d in per.items()}
        seed_std = statistics.fmean([statistics.stdev(d) for d in per.values() if len(d) > 1] or [float("nan")])
        gap = statistics.stdev(gains[t].values()) if len(gains[t]) > 1 else float("nan")
        pts = [pt[t][s] for s in seeds]
        cells = ", ".join(f"{s} {statistics.fmean(d):+.1f}±{statistics.stdev(d) if len(d) > 1 else 0:.1f}"
                          for s, d in sorted(per.items(), key=lambda kv: -statistics.fmean(kv[1])))
        print(f"| {t} | {statistics.fmean(pts):.1f} ± {statistics.stdev(pts) if len(pts) > 1 else 0:.1f} | {len(seeds)} | "
              f"{cells} | {fmt(seed_std, 1)} | {fmt(gap, 1)} |")
    print()
    # How far can any selector get? The ranking of candidates by one seed's
    # gains against another seed's: the reliability of the ground truth. With
    # k seeds averaged, Spearman-Brown gives the mean's reliability r_k, and a
    # perfect predictor of the true gains correlates with the k-seed mean at
    # about sqrt(r_k) -- the ceiling for every Spearman below.
    print("## Noise ceiling: does one seed's ranking of the candidates repeat on another seed?\n")
    print("| target | seeds | Spearman between seeds' gains (each pair) | mean | ceiling for the seed mean |")
    print("|---|---|---|---|---|")
    ceilings = {}
    for t in targets:
        seeds = sorted(pt[t])
        srcs = [s for s in spot[t] if all(x in spot[t][s] for x in seeds)]
        if len(seeds) < 2 or len(srcs) < 3:
            continue
        per_seed = {x: [spot[t][s][x] - pt[t][x] for s in srcs] for x in seeds}
        pairs = [(a, b) for a, b in itertools.combinations(seeds, 2)
                 if len(set(per_seed[a])) > 1 and len(set(per_seed[b])) > 1]
        if not pairs:
            print(f"| {t} | {len(seeds)} | every candidate ties on some seed | n/a | n/a |")
            continue
        rhos = [pearson(ranks(per_seed[a]), ranks(per_seed[b])) for a, b in pairs]
        r = statistics.fmean(rhos)
        k = len(seeds)
        rk = k * r / (1 + (k - 1) * r) if r > 0 else 0.0
        ceilings[t] = math.sqrt(rk)
        print(f"| {t} | {k} | {', '.join(f'{a}-{b}: {v:.2f}' for (a, b), v in zip(pairs, rhos))} | {r:.2f} | {math.sqrt(rk):.2f} |")
    if ceilings:
        print(f"\nMean ceiling over {len(ceilings)} targets: {statistics.fmean(ceilings.values()):.2f} "
              "(issue 13 asks for a mean Spearman of 0.5).\n")
    else:
        print()
    print("## Which real sources beat the controls\n")
    print("| target | best control gain | real sources above every control | oracle |")
    print("|---|---|---|---|")
    transferring = {}
    for t in targets:
        g = gains[t]
        ctrl = max((v for s, v in g.items() if s in CONTROLS), default=float("-inf"))
        transferring[t] = [s for s, v in g.items() if s not in CONTROLS and v > ctrl]
        best = max(g, key=g.get)
        oracle = best if g[best] > 0 else "PT (every candidate hurts)"
        print(f"| {t} | {fmt(ctrl, 1)} | {', '.join(sorted(transferring[t], key=lambda s: -g[s])) or 'none'} | {oracle} |")
    print()

    # Signals.
    def signal_values(t):
        s = selects.get(t)
        out = {}
        if s:
            rk = {short(r["name"]): r for r in s["ranking"]}
            out["LogME vs norm-matched random (suggest's score)"] = {k: r["score"] for k, r in rk.items()}
            out["LogME gain over no prompt"] = {k: r["logme_gain"] for k, r in rk.items()}
            out["H-score"] = {k: r["h_score"] for k, r in rk.items() if r.get("h_score") is not None}
            out["task signature cosine (data similarity)"] = {
                k: r["signature_cosine"] for k, r in rk.items() if r.get("signature_cosine") is not None}
            # Smaller-norm prompts are easier to move away from as an init;
            # a baseline that knows nothing but the scale.
            out["smaller row norm (baseline)"] = {k: -r["row_norm"] for k, r in rk.items()}
            if s.get("attention_probe"):
                out["attention probe (baseline)"] = {short(k): v for k, v in s["attention_probe"].items()}
        # SPoT's prompt similarity to the target's own 100-step PT prompt
        # (seed 1, the selector's seed): scripts/prompt_similarity.py.
        for key, label in (("avg_token_cosine", "SPoT similarity, avg-token cosine"),
                           ("per_token_cosine", "SPoT similarity, per-token cosine"),
                           ("max_token_cosine", "SPoT similarity, max-over-tokens cosine")):
            vals = {r["source"]: r[key] for r in similarity if r["target"] == t}
            if vals:
                out[label] = vals
        out["source data size (baseline)"] = {k: DATA_SIZE.get(k, 0) for k in gains[t]}
        # Rank average of the forward-only signals (no fitting, nothing to leak).
        parts = [out[k] for k in ("LogME vs norm-matched random (suggest's score)", "H-score",
                                  "task signature cosine (data similarity)") if k in out]
        common = set(gains[t]).intersection(*[set(p) for p in parts]) if parts else set()
        if len(parts) > 1 and len(common) >= 3:
            names = sorted(common)
            rk = [dict(zip(names, ranks([float(p[n]) for n in names]))) for p in parts]
            out["rank average of LogME score, H-score, signature"] = {n: statistics.fmean(r[n] for r in rk) for n in names}
        return out

    # Signals and proposals are judged on targets whose seeds are all in
    # (three or more, every candidate): a half-run target would be judged on
    # one seed's noise.
    n_seeds = max((len(v) for v in pt.values()), default=0)
    scored = [t for t in targets if len(pt[t]) >= min(n_seeds, 3)
              and all(len(by) >= len(pt[t]) for by in spot[t].values())]
    summary = defaultdict(lambda: defaultdict(list))
    per_target = defaultdict(dict)
    print("## Each signal against the ground truth, per target\n")
    if set(targets) - set(scored):
        print(f"Targets with seeds still running are left out here: {', '.join(t for t in targets if t not in scored)}.\n")
    print(f"Spearman and Kendall with one-sided permutation p (exact up to {EXACT_UP_TO} candidates, else "
          f"{RANDOM_ORDERS:,} random orders); NDCG over all candidates; "
          "regret against the oracle (best of PT and every SPoT) in metric points.\n")
    print("| target | signal | n | Spearman (p) | Kendall (p) | NDCG | top-1 | top-1 hit | Regret@1 | Regret@3 | controls below every transferring source |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for t in scored:
        g = gains[t]
        oracle = max(0.0, max(g.values()))
        best = max(g, key=g.get)
        if len(set(g.values())) == 1:
            print(f"| {t} | every signal | {len(g)} | every candidate ties (gain {oracle:+.1f}): nothing to rank | | | | | | | |")
            continue
        for name, vals in signal_values(t).items():
            names = [k for k in g if k in vals and vals[k] is not None]
            if len(names) < 3:
                continue
            sig = [float(vals[k]) for k in names]
            tru = [g[k] for k in names]
            rs, rt = ranks(sig), ranks(tru)
            rho = pearson(rs, rt)
            tau = kendall_tau_b(rs, rt)
            ns, nk = null_distributions(rs, rt)
            p_rho = p_at_least(ns, sum(a * b for a, b in zip(rs, rt)))
            p_tau = p_at_least(nk, kendall_numerator(rs, rt))
            order = sorted(range(len(names)), key=lambda i: -sig[i])
            r1 = oracle - tru[order[0]]
            r3 = oracle - max(tru[i] for i in order[:3])
            hit = names[order[0]] == best
            ctrl_ok = all(
                min((sig[names.index(s)] for s in transferring[t] if s in names), default=float("inf")) > sig[names.index(c)]
                for c in CONTROLS if c in names
            ) if transferring[t] else None
            for k, v in [("rho", rho), ("tau", tau), ("ndcg", ndcg(sig, tru)), ("r1", r1), ("r3", r3), ("hit", float(hit))]:
                summary[name][k].append(v)
            per_target[name][t] = {"rho": rho, "r1": r1, "r3": r3, "hit": float(hit)}
            print(f"| {t} | {name} | {len(names)} | {fmt(rho)} ({fmt(p_rho, 3)}) | {fmt(tau)} ({fmt(p_tau, 3)}) | "
                  f"{fmt(ndcg(sig, tru))} | {names[order[0]]} | {'yes' if hit else 'no'} | {r1:.1f} | {r3:.1f} | "
                  f"{'n/a' if ctrl_ok is None else 'yes' if ctrl_ok else 'no'} |")
        # Random ranking: expected values.
        vals = list(g.values())
        summary["random (expected)"]["rho"].append(0.0)
        summary["random (expected)"]["r1"].append(oracle - statistics.fmean(vals))
        k3 = list(itertools.combinations(vals, 3))
        summary["random (expected)"]["r3"].append(oracle - statistics.fmean(max(c) for c in k3))
        summary["random (expected)"]["hit"].append(1.0 / len(vals))
    print()
    # Leave one target out: for each target, the signal with the best mean
    # Spearman on the other targets, scored on this one (never fitted on it).
    loto = []
    for i, t in enumerate(scored):
        best_name, best_rho = None, -2.0
        for name, m in per_target.items():
            others = [m[u]["rho"] for u in scored if u != t and u in m and not math.isnan(m[u]["rho"])]
            if others and t in m and statistics.fmean(others) > best_rho:
                best_name, best_rho = name, statistics.fmean(others)
        if best_name:
            r = per_target[best_name][t]
            loto.append((t, best_name, r))
    if loto:
        print("## Chosen leave-one-target-out\n")
        print("For each target, the signal with the best mean Spearman on the other targets, scored on this one.\n")
        print("| target | chosen signal | Spearman | Regret@1 | Regret@3 |")
        print("|---|---|---|---|---|")
        for t, name, r in loto:
            print(f"| {t} | {name} | {fmt(r['rho'])} | {r['r1']:.1f} | {r['r3']:.1f} |")
        for k in ("rho", "r1", "r3"):
            summary["chosen leave-one-target-out"][k] = [r[k] for _, _, r in loto]
        summary["chosen leave-one-target-out"]["hit"] = [r["hit"] for _, _, r in loto]
        print()
    print("## Mean over targets\n")
    print("| signal | targets | mean Spearman | mean Kendall | mean NDCG | top-1 hit rate | mean Regret@1 | mean Regret@3 |")
    print("|---|---|---|---|---|---|---|---|")
    for name, m in summary.items():
        f = lambda k: fmt(statistics.fmean([v for v in m[k] if not math.isnan(v)])) if m.get(k) else "n/a"
        print(f"| {name} | {len(m['r1'])} | {f('rho')} | {f('tau')} | {f('ndcg')} | {f('hit')} | {f('r1')} | {f('r3')} |")
    print()
    # Only where a ranking exists to be predicted: the targets whose seeds
    # agree on the order of the candidates (noise ceiling >= 0.5). Chosen by
    # the ground truth's own reliability, never by any signal's score.
    rankable = [t for t in scored if ceilings.get(t, 0.0) >= 0.5]
    if rankable:
        print(f"### Over the targets whose ranking repeats from seed to seed (ceiling ≥ 0.5: {', '.join(rankable)})\n")
        print("| signal | targets | mean Spearman | per target | mean Regret@1 | mean Regret@3 |")
        print("|---|---|---|---|---|---|")
        for name, m in per_target.items():
            got = [t for t in rankable if t in m and not math.isnan(m[t]["rho"])]
            if not got:
                continue
            mean = lambda k: statistics.fmean(m[t][k] for t in got)
            cells = ", ".join(f"{t} {m[t]['rho']:.2f}" for t in got)
            print(f"| {name} | {len(got)} | {mean('rho'):.2f} | {cells} | {mean('r1'):.1f} | {mean('r3'):.1f} |")
        print()

    # The proposal itself: what suggest keeps.
    if selects:
        print("## suggest's proposal (keep set) against the oracle\n")
        print("| target | kept | did not learn their own task (never kept) | gain of first kept (or PT) | oracle | regret | kept a control | seconds per candidate | wall s |")
        print("|---|---|---|---|---|---|---|---|---|")
        regrets = []
        for t in scored:
            s = selects.get(t)
            if not s:
                continue
            g = gains[t]
            kept = [short(k) for k in s["keep"]]
            unlearned = [short(r["name"]) for r in s["ranking"] if r.get("learned_own_task") is False]
            got = g.get(kept[0], float("nan")) if kept else 0.0
            oracle = max(0.0, max(g.values()))
            regrets.append(oracle - got)
            per = statistics.fmean(r["seconds"] for r in s["ranking"])
            print(f"| {t} | {', '.join(kept) or 'nothing'} | {', '.join(unlearned) or 'none (or not recorded)'} | {got:+.1f} | {oracle:+.1f} | "
                  f"{oracle - got:.1f} | {'YES' if any(k in CONTROLS for k in kept) else 'no'} | {per:.1f} | {s.get('wall_s', 'n/a')} |")
        if step_s:
            print(f"\nMean regret of the proposal: {statistics.fmean(regrets):.1f} points over {len(regrets)} targets. "
                  f"One training step took {statistics.fmean(step_s):.2f} s on average in the truth runs, so scoring one "
                  f"candidate costs about {statistics.fmean(statistics.fmean(r['seconds'] for r in selects[t]['ranking']) for t in selects) / statistics.fmean(step_s):.1f} steps.\n")

    if mixture:
        print("## ATTEMPT over suggest's top 3 vs over all real sources\n")
        print("| target | PT | best single SPoT (oracle source) | ATTEMPT, all sources | suggest top 3 | top3 - all (paired) |")
        print("|---|---|---|---|---|---|")
        mix = defaultdict(lambda: defaultdict(dict))
        kept = {}
        for r in mixture:
            mix[r["target"]][r["pool"]][r["seed"]] = metric(r["target"], r["metrics"])
            if r["pool"] == "top3":
                kept[r["target"]] = r["sources"] or "nothing (PT)"
        ms = lambda xs: f"{statistics.fmean(xs):.1f} ± {statistics.stdev(xs) if len(xs) > 1 else 0:.1f}" if xs else "n/a"
        diffs = {}
        for t in scored:
            if t not in mix:
                continue
            g = gains[t]
            best = max(g, key=g.get)
            seeds = sorted(set(mix[t]["all"]) & set(mix[t]["top3"]))
            diff = [mix[t]["top3"][s] - mix[t]["all"][s] for s in seeds]
            print(f"| {t} | {ms(list(pt[t].values()))} | {best}: {ms(list(spot[t][best].values()))} | {ms(list(mix[t]['all'].values()))} | "
                  f"{ms(list(mix[t]['top3'].values()))} ({kept.get(t, '?')}) | {ms(diff)} |")
            diffs[t] = diff
        print()
        paired = [d for ds in diffs.values() for d in ds]
        if paired:
            per = ", ".join(f"{t} {statistics.fmean(d):+.1f} ({len(d)})" for t, d in diffs.items() if d)
            print(f"top 3 − all, paired over {len(paired)} target × seed pairs: mean {statistics.fmean(paired):+.2f}; "
                  f"per target (pairs): {per}.\n")


if __name__ == "__main__":
    main()
