#!/usr/bin/env bash
# Set up synthbids (if needed) and run the BIDS App on Colin27 with the packaged default weights:
# a one-participant BIDS dataset is made from Debian's mricron-data head, then the participant
# and group levels run. Everything goes under ./demo (override with DEMO_DIR).
# Usage: bash scripts/demo.sh [extra synthbids options, e.g. --nprocs 4]
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO_DIR=${DEMO_DIR:-demo}
CH2=${CH2:-/usr/share/mricron/templates/ch2.nii.gz}
[ -x .venv/bin/synthbids ] || bash scripts/setup.sh
if [ ! -f "$CH2" ]; then
  echo "demo: $CH2 not found: install Debian's mricron-data (apt-get install mricron-data) or set CH2" >&2
  exit 66
fi
bids="$DEMO_DIR/bids"
if [ ! -f "$bids/dataset_description.json" ]; then
  mkdir -p "$bids/sub-colin27/anat"
  cp "$CH2" "$bids/sub-colin27/anat/sub-colin27_T1w.nii.gz"
  printf '{"Name": "Colin27 demo", "BIDSVersion": "1.9.0", "License": "BSD-3-Clause"}\n' \
    > "$bids/dataset_description.json"
  printf 'participant_id\nsub-colin27\n' > "$bids/participants.tsv"
fi
extra=()
if ! .venv/bin/python -c 'from synthbids.core.weights import resolve; resolve("seg")' 2>/dev/null; then
  echo "demo: no SynthSeg weights installed or packaged: skull stripping only (--no-seg)" >&2
  extra+=(--no-seg)
fi
start=$(date +%s)
.venv/bin/synthbids "$bids" "$DEMO_DIR/derivatives/synthbids" participant -w "$DEMO_DIR/work" "${extra[@]}" "$@"
.venv/bin/synthbids "$bids" "$DEMO_DIR/derivatives/synthbids" group
echo "demo: done in $(( $(date +%s) - start )) s; open $DEMO_DIR/derivatives/synthbids/sub-colin27.html"
