#!/usr/bin/env bash
# Real-data ATTEMPT experiment (issue 4, "Evidence"): source prompts on MNLI,
# QNLI, QQP, SST-2 (prompt tuning on the ../shared/data subsets), then PT,
# SPoT and ATTEMPT on RTE, MRPC, CoLA, STS-B, CB, BoolQ, for several seeds, on
# full data and few-shot (k per class). Everything goes through the CLI:
# train-source -> publish -> init -> add -> train --json.
# Writes OUT/results.jsonl and OUT/results.md (mean ± std, trainable params, step time).
#
# Usage: scripts/experiment_glue.sh [DATA_DIR] [OUT_DIR]
#   DATA_DIR defaults to ../shared/data, OUT_DIR to experiments/glue-<date>.
# Budget knobs (environment):
#   BUDGET=small         a quick slice: 1 seed, RTE only, k=16 only, few steps
#   MODEL=all-MiniLM-L6-v2  model dir or imported name (`attempt-pkg model fetch minilm`)
#   SOURCES="mnli qnli qqp sst2"  TARGETS="rte mrpc cola stsb cb boolq"
#   METHODS="pt spot attempt"  SEEDS="1 2 3"  SETTINGS="full k16 k32"
#   PROMPT_LEN=100 MAX_LEN=128 BATCH=16 SOURCE_STEPS=2000 TARGET_STEPS=1000 EPOCHS=20
#   MAX_EVAL=1000 (dev examples evaluated per task)  EVAL_EVERY=1 (epochs between dev evaluations)  BIN=target/release/attempt-pkg
#   SOURCE_SEED=1 (the seed the source prompts are trained with; "each" = per target seed)
# Progress is appended to OUT/results.jsonl as runs finish; a run whose
# (target, setting, method, seed) is already there is skipped, so running the
# script again on the same OUT resumes it (copy earlier rows into
# OUT/results.jsonl to extend an earlier run).
# `scripts/glue_table.py OUT/results.jsonl OUT/results.md` tabulates a partial run.
set -euo pipefail

DATA_DIR=$(realpath "${1:-../shared/data}")
OUT=$(realpath -m "${2:-experiments/glue-$(date -u +%Y%m%d-%H%M%S)}")
BIN=$(realpath "${BIN:-target/release/attempt-pkg}")
MODEL=${MODEL:-all-MiniLM-L6-v2}

if [[ "${BUDGET:-}" == small ]]; then
  : "${SOURCES:=mnli sst2}" "${TARGETS:=rte}" "${METHODS:=pt spot attempt}" "${SEEDS:=1}" "${SETTINGS:=k16}"
  : "${PROMPT_LEN:=10}" "${MAX_LEN:=64}" "${SOURCE_STEPS:=40}" "${TARGET_STEPS:=40}" "${MAX_EVAL:=100}" "${EPOCHS:=20}"
fi
SOURCES=${SOURCES:-mnli qnli qqp sst2}
TARGETS=${TARGETS:-rte mrpc cola stsb cb boolq}
METHODS=${METHODS:-pt spot attempt}
SEEDS=${SEEDS:-1 2 3}
SETTINGS=${SETTINGS:-full k16 k32}
PROMPT_LEN=${PROMPT_LEN:-100}
MAX_LEN=${MAX_LEN:-128}
BATCH=${BATCH:-16}
SOURCE_STEPS=${SOURCE_STEPS:-2000}
TARGET_STEPS=${TARGET_STEPS:-1000}
EPOCHS=${EPOCHS:-20}
MAX_EVAL=${MAX_EVAL:-1000}
EVAL_EVERY=${EVAL_EVERY:-1}

[[ -x "$BIN" ]] || { echo "no binary at $BIN: run \`cargo build --release\` or set BIN" >&2; exit 1; }
[[ -d "$DATA_DIR" ]] || { echo "no data directory $DATA_DIR (pass it as the first argument)" >&2; exit 1; }
mkdir -p "$OUT"
export ATTEMPT_HOME=${ATTEMPT_HOME:-$HOME/.attempt}
export ATTEMPT_REGISTRY="$OUT/registry"
RESULTS="$OUT/results.jsonl"
touch "$RESULTS"
done_already() { # target setting method seed
  python3 - "$RESULTS" "$@" <<'PY'
import json, sys
path, target, setting, method, seed = sys.argv[1:]
for line in open(path):
    if line.strip():
        r = json.loads(line)
        if (r["target"], r["setting"], r["method"], str(r["seed"])) == (target, setting, method, seed):
            sys.exit(0)
sys.exit(1)
PY
}
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }

