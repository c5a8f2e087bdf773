"""Start real servers (redis-server, mosquitto, prometheus, alertmanager, ...) on free loopback
ports for tests, and stop them by PID. Never mocks: the binaries come from apt (`make test`)."""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout_s: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


def find_exe(name: str, *alternatives: str) -> str:
    for n in (name, *alternatives):
        path = shutil.which(n) or (f"/usr/sbin/{n}" if Path(f"/usr/sbin/{n}").exists() else None)
        if path:
            return path
    pytest.skip(f"{name} is not installed (make test installs it with apt-get)")


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


@contextlib.contextmanager
def running(argv: Sequence[str], port: int, log: Path, timeout_s: float = 15.0) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv``, wait until ``port`` accepts connections, yield the process, stop it by PID."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(port, timeout_s, proc)
            yield proc
        finally:
            stop(proc)


def redis_argv(port: int, workdir: Path, *, aof: bool = False, extra: Sequence[str] = ()) -> list[str]:
    return [
        find_exe("redis-server"), "--port", str(port), "--bind", "127.0.0.1", "--save", "",
        "--appendonly", "yes" if aof else "no", "--appendfsync", "everysec", "--dir", str(workdir),
        *extra,
    ]


def mosquitto_argv(port: int, workdir: Path) -> list[str]:
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    return [find_exe("mosquitto"), "-c", str(conf)]
