#!/usr/bin/env bash
# Step time of `train --method pt` with and without --group-by-length: the
# same task, steps, batch, length and seed, one after the other.
#
#   bash scripts/bench_group_by_length.sh [TASK] [STEPS] [DATA_DIR]
#
# Needs `cargo build --release` and `attempt-pkg model fetch minilm`.
set -euo pipefail
TASK=${1:-rte} STEPS=${2:-30} DATA_DIR=$(realpath "${3:-../shared/data}")
BIN=$(realpath "${BIN:-target/release/attempt-pkg}")
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //')"
W=$(mktemp -d)
for mode in plain grouped; do
  P=$W/$mode
  "$BIN" --project "$P" init --name g --model-path all-MiniLM-L6-v2 >/dev/null 2>&1
  extra=()
  [[ $mode == grouped ]] && extra=(--group-by-length)
  /usr/bin/time -f "%e s wall, %M KB peak" "$BIN" --project "$P" --json train --task "$TASK" --data-dir "$DATA_DIR" \
    --method pt --prompt-length 20 --max-length 128 --batch-size 16 --max-steps "$STEPS" --epochs 1000 --eval-every 1000 \
    --max-eval-examples 64 --seed 1 "${extra[@]}" --run-dir "$P/run" --quiet >"$P/out.json" 2>"$P/err.log" || { cat "$P/err.log"; exit 1; }
  python3 - "$P/out.json" "$mode" "$(tail -1 "$P/err.log")" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(f"{sys.argv[2]:8} {r['steps']} steps, {r['mean_step_seconds']*1000:.0f} ms/step; {sys.argv[3]}")
PY
done
rm -rf "$W"
