"""Fixtures of the source tests: a real single-node Slurm, a real Prometheus scraping a local
exporter, and in-process servers (dcgm-exporter text, fake Kubernetes API) on free ports."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from tessera_daemon.config import Config
from tessera_daemon.settings.sources import SourcesConfig
from tessera_daemon.sources.base import Source
from tests.servers import find_exe, free_port, stop, wait_port

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"


def popen(argv: list[str], log: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    with log.open("ab") as out:
        return subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT)


def make_config(**tables: Any) -> Config:
    """A Config whose [sources] table has the given sub-tables / fields (dataclass instances)."""
    return Config(sources=replace(SourcesConfig(), **tables))


async def poll_until_error(src: Source, timeout_s: float = 20.0) -> BaseException:
    """Poll until the source raises (sources fed by a stream notice a loss a moment later)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            await src.poll(time.time())
        except Exception as exc:
            return exc
        await asyncio.sleep(0.02)
    raise AssertionError("poll kept succeeding after the substrate went away")


# ------------------------------------------------------------------------------- dcgm-exporter


@dataclass
class TextServer:
    """An aiohttp server answering GET /metrics with ``body`` (mutable between requests)."""

    body: str
    status: int = 200
    port: int = 0
    hits: int = 0
    runner: web.AppRunner | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/metrics"

    async def start(self) -> None:
        async def handler(_request: web.Request) -> web.Response:
            self.hits += 1
            return web.Response(text=self.body, status=self.status, content_type="text/plain", charset="utf-8")

        app = web.Application()
        app.router.add_get("/metrics", handler)
        self.runner = web.AppRunner(app, shutdown_timeout=0.2)
        await self.runner.setup()
        self.port = self.port or free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
            self.runner = None


@pytest.fixture
async def dcgm_server() -> AsyncIterator[TextServer]:
    server = TextServer((FIXTURES / "dcgm" / "dcgm-exporter-3.3.9-3.6.1.txt").read_text())
    await server.start()
    yield server
    await server.stop()


# ---------------------------------------------------------------------------------- prometheus


@dataclass
class PrometheusServer:
    """A real prometheus scraping the exporter every second; stop/start keep the same TSDB."""

    workdir: Path
    port: int
    exporter_port: int
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        argv = [
            find_exe("prometheus"),
            f"--config.file={self.workdir / 'prometheus.yml'}",
            f"--storage.tsdb.path={self.workdir / 'tsdb'}",
            f"--web.listen-address=127.0.0.1:{self.port}",
        ]
        self.procs["prometheus"] = popen(argv, self.workdir / "prometheus.log")
        wait_port(self.port, 20, self.procs["prometheus"])

    def stop(self) -> None:
        proc = self.procs.pop("prometheus", None)
        if proc is not None:
            stop(proc)

    def wait_for_series(self, metric: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            with (
                contextlib.suppress(OSError, ValueError),
                urllib.request.urlopen(f"{self.url}/api/v1/query?query={metric}", timeout=2) as r,
            ):
                if json.loads(r.read())["data"]["result"]:
                    return
            time.sleep(0.2)
        raise TimeoutError(f"prometheus never returned {metric}")


@pytest.fixture(scope="session")
def prometheus_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrometheusServer]:
    exe = find_exe("prometheus")
    d = tmp_path_factory.mktemp("prometheus")
    exporter_port, port = free_port(), free_port()
    exporter = popen(
        [
            sys.executable,
            str(FIXTURES / "prometheus" / "exporter.py"),
            str(exporter_port),
            str(FIXTURES / "dcgm" / "dcgm-exporter-3.3.9-3.6.1.txt"),
        ],
        d / "exporter.log",
    )
    try:
        wait_port(exporter_port, 15, exporter)
        (d / "prometheus.yml").write_text(
            "global: {scrape_interval: 1s, evaluation_interval: 1s}\n"
            "scrape_configs:\n"
            "  - job_name: dcgm\n"
            f"    static_configs: [{{targets: ['127.0.0.1:{exporter_port}']}}]\n"
        )
        assert exe
        server = PrometheusServer(d, port, exporter_port)
        server.start()
        try:
            server.wait_for_series("DCGM_FI_DEV_GPU_UTIL")
            yield server
        finally:
            server.stop()
    finally:
        stop(exporter)


# --------------------------------------------------------------------------------------- slurm