# Source prompts are trained once (seed SOURCE_SEED, as in the paper, which
# trains each source prompt once and reuses it) and published as 0.<seed>.0;
# SOURCE_SEED=each trains a fresh set for every target seed.
train_sources() {
  local seed=$1
  for src in $SOURCES; do
    dir="$OUT/sources/seed$seed/$src"
    # Resuming: a source already trained and published is reused as it is.
    [[ -f "$dir.published" ]] && { log "source $src (seed $seed): published already"; continue; }
    mkdir -p "$(dirname "$dir")"
    log "source $src (seed $seed)"
    "$BIN" train-source --model "$MODEL" --task "$src" --data-dir "$DATA_DIR" --name "$src-prompt" \
      --version "0.$seed.0" --out "$dir" --force --seed "$seed" --prompt-length "$PROMPT_LEN" \
      --max-length "$MAX_LEN" --batch-size "$BATCH" --max-steps "$SOURCE_STEPS" --epochs "$EPOCHS" \
      --max-eval-examples "$MAX_EVAL" --quiet >"$dir.log" 2>&1 || { cat "$dir.log" >&2; exit 1; }
    "$BIN" publish "$dir" >/dev/null
    touch "$dir.published"
  done
}
SOURCE_SEED=${SOURCE_SEED:-1}
[[ "$SOURCE_SEED" == each ]] || train_sources "$SOURCE_SEED"

for seed in $SEEDS; do
  src_seed=$SOURCE_SEED
  [[ "$SOURCE_SEED" == each ]] && { src_seed=$seed; train_sources "$seed"; }
  for target in $TARGETS; do
    for setting in $SETTINGS; do
      few=()
      [[ "$setting" == k* ]] && few=(--few-shot "${setting#k}")
      for method in $METHODS; do
        if done_already "$target" "$setting" "$method" "$seed"; then
          log "$target $setting $method (seed $seed): in $RESULTS already, skipped"
          continue
        fi
        proj="$OUT/projects/seed$seed/$target-$setting-$method"
        rm -rf "$proj"
        "$BIN" --project "$proj" init --name "exp" --model-path "$MODEL" >/dev/null 2>&1
        if [[ "$method" != pt ]]; then
          adds=()
          for src in $SOURCES; do adds+=("$src-prompt@=0.$src_seed.0"); done
          "$BIN" --project "$proj" add "${adds[@]}" >/dev/null 2>&1
        fi
        log "$target $setting $method (seed $seed)"
        if "$BIN" --project "$proj" --json train --task "$target" --data-dir "$DATA_DIR" --method "$method" \
          --seed "$seed" --prompt-length "$PROMPT_LEN" --max-length "$MAX_LEN" --batch-size "$BATCH" \
          --max-steps "$TARGET_STEPS" --epochs "$EPOCHS" --max-eval-examples "$MAX_EVAL" --eval-every "$EVAL_EVERY" "${few[@]}" \
          --run-dir "$proj/run" >"$proj/train.json" 2>"$proj/train.log"; then
          python3 - "$proj/train.json" "$target" "$setting" "$method" "$seed" >>"$RESULTS" <<'PY'
import json, sys
path, target, setting, method, seed = sys.argv[1:]
r = json.load(open(path))
t = r["tasks"][0]
print(json.dumps({"target": target, "setting": setting, "method": method, "seed": int(seed),
                  "metrics": t["metrics"], "trainable": r["trainable_parameters"],
                  "backbone": r["backbone_parameters"], "step_s": r["mean_step_seconds"], "steps": r["steps"]}))
PY
        else
          log "FAILED: see $proj/train.log"; tail -3 "$proj/train.log" >&2
        fi
      done
    done
  done
done

python3 "$(dirname "$0")/glue_table.py" "$RESULTS" "$OUT/results.md"
log "results: $OUT/results.md"
