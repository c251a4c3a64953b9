#!/usr/bin/env bash
# Make the Debian base image the container build starts from, without a registry: debootstrap a
# minimal bookworm with python3 and import it into podman. Does nothing if the image exists.
# Usage: bash scripts/container-base.sh [IMAGE]     (default localhost/debian-base:bookworm)
# Needs root, debootstrap and podman; MIRROR overrides the Debian mirror.
set -euo pipefail
IMAGE=${1:-localhost/debian-base:bookworm}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
if podman image exists "$IMAGE"; then
  echo "$IMAGE: present"
  exit 0
fi
rootfs=$(mktemp -d /var/tmp/debian-base.XXXXXX)
trap 'rm -rf "$rootfs"' EXIT
start=$(date +%s)
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$rootfs" "$MIRROR" >"$rootfs.log" 2>&1 || { tail -n 30 "$rootfs.log"; exit 1; }
rm -f "$rootfs.log"
rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
tar -C "$rootfs" -c . | podman import --quiet - "$IMAGE" >/dev/null
echo "$IMAGE: made with debootstrap in $(($(date +%s) - start)) s"
