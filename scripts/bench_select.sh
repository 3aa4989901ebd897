#!/usr/bin/env bash
# How long does `suggest` take over a large registry? Publishes N synthetic
# packages for all-MiniLM-L6-v2 (random 20 x 384 prompts with row norm 30 and
# random task signatures), then times `suggest --task TASK` with the
# signature pre-filter (only the --prefilter closest are forward-scored).
#
#   bash scripts/bench_select.sh [DATA_DIR] [N] [TASK]    (defaults ../shared/data 1000 rte)
#
# Prints the CPU, the publish time and suggest's wall time and peak memory.
set -euo pipefail
DATA_DIR=$(realpath "${1:-../shared/data}")
N=${2:-1000}
TASK=${3:-rte}
BIN=$(realpath "${BIN:-target/release/attempt-pkg}")
MODEL=${MODEL:-all-MiniLM-L6-v2}
PREFILTER=${PREFILTER:-20}
[[ -x "$BIN" ]] || { echo "no binary at $BIN: run \`cargo build --release\` or set BIN" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export ATTEMPT_HOME=${ATTEMPT_HOME:-$HOME/.attempt}
export ATTEMPT_REGISTRY="$work/registry"
"$BIN" model fetch minilm >/dev/null 2>&1 || true
fp=$("$BIN" --json model info "$MODEL" | python3 -c "import json,sys; print(json.load(sys.stdin)['fingerprint'])")
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs), $(nproc) cores"

python3 - "$work/pkgs" "$N" "$fp" "$MODEL" <<'PY'
import base64, json, math, os, random, struct, sys
out, n, fp, model = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
rng = random.Random(7)
m, d = 20, 384
for i in range(n):
    pkg = os.path.join(out, f"p{i:04d}")
    os.makedirs(pkg)
    flat = []
    for _ in range(m):
        row = [rng.gauss(0, 1) for _ in range(d)]
        s = 30 / math.sqrt(sum(v * v for v in row))
        flat += [v * s for v in row]
    header = json.dumps({"prompt": {"dtype": "F32", "shape": [m, d], "data_offsets": [0, 4 * m * d]}}).encode()
    header += b" " * (-len(header) % 8)
    with open(os.path.join(pkg, "prompt.safetensors"), "wb") as f:
        f.write(struct.pack("<Q", len(header)) + header + struct.pack(f"<{m * d}f", *flat))
    mean = [rng.gauss(0, 1) for _ in range(d)]
    sig = base64.b64encode(struct.pack(f"<{d}e", *mean)).decode()
    with open(os.path.join(pkg, "Prompt.toml"), "w") as f:
        f.write(f'[package]\nname = "synthetic-{i:04d}"\nversion = "1.0.0"\ntask = "synthetic"\n'
                f'[base-model]\nname = "{model}"\nfingerprint = "{fp}"\nhidden-size = {d}\n'
                f'[prompt]\nfile = "prompt.safetensors"\n[signature]\nexamples = 1000\nmean = "{sig}"\n')
PY
t0=$(date +%s.%N)
for dir in "$work"/pkgs/*; do "$BIN" publish "$dir" >/dev/null; done
t1=$(date +%s.%N)
echo "published $N packages in $(python3 -c "print(f'{$t1 - $t0:.1f}')") s"
"$BIN" --project "$work/proj" init --name bench --model-path "$MODEL" >/dev/null 2>&1
timer=(/usr/bin/time -f "suggest: %e s wall, %M KB peak RSS")
[[ -x /usr/bin/time ]] || timer=()
"${timer[@]}" "$BIN" --project "$work/proj" --json suggest --task "$TASK" \
  --data-dir "$DATA_DIR" --prefilter "$PREFILTER" >"$work/suggest.json" 2>"$work/suggest.err" || { tail "$work/suggest.err"; exit 1; }
tail -1 "$work/suggest.err"
python3 - "$work/suggest.json" "$N" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
per = [r["seconds"] for r in s["ranking"]]
print(f"{sys.argv[2]} packages: {len(s['filtered_by_signature'])} filtered out by signature, {len(per)} forward-scored "
      f"({sum(per) / len(per):.1f} s each); kept {len(s['keep'])}: {s['verdict']}")
PY
