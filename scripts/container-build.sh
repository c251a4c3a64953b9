#!/usr/bin/env bash
# Build the test image of the container recipe (tests/integration/test_container.py) with podman:
# the debootstrap base (scripts/container-base.sh), then the Dockerfile with the machine's CPU
# PyTorch wheel. Runs under a lock, so that the build .ci/run starts in the background and the
# test's own build never overlap: whichever comes second finds every layer in podman's cache.
# Usage: bash scripts/container-build.sh [IMAGE [BASE_IMAGE]]
#        (defaults localhost/synthbids:test, localhost/debian-base:bookworm)
# Needs root, podman, runc, debootstrap, ./.venv (for the version) and a wheel in /opt/wheels
# (or $SYNTHBIDS_TORCH_WHEEL).
set -euo pipefail
cd "$(dirname "$0")/.."
IMAGE=${1:-localhost/synthbids:test}
BASE_IMAGE=${2:-localhost/debian-base:bookworm}
CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt

wheel=${SYNTHBIDS_TORCH_WHEEL:-$(ls /opt/wheels/torch-*+cpu-cp311-*.whl 2>/dev/null | sort | tail -n 1)}
if [ -z "$wheel" ] || [ ! -f "$wheel" ]; then
  echo "no CPU torch wheel for Python 3.11 in /opt/wheels (or \$SYNTHBIDS_TORCH_WHEEL)" >&2
  exit 2
fi
version=$(.venv/bin/python -c 'import synthbids; print(synthbids.__version__)')

exec 9>/var/tmp/synthbids-container-build.lock
flock 9
start=$(date +%s)
bash scripts/container-base.sh "$BASE_IMAGE"
args=(--network host --tag "$IMAGE"
      --build-arg "BASE_IMAGE=$BASE_IMAGE"
      --build-arg "TORCH_SPEC=/tmp/docker/wheels/$(basename "$wheel")"
      --build-arg "TORCH_INDEX_URL="
      --build-arg "VERSION=$version"
      --volume "$(dirname "$wheel"):/tmp/docker/wheels:ro")
# a TLS-intercepting proxy's CA is in the host's bundle
if [ -f "$CA_BUNDLE" ]; then args+=(--volume "$CA_BUNDLE:/tmp/docker/certs/host.crt:ro"); fi
podman build "${args[@]}" .
echo "$IMAGE: base + build in $(($(date +%s) - start)) s"
