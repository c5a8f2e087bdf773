"""Start real servers (redis-server, mosquitto, prometheus, alertmanager, ...) on free loopback
ports for tests, and stop them by PID. Never mocks: the binaries come from apt (`make test`)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from tessera_daemon import testing
from tessera_daemon.testing import free_port, running, stop, wait_port

__all__ = ["find_exe", "free_port", "mosquitto_argv", "redis_argv", "running", "stop", "wait_port"]


def find_exe(name: str, *alternatives: str) -> str:
    """The binary's path; the test is skipped when it is not installed (`make test` installs it)."""
    try:
        return testing.find_exe(name, *alternatives)
    except testing.MissingBinaryError:
        pytest.skip(f"{name} is not installed (make test installs it with apt-get)")


def redis_argv(port: int, workdir: Path, *, aof: bool = False, extra: Sequence[str] = ()) -> list[str]:
    return [
        find_exe("redis-server"),
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "yes" if aof else "no",
        "--appendfsync",
        "everysec",
        "--dir",
        str(workdir),
        *extra,
    ]


def mosquitto_argv(port: int, workdir: Path) -> list[str]:
    conf = workdir / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    return [find_exe("mosquitto"), "-c", str(conf)]
