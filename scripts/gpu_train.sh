#!/usr/bin/env bash
# Train a committed campaign in short jobs on a remote GPU machine that has PyTorch but no
# network, no synthbids install and no ../shared (see docs/training.md, "The GPU recipe").
#
#   bash scripts/gpu_train.sh prepare campaigns/head   # here: fill .gpu/ (map caches, wheels)
#   bash scripts/gpu_train.sh job campaigns/head       # there: resume, train, save -> $OUT
#   bash scripts/gpu_train.sh job campaigns/head --final   # ... and export + evaluate
#   bash scripts/gpu_train.sh collect FILES_AT campaigns/head   # here: unpack the results
#
# A job gets a copy of the working tree plus .gpu/ (carried, <= 64 MiB in all), runs at most
# MINUTES (default 8, inside a 9-minute slot) and returns its results as one tar archive,
# cut into parts of at most 15 MiB (the device returns at most 8 files of 16 MiB).
#
# Settings (environment): MINUTES, DEVICE (cuda; cpu for the dry run), WORKERS (0: samples
# drawn on the GPU; N: drawn by N CPU processes), THREADS, STEPS (a new total), EVAL_ARGS
# (extra weights_eval.py options, e.g. --quick), GPU_DIR (default .gpu), WHEELS (0: prepare
# downloads none), EVAL_MINUTES (kept for the final job's
# evaluation, default 4), PYTHON (default python3: the device's, which has PyTorch),
# OUT (result folder; the device sets it).
set -euo pipefail

here=$(cd "$(dirname "$0")/.." && pwd)
gpu=${GPU_DIR:-$here/.gpu}  # what a device run carries (ignored by git)
cmd=${1:-}
shift || true

die() { echo "gpu_train.sh: error: $*" >&2; exit 2; }

