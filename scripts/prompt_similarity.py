#!/usr/bin/env python3
"""Signal 3 of issue 13, measured offline: SPoT's prompt similarity (Vu et
al., 2022) between a target's own tuned prompt and each candidate.

    python3 scripts/prompt_similarity.py OUT [SEED]

OUT is scripts/experiment_select.sh's directory. For every target whose
plain-prompt-tuning run of SEED (default 1) is in OUT/truth/seed<SEED>/<t>-pt,
the trained target prompt (100 steps there) is compared with every
candidate's prompt (OUT/sources/<name>/prompt.safetensors):

  avg-token cosine   cosine of the two prompts' mean rows (SPoT's C_avg)
  per-token cosine   mean cosine over all pairs of rows
  max-token cosine   mean over the target's rows of the best-matching candidate row

One JSON row per (target, seed, candidate) goes to stdout. The target prompt
here had a full 100-step run, more than a selector would spend, so this is
the best the signal can do at this budget, not what a cheap probe gets.

The two files are read with a few lines of struct/json (the safetensors
header is a little-endian u64 length and a JSON table) rather than adding
numpy or safetensors to the experiment's requirements.
"""
import json
import math
import os
import struct
import sys


def read_tensor(path, name=None):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        entries = {k: v for k, v in header.items() if k != "__metadata__"}
        key = name if name is not None else next(iter(entries))
        if key not in entries:
            raise SystemExit(f"{path} has no tensor {key} (it has {', '.join(entries)})")
        e = entries[key]
        if e["dtype"] != "F32" or len(e["shape"]) != 2:
            raise SystemExit(f"{path}: {key} is {e['dtype']} {e['shape']}, expected a 2-D F32 matrix")
        start, end = e["data_offsets"]
        f.seek(8 + n + start)
        data = f.read(end - start)
    rows, cols = e["shape"]
    flat = struct.unpack(f"<{rows * cols}f", data)
    return [list(flat[i * cols:(i + 1) * cols]) for i in range(rows)]


def cosine(a, b):
    na = math.sqrt(sum(x * x for x in a))
    nb = math.sqrt(sum(x * x for x in b))
    return sum(x * y for x, y in zip(a, b)) / (na * nb) if na > 0 and nb > 0 else 0.0


def mean_row(m):
    return [sum(col) / len(m) for col in zip(*m)]


def rows(out, seed):
    """One dict per (target, candidate) for the PT runs of `seed` in OUT."""
    sources_dir = os.path.join(out, "sources")
    candidates = {}
    for entry in sorted(os.listdir(sources_dir)):
        path = os.path.join(sources_dir, entry, "prompt.safetensors")
        # The 1.0.0 directories (NAME/), not the rechecked copies (NAME-1.0.1/, same tensor).
        if os.path.isfile(path) and not entry.endswith("-1.0.1"):
            candidates[entry] = read_tensor(path)
    truth_dir = os.path.join(out, "truth", f"seed{seed}")
    for entry in sorted(os.listdir(truth_dir)):
        if not entry.endswith("-pt"):
            continue
        target = entry[:-3]
        ckpt = os.path.join(truth_dir, entry, "run", "checkpoint.safetensors")
        if not os.path.isfile(ckpt):
            continue
        tp = read_tensor(ckpt, f"task.{target}.prompt")
        t_mean = mean_row(tp)
        for name, cp in candidates.items():
            c_mean = mean_row(cp)
            pairs = [cosine(a, b) for a in tp for b in cp]
            best = [max(cosine(a, b) for b in cp) for a in tp]
            yield {
                "target": target, "seed": seed, "source": name,
                "avg_token_cosine": cosine(t_mean, c_mean),
                "per_token_cosine": sum(pairs) / len(pairs),
                "max_token_cosine": sum(best) / len(best),
            }


def main():
    out = sys.argv[1]
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 1
    for row in rows(out, seed):
        print(json.dumps(row))


if __name__ == "__main__":
    main()
