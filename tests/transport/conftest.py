"""Fixtures of the Redis / MQTT transport tests: real servers on free loopback ports, stopped by PID.

``redis_server`` is a function-scoped redis-server (optionally with AOF) that a test can stop and
start again on the same port and directory; ``mosquitto_server`` likewise for the MQTT broker;
``redis_cluster`` starts three cluster-enabled redis-servers and joins them with
``redis-cli --cluster create``.
"""

from __future__ import annotations

import random
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from tests.servers import find_exe, free_port, mosquitto_argv, redis_argv, stop, wait_port


class Server:
    """A server process that can be stopped and started again (same port, same data directory)."""

    def __init__(self, argv: list[str], port: int, workdir: Path, name: str) -> None:
        self.argv = argv
        self.port = port
        self.workdir = workdir
        self.name = name
        self.proc: subprocess.Popen[bytes] | None = None
        self.log: IO[bytes] | None = None
        self.starts = 0

    def start(self) -> None:
        self.starts += 1
        self.log = (self.workdir / f"{self.name}-{self.starts}.log").open("wb")
        self.proc = subprocess.Popen(self.argv, stdout=self.log, stderr=subprocess.STDOUT)
        wait_port(self.port, 15.0, self.proc)

    def stop(self) -> None:
        if self.proc is not None:
            stop(self.proc)
            self.proc = None
        if self.log is not None:
            self.log.close()
            self.log = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"


def _redis(tmp_path: Path, *, aof: bool) -> Iterator[Server]:
    d = tmp_path / "redis"
    d.mkdir()
    port = free_port()
    srv = Server(redis_argv(port, d, aof=aof), port, d, "redis")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[Server]:
    """A fresh redis-server (no persistence) for one test."""
    yield from _redis(tmp_path, aof=False)


@pytest.fixture
def redis_aof(tmp_path: Path) -> Iterator[Server]:
    """A fresh redis-server with AOF (appendfsync everysec) that survives stop() / start()."""
    yield from _redis(tmp_path, aof=True)


@pytest.fixture
def mosquitto_server(tmp_path: Path) -> Iterator[Server]:
    d = tmp_path / "mqtt"
    d.mkdir()
    port = free_port()
    srv = Server(mosquitto_argv(port, d), port, d, "mosquitto")
    srv.start()
    try:
        yield srv
    finally:
        srv.stop()


def cluster_port() -> int:
    """A free port whose cluster bus port (+10000) is free and valid (so at most 55535)."""
    rng = random.Random()
    for _ in range(200):
        port = rng.randint(20_000, 55_535)
        try:
            with socket.socket() as a, socket.socket() as b:
                a.bind(("127.0.0.1", port))
                b.bind(("127.0.0.1", port + 10_000))
        except OSError:
            continue
        return port
    raise RuntimeError("no free port pair for a cluster node")


@pytest.fixture
def redis_cluster(tmp_path: Path) -> Iterator[list[Server]]:
    """Three redis-server masters joined into a Redis Cluster (no replicas)."""
    servers: list[Server] = []
    try:
        for i in range(3):
            d = tmp_path / f"cluster-{i}"
            d.mkdir()
            port = cluster_port()
            extra = [
                "--cluster-enabled",
                "yes",
                "--cluster-config-file",
                str(d / "nodes.conf"),
                "--cluster-node-timeout",
                "2000",
            ]
            s = Server(redis_argv(port, d, extra=extra), port, d, "redis")
            s.start()
            servers.append(s)
        cli = find_exe("redis-cli")
        subprocess.run(
            [
                cli,
                "--cluster",
                "create",
                *[f"127.0.0.1:{s.port}" for s in servers],
                "--cluster-replicas",
                "0",
                "--cluster-yes",
            ],
            check=True,
            capture_output=True,
            timeout=30,
        )
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            info = [
                subprocess.run(
                    [cli, "-p", str(s.port), "cluster", "info"], check=False, capture_output=True, text=True, timeout=5
                ).stdout
                for s in servers
            ]
            if all("cluster_state:ok" in i for i in info):
                break
            time.sleep(0.1)
        else:
            raise TimeoutError("redis cluster did not reach cluster_state:ok")
        yield servers
    finally:
        for s in servers:
            s.stop()
