#!/usr/bin/env bash
# Does ATTEMPT's mixture beat its own baselines, and which change helps? (issue 14)
#
#   bash scripts/experiment_mixture.sh [DATA_DIR] OUT
#
# OUT is the directory of scripts/experiment_select.sh: its registry holds the
# eight real source prompts, and its truth.jsonl names each target's best single
# source (a target that is also a source, sst2, is left out of its own pool).
# For every TARGET, SETTING (full; k16, k32: few-shot, k examples per class, on
# FEW_SHOT_TARGETS; steps300 etc.: the full data for 300 target steps instead of
# TARGET_STEPS) and SEED, with the same budget and dev examples, it trains
#   pt              plain prompt tuning
#   spot-default    SPoT from the first source in name order (the old default init)
#   spot-best       SPoT from the target's best single source (experiment_select's truth)
#   attempt         ATTEMPT as in the paper (dot scores, T = d·e, sources as trained)
#   attempt-cosine  ATTEMPT with cosine scores and a learned temperature
#   attempt-norm    ATTEMPT with every source rescaled to mean row norm NORM
#   attempt-std     ATTEMPT with G's pooled input standardised with the training
#                   set's per-feature mean and spread (--standardise-attention-input)
#   attempt-std-cosine  the same with cosine scores and a learned temperature
#   attempt-best-init, attempt-std-cosine-best-init  those two with the target
#                   prompt started from spot-best's source (--init-source)
#                   instead of the first in name order
# (Rows named attempt-centred / attempt-centred-cosine are from commit 285f79b,
# which centred the input without scaling it: the weights stayed as flat.)
#   uniform         the mixture with constant weights
#   attempt-without-A+B  the paper's ATTEMPT over the pool less sources A and B:
#                   the single-task baseline for a multi-task group whose pool
#                   leaves out the group's own prompts (sst2+subj, say)
# A method may end in -glrX (attempt-std-cosine-glr5e-2, say): the same method
# with G's (and the head's) learning rate X instead of the default 5e-3
# (--lr-other; the prompts keep theirs), the optimisation question; before
# that, -tempX starts G's softmax temperature at X (--attention-temperature;
# with --learn-temperature it is then trained): attempt-std-cosine-temp0.02.
# and appends a row per run to OUT/mixture-methods.jsonl (skipped when there).
# Then, for each group in MULTI_GROUPS (e.g. "mrpc+rte"), multi-task ATTEMPT:
# one run per seed over the group's tasks at once (a shared G, a target prompt
# and head per task; mixed-task batches) for TARGET_STEPS × the group's size
# steps, so it sees as many examples as the single-task runs together; a row
# per task, method "attempt-multi", to compare with that task's "attempt".
# Summary: python3 scripts/mixture_table.py OUT > OUT/mixture.md
set -euo pipefail

