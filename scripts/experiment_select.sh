#!/usr/bin/env bash
# Does `attempt-pkg suggest` pick the source prompts that transfer? (issue 13)
#
#   bash scripts/experiment_select.sh [DATA_DIR] OUT [PHASE...]
#
# Phases (default: all, in this order; each resumes from what OUT holds):
#   sources  train-source + publish one prompt per SOURCES task (seed 1), and two
#            controls that carry no task knowledge: `shuffled-sst2-prompt` (SST-2
#            text with its training labels shuffled) and `noise-prompt` (Gaussian
#            rows with the mean row norm of the trained sources), with
#            `noise-low-prompt` and `noise-high-prompt`: the same rows at the
#            smallest and the largest source's mean row norm (scale alone)
#   recheck  only for an OUT from before the own-task check: the sources again,
#            bit-identical prompts, published as 1.0.1 with the check
#   truth    for every SEED and TARGET: plain prompt tuning, and SPoT from each
#            candidate alone (the transfer it gives), same seed and budget
#   select   `suggest --json` over the whole registry for every TARGET (LogME
#            against norm-matched random prompts; the attention probe beside it)
#   mixture  ATTEMPT over suggest's top 3 vs over all real sources, every SEED
# Rows go to OUT/truth.jsonl, OUT/select.jsonl and OUT/mixture.jsonl as runs
# finish; a row already there is not run again. Summary:
#   python3 scripts/select_table.py OUT > OUT/select.md
#
# A TARGET may also be one of the SOURCES (sst2, say): it is then left out of
# its own candidate pool — no SPoT from itself, and `suggest` and the mixture
# run against OUT/registry-without-TARGET, every other prompt published again.
#
# Knobs (environment): SOURCES TARGETS SEEDS CONTROLS PROMPT_LEN MAX_LEN BATCH
# SOURCE_STEPS TARGET_STEPS MAX_EVAL SAMPLE PROBE_STEPS MODEL BIN.
set -euo pipefail

DATA_DIR=$(realpath "${1:-../shared/data}")
OUT=$(realpath -m "${2:?usage: experiment_select.sh DATA_DIR OUT [PHASE...]}")
shift 2 || true
PHASES=${*:-sources truth select mixture}
BIN=$(realpath "${BIN:-target/release/attempt-pkg}")
MODEL=${MODEL:-all-MiniLM-L6-v2}
: "${SOURCES:=mnli qnli qqp sst2 sst5 subj agnews wnli}" "${TARGETS:=cb cola mrpc rte stsb boolq}"
: "${SEEDS:=1 2 3}" "${PROMPT_LEN:=20}" "${MAX_LEN:=128}" "${BATCH:=16}" "${SOURCE_STEPS:=300}"
: "${TARGET_STEPS:=100}" "${MAX_EVAL:=1000}" "${SAMPLE:=500}" "${PROBE_STEPS:=40}"
: "${CONTROLS:=shuffled-sst2 noise noise-low noise-high}"
[[ -x "$BIN" ]] || { echo "no binary at $BIN: run \`cargo build --release\` or set BIN" >&2; exit 1; }
[[ -d "$DATA_DIR" ]] || { echo "no data directory $DATA_DIR" >&2; exit 1; }
mkdir -p "$OUT"
export ATTEMPT_HOME=${ATTEMPT_HOME:-$HOME/.attempt}
export ATTEMPT_REGISTRY="$OUT/registry"
touch "$OUT/truth.jsonl" "$OUT/select.jsonl" "$OUT/mixture.jsonl"
log() { echo "[$(date -u +%H:%M:%S)] $*" >&2; }
has_row() { # file key=value...: is there a row with all these fields?
  python3 - "$@" <<'PY'
import json, sys
path, *pairs = sys.argv[1:]
want = dict(p.split("=", 1) for p in pairs)
for line in open(path):
    if line.strip():
        r = json.loads(line)
        if all(str(r.get(k)) == v for k, v in want.items()):
            sys.exit(0)
sys.exit(1)
PY
}
# One dev evaluation, after the last step (no best-of-several selection on dev).
budget=(--data-dir "$DATA_DIR" --max-length "$MAX_LEN" --batch-size "$BATCH" --max-steps "$TARGET_STEPS"
  --epochs 1000 --eval-every 1000 --max-eval-examples "$MAX_EVAL")