prepare() {
  # per campaign, its cache of downsampled maps (the device has no ../shared; 2 MB instead of
  # the maps' 29 MB), and the wheels the device image lacks
  [ $# -gt 0 ] || die "give the campaigns to carry (e.g. campaigns/head campaigns/seg)"
  local py="${PYTHON:-$here/.venv/bin/python}"
  [ -x "$py" ] || py=python3
  mkdir -p "$gpu/cache" "$gpu/wheels"
  local campaign name
  for campaign in "$@"; do
    [ -f "$campaign/run.json" ] || die "$campaign/run.json: no such file"
    campaign=$(cd "$campaign" && pwd)
    name=$(basename "$campaign")
    (cd "$here" && PYTHONPATH="$here" "$py" - "$campaign" "$gpu") <<'PY'
import json, sys
from pathlib import Path
from synthbids.synth.labelmaps import load_label_maps
run = Path(sys.argv[1])
recipe = json.loads((run / 'run.json').read_text())
load_label_maps(recipe['maps'], recipe['voxsize'], run / 'maps-cache')  # fills the cache
# the held-out maps themselves, for the final job's whole-pipeline evaluation
held_out = [m for m in recipe['maps'] if Path(m).name in recipe['val_maps']]
print('\n'.join(held_out), file=open(Path(sys.argv[2]) / f'heldout-{run.name}.txt', 'w'))
PY
    mkdir -p "$gpu/heldout"
    xargs -a "$gpu/heldout-$name.txt" cp -t "$gpu/heldout/"
    rm "$gpu/heldout-$name.txt"
    rm -rf "$gpu/cache/$name"
    cp -r "$campaign/maps-cache" "$gpu/cache/$name"
  done
  # nibabel is the one import of training and evaluation missing from the device image
  if [ "${WHEELS:-1}" = 1 ]; then
    local nib
    nib=$("$py" -c 'import nibabel; print(nibabel.__version__)')
    "$py" -m pip download -q --no-deps --only-binary=:all: -d "$gpu/wheels" "nibabel==$nib"
  fi
  du -sh "$gpu"
  echo "carry .gpu in each device run: bash scripts/gpu_train.sh job CAMPAIGN"
}

job() {
  local campaign="" final=0
  while [ $# -gt 0 ]; do
    case "$1" in
      --final) final=1 ;;
      -*) die "unknown option $1" ;;
      *) campaign=$1 ;;
    esac
    shift
  done
  [ -n "$campaign" ] || die "give the campaign folder (e.g. campaigns/head)"
  cd "$here"
  [ -f "$campaign/run.json" ] || die "$campaign/run.json: no such file"
  local out="${OUT:?set OUT to the result folder}"
  mkdir -p "$out"
  local t0=$SECONDS py=${PYTHON:-python3}
  # the wheels the image lacks
  if ls "$gpu"/wheels/*.whl >/dev/null 2>&1 && ! "$py" -c 'import nibabel' 2>/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --target /tmp/gpu-site \
      "$gpu"/wheels/*.whl
    export PYTHONPATH="/tmp/gpu-site${PYTHONPATH:+:$PYTHONPATH}"
  fi
  export PYTHONPATH="$here${PYTHONPATH:+:$PYTHONPATH}"
  local name
  name=$(basename "$campaign")
  if [ -d "$gpu/cache/$name" ] && [ ! -d "$campaign/maps-cache" ]; then
    cp -r "$gpu/cache/$name" "$campaign/maps-cache"  # read in place of the absent maps
  fi
  local minutes=${MINUTES:-8}
  local threads=${THREADS:-$(nproc)}
  local train=("$py" -m synthbids.cli.train resume "$campaign" --device "${DEVICE:-cuda}"
    --workers "${WORKERS:-0}" -t "$threads")
  [ -n "${STEPS:-}" ] && train+=(--steps "$STEPS")
  if [ "$final" = 1 ]; then
    # leave time to export and evaluate
    train+=(--time-limit "$("$py" -c "print(max(0.5, $minutes - ${EVAL_MINUTES:-4}))")")
  else
    train+=(--time-limit "$minutes")
  fi
  local rc=0
  "${train[@]}" >"$out/train.log" 2>&1 || rc=$?
  grep -v '^step ' "$out/train.log" | tail -n 30 || true
  grep '^step ' "$out/train.log" | tail -n 1 || true
  [ "$rc" = 0 ] || echo "gpu_train.sh: training exited with $rc (saved state is kept)" >&2
  local files=(run.json history.tsv state.pt)
  for f in best.pt last.pt best.h5 last.h5; do
    [ -f "$campaign/$f" ] && files+=("$f")
  done
  if [ "$final" = 1 ]; then
    local task best
    task=$("$py" -c "import json; print(json.load(open('$campaign/run.json'))['task'])")
    # best.* is written when validation improves (a campaign may carry none: see its docs)
    best=$(ls "$campaign"/best.* "$campaign"/last.* 2>/dev/null | head -1)
    case "$task" in
      strip-nocsf) eval_task=(--task strip --no-csf) ;;
      *) eval_task=(--task "$task") ;;
    esac
    local held=()
    if ls "$gpu"/heldout/*.nii.gz >/dev/null 2>&1; then held=(--maps "$gpu"/heldout/*.nii.gz); fi
    # shellcheck disable=SC2086
    "$py" benchmarks/weights_eval.py "${eval_task[@]}" --model "$best" --threads "$threads" \
      --out "$campaign/eval" "${held[@]}" ${EVAL_ARGS:-} 2>&1 | tee "$out/eval.log" || true
    [ -d "$campaign/eval" ] && files+=(eval)
  fi
  tar -C "$campaign" -czf - "${files[@]}" | split -b 15m -d - "$out/result.tgz.part"
  echo "gpu_train.sh: $(ls "$out"/result.tgz.part* | wc -l) part(s), $((SECONDS - t0)) s"
}

collect() {
  local from=${1:-} campaign=${2:-}
  [ -n "$from" ] && [ -n "$campaign" ] || die "usage: collect FILES_AT CAMPAIGN"
  local parts=("$from"/result.tgz.part*)
  [ -e "${parts[0]}" ] || die "$from: no result.tgz.part* files"
  mkdir -p "$(dirname "$campaign")"
  collect_tmp=$(mktemp -d "${campaign%/}.collect.XXXX")
  trap 'rm -rf "$collect_tmp"' EXIT
  local tmp=$collect_tmp
  cat "${parts[@]}" | tar -xzf - -C "$tmp"
  local before=none after
  [ -f "$campaign/state.pt" ] && before=$(step_of "$campaign/state.pt")
  after=$(step_of "$tmp/state.pt")
  if [ "$before" != none ] && [ "$after" -lt "$before" ]; then
    die "$from: state at step $after is older than $campaign's (step $before)"
  fi
  mkdir -p "$campaign"
  for f in "$tmp"/*; do
    rm -rf "$campaign/$(basename "$f")"
    mv "$f" "$campaign/"
  done
  echo "gpu_train.sh: $campaign now at step $after (was $before)"
}

step_of() {
  local py=${PYTHON:-$here/.venv/bin/python}
  [ -x "$py" ] || py=python3
  PYTHONPATH="$here" "$py" -c "import sys
from synthbids.core.checkpoints import read_checkpoint
print(read_checkpoint(sys.argv[1], full_state=True, map_location='cpu')['step'])" "$1"
}

case "$cmd" in
  prepare) prepare "$@" ;;
  job) job "$@" ;;
  collect) collect "$@" ;;
  *) die "usage: gpu_train.sh prepare CAMPAIGN... | job CAMPAIGN [--final] | collect FILES_AT CAMPAIGN" ;;
esac
