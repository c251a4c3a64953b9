#!/usr/bin/env bash
# Make a derivatives folder holding only synthbids' brain masks in the space of each T1w image
# (with their sidecars and the dataset description), for fMRIPrep/sMRIPrep --derivatives: they
# then take the mask, skip their own skull stripping, and compute everything else themselves.
# See docs/chaining.md for why the SynthSeg dseg is left out. Re-running refreshes the folder.
# Usage: bash scripts/chain-masks.sh OUT_DIR VIEW_DIR
set -euo pipefail
out=${1:?usage: chain-masks.sh OUT_DIR VIEW_DIR}
view=$(realpath -m "${2:?usage: chain-masks.sh OUT_DIR VIEW_DIR}")
if [ ! -f "$out/dataset_description.json" ]; then
  echo "chain-masks.sh: $out is not a synthbids output folder (no dataset_description.json)" >&2
  exit 66
fi
copy() {  # atomically: a crash never leaves a half-written file behind
  local tmp
  mkdir -p "$(dirname "$2")"
  tmp=$(mktemp --suffix=.partial "$(dirname "$2")/.$(basename "$2").XXXXXX")
  cp "$1" "$tmp" && chmod 644 "$tmp" && mv -f "$tmp" "$2"
}
copy "$out/dataset_description.json" "$view/dataset_description.json"
cd "$out"
n=0
while IFS= read -r -d '' f; do
  copy "$f" "$view/${f#./}"
  n=$((n + 1))
done < <(find . -path '*/anat/*' -name 'sub-*_desc-brain_mask.*' ! -name '*_space-*' -print0)
echo "$view: $((n / 2)) brain mask(s)"
