#!/usr/bin/env bash
# How well does `attempt-pkg suggest` rank sources? For every target it runs
# `suggest` (a short ATTEMPT probe over the registry's prompts, ranked by the
# attention mass G gives each), then SPoT from each source alone (the transfer each source actually
# gives), and scores the ranking against the transfer: Spearman's rho, whether
# the top suggestion is the best source, and the regret (best source's metric
# minus the top suggestion's).
#
#   bash scripts/experiment_suggest.sh [DATA_DIR] OUT
#
# OUT must hold a registry with the source prompts published by
# scripts/experiment_glue.sh (OUT/registry, versions 0.$SOURCE_SEED.0); the
# same environment knobs apply (PROMPT_LEN, MAX_LEN, BATCH, TARGET_STEPS,
# EPOCHS, MAX_EVAL, EVAL_EVERY, SOURCES, TARGETS, SEED, PROBE_STEPS). Runs
# already in OUT/suggest.jsonl are skipped. Summary: OUT/suggest.md.
set -euo pipefail

DATA_DIR=$(realpath "${1:-../shared/data}")
OUT=$(realpath "${2:?usage: experiment_suggest.sh DATA_DIR OUT}")
BIN=$(realpath "${BIN:-target/release/attempt-pkg}")
: "${SOURCES:=mnli qnli qqp sst2}" "${TARGETS:=rte mrpc cola stsb cb boolq}"
: "${PROMPT_LEN:=16}" "${MAX_LEN:=96}" "${BATCH:=16}" "${TARGET_STEPS:=40}" "${EPOCHS:=100}"
: "${MAX_EVAL:=150}" "${EVAL_EVERY:=5}" "${SEED:=1}" "${SOURCE_SEED:=1}" "${PROBE_STEPS:=40}"
MODEL=${MODEL:-all-MiniLM-L6-v2}
[[ -x "$BIN" ]] || { echo "no binary at $BIN: run \`cargo build --release\` or set BIN" >&2; exit 1; }
[[ -d "$OUT/registry" ]] || { echo "no registry in $OUT: run scripts/experiment_glue.sh into it first" >&2; exit 1; }
export ATTEMPT_HOME=${ATTEMPT_HOME:-$HOME/.attempt}
export ATTEMPT_REGISTRY="$OUT/registry"
RESULTS="$OUT/suggest.jsonl"
touch "$RESULTS"
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
done_already() { grep -q "\"target\": \"$1\", \"kind\": \"$2\", \"source\": \"$3\"" "$RESULTS"; }

common=(--data-dir "$DATA_DIR" --seed "$SEED" --max-length "$MAX_LEN" --batch-size "$BATCH"
  --epochs "$EPOCHS" --max-eval-examples "$MAX_EVAL")

new_project() { # dir sources...
  local proj=$1
  shift
  rm -rf "$proj"
  "$BIN" --project "$proj" init --name "exp" --model-path "$MODEL" >/dev/null 2>&1
  local adds=()
  for src in "$@"; do adds+=("$src-prompt@=0.$SOURCE_SEED.0"); done
  "$BIN" --project "$proj" add "${adds[@]}" >/dev/null 2>&1
}

for target in $TARGETS; do
  if ! done_already "$target" suggest all; then
    proj="$OUT/suggest/$target-all"
    new_project "$proj" $SOURCES
    log "$target: suggest over $SOURCES"
    "$BIN" --project "$proj" --json suggest --task "$target" "${common[@]}" --probe-steps "$PROBE_STEPS" \
      >"$proj/suggest.json" 2>"$proj/suggest.log" || { tail -3 "$proj/suggest.log" >&2; exit 1; }
    python3 - "$proj/suggest.json" "$target" >>"$RESULTS" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
print(json.dumps({"target": sys.argv[2], "kind": "suggest", "source": "all",
                  "ranking": [[r["name"], r["attention"]] for r in s["ranking"]],
                  "target_attention": s["target_attention"]}))
PY
  fi
  for src in $SOURCES; do
    done_already "$target" spot "$src" && continue
    proj="$OUT/suggest/$target-$src"
    new_project "$proj" "$src"
    log "$target: SPoT from $src"
    "$BIN" --project "$proj" --json train --task "$target" "${common[@]}" --method spot \
      --max-steps "$TARGET_STEPS" --eval-every "$EVAL_EVERY" --run-dir "$proj/run" \
      >"$proj/train.json" 2>"$proj/train.log" || { tail -3 "$proj/train.log" >&2; exit 1; }
    python3 - "$proj/train.json" "$target" "$src" >>"$RESULTS" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
print(json.dumps({"target": sys.argv[2], "kind": "spot", "source": sys.argv[3],
                  "metrics": r["tasks"][0]["metrics"]}))
PY
  done
done

python3 "$(dirname "$0")/suggest_table.py" "$RESULTS" | tee "$OUT/suggest.md"