SLURM_CONF = """\
ClusterName=tessera
SlurmctldHost={host}(127.0.0.1)
SlurmctldPort={ctld_port}
SlurmdPort={d_port}
SlurmUser={user}
SlurmdUser=root
AuthType=auth/none
CredType=cred/none
StateSaveLocation={d}/state
SlurmdSpoolDir={d}/spool
SlurmctldPidFile={d}/slurmctld.pid
SlurmdPidFile={d}/slurmd.pid
SlurmctldLogFile={d}/log/slurmctld.log
SlurmdLogFile={d}/log/slurmd.log
ProctrackType=proctrack/linuxproc
TaskPlugin=task/none
MpiDefault=none
MailProg=/bin/true
JobAcctGatherType=jobacct_gather/none
AccountingStorageType=accounting_storage/none
SchedulerType=sched/builtin
SelectType=select/cons_tres
SelectTypeParameters=CR_Core
ReturnToService=2
SlurmctldTimeout=10
SlurmdTimeout=10
MessageTimeout=3
GresTypes=gpu
TopologyPlugin=topology/tree
NodeName={host} NodeAddr=127.0.0.1 CPUs=2 RealMemory=1000 Gres=gpu:a100:4 State=UNKNOWN
PartitionName=debug Nodes={host} Default=YES MaxTime=INFINITE State=UP
"""


@dataclass
class SlurmCluster:
    workdir: Path
    conf: Path
    host: str
    env: dict[str, str]
    procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)

    def run(self, *argv: str, check: bool = True) -> str:
        out = subprocess.run(list(argv), env=self.env, capture_output=True, text=True, timeout=30, check=False)
        if check and out.returncode != 0:
            raise RuntimeError(f"{argv}: {out.stderr}")
        return out.stdout

    def wait_running(self, job_id: str, timeout_s: float = 20.0) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.run("squeue", "-h", "-j", job_id, "-o", "%T").strip() == "RUNNING":
                return
            time.sleep(0.1)
        raise TimeoutError(f"job {job_id} not running")


def _kill(proc: subprocess.Popen[bytes], timeout_s: float) -> None:
    """terminate, then kill -9 (slurmd ignores SIGTERM while it cannot reach the controller)."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="session")
def slurm_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SlurmCluster]:
    ctld, slurmd = find_exe("slurmctld"), find_exe("slurmd")
    find_exe("sinfo")
    d = tmp_path_factory.mktemp("slurm")
    for sub in ("state", "spool", "log", "dev"):
        (d / sub).mkdir()
    for i in range(4):
        (d / "dev" / f"nvidia{i}").touch()  # fake GPU device files (empty regular files)
    host = socket.gethostname().split(".")[0]
    user = "root" if os.geteuid() == 0 else os.environ.get("USER", "root")
    conf = d / "slurm.conf"
    conf.write_text(SLURM_CONF.format(host=host, ctld_port=free_port(), d_port=free_port(), d=d, user=user))
    (d / "gres.conf").write_text(f"NodeName={host} Name=gpu Type=a100 File={d}/dev/nvidia[0-3]\n")
    (d / "topology.conf").write_text(f"SwitchName=leaf0 Nodes={host}\nSwitchName=spine0 Switches=leaf0\n")
    env = {**os.environ, "SLURM_CONF": str(conf)}
    cluster = SlurmCluster(d, conf, host, env)
    try:
        cluster.procs["slurmctld"] = popen([ctld, "-D", "-i"], d / "log" / "ctld.out", env)
        cluster.procs["slurmd"] = popen([slurmd, "-D"], d / "log" / "d.out", env)
        deadline = time.monotonic() + 30
        while "idle" not in cluster.run("sinfo", "-h", "-o", "%T", check=False):
            if time.monotonic() > deadline or any(p.poll() is not None for p in cluster.procs.values()):
                pytest.fail(f"slurm did not come up: {(d / 'log' / 'slurmctld.log').read_text()[-2000:]}")
            time.sleep(0.1)
        yield cluster
    finally:
        with contextlib.suppress(Exception):
            cluster.run("scancel", "--user", user, check=False)
            deadline = time.monotonic() + 10
            while cluster.run("squeue", "-h", check=False).strip() and time.monotonic() < deadline:
                time.sleep(0.1)
        for name in ("slurmd", "slurmctld"):
            if name in cluster.procs:
                _kill(cluster.procs[name], 5)


def client_conf_copy(cluster: SlurmCluster, directory: Path) -> Path:
    """A client-side copy of slurm.conf (and gres/topology), so a test can point it elsewhere."""
    for name in ("slurm.conf", "gres.conf", "topology.conf"):
        shutil.copy(cluster.workdir / name, directory / name)
    return directory / "slurm.conf"
