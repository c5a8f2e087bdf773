"""`run`, `agent` and `detector` under a systemd-style supervisor: each is a real process whose
NOTIFY_SOCKET is a unix datagram socket owned by the test, with WATCHDOG_USEC=1 s. Each must send READY=1,
then WATCHDOG=1 every half period (at least two), and STOPPING=1 on SIGTERM, then exit 0."""

from __future__ import annotations

import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SMALL_SIM = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "1",
    "TESSERA_SIM__HOSTS_PER_RACK": "2",
    "TESSERA_SIM__COHORTS": "1",
    "TESSERA_SIM__SPEEDUP": "20",
}


@contextmanager
def notify_socket() -> Iterator[tuple[socket.socket, str]]:
    """A unix datagram socket in the abstract namespace (no path-length limit), as systemd provides."""
    name = f"tessera-test-notify-{os.getpid()}-{secrets.token_hex(4)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    try:
        sock.bind("\0" + name)
        yield sock, "@" + name
    finally:
        sock.close()


def _messages(sock: socket.socket, until: float) -> Iterator[str]:
    while time.monotonic() < until:
        sock.settimeout(max(0.01, until - time.monotonic()))
        try:
            data = sock.recv(4096)
        except TimeoutError:
            return
        yield from data.decode().splitlines()


def _supervise(command: str, env: dict[str, str], tmp_path: Path) -> list[str]:
    """Start the command, collect its notifications until two WATCHDOG=1 after READY=1, SIGTERM it,
    collect until it exits; return every message in order."""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("TESSERA_", "NOTIFY_", "WATCHDOG_"))}
    seen: list[str] = []
    with notify_socket() as (sock, address), (tmp_path / f"{command}.log").open("wb") as log:
        full = (
            base
            | SMALL_SIM
            | env
            | {
                "NOTIFY_SOCKET": address,
                "WATCHDOG_USEC": "1000000",
                "TESSERA_HTTP__PORT": "0",
                "TESSERA_LOG__FORMAT": "json",
            }
        )
        proc = subprocess.Popen(
            [sys.executable, "-m", "tessera_daemon", command], env=full, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT
        )
        try:
            for msg in _messages(sock, time.monotonic() + 120):
                seen.append(msg)
                if "READY=1" in seen and seen[seen.index("READY=1") :].count("WATCHDOG=1") >= 2:
                    break
                assert proc.poll() is None, f"{command} exited early: {(tmp_path / f'{command}.log').read_text()}"
            proc.send_signal(signal.SIGTERM)
            for msg in _messages(sock, time.monotonic() + 30):
                seen.append(msg)
                if msg == "STOPPING=1":
                    break
            assert proc.wait(30) == 0, (tmp_path / f"{command}.log").read_text()
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return seen


def _assert_life_cycle(command: str, seen: list[str], tmp_path: Path) -> None:
    log = (tmp_path / f"{command}.log").read_text()
    assert "READY=1" in seen, f"{command}: no READY=1 ({seen})\n{log}"
    after = seen[seen.index("READY=1") :]
    assert after.count("WATCHDOG=1") >= 2, f"{command}: fewer than two WATCHDOG=1 after READY=1: {seen}"
    assert "STOPPING=1" in after, f"{command}: no STOPPING=1 after SIGTERM: {seen}\n{log}"
    assert "WATCHDOG=1" not in seen[: seen.index("READY=1")], "no watchdog ping before READY=1"


def test_run_notifies_systemd(tmp_path: Path) -> None:
    seen = _supervise("run", {}, tmp_path)
    _assert_life_cycle("run", seen, tmp_path)


@pytest.mark.redis
@pytest.mark.parametrize("command", ["agent", "detector"])
def test_split_processes_notify_systemd(command: str, redis_url: str, tmp_path: Path) -> None:
    env = {
        "TESSERA_TRANSPORT__KIND": "redis",
        "TESSERA_TRANSPORT__REDIS__URL": redis_url,
        "TESSERA_TRANSPORT__REDIS__PREFIX": f"notify-{secrets.token_hex(4)}",
    }
    seen = _supervise(command, env, tmp_path)
    _assert_life_cycle(command, seen, tmp_path)
