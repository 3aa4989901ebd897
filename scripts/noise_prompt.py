"""Write a control prompt for scripts/experiment_select.sh: Gaussian rows, each
scaled to the mean row norm of the given trained prompts, so it matches them
in size and carries no task knowledge.

    python3 scripts/noise_prompt.py OUT.safetensors [--norm mean|min|max] PROMPT.safetensors...

--norm picks the mean row norm over all the given prompts (default), or that
of the prompt with the smallest or largest mean row norm. The Gaussian draw is
seeded (1), so controls made at different norms share one direction and
differ in scale only.

Reads and writes safetensors by hand (an 8-byte header length, a JSON header,
raw little-endian f32), so it needs nothing beyond the standard library.
"""
import json
import math
import random
import struct
import sys


def read_prompt(path):
    with open(path, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    key = "prompt" if "prompt" in header else next(k for k in header if k != "__metadata__")
    info = header[key]
    if info["dtype"] != "F32":
        sys.exit(f"{path}: expected an F32 prompt, found {info['dtype']}")
    rows, cols = info["shape"]
    start, end = info["data_offsets"]
    values = struct.unpack(f"<{rows * cols}f", data[start:end])
    return rows, cols, [values[r * cols:(r + 1) * cols] for r in range(rows)]


def main():
    out, inputs = sys.argv[1], sys.argv[2:]
    pick = "mean"
    if inputs[:1] == ["--norm"]:
        pick, inputs = inputs[1] if len(inputs) > 1 else "", inputs[2:]
    if pick not in ("mean", "min", "max") or not inputs:
        sys.exit("usage: noise_prompt.py OUT.safetensors [--norm mean|min|max] PROMPT.safetensors...")
    shapes, per_prompt = set(), []
    for path in inputs:
        rows, cols, values = read_prompt(path)
        shapes.add((rows, cols))
        per_prompt.append([math.sqrt(sum(v * v for v in row)) for row in values])
    if len(shapes) != 1:
        sys.exit(f"the prompts differ in shape: {sorted(shapes)}")
    rows, cols = shapes.pop()
    means = [sum(n) / len(n) for n in per_prompt]
    norm = {"mean": sum(map(sum, per_prompt)) / sum(map(len, per_prompt)), "min": min(means), "max": max(means)}[pick]
    rng = random.Random(1)
    flat = []
    for _ in range(rows):
        row = [rng.gauss(0.0, 1.0) for _ in range(cols)]
        scale = norm / math.sqrt(sum(v * v for v in row))
        flat += [v * scale for v in row]
    header = json.dumps({"prompt": {"dtype": "F32", "shape": [rows, cols], "data_offsets": [0, 4 * len(flat)]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(out, "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + struct.pack(f"<{len(flat)}f", *flat))
    print(f"{out}: {rows} x {cols}, row norm {norm:.2f}")


if __name__ == "__main__":
    main()
