#!/usr/bin/env bash
# Set up synthbids in ./.venv on a fresh machine: the CPU build of PyTorch first (so pip never
# pulls the multi-GB CUDA wheels), then synthbids itself with its test tools.
#
# Usage: bash scripts/setup.sh
#   TORCH_SPEC   what to install (default torch==2.13.0)
#   TORCH_INDEX  extra index to take it from (default PyTorch's CPU wheels,
#                https://download.pytorch.org/whl/cpu; e.g. .../whl/cu128 for a CUDA build;
#                empty: the default index only). Used only where it answers within 5 s:
#                elsewhere (offline mirrors, local wheels) the default index serves.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
TORCH_SPEC=${TORCH_SPEC:-torch==2.13.0}
TORCH_INDEX=${TORCH_INDEX-https://download.pytorch.org/whl/cpu}
if [ ! -x .venv/bin/python ]; then
  "$PYTHON" -m venv .venv
fi
.venv/bin/python -m pip install --quiet --upgrade pip 2>/dev/null || true

# answers within 5 s? (pip would otherwise retry an unreachable index for minutes)
reachable() {
  .venv/bin/python - "$1" <<'EOF' 2>/dev/null
import sys
import urllib.request

urllib.request.urlopen(sys.argv[1], timeout=5).close()
EOF
}

index=()
if [ -n "$TORCH_INDEX" ]; then
  if reachable "${TORCH_INDEX%/}/torch/"; then
    # an extra index: pip prefers its 2.13.0+cpu to PyPI's 2.13.0 (CUDA) build, and takes the
    # other dependencies from the default index as usual
    index=(--extra-index-url "$TORCH_INDEX")
    echo "torch: $TORCH_SPEC from $TORCH_INDEX"
  else
    echo "torch: $TORCH_INDEX not reachable; $TORCH_SPEC from the default index"
  fi
fi
.venv/bin/python -m pip install --quiet ${index[@]+"${index[@]}"} "$TORCH_SPEC"
.venv/bin/python -m pip install --quiet -e '.[test]'
.venv/bin/python -c 'import synthbids, torch; print("synthbids", synthbids.__version__, "with torch", torch.__version__)'
