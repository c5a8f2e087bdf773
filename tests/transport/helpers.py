"""Shared pieces of the transport tests: small simulated clusters, the reference run, output readers.

The reference is the offline pipeline fed the simulator's frames tick by tick: one ``Pipeline`` per
partition (cohort) with the fleet-wide threshold, exactly what the embedded daemon computes for
those cohorts. A distributed run is correct when every partition's window log has each window once,
with the reference's frame count, and ``tessera:firings`` holds exactly the reference's firing
events (same ids, states, windows and bytes).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import redis.asyncio as aioredis

from tessera_daemon.agent import AgentRunning, run_agent
from tessera_daemon.config import Config, load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.model import Frame
from tessera_daemon.outputs.stream import read_firings
from tessera_daemon.sim import ClusterSim
from tessera_daemon.split.coordinator import fleet_threshold
from tessera_daemon.split.partition import open_view
from tessera_daemon.split.worker import DetectorRunning, run_detector
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.registry import Router

START_TS = 1_767_225_600.0
SIM = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "2",
    "TESSERA_SIM__HOSTS_PER_RACK": "2",
    "TESSERA_SIM__COHORTS": "2",
    "TESSERA_SIM__SCENARIO": "mixed",
    "TESSERA_SIM__START_TS": str(START_TS),
    "TESSERA_SIM__SPEEDUP": "300",
    "TESSERA_SIM__DURATION_S": "900",
    "TESSERA_LOG__LEVEL": "warning",
    "TESSERA_HTTP__PORT": "0",
    "TESSERA_SOURCES__POLL_INTERVAL_S": "0.1",
    "TESSERA_TRANSPORT__KIND": "redis",
    "TESSERA_TRANSPORT__DETECTOR__LEASE_MS": "1500",
    "TESSERA_TRANSPORT__DETECTOR__HEARTBEAT_MS": "250",
    "TESSERA_TRANSPORT__DETECTOR__CLAIM_IDLE_MS": "500",
    "TESSERA_TRANSPORT__DETECTOR__IDLE_CLOSE_S": "3",
    "TESSERA_TRANSPORT__DETECTOR__CHECKPOINT_WINDOWS": "10",
    "TESSERA_TRANSPORT__DETECTOR__BLOCK_MS": "100",
    "TESSERA_TRANSPORT__BREAKER__BACKOFF_BASE_S": "0.05",
    "TESSERA_TRANSPORT__BREAKER__BACKOFF_CAP_S": "0.5",
    "TESSERA_TRANSPORT__REDIS__SOCKET_TIMEOUT_S": "2",
    "TESSERA_TRANSPORT__REDIS__CONNECT_TIMEOUT_S": "1",
    "TESSERA_DAEMON__SHUTDOWN_GRACE_S": "5",
}


def make_cfg(url: str, **env: str) -> Config:
    return load_config(None, {**SIM, "TESSERA_TRANSPORT__REDIS__URL": url, **env})


FiringRow = tuple[int, str, str, str]  # (window, id, state, contract JSON)


@dataclass(slots=True)
class Reference:
    windows: dict[str, dict[int, int]] = field(default_factory=dict)  # partition -> window -> frames
    firings: list[FiringRow] = field(default_factory=list)
    frames: int = 0

    def last_window(self, token: str) -> int:
        return max(self.windows[token])


def reference(cfg: Config, before: dict[str, list[Frame]] | None = None) -> Reference:
    """The uninterrupted, single-process result for the configured simulation (``before``: frames a
    partition receives ahead of the simulator's first)."""
    sim = ClusterSim(cfg.sim, scenario=cfg.sim.scenario, start_ts=cfg.sim.start_ts)
    router = Router(sim.topology)
    thr = fleet_threshold(cfg, router.n_shards)
    pipes: dict[str, Pipeline] = {}
    for token, part in router.partitions.items():
        pipes[token] = Pipeline(cfg, part.topology)
        pipes[token].threshold_log = thr
    ref = Reference({t: {} for t in pipes})
    ticks = int(cfg.sim.duration_s / cfg.sim.tick_s + 1e-9) + 1

    def record(token: str, windows: list[Any]) -> None:
        for w in windows:  # one window at a time: a firing is published as of the window that opened it
            r = pipes[token].process(w)
            ref.windows[token][r.index] = r.n_frames
            ref.firings.extend(
                (r.index, f.id, "open", json.dumps(open_view(f), separators=(",", ":"))) for f in r.opened
            )
            ref.firings.extend((r.index, f.id, "resolved", f.to_json()) for f in r.resolved)

    for token, fs in (before or {}).items():
        pipes[token].ingest(fs)
        ref.frames += len(fs)
    for _ in range(ticks):
        _ts, frames = sim.step()
        ref.frames += len(frames)
        by: dict[str, list[Any]] = defaultdict(list)
        for f in frames:
            by[router.route[f.shard][0]].append(f)
        for token, fs in by.items():
            pipes[token].ingest(fs)
            record(token, pipes[token].assembler.close_ready())
    for token, p in pipes.items():
        record(token, p.assembler.flush())
    ref.firings.sort()
    return ref


@dataclass(slots=True)
class Outputs:
    windows: dict[str, list[tuple[int, int, str]]]  # partition -> [(window, frames, worker)] in log order
    firings: list[FiringRow]
    committed: dict[str, int]


async def read_outputs(client: Any, cfg: Config, tokens: list[str]) -> Outputs:
    keys = Keys(cfg.transport.redis.prefix)
    windows: dict[str, list[tuple[int, int, str]]] = {}
    committed: dict[str, int] = {}
    for t in tokens:
        rows = await client.xrange(keys.windows(t), "-", "+")
        windows[t] = [(int(f[b"window"]), int(f[b"frames"]), f[b"worker"].decode()) for _i, f in rows]
        mark = await client.get(keys.committed(t))
        committed[t] = int(mark) if mark is not None else -1
    events = await read_firings(client, keys.firings)
    firings = sorted((e.window, e.id, e.state, json.dumps(e.firing, separators=(",", ":"))) for e in events)
    return Outputs(windows, firings, committed)


def assert_exact(out: Outputs, ref: Reference) -> None:
    """Zero windows lost, zero counted twice, same frames per window, identical firings."""
    for token, expected in ref.windows.items():
        got = [w for w, _n, _by in out.windows[token]]
        assert len(got) == len(set(got)), f"{token}: a window was committed twice"
        assert got == sorted(expected), f"{token}: committed windows differ from the reference"
        got_n = {w: n for w, n, _by in out.windows[token]}
        assert got_n == expected, f"{token}: frame counts differ: {sorted(set(got_n.items()) ^ set(expected.items()))}"
    assert [r[:3] for r in out.firings] == [r[:3] for r in ref.firings]
    assert out.firings == ref.firings


async def wait_for(pred: Callable[[], Any], timeout_s: float, what: str, step_s: float = 0.05) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        result = pred()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise TimeoutError(f"timed out after {timeout_s}s waiting for {what}")
        await asyncio.sleep(step_s)


@contextlib.asynccontextmanager
async def agent(cfg: Config) -> AsyncIterator[tuple[AgentRunning, asyncio.Task[int]]]:
    got: asyncio.Future[AgentRunning] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_agent(cfg, install_signals=False, on_running=got.set_result))
    running = await asyncio.wait_for(asyncio.shield(got), 30)
    try:
        yield running, task
    finally:
        running.stop.set()
        await asyncio.wait_for(task, 30)


@contextlib.asynccontextmanager
async def detector(cfg: Config) -> AsyncIterator[tuple[DetectorRunning, asyncio.Task[int]]]:
    got: asyncio.Future[DetectorRunning] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run_detector(cfg, install_signals=False, on_running=got.set_result))
    running = await asyncio.wait_for(asyncio.shield(got), 60)
    try:
        yield running, task
    finally:
        running.stop.set()
        await asyncio.wait_for(task, 30)


async def all_committed(client: Any, cfg: Config, ref: Reference) -> bool:
    keys = Keys(cfg.transport.redis.prefix)
    for t in ref.windows:
        mark = await client.get(keys.committed(t))
        if mark is None or int(mark) < ref.last_window(t):
            return False
    return True


def client_for(url: str) -> Any:
    """A plain redis-py client (typed Any: tests index raw replies freely)."""
    return aioredis.Redis.from_url(url)