DATA_DIR=$(realpath "${1:-../shared/data}")
OUT=$(realpath "${2:?usage: experiment_mixture.sh DATA_DIR OUT}")
BIN=$(realpath "${BIN:-target/release/attempt-pkg}")
MODEL=${MODEL:-all-MiniLM-L6-v2}
: "${SOURCES:=mnli qnli qqp sst2 sst5 subj agnews wnli}" "${TARGETS:=cb cola mrpc rte stsb boolq}"
: "${SEEDS:=1 2 3}" "${SETTINGS:=full k16 k32}" "${FEW_SHOT_TARGETS:=cb mrpc rte}"
: "${METHODS:=pt spot-default spot-best attempt attempt-cosine attempt-norm attempt-std attempt-std-cosine uniform}"
: "${MULTI_GROUPS:=}"
: "${PROMPT_LEN:=20}" "${MAX_LEN:=128}" "${BATCH:=16}" "${TARGET_STEPS:=150}" "${MAX_EVAL:=1000}" "${NORM:=2}"
[[ -x "$BIN" ]] || { echo "no binary at $BIN: run \`cargo build --release\` or set BIN" >&2; exit 1; }
[[ -d "$OUT/registry" ]] || { echo "no registry in $OUT: run scripts/experiment_select.sh DATA_DIR $OUT sources first" >&2; exit 1; }
export ATTEMPT_HOME=${ATTEMPT_HOME:-$HOME/.attempt}
export ATTEMPT_REGISTRY="$OUT/registry"
RESULTS="$OUT/mixture-methods.jsonl"
touch "$RESULTS"
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
without() { # LIST NAME...: the words of LIST other than the NAMEs, in order
  printf '%s\n' $1 | grep -vxF -f <(printf '%s\n' "${@:2}") | tr '\n' ' '
}
done_already() { grep -qF "\"target\": \"$1\", \"setting\": \"$2\", \"method\": \"$3\", \"seed\": $4," "$RESULTS"; }
best_source() { # the real source with the highest mean SPoT gain in truth.jsonl
  python3 - "$OUT/truth.jsonl" "$1" "$SOURCES" <<'PY'
import json, statistics, sys
from collections import defaultdict
path, target, sources = sys.argv[1], sys.argv[2], sys.argv[3].split()
key = {"cola": "matthews", "stsb": "pearson"}.get(target, "accuracy")
pt, spot = {}, defaultdict(dict)
for line in open(path):
    r = json.loads(line)
    if r["target"] != target:
        continue
    if r["method"] == "pt":
        pt[r["seed"]] = r["metrics"][key]
    elif r["source"] in sources:
        spot[r["source"]][r["seed"]] = r["metrics"][key]
gains = {s: statistics.fmean(v - pt[k] for k, v in by.items() if k in pt) for s, by in spot.items() if set(by) & set(pt)}
if not gains:
    sys.exit(f"no truth rows for {target} in {path}: run experiment_select.sh's truth phase first")
print(max(gains, key=gains.get))
PY
}

