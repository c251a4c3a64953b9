#!/usr/bin/env bash
# Host configuration for the container and SLURM tests (tests/integration/), idempotent:
# rootful podman with runc, cgroupfs and host networking, and open-file limits the kernel
# accepts. The SLURM test starts its own munged/slurmctld/slurmd with a private key and
# configuration, so nothing else is needed for SLURM. Run as root after installing podman.
set -euo pipefail
conf=/etc/containers/containers.conf
nofile=$(ulimit -Hn)
[ "$nofile" = unlimited ] && nofile=1048576
want=$(cat <<CONF
# written by synthbids scripts/ci-host-setup.sh
[containers]
netns = "host"
default_ulimits = ["nofile=$nofile:$nofile", "nproc=4096:4096"]

[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
CONF
)
if [ -f "$conf" ] && ! grep -q 'synthbids scripts/ci-host-setup.sh' "$conf"; then
  if grep -q 'runtime *= *"runc"' "$conf" && grep -q 'cgroup_manager *= *"cgroupfs"' "$conf"; then
    echo "$conf: already configured"
    exit 0
  fi
  cp "$conf" "$conf.orig"
fi
mkdir -p "$(dirname "$conf")"
printf '%s\n' "$want" >"$conf"
echo "$conf: written"
