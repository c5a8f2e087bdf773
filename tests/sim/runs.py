"""Helpers shared by the simulator tests: run a sim for some ticks and stack its arrays."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from tessera_daemon.config import SimConfig
from tessera_daemon.sim import METRICS, ClusterSim, Scenario

SMALL = SimConfig(zones=2, racks_per_zone=2, hosts_per_rack=4, shards_per_host=8, cohorts=2)
"""128 shards: 2 zones x 2 racks x 4 hosts x 8 GPUs, 2 jobs."""


@dataclass
class Run:
    sim: ClusterSim
    values: np.ndarray  # [ticks, shards, metrics]
    reporting: np.ndarray  # [ticks, shards]
    lost: np.ndarray  # [ticks, shards]
    xid: list[dict[int, tuple[int, ...]]]
    ts: np.ndarray  # [ticks]

    def col(self, metric: str) -> int:
        return METRICS.index(metric)

    def rows(self, shards: list[str]) -> np.ndarray:
        index = {s: i for i, s in enumerate(self.sim.shard_ids)}
        return np.array(sorted(index[s] for s in shards), dtype=np.intp)


def run(cfg: SimConfig = SMALL, scenario: str | Scenario = "clean", ticks: int = 200, seed: int | None = None) -> Run:
    sim = ClusterSim(cfg, scenario, seed=seed)
    vals, rep, lost, xid, ts = [], [], [], [], []
    for _ in range(ticks):
        t = sim.step_arrays()
        vals.append(t.values)
        rep.append(t.reporting)
        lost.append(t.lost)
        xid.append(t.xid)
        ts.append(t.ts)
    return Run(sim, np.stack(vals), np.stack(rep), np.stack(lost), xid, np.array(ts))


def differs(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise 'not equal', treating NaN == NaN."""
    same: np.ndarray = (a == b) | (np.isnan(a) & np.isnan(b))
    return ~same
