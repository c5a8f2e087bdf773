"""deploy/systemd/: `systemd-analyze verify` of every unit (failing on ANY output, because verify exits 0
on many parse errors and only prints them), the directives the daemon relies on, and the sysusers entry.

ExecStart: `systemd-analyze verify` also checks that ExecStart's binary exists and is executable
("Command /usr/bin/tessera-daemon is not executable"). The package is not installed at /usr/bin on a test
machine, so the test copies the units into a temporary directory with only the program path of ExecStart
replaced by an executable that exists (`true`); the arguments and every other line are verified as shipped.
tests/ops/test_command_lines.py executes the original ExecStart command line.
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from tests.ops.catalog import ROOT, run
from tests.servers import find_exe

SYSTEMD = ROOT / "deploy" / "systemd"
UNITS = {"tessera-daemon.service": "run", "tessera-agent.service": "agent", "tessera-detector.service": "detector"}
SHIPPED_EXEC = "/usr/bin/tessera-daemon"


def _directives(path: Path) -> dict[str, list[str]]:
    """Key -> values of a unit file (repeated keys accumulate; sections are not distinguished)."""
    out: dict[str, list[str]] = {}
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";", "[")):
            continue
        key, _, value = line.partition("=")
        out.setdefault(key.strip(), []).append(value.strip())
    return out


def _verify(directory: Path, *names: str) -> tuple[int, str]:
    out = run([find_exe("systemd-analyze"), "verify", *(str(directory / n) for n in names)], cwd=directory)
    return out.returncode, (out.stdout + out.stderr).strip()


@pytest.fixture
def staged_units(tmp_path: Path) -> Path:
    true = shutil.which("true")
    assert true, "no `true` executable"
    for name in UNITS:
        text = (SYSTEMD / name).read_text()
        staged, count = re.subn(
            rf"^ExecStart={re.escape(SHIPPED_EXEC)}(\s)", rf"ExecStart={true}\1", text, flags=re.MULTILINE
        )
        assert count == 1, f"{name}: expected one ExecStart={SHIPPED_EXEC} ..."
        (tmp_path / name).write_text(staged)
    return tmp_path


@pytest.mark.parametrize("name", sorted(UNITS))
def test_systemd_analyze_verify_is_silent(staged_units: Path, name: str) -> None:
    rc, output = _verify(staged_units, name)
    assert rc == 0, output
    assert output == "", f"systemd-analyze verify {name} printed:\n{output}"


def test_verify_output_check_catches_errors(tmp_path: Path) -> None:
    """Guard for the check above: a unit with a bad value exits 0 but prints a diagnostic."""
    (tmp_path / "broken.service").write_text("[Service]\nType=bogus\nExecStart=/bin/true\n")
    rc, output = _verify(tmp_path, "broken.service")
    assert rc == 0
    assert "Failed to parse service type" in output


@pytest.mark.parametrize(("name", "mode"), sorted(UNITS.items()))
def test_unit_directives(name: str, mode: str) -> None:
    d = _directives(SYSTEMD / name)

    def one(key: str) -> str:
        assert len(d.get(key, [])) == 1, f"{name}: expected exactly one {key}="
        return d[key][0]

    # that the command line runs is tests/ops/test_command_lines.py; here: which subcommand the unit runs
    assert one("ExecStart").split()[:2] == [SHIPPED_EXEC, mode]
    assert one("Type") == "notify"
    assert one("NotifyAccess") == "main"
    assert one("WatchdogSec") == "30"
    assert one("Restart") == "on-failure"
    assert one("KillSignal") == "SIGTERM"
    assert one("TimeoutStopSec") == "20"
    assert one("NoNewPrivileges") == "yes"
    assert one("ProtectSystem") == "strict"
    assert one("ProtectHome") == "yes"
    assert one("PrivateTmp") == "yes"
    assert one("EnvironmentFile") == "-/etc/tessera/tessera.env"
    assert one("User") == "tessera" or one("DynamicUser") == "yes"
    assert "tessera" in one("StateDirectory").split()
    assert "tessera" in one("CacheDirectory").split()
    assert "%S/tessera" in one("ReadWritePaths").split()
    env = dict(e.split("=", 1) for e in d["Environment"])
    assert env["NUMBA_CACHE_DIR"].startswith("%C/tessera/"), "numba cache inside CacheDirectory="
    # numba's JIT needs writable+executable memory.
    assert d.get("MemoryDenyWriteExecute", ["no"]) == ["no"]
    if mode == "detector":
        assert one("PrivateDevices") == "yes"
    else:  # agent and all-in-one read NVML
        assert one("PrivateDevices") == "no"
        assert any(v.startswith("char-nvidia-frontend") for v in d["DeviceAllow"])
    if mode in {"agent", "detector"}:
        assert env["TESSERA_TRANSPORT__KIND"] == "redis"


def test_sysusers_creates_the_tessera_user(tmp_path: Path) -> None:
    out = run(
        [
            find_exe("systemd-sysusers"),
            "--dry-run",
            f"--root={tmp_path}",
            "--replace=/usr/lib/sysusers.d/tessera.conf",
            str(SYSTEMD / "tessera.sysusers"),
        ]
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert "Creating user 'tessera'" in out.stdout + out.stderr
