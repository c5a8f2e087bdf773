"""One contract suite for every substrate source, each built against its real component or its
boundary stand-in (fake pynvml module, dcgm-exporter text server, fake Kubernetes API server, real
Slurm, neuron-monitor / tpu-info stub executables, real Prometheus)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tessera_daemon.errors import SubstrateError
from tessera_daemon.model import EDGE_KINDS, NODE_KINDS, Frame
from tessera_daemon.settings.sources import (
    DcgmSettings,
    KubernetesSettings,
    NeuronSettings,
    NvmlSettings,
    PrometheusSettings,
    SlurmSettings,
    TpuSettings,
)
from tessera_daemon.sources import SOURCES, Source, build_sources, merge_topology
from tests.servers import free_port
from tests.sources.conftest import FIXTURES, TextServer, client_conf_copy, make_config, poll_until_error
from tests.sources.fake_kube import FakeKubeApi
from tests.sources.fake_pynvml import FakeNvml

PY = sys.executable


@dataclass
class Case:
    source: Source
    go_away: Callable[[], Awaitable[None]]
    frames_expected: bool = True
    cleanups: list[Callable[[], Awaitable[None]]] = field(default_factory=list)


async def _nvml(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    fake = FakeNvml(4)
    mp: pytest.MonkeyPatch = request.getfixturevalue("monkeypatch")
    mp.setitem(sys.modules, "pynvml", fake.module)
    [src] = build_sources(make_config(enabled=("nvml",), nvml=NvmlSettings(host="node-a")))

    async def go_away() -> None:
        fake.unload()

    return Case(src, go_away)


async def _dcgm(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    server = TextServer((FIXTURES / "dcgm" / "dcgm-exporter-4.x.txt").read_text())
    await server.start()
    [src] = build_sources(make_config(enabled=("dcgm",), dcgm=DcgmSettings(urls=(server.url,))))
    return Case(src, server.stop, cleanups=[server.stop])


async def _kubernetes(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    api = FakeKubeApi()
    api.load("nodes", json.loads((FIXTURES / "kubernetes" / "nodelist.json").read_text())["items"])
    api.load("pods", json.loads((FIXTURES / "kubernetes" / "podlist.json").read_text())["items"])
    url = await api.start()
    settings = KubernetesSettings(api_url=url, retry_s=0.05)
    [src] = build_sources(make_config(enabled=("kubernetes",), kubernetes=settings))
    return Case(src, api.stop, frames_expected=False, cleanups=[api.stop])


async def _slurm(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    cluster = request.getfixturevalue("slurm_cluster")
    conf = client_conf_copy(cluster, tmp_path)
    settings = SlurmSettings(slurm_conf=str(conf), refresh_s=0.0, command_timeout_s=3.0)
    [src] = build_sources(make_config(enabled=("slurm",), slurm=settings))

    async def go_away() -> None:  # the client now talks to a port where no controller listens
        text = conf.read_text().splitlines()
        dead = free_port()
        conf.write_text(
            "\n".join(f"SlurmctldPort={dead}" if ln.startswith("SlurmctldPort=") else ln for ln in text) + "\n"
        )

    return Case(src, go_away, frames_expected=False)


async def _neuron(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    stub = tmp_path / "neuron-monitor"
    shutil.copy(FIXTURES / "neuron" / "stub_neuron_monitor.py", stub)
    pidfile = tmp_path / "monitor.pid"
    settings = NeuronSettings(
        ls_command=(
            PY,
            str(FIXTURES / "neuron" / "stub_print.py"),
            str(FIXTURES / "neuron" / "neuron-ls-trn1.32xlarge.json"),
        ),
        monitor_command=(
            PY,
            str(stub),
            str(FIXTURES / "neuron" / "neuron-monitor-trn1.32xlarge.jsonl"),
            "--interval",
            "0.1",
            "--pidfile",
            str(pidfile),
        ),
        host="trn-a",
        instance_type="trn1.32xlarge",
        stale_after_s=3.0,
        restart_backoff_s=0.05,
        restart_backoff_max_s=0.2,
    )
    [src] = build_sources(make_config(enabled=("neuron",), neuron=settings))

    async def go_away() -> None:
        stub.unlink()
        os.kill(int(pidfile.read_text()), signal.SIGKILL)

    return Case(src, go_away)


async def _tpu(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    stub = tmp_path / "tpu-info"
    shutil.copy(FIXTURES / "tpu" / "stub_tpu_info.py", stub)
    settings = TpuSettings(
        command=(PY, str(stub), str(FIXTURES / "tpu" / "tpu-info-v6e-static.txt")),
        slice_file=str(FIXTURES / "tpu" / "tpu-fixture-sparse-subcube.json"),
        host="tpu-a",
    )
    [src] = build_sources(make_config(enabled=("tpu",), tpu=settings))

    async def go_away() -> None:
        stub.unlink()

    return Case(src, go_away)


async def _prometheus(request: pytest.FixtureRequest, tmp_path: Path) -> Case:
    server = request.getfixturevalue("prometheus_server")
    settings = PrometheusSettings(
        url=server.url,
        queries=(
            "gpu_util=DCGM_FI_DEV_GPU_UTIL / 100",
            "power_w=DCGM_FI_DEV_POWER_USAGE",
            "energy_j=DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION / 1000",
        ),
        counters=("energy_j",),
    )
    [src] = build_sources(make_config(enabled=("prometheus",), prometheus=settings))

    async def go_away() -> None:
        await asyncio.to_thread(server.stop)

    async def restart() -> None:
        if "prometheus" not in server.procs:
            await asyncio.to_thread(server.start)

    return Case(src, go_away, cleanups=[restart])


FACTORIES: dict[str, Callable[[pytest.FixtureRequest, Path], Awaitable[Case]]] = {
    "nvml": _nvml,
    "dcgm": _dcgm,
    "kubernetes": _kubernetes,
    "slurm": _slurm,
    "neuron": _neuron,
    "tpu": _tpu,
    "prometheus": _prometheus,
}
MARKS: dict[str, Any] = {"slurm": pytest.mark.slurm, "prometheus": pytest.mark.prometheus}


OWNED_ELSEWHERE = {"mqtt", "synthetic"}  # registered here, contract-tested with its own module's tests


def test_every_registered_source_has_a_contract_case() -> None:
    assert set(FACTORIES) == set(SOURCES) - OWNED_ELSEWHERE


async def _first_frames(src: Source, expected: bool) -> list[Frame]:
    deadline = time.monotonic() + 10
    while True:
        frames = list(await src.poll(time.time()))
        if frames or not expected or time.monotonic() > deadline:
            return frames
        await asyncio.sleep(0.05)


@pytest.mark.parametrize("name", [pytest.param(n, marks=MARKS[n]) if n in MARKS else n for n in FACTORIES])
async def test_source_contract(name: str, request: pytest.FixtureRequest, tmp_path: Path) -> None:
    case = await FACTORIES[name](request, tmp_path)
    src = case.source
    try:
        assert isinstance(src, Source)
        assert src.name == name
        await src.open()
        frames = await _first_frames(src, case.frames_expected)
        if case.frames_expected:
            assert frames, f"{name}: no frames"
        for f in frames:
            assert Frame.from_json(f.to_json()) == f
            assert f.counters <= f.metrics.keys(), f"{f.shard}: counters missing from metrics"
            assert f.ts > 0
        part = await src.topology()
        assert part.source == name
        assert {n.kind for n in part.nodes} <= NODE_KINDS
        assert {e.kind for e in part.edges} <= EDGE_KINDS
        topo = merge_topology([part])
        assert topo.content_hash() == merge_topology([part]).content_hash()
        shard_ids = {f.shard for f in frames}
        assert shard_ids <= set(topo.shards), f"{name}: frame shards outside the topology"
        for sid in topo.shards:
            node = topo.nodes[sid]
            assert node.parent is not None and topo.nodes[node.parent].kind == "host"
            assert node.labels.get("host") == node.parent
        await case.go_away()
        exc = await poll_until_error(src)
        assert isinstance(exc, SubstrateError), f"{name}: {type(exc).__name__}: {exc}"
    finally:
        await src.close()
        await src.close()  # idempotent
        for cleanup in case.cleanups:
            await cleanup()
