#!/usr/bin/env bash
# A separate virtualenv with sMRIPrep (from PyPI) for tests/app/test_smriprep_reuse.py.
#
#   bash scripts/smriprep_env.sh [DIR]      # default: .smriprep-venv at the repository root
#
# sMRIPrep pins its own nipype/niworkflows/pybids/templateflow, which must not mix with
# synthbids' environment: it gets a virtualenv of its own. Idempotent: when DIR already imports
# the pinned versions, it returns at once. A fresh install takes about a minute and ~0.8 GB.
# sMRIPrep 0.20 requires Python >= 3.12; 0.19.5 is the newest release for Python 3.11.
# No ANTs, FSL or FreeSurfer binaries are installed: the test only builds sMRIPrep's workflow.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${1:-$REPO/.smriprep-venv}"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3

# the versions the test was written against (sMRIPrep's own pins resolve the rest)
PINS=(
  'smriprep==0.19.5'
  'niworkflows==1.14.5'
  'nipype==1.11.0'
  'pybids==0.22.0'
  'templateflow==25.1.2'
)

check() {
  "$DIR/bin/python" - "${PINS[@]}" <<'EOF' >/dev/null 2>&1
import sys
from importlib.metadata import version

for pin in sys.argv[1:]:
    name, wanted = pin.split('==')
    assert version(name) == wanted, (name, version(name), wanted)
import smriprep  # noqa: F401
EOF
}

if [ -x "$DIR/bin/python" ] && check; then
  echo "sMRIPrep environment ready: $DIR"
  exit 0
fi

echo "Creating the sMRIPrep environment in $DIR (about a minute, ~0.8 GB)"
"$PYTHON" -m venv "$DIR"
"$DIR/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}"
if ! check; then
  echo "error: $DIR does not import ${PINS[*]}" >&2
  exit 1
fi
echo "sMRIPrep environment ready: $DIR ($("$DIR/bin/python" -c \
  'import smriprep; print("sMRIPrep", smriprep.__version__)'))"
