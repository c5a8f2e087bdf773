#!/usr/bin/env bash
# Install, with apt-get, the system servers the test suite talks to (and Chromium for the console's browser
# test, driven by Playwright: never `playwright install`), but only those that are absent.
# Idempotent: a second run installs nothing. Argument "python-venv" installs only python3-venv.
set -euo pipefail

declare -A want=(
  [redis-server]="redis-server redis-tools"
  [mosquitto]="mosquitto mosquitto-clients"
  [prometheus]="prometheus"
  [prometheus-alertmanager]="prometheus-alertmanager"
  [slurmctld]="slurmctld slurmd slurm-client munge"
  [systemd-analyze]="systemd"
  [chromium]="chromium"
)
if [[ "${1:-}" == "python-venv" ]]; then
  want=([python3-venv-marker]="python3-venv")
fi

missing=()
for exe in "${!want[@]}"; do
  if [[ "$exe" == python3-venv-marker ]] || ! command -v "$exe" >/dev/null 2>&1 && [[ ! -x "/usr/sbin/$exe" ]]; then
    missing+=(${want[$exe]})
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi

SUDO=""
if [[ $(id -u) -ne 0 ]]; then
  if command -v sudo >/dev/null 2>&1; then SUDO="sudo"; else
    echo "install-system-deps: need root (or sudo) to apt-get install: ${missing[*]}" >&2
    exit 1
  fi
fi
echo "install-system-deps: apt-get install ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -q >/dev/null
$SUDO apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 "${missing[@]}" >/dev/null
# Debian starts nothing in containers (policy-rc.d); on a real host stop the packaged services so
# the tests' own servers on free loopback ports are the only ones involved.
for svc in redis-server mosquitto prometheus prometheus-alertmanager slurmctld slurmd munge; do
  if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$svc" 2>/dev/null; then
    $SUDO systemctl disable --now "$svc" >/dev/null 2>&1 || true
  fi
done