for target in $TARGETS; do
  # A target that is also a source (sst2) is left out of its own pool.
  pool=$(without "$SOURCES" "$target")
  best=$(SOURCES=$pool best_source "$target")
  first=$(printf '%s\n' $pool | sort | head -1)
  for setting in $SETTINGS; do
    [[ $setting == k* && " $FEW_SHOT_TARGETS " != *" $target "* ]] && continue
    few=()
    steps=$TARGET_STEPS
    case $setting in
      full) ;;
      k[0-9]*) few=(--few-shot "${setting#k}") ;;
      steps[0-9]*) steps=${setting#steps} ;;
      *) echo "unknown setting $setting (full, kN for N examples per class, stepsN for N steps)" >&2; exit 1 ;;
    esac
    for seed in $SEEDS; do
      for method in $METHODS; do
        done_already "$target" "$setting" "$method" "$seed" && continue
        proj="$OUT/mixture-methods/$target-$setting-$method-seed$seed"
        rm -rf "$proj"
        "$BIN" --project "$proj" init --name exp --model-path "$MODEL" >/dev/null 2>&1
        extra=()
        base=$method g_lr=()
        if [[ $method == *-glr* ]]; then base=${method%-glr*} g_lr=(--lr-other "${method##*-glr}"); fi
        if [[ $base == *-temp* ]]; then g_lr+=(--attention-temperature "${base##*-temp}"); base=${base%-temp*}; fi
        case $base in
          pt) srcs=() ; extra=(--method pt --prompt-length "$PROMPT_LEN") ;;
          spot-default) srcs=("$first") ; extra=(--method spot) ;;
          spot-best) srcs=("$best") ; extra=(--method spot) ;;
          attempt) srcs=($pool) ; extra=(--method attempt) ;;
          attempt-cosine) srcs=($pool) ; extra=(--method attempt --attention-scores cosine --learn-temperature) ;;
          attempt-norm) srcs=($pool) ; extra=(--method attempt --prompt-row-norm "$NORM") ;;
          attempt-std) srcs=($pool) ; extra=(--method attempt --standardise-attention-input) ;;
          attempt-std-cosine) srcs=($pool)
            extra=(--method attempt --standardise-attention-input --attention-scores cosine --learn-temperature) ;;
          attempt-best-init) srcs=($pool) ; extra=(--method attempt --init-source "$best-prompt") ;;
          attempt-std-cosine-best-init) srcs=($pool)
            extra=(--method attempt --standardise-attention-input --attention-scores cosine --learn-temperature
              --init-source "$best-prompt") ;;
          uniform) srcs=($pool) ; extra=(--method uniform) ;;
          attempt-without-*) # the paper's ATTEMPT over the pool less the named sources
            rest=${base#attempt-without-}
            srcs=($(without "$pool" ${rest//+/ }))
            extra=(--method attempt) ;;
          *) echo "unknown method $method" >&2; exit 1 ;;
        esac
        if ((${#srcs[@]})); then
          adds=()
          for s in "${srcs[@]}"; do adds+=("$s-prompt@=1.0.0"); done
          "$BIN" --project "$proj" add "${adds[@]}" >"$proj/add.log" 2>&1 ||
            { log "FAILED: add ${adds[*]} (see $proj/add.log)"; exit 1; }
        fi
        log "$target $setting $method (seed $seed${srcs:+; sources ${srcs[*]}})"
        if "$BIN" --project "$proj" --json train --task "$target" --data-dir "$DATA_DIR" --seed "$seed" \
          --max-length "$MAX_LEN" --batch-size "$BATCH" --max-steps "$steps" --epochs 100000 --eval-every 100000 \
          --max-eval-examples "$MAX_EVAL" "${few[@]}" "${extra[@]}" "${g_lr[@]}" --run-dir "$proj/run" --quiet \
          >"$proj/train.json" 2>"$proj/train.log"; then
          python3 - "$proj/train.json" "$target" "$setting" "$method" "$seed" "${srcs[*]:-}" >>"$RESULTS" <<'PY'
import json, sys
path, target, setting, method, seed, sources = sys.argv[1:]
r = json.load(open(path))
t = r["tasks"][0]
print(json.dumps({"target": target, "setting": setting, "method": method, "seed": int(seed), "sources": sources,
                  "metrics": t["metrics"], "attention": t["attention"], "attention_spread": t.get("attention_spread"),
                  "trainable": r["trainable_parameters"], "step_s": r["mean_step_seconds"], "steps": r["steps"]}))
PY
        else
          log "FAILED: see $proj/train.log"
          tail -3 "$proj/train.log" >&2
        fi
      done
    done
  done
done
for group in $MULTI_GROUPS; do
  read -ra members <<<"${group//+/ }"
  pool=$(without "$SOURCES" "${members[@]}")
  tasks=()
  for t in "${members[@]}"; do tasks+=(--task "$t"); done
  for seed in $SEEDS; do
    done_already "${members[0]}" full attempt-multi "$seed" && continue
    proj="$OUT/mixture-methods/${group//+/-}-multi-seed$seed"
    rm -rf "$proj"
    "$BIN" --project "$proj" init --name exp --model-path "$MODEL" >/dev/null 2>&1
    adds=()
    for s in $pool; do adds+=("$s-prompt@=1.0.0"); done
    "$BIN" --project "$proj" add "${adds[@]}" >/dev/null 2>&1
    log "$group multi-task attempt (seed $seed; sources $pool)"
    if "$BIN" --project "$proj" --json train "${tasks[@]}" --data-dir "$DATA_DIR" --seed "$seed" \
      --max-length "$MAX_LEN" --batch-size "$BATCH" --max-steps "$((TARGET_STEPS * ${#members[@]}))" --epochs 100000 \
      --eval-every 100000 --max-eval-examples "$MAX_EVAL" --method attempt --run-dir "$proj/run" --quiet \
      >"$proj/train.json" 2>"$proj/train.log"; then
      python3 - "$proj/train.json" "$group" "$seed" "$pool" >>"$RESULTS" <<'PY'
import json, sys
path, group, seed, sources = sys.argv[1:]
r = json.load(open(path))
for t in r["tasks"]:
    print(json.dumps({"target": t["task"], "setting": "full", "method": "attempt-multi", "seed": int(seed),
                      "group": group, "sources": sources.strip(), "metrics": t["metrics"], "attention": t["attention"],
                      "attention_spread": t.get("attention_spread"), "trainable": r["trainable_parameters"],
                      "step_s": r["mean_step_seconds"], "steps": r["steps"]}))
PY
    else
      log "FAILED: see $proj/train.log"
      tail -3 "$proj/train.log" >&2
    fi
  done
done
log "done: python3 scripts/mixture_table.py $OUT"
