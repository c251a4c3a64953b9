#!/usr/bin/env bash
# Set up synthbids in ./.venv on a fresh machine: the CPU build of PyTorch first (so pip never
# pulls the multi-GB CUDA wheels), then synthbids itself with its test tools.
# Usage: bash scripts/setup.sh            (TORCH_SPEC=torch==2.13.0 by default)
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip 2>/dev/null || true
.venv/bin/python -m pip install --quiet "$TORCH_SPEC"
.venv/bin/python -m pip install --quiet -e '.[test]'
.venv/bin/python -c 'import synthbids, torch; print("synthbids", synthbids.__version__, "with torch", torch.__version__)'
