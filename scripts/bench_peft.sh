#!/usr/bin/env bash
# End to end: `attempt-pkg train --method pt` against Hugging Face PEFT prompt
# tuning (scripts/bench_peft.py), the same task, steps, batch, length, prompt
# length, learning rates and threads, one after the other on this machine.
# Prints each side's mean step time, wall time and peak memory, and the ratios.
#
#   bash scripts/bench_peft.sh [TASK] [STEPS] [DATA_DIR]      (rte, epoch, ../shared/data)
#   GEMM="auto bf16" bash scripts/bench_peft.sh rte      (our side once per ATTEMPT_GEMM value)
#
# Each of our runs is compared with a PEFT run of the same precision: our
# bf16 backend with PEFT under torch.autocast(bfloat16), the others with
# PEFT in fp32.
#
# STEPS `epoch` (the default): one epoch each, so both sides train on the
# same examples. With a step count the two sides draw different batches (the
# shuffles differ), which grouped by length can differ in length by a third:
# compare grouped figures over an epoch only.
#
# Needs `cargo build --release`, `attempt-pkg model fetch minilm`, and a
# Python with torch, transformers and peft (PYTHON, default .venv/bin/python:
# `bash scripts/dev-venv.sh && .venv/bin/pip install peft`).
set -euo pipefail
TASK=${1:-rte} STEPS=${2:-epoch} DATA_DIR=$(realpath "${3:-../shared/data}")
BIN=$(realpath "${BIN:-target/release/attempt-pkg}")
PYTHON=${PYTHON:-.venv/bin/python}
MODEL_DIR=${MODEL_DIR:-${ATTEMPT_HOME:-$HOME/.attempt}/models/all-MiniLM-L6-v2}
THREADS=${THREADS:-$(nproc)}
read -r -a GEMMS <<<"${GEMM:-auto}"
precisions=(fp32)
[[ " ${GEMMS[*]} " == *" bf16 "* ]] && precisions+=(bf16)
[[ -x "$BIN" ]] || { echo "no binary at $BIN: run \`cargo build --release\` or set BIN" >&2; exit 1; }
[[ -f "$MODEL_DIR/config.json" ]] || { echo "no model at $MODEL_DIR: run \`attempt-pkg model fetch minilm\`" >&2; exit 1; }
"$PYTHON" -c "import torch, transformers, peft" 2>/dev/null \
  || { echo "$PYTHON lacks torch/transformers/peft: bash scripts/dev-venv.sh && .venv/bin/pip install peft" >&2; exit 1; }
echo "CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ //'), $THREADS threads"
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

"$BIN" --project "$W/p" init --name bench --model-path "$MODEL_DIR" >/dev/null
# Both sides ungrouped (shuffled batches, padded to their longest input),
# then both with batches grouped by length.
for mode in plain grouped; do
  ours=() peft=()
  [[ $mode == grouped ]] && { ours=(--group-by-length); peft=(--group-by-length); }
  if [[ $STEPS == epoch ]]; then
    ours+=(--epochs 1) peft+=(--steps 0)
  else
    ours+=(--max-steps "$STEPS" --epochs 1000) peft+=(--steps "$STEPS")
  fi
  for gemm in "${GEMMS[@]}"; do
    out="$W/ours-$gemm-$mode"
    /usr/bin/time -f "%e %M" -o "$out.time" env RAYON_NUM_THREADS="$THREADS" ATTEMPT_GEMM="$gemm" "$BIN" \
      --project "$W/p" --json train \
      --task "$TASK" --data-dir "$DATA_DIR" --method pt --prompt-length 20 --max-length 128 --batch-size 16 \
      --lr 0.3 --lr-other 5e-3 --eval-every 1000 --max-eval-examples 16 --seed 1 \
      "${ours[@]}" --run-dir "$W/p/run-$gemm-$mode" --quiet >"$out.json" 2>"$out.log" \
      || { cat "$out.log" >&2; exit 1; }
  done
  for precision in "${precisions[@]}"; do
    out="$W/peft-$precision-$mode" bf16=()
    [[ $precision == bf16 ]] && bf16=(--bf16)
    /usr/bin/time -f "%e %M" -o "$out.time" "$PYTHON" "$(dirname "$0")/bench_peft.py" "$MODEL_DIR" "$DATA_DIR" \
      --task "$TASK" --batch-size 16 --max-length 128 --virtual-tokens 20 --lr 0.3 --lr-head 5e-3 \
      --threads "$THREADS" "${peft[@]}" "${bf16[@]}" >"$out.json" 2>"$out.log" \
      || { cat "$out.log" >&2; exit 1; }
  done
done

python3 - "$W" "${GEMMS[@]}" <<'PY'
import json, sys
w, gemms = sys.argv[1], sys.argv[2:]
for mode in ("plain", "grouped"):
    for gemm in gemms:
        precision = "bf16" if gemm == "bf16" else "fp32"
        peft = json.loads(open(f"{w}/peft-{precision}-{mode}.json").read().strip().splitlines()[-1])
        pw, pm = map(float, open(f"{w}/peft-{precision}-{mode}.time").read().split())
        ours = json.load(open(f"{w}/ours-{gemm}-{mode}.json"))
        ow, om = map(float, open(f"{w}/ours-{gemm}-{mode}.time").read().split())
        rows = [("mean step, ms", ours["mean_step_seconds"] * 1e3, peft["mean_step_s"] * 1e3),
                ("wall, s (load + steps + exit)", ow, pw), ("peak RSS, MB", om / 1024, pm / 1024)]
        if mode == "plain" and gemm == gemms[0]:
            print(f"PEFT: torch {peft['torch']}; {ours['steps']} steps each; trainable: attempt-pkg "
                  f"{ours['trainable_parameters']}, PEFT {peft['trainable']}")
        kernels = ours.get("kernels", {}).get("gemm", gemm)
        print(f"{'batches ' + ('grouped by length' if mode == 'grouped' else 'not grouped'):32} "
              f"{'ours (' + kernels + ')':>12} {'PEFT ' + precision:>10} {'ratio':>7}")
        for name, a, b in rows:
            print(f"  {name:30} {a:12.1f} {b:10.1f} {a / b:7.2f}")
PY