train_source() { # name task data-dir version out: one source prompt, seed 1, the sources' budget
  local name=$1 task=$2 data=$3 version=$4 out=$5 describe=()
  [[ $name == shuffled-sst2 ]] && describe=(--description "control: SST-2 text with shuffled labels")
  "$BIN" train-source --model "$MODEL" --task "$task" --data-dir "$data" --name "$name-prompt" --version "$version" \
    "${describe[@]}" --out "$out" --force --seed 1 --prompt-length "$PROMPT_LEN" --max-length "$MAX_LEN" \
    --batch-size "$BATCH" --max-steps "$SOURCE_STEPS" --epochs 1000 --eval-every 1000 --max-eval-examples "$MAX_EVAL" \
    --quiet >"$out.log" 2>&1 || { tail -5 "$out.log" >&2; exit 1; }
}

phase_sources() {
  mkdir -p "$OUT/sources"
  for src in $SOURCES; do
    [[ -f "$OUT/sources/$src.published" ]] && continue
    log "source $src"
    train_source "$src" "$src" "$DATA_DIR" 1.0.0 "$OUT/sources/$src"
    "$BIN" publish "$OUT/sources/$src" >/dev/null
    touch "$OUT/sources/$src.published"
  done
  if [[ ! -f "$OUT/sources/shuffled-sst2.published" ]]; then
    log "control: SST-2 with shuffled training labels"
    python3 - "$DATA_DIR/SST-2" "$OUT/shuffled-data/SST-2" <<'PY'
import os, random, shutil, sys
src, dst = sys.argv[1:]
os.makedirs(dst, exist_ok=True)
lines = open(os.path.join(src, "train.tsv"), encoding="utf-8").read().splitlines()
header, rows = lines[0], [l.split("\t") for l in lines[1:] if l.strip()]
labels = [r[-1] for r in rows]
random.Random(1).shuffle(labels)
with open(os.path.join(dst, "train.tsv"), "w", encoding="utf-8") as f:
    f.write(header + "\n" + "".join("\t".join(r[:-1] + [y]) + "\n" for r, y in zip(rows, labels)))
shutil.copy(os.path.join(src, "dev.tsv"), os.path.join(dst, "dev.tsv"))
PY
    train_source shuffled-sst2 sst2 "$OUT/shuffled-data" 1.0.0 "$OUT/sources/shuffled-sst2"
    "$BIN" publish "$OUT/sources/shuffled-sst2" >/dev/null
    touch "$OUT/sources/shuffled-sst2.published"
  fi
  # Gaussian controls: at the trained sources' mean row norm (`noise`), and
  # in the same direction at the smallest and largest source's norm, so that
  # an effect of scale alone shows up as such.
  local trained=() fp
  for src in $SOURCES; do trained+=("$OUT/sources/$src/prompt.safetensors"); done
  fp=$(grep -m1 '^fingerprint' "$OUT/sources/${SOURCES%% *}/Prompt.toml" | cut -d'"' -f2)
  for control in noise:mean noise-low:min noise-high:max; do
    local name=${control%%:*} norm=${control#*:}
    [[ -f "$OUT/sources/$name.published" ]] && continue
    log "control: $name (Gaussian rows at the $norm row norm of the trained sources)"
    python3 "$(dirname "$0")/noise_prompt.py" "$OUT/sources/$name.safetensors" --norm "$norm" "${trained[@]}"
    rm -rf "$OUT/sources/$name"
    "$BIN" import "$OUT/sources/$name.safetensors" --name "$name-prompt" --version 1.0.0 --task none \
      --description "control: Gaussian noise at the $norm source row norm" --base-model "$fp" --hidden-size 384 \
      --base-model-name "$MODEL" --out "$OUT/sources/$name" >/dev/null
    "$BIN" publish "$OUT/sources/$name" >/dev/null
    touch "$OUT/sources/$name.published"
  done
}

phase_recheck() {
  # For an OUT whose sources were published before train-source recorded the
  # own-task check (src/data/baseline.rs): train each again with the same
  # seed and budget, check that the prompt comes out bit-identical, and
  # publish it as 1.0.1 with the check in its manifest. `suggest` ranks the
  # newest version; the truth rows stay pinned to 1.0.0 (the same tensor).
  for src in $SOURCES shuffled-sst2; do
    [[ -f "$OUT/sources/$src.published-1.0.1" ]] && continue
    grep -q '^eval-examples' "$OUT/sources/$src/Prompt.toml" && continue
    local data=$DATA_DIR task=$src
    [[ $src == shuffled-sst2 ]] && { data=$OUT/shuffled-data; task=sst2; }
    log "recheck: $src again, recording its own-task check"
    train_source "$src" "$task" "$data" 1.0.1 "$OUT/sources/$src-1.0.1"
    cmp -s "$OUT/sources/$src/prompt.safetensors" "$OUT/sources/$src-1.0.1/prompt.safetensors" \
      || { log "$src: the retrained prompt differs from 1.0.0; not publishing"; exit 1; }
    "$BIN" publish "$OUT/sources/$src-1.0.1" >/dev/null
    touch "$OUT/sources/$src.published-1.0.1"
  done
}

is_source() { [[ " $SOURCES " == *" $1 "* ]]; }

use_registry_for() { # target: the registry whose candidates may serve it
  local target=$1 reg=$OUT/registry-without-$1 dir
  if ! is_source "$target"; then
    export ATTEMPT_REGISTRY="$OUT/registry"
    return
  fi
  if [[ ! -f "$reg.done" ]]; then
    rm -rf "$reg"
    for dir in "$OUT"/sources/*/; do
      dir=${dir%/}
      [[ -f "$dir/Prompt.toml" ]] || continue
      case $(basename "$dir") in "$target" | "$target-1.0.1") continue ;; esac
      ATTEMPT_REGISTRY=$reg "$BIN" publish "$dir" >/dev/null
    done
    touch "$reg.done"
  fi
  export ATTEMPT_REGISTRY="$reg"
}

new_project() { # dir [sources...]
  local proj=$1
  shift
  rm -rf "$proj"
  "$BIN" --project "$proj" init --name exp --model-path "$MODEL" >/dev/null 2>&1
  if (($#)); then
    local adds=()
    for s in "$@"; do adds+=("$s-prompt@=1.0.0"); done
    "$BIN" --project "$proj" add "${adds[@]}" >/dev/null 2>&1
  fi
}

train_row() { # file json-extra -- train args...: run `train --json` and append one row
  local file=$1 extra=$2 proj=$3
  shift 3
  if "$BIN" --project "$proj" --json train "$@" --run-dir "$proj/run" --quiet >"$proj/train.json" 2>"$proj/train.log"; then
    python3 - "$proj/train.json" "$extra" >>"$file" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
row = json.loads(sys.argv[2])
row.update({"metrics": r["tasks"][0]["metrics"], "steps": r["steps"], "step_s": r["mean_step_seconds"],
            "trainable": r["trainable_parameters"]})
print(json.dumps(row))
PY
  else
    log "FAILED: see $proj/train.log"
    tail -3 "$proj/train.log" >&2
  fi
}

phase_truth() {
  # Every seed of a target before the next target, cheapest targets first, so
  # a partial run already has the seed spread of the targets it covers.
  for target in $TARGETS; do
    use_registry_for "$target"
    for seed in $SEEDS; do
      if ! has_row "$OUT/truth.jsonl" target="$target" seed="$seed" method=pt; then
        log "truth: $target PT (seed $seed)"
        proj="$OUT/truth/seed$seed/$target-pt"
        new_project "$proj"
        train_row "$OUT/truth.jsonl" "{\"target\": \"$target\", \"seed\": $seed, \"method\": \"pt\", \"source\": null}" \
          "$proj" --task "$target" --method pt --seed "$seed" --prompt-length "$PROMPT_LEN" "${budget[@]}"
      fi
      for src in $SOURCES $CONTROLS; do
        [[ $src == "$target" ]] && continue
        has_row "$OUT/truth.jsonl" target="$target" seed="$seed" method=spot source="$src" && continue
        log "truth: $target SPoT from $src (seed $seed)"
        proj="$OUT/truth/seed$seed/$target-$src"
        new_project "$proj" "$src"
        train_row "$OUT/truth.jsonl" "{\"target\": \"$target\", \"seed\": $seed, \"method\": \"spot\", \"source\": \"$src\"}" \
          "$proj" --task "$target" --method spot --seed "$seed" "${budget[@]}"
      done
    done
  done
}

phase_select() {
  for target in $TARGETS; do
    has_row "$OUT/select.jsonl" target="$target" && continue
    use_registry_for "$target"
    log "select: suggest for $target over every registry prompt"
    proj="$OUT/select/$target"
    new_project "$proj"
    local t0=$SECONDS
    "$BIN" --project "$proj" --json suggest --task "$target" --data-dir "$DATA_DIR" --max-length "$MAX_LEN" \
      --batch-size "$BATCH" --sample "$SAMPLE" --probe-steps "$PROBE_STEPS" --seed 1 \
      >"$proj/suggest.json" 2>"$proj/suggest.log" || { tail -3 "$proj/suggest.log" >&2; exit 1; }
    python3 - "$proj/suggest.json" "$target" "$((SECONDS - t0))" >>"$OUT/select.jsonl" <<'PY'
import json, sys
s = json.load(open(sys.argv[1]))
s["target"] = sys.argv[2]
s["wall_s"] = int(sys.argv[3])
print(json.dumps(s))
PY
  done
}

phase_mixture() {
  local real
  for seed in $SEEDS; do
    for target in $TARGETS; do
      use_registry_for "$target"
      real=()
      for src in $SOURCES; do [[ $src == "$target" ]] || real+=("$src"); done
      if ! has_row "$OUT/mixture.jsonl" target="$target" seed="$seed" pool=all; then
        log "mixture: $target ATTEMPT over all real sources (seed $seed)"
        proj="$OUT/mixture/seed$seed/$target-all"
        new_project "$proj" "${real[@]}"
        train_row "$OUT/mixture.jsonl" "{\"target\": \"$target\", \"seed\": $seed, \"pool\": \"all\", \"sources\": \"${real[*]}\"}" \
          "$proj" --task "$target" --method attempt --seed "$seed" "${budget[@]}"
      fi
      has_row "$OUT/mixture.jsonl" target="$target" seed="$seed" pool=top3 && continue
      # suggest's own proposal, applied to a project that starts with every
      # real source. The selector's seed is fixed (1), so the proposal is the
      # same for every training seed: it is made once and the project copied.
      proj="$OUT/mixture/seed$seed/$target-top3"
      first="$OUT/mixture/proposal/$target"
      if [[ ! -f "$first/attempt.selection.json" ]]; then
        new_project "$first" "${real[@]}"
        "$BIN" --project "$first" suggest --task "$target" --data-dir "$DATA_DIR" --max-length "$MAX_LEN" --batch-size "$BATCH" \
          --sample "$SAMPLE" --seed 1 --top 3 --apply >"$first/suggest.txt" 2>"$first/suggest.log" \
          || { tail -3 "$first/suggest.log" >&2; exit 1; }
      fi
      rm -rf "$proj"
      mkdir -p "$proj"
      cp "$first/attempt.toml" "$first/attempt.lock" "$first/attempt.selection.json" "$proj/"
      kept=$(python3 -c "import json,sys; print(' '.join(json.load(open(sys.argv[1]))['keep']))" "$proj/attempt.selection.json")
      if [[ -z "$kept" ]]; then
        log "mixture: $target: suggest keeps nothing, so the top-3 run is plain prompt tuning (seed $seed)"
        method=pt
      else
        log "mixture: $target ATTEMPT over suggest's top 3 ($kept; seed $seed)"
        method=attempt
      fi
      train_row "$OUT/mixture.jsonl" "{\"target\": \"$target\", \"seed\": $seed, \"pool\": \"top3\", \"sources\": \"$kept\"}" \
        "$proj" --task "$target" --method "$method" --seed "$seed" --prompt-length "$PROMPT_LEN" "${budget[@]}"
    done
  done
}

for phase in $PHASES; do
  case $phase in
    sources | recheck | truth | select | mixture) "phase_$phase" ;;
    *) echo "unknown phase $phase (sources, recheck, truth, select, mixture)" >&2; exit 1 ;;
  esac
done
log "done: python3 scripts/select_table.py $OUT"
