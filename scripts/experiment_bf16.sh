#!/usr/bin/env bash
# Does training with bf16 products (ATTEMPT_GEMM=bf16) learn as well as fp32?
#
#   bash scripts/experiment_bf16.sh [DATA_DIR] OUT
#
# For every TASK, SEED and GEMM backend it trains plain prompt tuning (the
# same budget, data and dev examples) and appends one row to
# OUT/bf16.jsonl (skipped when there, so a second call resumes). GEMMs
# defaults to "gemm avx2 bf16": gemm and avx2 are both fp32 and differ only
# in the order of their sums, so the spread between them is how far
# last-bit differences alone move a result; bf16 rounds every operand of the
# frozen products to 8 significant bits. Summary:
#   python3 scripts/bf16_table.py OUT > docs/experiments/bf16-DATE.md
set -euo pipefail
DATA_DIR=$(realpath "${1:-../shared/data}")
OUT=$(realpath -m "${2:?usage: experiment_bf16.sh DATA_DIR OUT}")
BIN=$(realpath "${BIN:-target/release/attempt-pkg}")
MODEL_DIR=${MODEL_DIR:-${ATTEMPT_HOME:-$HOME/.attempt}/models/all-MiniLM-L6-v2}
: "${TASKS:=sst2 trec}" "${SEEDS:=1 2 3}" "${GEMMS:=gemm avx2 bf16}" "${STEPS:=300}" "${MAX_EVAL:=1000}"
[[ -x "$BIN" ]] || { echo "no binary at $BIN: run \`cargo build --release\` or set BIN" >&2; exit 1; }
[[ -f "$MODEL_DIR/config.json" ]] || { echo "no model at $MODEL_DIR: run \`attempt-pkg model fetch minilm\`" >&2; exit 1; }
mkdir -p "$OUT/runs"
RESULTS="$OUT/bf16.jsonl"
touch "$RESULTS"
[[ -d "$OUT/project" ]] || "$BIN" --project "$OUT/project" init --name bf16 --model-path "$MODEL_DIR" >/dev/null
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

for task in $TASKS; do
  for seed in $SEEDS; do
    for gemm in $GEMMS; do
      key="\"task\": \"$task\", \"seed\": $seed, \"gemm\": \"$gemm\""
      if grep -qF "$key" "$RESULTS"; then continue; fi
      log "$task seed $seed on $gemm"
      run="$OUT/runs/$task-$seed-$gemm"
      rm -rf "$run"
      ATTEMPT_GEMM=$gemm "$BIN" --project "$OUT/project" --json train --task "$task" --data-dir "$DATA_DIR" \
        --method pt --prompt-length 20 --max-length 128 --batch-size 16 --lr 0.3 --lr-other 5e-3 \
        --max-steps "$STEPS" --epochs 1000 --eval-every 100000 --max-eval-examples "$MAX_EVAL" --seed "$seed" \
        --run-dir "$run" --quiet >"$run.json" 2>"$run.log" || { cat "$run.log" >&2; exit 1; }
      python3 - "$run.json" "$task" "$seed" "$gemm" >>"$RESULTS" <<'PY'
import json, sys
out, task, seed, gemm = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
r = json.load(open(out))
ev = r["tasks"][0]
row = {"task": task, "seed": seed, "gemm": gemm, "ran_on": r["kernels"]["gemm"], "steps": r["steps"],
       "metrics": ev["metrics"],
       "mean_step_ms": round(r["mean_step_seconds"] * 1e3, 1)}
print(json.dumps(row))  # its first three keys are the resume key above
PY
      rm -rf "$run"
    done
  done
done
log "done: python3 scripts/bf16_table.py $OUT"
