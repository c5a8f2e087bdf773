"""The simulated cluster: null model + fault plan + counters, one vectorised tick at a time."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera_daemon.config import SimConfig
from tessera_daemon.model import CONTRACT_VERSION, ClusterEvent, Frame, FrameBlock, Topology
from tessera_daemon.sim.injection import FaultPlan, Injection
from tessera_daemon.sim.metrics import (
    COUNTER_WRAP,
    COUNTERS,
    ECC,
    HI,
    LO,
    METRICS,
    N_CHANNELS,
    NVLINK,
    NVLINK_BYTES_PER_GB,
    ROUND_SCALE,
    STEP,
)
from tessera_daemon.sim.null import STATIC_STREAM, NullModel, stream
from tessera_daemon.sim.scenarios import Scenario, get_scenario
from tessera_daemon.sim.targeting import resolve_faults
from tessera_daemon.sim.topology import build_layout

__all__ = ["COUNTERS", "DEFAULT_START_TS", "METRICS", "ClusterSim", "SimTick"]

DEFAULT_START_TS = 1_767_225_600.0
"""Start time used when ``cfg.start_ts`` is 0 (2026-01-01T00:00:00Z), so output is deterministic."""

WRAP_FRACTION = 0.03
"""Share of shards (at least one) whose NVLink counter starts 20-300 ticks before its 2**64 wrap."""

_COUNTER_SET = frozenset(COUNTERS)


@dataclass(frozen=True, slots=True)
class SimTick:
    """One tick of the whole cluster, as arrays (rows: ``ClusterSim.shard_ids``)."""

    ts: float
    values: np.ndarray  # float64[n_shards, n_metrics]; NaN where a shard did not report or is lost
    reporting: np.ndarray  # bool[n_shards]: a frame exists (sparse shards: False)
    lost: np.ndarray  # bool[n_shards]: the frame says lost=True
    xid: dict[int, tuple[int, ...]]  # row -> XID codes that occurred in this tick


class ClusterSim:
    """Deterministic simulated GPU cluster with scripted faults and ground-truth labels."""

    def __init__(
        self,
        cfg: SimConfig,
        scenario: str | Scenario = "clean",
        seed: int | None = None,
        start_ts: float | None = None,
    ) -> None:
        self.cfg = cfg
        self.scenario = get_scenario(scenario) if isinstance(scenario, str) else scenario
        self.seed = cfg.seed if seed is None else seed
        if start_ts is None:
            start_ts = cfg.start_ts if cfg.start_ts > 0 else DEFAULT_START_TS
        self.start_ts = float(start_ts)
        self.tick_s = cfg.tick_s
        layout = build_layout(cfg, self.seed)
        self.layout = layout
        self.topology = Topology(layout.nodes, layout.edges)
        self.shard_ids: list[str] = list(layout.shard_ids)
        self.metric_names: list[str] = list(METRICS)
        n = len(self.shard_ids)
        self._null = NullModel(cfg, layout.cohort_of, len(layout.cohort_ids), self.seed)
        self.injections: list[Injection] = resolve_faults(self.scenario, layout, self.seed, self.start_ts, self.tick_s)
        self._plan = FaultPlan(self.injections, n)
        self._nvlink = _initial_counters(self.seed, n, self.tick_s)
        self._ecc = np.zeros(n)
        self.tick = 0

    # ----------------------------------------------------------------------------------- stepping

    def ts_of(self, tick: int) -> float:
        return self.start_ts + tick * self.tick_s

    def step_arrays(self) -> SimTick:
        """Advance one tick and return every shard's metrics as arrays."""
        t = self.tick
        ts = self.ts_of(t)
        ch = self._null.advance(ts)
        self._plan.shift(t, ch)
        status = self._plan.status(t)
        values = np.empty((len(self.shard_ids), len(METRICS)))
        gauges = values[:, :N_CHANNELS]
        np.clip(ch, LO, HI, out=gauges)
        gauges[:, STEP] = np.exp(ch[:, STEP])
        np.round(gauges * ROUND_SCALE, out=gauges)
        gauges /= ROUND_SCALE
        increment = np.maximum(ch[:, NVLINK], 0.0) * (NVLINK_BYTES_PER_GB * self.tick_s)
        self._nvlink += np.rint(increment).astype(np.uint64)  # uint64 arithmetic wraps at 2**64
        values[:, NVLINK] = self._nvlink
        for rows, inc in status.dbe:
            self._ecc[rows] += inc
        values[:, ECC] = self._ecc
        values[status.lost | ~status.reporting] = np.nan
        self.tick = t + 1
        return SimTick(ts, values, status.reporting, status.lost, status.xid)

    def step_block(self) -> tuple[float, FrameBlock]:
        """Advance one tick; the frames of the shards that reported (shard order) as one block of arrays,
        equal frame for frame to what :meth:`step` gives, without building a :class:`Frame`."""
        tick = self.step_arrays()
        if tick.reporting.all():
            shards, values = self.shard_ids, tick.values
            pos: dict[int, int] | None = None
            lost_rows = np.flatnonzero(tick.lost)
        else:
            rows = np.flatnonzero(tick.reporting)
            shards, values = [self.shard_ids[i] for i in rows.tolist()], tick.values[rows]
            pos = {r: k for k, r in enumerate(rows.tolist())}
            lost_rows = np.flatnonzero(tick.lost & tick.reporting)
        if pos is None:
            xids = dict(tick.xid)
            lost = set(lost_rows.tolist())
        else:
            xids = {pos[i]: x for i, x in tick.xid.items() if i in pos}
            lost = {pos[i] for i in lost_rows.tolist()}
        n = len(shards)
        ts = np.full(n, tick.ts)
        return tick.ts, FrameBlock(shards, ts, self.metric_names, values, None, _COUNTER_SET, xids, lost)

    def step(self) -> tuple[float, list[Frame]]:
        """Advance one tick; the frames of the shards that reported (shard order)."""
        tick = self.step_arrays()
        names = self.metric_names
        rows = tick.values.tolist()
        lost_metrics: dict[str, float | None] = dict.fromkeys(names)
        frames: list[Frame] = []
        reporting = tick.reporting.tolist()
        lost = tick.lost.tolist()
        for i, sid in enumerate(self.shard_ids):
            if not reporting[i]:
                continue
            xid = tick.xid.get(i, ())
            if lost[i]:
                frames.append(Frame(tick.ts, sid, lost_metrics, _COUNTER_SET, xid, lost=True))
            else:
                frames.append(Frame(tick.ts, sid, dict(zip(names, rows[i], strict=True)), _COUNTER_SET, xid))
        return tick.ts, frames

    # ------------------------------------------------------------------------------ ground truth

    @property
    def events(self) -> list[ClusterEvent]:
        """Announced events (firmware pushes) of the scenario, in time order."""
        evs = [inj.event for inj in self.injections if inj.event is not None]
        return sorted(evs, key=lambda e: (e.ts, e.id))

    @property
    def regime_steps(self) -> list[tuple[float, str, float]]:
        """Null-model regime steps so far: (ts, cohort id, step in sigmas); not faults."""
        ids = self.layout.cohort_ids
        return [(self.ts_of(t), ids[c], s) for t, c, s in self._null.regime_steps]

    def labels(self, until_ts: float | None = None) -> dict[str, Any]:
        """Ground truth (labels.json); ``until_ts``: only faults starting before this time."""
        faults = [inj.label(self.start_ts, self.tick_s) for inj in self.injections]
        if until_ts is not None:
            faults = [f for f in faults if f["start_ts"] < until_ts]
        return {
            "v": CONTRACT_VERSION,
            "scenario": self.scenario.name,
            "seed": self.seed,
            "tick_s": self.tick_s,
            "start_ts": self.start_ts,
            "faults": faults,
        }


def _initial_counters(seed: int, n: int, tick_s: float) -> np.ndarray:
    """NVLink byte counters: most start anywhere in [0, 2**62); a few start just below 2**64."""
    rng = stream(seed, STATIC_STREAM + 100)
    start = rng.integers(0, 2**62, size=n, dtype=np.uint64)
    k = max(1, math.floor(WRAP_FRACTION * n))
    wrap_rows = rng.choice(n, size=k, replace=False)
    ticks_to_wrap = rng.uniform(20.0, 300.0, size=k)
    per_tick = 40.0 * NVLINK_BYTES_PER_GB * tick_s
    start[wrap_rows] = np.array([COUNTER_WRAP - int(t * per_tick) for t in ticks_to_wrap.tolist()], dtype=np.uint64)
    return start
