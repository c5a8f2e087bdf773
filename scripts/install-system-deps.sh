#!/usr/bin/env bash
# Install, with apt-get, the system servers the test suite talks to, but only those that are absent.
# Argument "python-venv" installs only python3-venv.
#
# Safe on a machine that already runs these services (a Slurm GPU node, a host with Redis): when nothing is
# missing it does nothing at all, and it never stops, disables, restarts or reconfigures a service. The tests
# start their own servers on free loopback ports. While installing, a policy-rc.d that refuses every
# start (exit 101) keeps the packages' maintainer scripts from starting the freshly installed services; an
# existing policy-rc.d is left as it is.
#
# For the test of this script: INSTALL_DEPS_PATH replaces the PATH searched for the binaries, and
# POLICY_RC_D the policy-rc.d location.
set -euo pipefail

declare -A want=(
  [redis-server]="redis-server redis-tools"
  [mosquitto]="mosquitto mosquitto-clients"
  [prometheus]="prometheus"
  [prometheus-alertmanager]="prometheus-alertmanager"
  [slurmctld]="slurmctld slurmd slurm-client munge"
  [systemd-analyze]="systemd"
)
if [[ "${1:-}" == "python-venv" ]]; then
  want=([python3-venv-marker]="python3-venv")
fi

probe_path="${INSTALL_DEPS_PATH:-$PATH:/usr/sbin:/sbin}"
missing=()
for exe in "${!want[@]}"; do
  if [[ "$exe" == python3-venv-marker ]] || ! PATH="$probe_path" command -v "$exe" >/dev/null 2>&1; then
    read -r -a pkgs <<<"${want[$exe]}"
    missing+=("${pkgs[@]}")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0  # the fast path: everything is installed, nothing is touched
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-system-deps: need root (or sudo) to apt-get install: ${missing[*]}" >&2
    exit 1
  fi
fi

policy="${POLICY_RC_D:-/usr/sbin/policy-rc.d}"
if [[ ! -e "$policy" ]]; then
  # No service of the packages installed now is started by their maintainer scripts (deb-systemd-invoke
  # and invoke-rc.d honour policy-rc.d); removed again however the install ends.
  printf '#!/bin/sh\n# written by tessera-daemon scripts/install-system-deps.sh during apt-get install\nexit 101\n' \
    | $SUDO tee "$policy" >/dev/null
  $SUDO chmod 0755 "$policy"
  trap '$SUDO rm -f "$policy"' EXIT
fi

echo "install-system-deps: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
