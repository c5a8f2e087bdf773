"""Group detectors on pooled residuals: common modes too weak to fire any single shard.

For every topology group of the configured kinds (host, NVLink domain, PSU, rack, cooling zone; groups
with identical member sets are kept once), per metric and window:

    z_g = sum of members' standardised innovations / sqrt(members observed)

A shift of mu (innovation units) shared by n members moves z_g by mu sqrt(n): a rack of 32 shards sees
a per-shard 0.5-sigma shift as 2.8 sigma. z_g is standardised by a predictable estimate of its own
variance (learnt from quiet windows, so shared noise inside a group does not inflate false alarms),
then fed to the same Family A e-detector as the shards, with the practical-significance margin scaled
to the group (delta x sqrt(n): a shift below delta_min per member stays null).

Parsimony: a crossing group is reported when all of its immediate sub-groups are crossing too (or it
has none), and no larger reported group contains it. A host fault makes its host cross but not its
rack's other hosts, so the host is reported, not the rack; a rack fault makes every PSU / host of the
rack cross, so the rack is reported, not each host.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tessera_daemon.detect.kernels import family_a_update
from tessera_daemon.model import Topology

KIND_ORDER = ("host", "nvlink_domain", "psu", "rack", "cooling_zone")
VAR_FLOOR = 0.25


@dataclass(slots=True)
class GroupResult:
    crossing: npt.NDArray[np.bool_]  # [G, M]
    selected: list[tuple[int, int]]  # (group, metric) pairs to report
    chosen: frozenset[tuple[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.chosen = frozenset(self.selected)


class GroupDetector:
    def __init__(self, topology: Topology, shard_row: dict[str, int], n_metrics: int, kinds: tuple[str, ...],
                 bets: npt.NDArray[np.float64], warmup: int, halflife: float) -> None:
        members = topology.members()
        cohort_size: dict[str, int] = {}
        for s in topology.shards:
            c = topology.cohort_of(s)
            cohort_size[c] = cohort_size.get(c, 0) + 1

        def peer_group(gid: str) -> bool:
            """Peer residuals are centred on the cohort median, so a group holding more than half of a
            cohort sums to about zero by construction: it cannot be compared with its peers."""
            inside: dict[str, int] = {}
            for s in members[gid]:
                c = topology.cohort_of(s)
                inside[c] = inside.get(c, 0) + 1
            return all(k <= cohort_size[c] / 2 for c, k in inside.items())

        seen: set[frozenset[str]] = set()
        order = {k: i for i, k in enumerate(KIND_ORDER)}
        groups = sorted((g for g in members if topology.nodes[g].kind in kinds and peer_group(g)),
                        key=lambda g: (len(members[g]), order.get(topology.nodes[g].kind, 99), g))
        self.ids: list[str] = []
        self.kinds: list[str] = []
        rows: list[npt.NDArray[np.int64]] = []
        for gid in groups:
            key = frozenset(members[gid])
            r = np.array(sorted(shard_row[s] for s in members[gid] if s in shard_row), np.int64)
            if key in seen or r.size < 2:
                continue
            seen.add(key)
            self.ids.append(gid)
            self.kinds.append(topology.nodes[gid].kind)
            rows.append(r)
        self.rows = rows
        self.index = {g: i for i, g in enumerate(self.ids)}
        self.flat = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        self.starts = np.cumsum([0] + [r.size for r in rows[:-1]]).astype(np.int64) if rows else np.zeros(0, np.int64)
        sets = [set(r.tolist()) for r in rows]
        self.children: list[list[int]] = []
        for i, si in enumerate(sets):
            subs = [j for j, sj in enumerate(sets) if j != i and sj < si]
            self.children.append([j for j in subs if not any(sets[j] < sets[k] for k in subs if k != j)])
        self.parents = [[j for j, sj in enumerate(sets) if j != i and si < sj] for i, si in enumerate(sets)]
        g, m, k = len(self.ids), n_metrics, len(bets)
        self.bets = bets
        self.warmup = warmup
        self.halflife = halflife
        self.var = np.ones((g, m))
        self.n = np.zeros((g, m), np.int64)
        self.w_state = np.zeros((g, m, 2 * k))
        self.run_start = np.zeros((g, m), np.int64)
        self.log_m = np.zeros((g, m))
        self.side = np.zeros((g, m), np.int64)
        self.last_z = np.full((g, m), np.nan)

    def __len__(self) -> int:
        return len(self.ids)

    def pooled(self, w: npt.NDArray[np.float64]) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Sum of observed member innovations and the count observed, per group and metric."""
        vals = w[self.flat]
        obs = ~np.isnan(vals)
        sums = np.add.reduceat(np.where(obs, vals, 0.0), self.starts, axis=0)
        counts = np.add.reduceat(obs.astype(np.float64), self.starts, axis=0)
        return sums, counts

    def update(self, w: npt.NDArray[np.float64], delta_min: npt.NDArray[np.float64], v_inflation: float, clip: float,
               window: int, thr: float, learn_below: float) -> GroupResult:
        g, m = self.var.shape
        if g == 0:
            return GroupResult(np.zeros((0, m), np.bool_), [])
        sums, counts = self.pooled(w)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(counts >= 2, sums / np.sqrt(counts), np.nan)
        warm = self.n >= self.warmup
        x = np.where(warm, z / np.sqrt(self.var), np.nan)
        # practical significance scales with the group (a shift below delta_min per member is null);
        # the members' offset-estimation errors average out in z_g, so that margin does not
        dmean = np.add.reduceat(np.nan_to_num(delta_min[self.flat]), self.starts, axis=0) / np.maximum(
            np.add.reduceat(np.ones_like(delta_min[self.flat]), self.starts, axis=0), 1.0)
        dg = dmean * np.sqrt(np.maximum(counts, 1.0)) + 1.0 / np.sqrt(np.maximum(self.n, 1))
        vg = v_inflation + 1.0 / np.sqrt(np.maximum(self.n, 1)) + dg * dg
        learn = ~np.isnan(z) & (self.log_m < learn_below) & (np.abs(np.nan_to_num(x)) < 4.0)
        family_a_update(x, dg, vg, self.bets, clip, window, self.w_state, self.run_start, self.log_m, self.side)
        if self.halflife > 0:
            # cumulative during the group's warm-up, then the slow exponential follow, as for shards:
            # a fault must not teach the group that its shift is noise
            slow = math.log(2.0) / self.halflife
            eta = np.where(self.n < self.warmup, 1.0 / (self.n + 1.0), slow)
            self.var = np.where(learn, np.maximum(self.var + eta * (np.nan_to_num(z) ** 2 - self.var), VAR_FLOOR),
                                self.var)
            self.n += learn
        self.last_z = z
        crossing = (self.log_m >= thr) & ~np.isnan(x)
        return GroupResult(crossing, self._select(crossing))

    def _select(self, crossing: npt.NDArray[np.bool_]) -> list[tuple[int, int]]:
        out: list[tuple[int, int]] = []
        side = self.side

        def complete(gi: int, j: int) -> bool:  # every sub-group crosses, in the same direction
            return all(crossing[c, j] and side[c, j] == side[gi, j] for c in self.children[gi])

        for gi, j in zip(*np.nonzero(crossing), strict=True):
            if not complete(gi, j):
                continue
            if any(crossing[p, j] and side[p, j] == side[gi, j] and complete(p, j) for p in self.parents[gi]):
                continue  # a larger group explains it
            out.append((int(gi), int(j)))
        return out

    def rearm(self, gi: int, j: int) -> None:
        self.w_state[gi, j] = 0.0
        self.log_m[gi, j] = 0.0
