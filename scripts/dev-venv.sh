#!/usr/bin/env bash
# Creates the developers' Python venv (fixture generation, PyTorch reference
# benchmarks). Not needed by the test suite or CI.
#   bash scripts/dev-venv.sh [VENV_DIR]   (default: .venv)
set -euo pipefail
venv="${1:-$(dirname "$0")/../.venv}"
python3 -m venv "$venv"
"$venv/bin/pip" install -q --upgrade pip
"$venv/bin/pip" install -q torch transformers safetensors numpy psutil
touch "$venv/.ready"
echo "dev venv ready: $venv"
