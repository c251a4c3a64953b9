#!/usr/bin/env bash
# Submit synthbids on SLURM: one array task per participant of participants.tsv, then the group
# level as a job that starts only when every task succeeded (--dependency=afterok).
# Usage: BIDS_DIR=... OUT_DIR=... bash scripts/slurm/submit.sh [sbatch options...]
#   MAX_PARALLEL=N  at most N participants at a time (--array=1-M%N)
#   sbatch options (e.g. --partition=short --account=lab) apply to both jobs.
# Prints the two job ids: "<array job> <group job>".
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
: "${BIDS_DIR:?set BIDS_DIR}" "${OUT_DIR:?set OUT_DIR}"
export BIDS_DIR OUT_DIR
n=$(awk -F'\t' 'NR > 1 && NF' "$BIDS_DIR/participants.tsv" | wc -l)
if [ "$n" -lt 1 ]; then
  echo "no participants in $BIDS_DIR/participants.tsv" >&2
  exit 66
fi
array=$(sbatch --parsable --array="1-$n${MAX_PARALLEL:+%$MAX_PARALLEL}" "$@" \
  "$here/participant.sbatch")
array=${array%%;*}
group=$(sbatch --parsable --dependency="afterok:$array" --kill-on-invalid-dep=yes "$@" \
  "$here/group.sbatch")
echo "${array} ${group%%;*}"
