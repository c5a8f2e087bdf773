"""Resolved faults (:class:`Injection`) and their per-tick application (:class:`FaultPlan`).

An injection is a :class:`FaultSpec` bound to concrete shard rows and ticks. Statistical faults add
``magnitude * coefficient * sigma[channel] * profile(t)`` to channels, where the profile ramps
linearly from ``1/ramp`` to 1 over ``ramp`` ticks (a step when ramp is 0) and is 0 outside
``[start, end)``. Hard faults and sparse change what is reported, not the channels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from tessera_daemon.model import ClusterEvent
from tessera_daemon.sim.metrics import SIGMA
from tessera_daemon.sim.scenarios import FaultSpec

XID_FALLEN_OFF_BUS = 79


@dataclass(frozen=True, slots=True)
class Injection:
    """One fault of a run, bound to shard rows and ticks (``end`` exclusive, None: never ends)."""

    id: str
    spec: FaultSpec
    scope: str
    target: str
    rows: np.ndarray
    shards: tuple[str, ...]
    start: int
    end: int | None
    row_start: np.ndarray  # first affected tick per row (a firmware rollout staggers hosts)
    effects: tuple[tuple[int, float], ...]  # (channel, coefficient per unit of magnitude)
    metric: str | None
    metrics: tuple[str, ...]
    dbe_increment: int = 0
    event: ClusterEvent | None = None

    @property
    def kind(self) -> str:
        return self.spec.kind

    def active(self, tick: int) -> bool:
        return tick >= self.start and (self.end is None or tick < self.end)

    def label(self, start_ts: float, tick_s: float) -> dict[str, Any]:
        """The ground-truth entry of labels.json for this fault."""
        return {
            "id": self.id,
            "kind": self.kind,
            "scope": self.scope,
            "target": self.target,
            "shards": list(self.shards),
            "metric": self.metric,
            "metrics": list(self.metrics),
            "start_ts": start_ts + self.start * tick_s,
            "end_ts": None if self.end is None else start_ts + self.end * tick_s,
            "magnitude": None if self.spec.hard or self.kind == "sparse" else self.spec.magnitude,
            "hard": self.spec.hard,
            "benign": self.spec.benign,
            "event_id": None if self.event is None else self.event.id,
        }


@dataclass(frozen=True, slots=True)
class TickStatus:
    """What the hard faults and sparse do to one tick's reports."""

    reporting: np.ndarray  # bool[n]: the shard produces a frame
    lost: np.ndarray  # bool[n]: the frame says lost=True (metrics all None)
    xid: dict[int, tuple[int, ...]]  # row -> XID codes of this tick
    dbe: list[tuple[np.ndarray, int]]  # (rows, increment) of ecc_dbe this tick


class FaultPlan:
    """Applies a run's injections tick by tick (a Python loop over faults, arrays within each)."""

    def __init__(self, injections: list[Injection], n_rows: int) -> None:
        self.injections = injections
        self._n = n_rows
        self._statistical = [inj for inj in injections if inj.effects]
        self._reporting = [inj for inj in injections if not inj.effects]

    def shift(self, tick: int, channels: np.ndarray) -> None:
        """Add the statistical faults' deltas to ``channels`` ``[n_rows, n_channels]`` in place."""
        for inj in self._statistical:
            if not inj.active(tick):
                continue
            ramp = inj.spec.ramp
            elapsed = tick - inj.row_start + 1
            profile = np.clip(elapsed / ramp, 0.0, 1.0) if ramp > 0 else (elapsed > 0).astype(np.float64)
            for ch, coef in inj.effects:
                channels[inj.rows, ch] += (inj.spec.magnitude * coef * SIGMA[ch]) * profile

    def status(self, tick: int) -> TickStatus:
        reporting = np.ones(self._n, dtype=bool)
        lost = np.zeros(self._n, dtype=bool)
        xid: dict[int, tuple[int, ...]] = {}
        dbe: list[tuple[np.ndarray, int]] = []
        for inj in self._reporting:
            if not inj.active(tick):
                continue
            kind = inj.kind
            if kind == "sparse":
                reporting[inj.rows] = False
            elif kind == "device_lost":
                lost[inj.rows] = True
            elif kind == "ecc_dbe":
                if tick == inj.start:
                    dbe.append((inj.rows, inj.dbe_increment))
            elif kind == "xid79":
                if tick == inj.start:
                    for r in inj.rows.tolist():
                        xid[r] = (*xid.get(r, ()), XID_FALLEN_OFF_BUS)
                else:
                    lost[inj.rows] = True
        return TickStatus(reporting, lost, xid, dbe)
