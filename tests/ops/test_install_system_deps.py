"""scripts/install-system-deps.sh (run by `make test`) never touches a service that is already on the machine.

A redis-server started by the test keeps running and answering through a run of the script, and a
single-node Slurm (slurmctld + slurmd) stays idle in its cluster; when packages
are missing, the script installs them with a policy-rc.d that forbids starting services, never calls
systemctl / service / invoke-rc.d, and removes the policy-rc.d it wrote. apt-get and the service managers are
stand-ins on PATH in the second test (no packages are installed by the test suite)."""

from __future__ import annotations

import os
import shutil
import socket
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.catalog import ROOT
from tests.servers import free_port, redis_argv, running
from tests.sources.conftest import SlurmCluster, slurm_cluster  # noqa: F401 - the fixture, used below

SCRIPT = ROOT / "scripts" / "install-system-deps.sh"
PROBED = (
    "redis-server",
    "mosquitto",
    "prometheus",
    "prometheus-alertmanager",
    "slurmctld",
    "systemd-analyze",
    "chromium",
)

pytestmark = [pytest.mark.slow, pytest.mark.redis]


def _ping(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as s:
        s.sendall(b"PING\r\n")
        return s.recv(64).startswith(b"+PONG")


@pytest.fixture
def live_redis(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int]]:
    port = free_port()
    (tmp_path / "redis").mkdir()
    with running(redis_argv(port, tmp_path / "redis"), port, tmp_path / "redis.log") as proc:
        assert _ping(port)
        yield proc, port


def _tool(directory: Path, name: str, body: str) -> None:
    path = directory / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)


def test_everything_installed_is_a_no_op_and_the_running_redis_survives(
    live_redis: tuple[subprocess.Popen[bytes], int],
) -> None:
    for exe in PROBED:
        if not (shutil.which(exe) or Path("/usr/sbin", exe).exists()):
            pytest.skip(f"{exe} is not installed: the script would install it (see the next test)")
    proc, port = live_redis
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == "", "the fast path prints nothing and installs nothing"
    assert proc.poll() is None and _ping(port), "redis-server was stopped by install-system-deps.sh"


def _fake_install(tmp_path: Path, policy: Path) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run the script with prometheus "missing" and apt-get / systemctl / service / sudo / id as stand-ins."""
    bin_dir, probe_dir = tmp_path / "bin", tmp_path / "probe"
    bin_dir.mkdir()
    probe_dir.mkdir()
    calls = tmp_path / "calls.log"
    for exe in PROBED:
        if exe != "prometheus":
            _tool(probe_dir, exe, "exit 0")
    _tool(bin_dir, "apt-get", f'echo "apt-get $* policy=$(cat {policy} 2>/dev/null | tail -1)" >> {calls}')
    for name in ("systemctl", "service", "invoke-rc.d", "deb-systemd-invoke"):
        _tool(bin_dir, name, f'echo "{name} $*" >> {calls}; exit 1')
    _tool(bin_dir, "sudo", 'exec "$@"')
    _tool(bin_dir, "id", "echo 0")
    env = {
        **os.environ,
        "PATH": f"{bin_dir}:{os.environ['PATH']}",
        "INSTALL_DEPS_PATH": str(probe_dir),
        "POLICY_RC_D": str(policy),
    }
    out = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=False, env=env)
    return out, calls


@pytest.mark.slurm
def test_a_running_slurm_node_stays_in_its_cluster(slurm_cluster: SlurmCluster, tmp_path: Path) -> None:  # noqa: F811
    out, _calls = _fake_install(tmp_path, tmp_path / "policy-rc.d")
    assert out.returncode == 0, out.stderr
    if all(shutil.which(e) or Path("/usr/sbin", e).exists() for e in PROBED):
        assert subprocess.run(["bash", str(SCRIPT)], timeout=60, check=False).returncode == 0
    assert all(p.poll() is None for p in slurm_cluster.procs.values()), "slurmctld / slurmd were stopped"
    assert "idle" in slurm_cluster.run("sinfo", "-h", "-o", "%T")


@pytest.mark.parametrize("policy_exists", [False, True])
def test_install_path_starts_and_stops_nothing(
    live_redis: tuple[subprocess.Popen[bytes], int], tmp_path: Path, policy_exists: bool
) -> None:
    proc, port = live_redis
    policy = tmp_path / "policy-rc.d"
    if policy_exists:
        policy.write_text("#!/bin/sh\nexit 0\n")
    out, calls = _fake_install(tmp_path, policy)
    assert out.returncode == 0, out.stderr
    log = calls.read_text().splitlines()
    assert [line.split(" policy=")[0] for line in log] == [
        "apt-get update -q",
        "apt-get install -y -q --no-install-recommends -o DPkg::Lock::Timeout=300 prometheus",
    ]
    if policy_exists:
        assert policy.read_text() == "#!/bin/sh\nexit 0\n", "an existing policy-rc.d is left as it was"
    else:
        assert log[1].endswith("policy=exit 101"), "services must not start during the install"
        assert not policy.exists(), "the policy-rc.d written for the install is removed"
    assert proc.poll() is None and _ping(port)
    # nothing else of the machine is asked to change: no service manager was called
    assert not any(line.split()[0] in {"systemctl", "service", "invoke-rc.d", "deb-systemd-invoke"} for line in log)
