"""Binding a scenario's fault specs to concrete targets, shards, ticks and announced events.

Untargeted faults pick their target with a generator seeded from the run seed alone, so the same
(config, scenario, seed) always picks the same targets. Broader faults are placed first (cohort,
cooling zone, rack, PSU, host, then scattered and single shards), each avoiding shards already taken
by an earlier non-benign fault; a fault falls back to overlapping only when the cluster is too small
to keep it apart. Benign faults avoid taken shards when they can but reserve none.
"""

from __future__ import annotations

import numpy as np

from tessera_daemon.errors import ConfigError
from tessera_daemon.model import ClusterEvent
from tessera_daemon.sim.injection import Injection
from tessera_daemon.sim.metrics import (
    CHANNEL_OF,
    CLOCK,
    GAUGE_METRICS,
    NVLINK,
    POWER,
    REGIME,
    STEP,
    TEMP,
    UTIL,
)
from tessera_daemon.sim.null import TARGET_STREAM, stream
from tessera_daemon.sim.scenarios import DEFAULT_SDC_METRIC, FaultSpec, Scenario
from tessera_daemon.sim.topology import FLEET, Layout

SCOPE_KINDS: dict[str, tuple[str, ...]] = {
    "sdc_drift": ("shard",),
    "straggler": ("shard",),
    "thermal_rack": ("rack", "cooling_zone"),
    "psu_cap": ("psu",),
    "nvlink_degrade": ("host", "nvlink_domain"),
    "fleet_regime_change": ("cohort",),
    "firmware_push": ("rack", "host", "cooling_zone", "fleet"),
    "xid79": ("shard",),
    "ecc_dbe": ("shard",),
    "device_lost": ("shard",),
    "sparse": ("fleet", "host", "rack", "shard"),
}
"""Node kinds a fault may target; the first is where an untargeted fault is placed."""

_BREADTH = ("cohort", "cooling_zone", "rack", "psu", "host", "nvlink_domain", "fleet", "shard")

_REGIME_EFFECTS = tuple((ch, float(w)) for ch, w in enumerate(REGIME.tolist()) if w != 0.0)
_EFFECTS: dict[str, tuple[tuple[int, float], ...]] = {
    "straggler": ((STEP, 1.0), (UTIL, -0.3)),
    "thermal_rack": ((TEMP, 1.0),),
    "psu_cap": ((POWER, -1.0), (CLOCK, -1.0)),
    "nvlink_degrade": ((NVLINK, -1.0), (STEP, 0.5)),
    "fleet_regime_change": _REGIME_EFFECTS,
    "firmware_push": ((CLOCK, 1.0),),
}
_PRIMARY: dict[str, str | None] = {
    "straggler": "step_time_ms",
    "thermal_rack": "temp_c",
    "psu_cap": "power_w",
    "nvlink_degrade": "nvlink_tx_bytes",
    "fleet_regime_change": "step_time_ms",
    "firmware_push": "sm_clock_mhz",
    "ecc_dbe": "ecc_dbe",
}


def _effects(spec: FaultSpec) -> tuple[tuple[int, float], ...]:
    if spec.kind == "sdc_drift":
        return ((CHANNEL_OF[spec.metric or DEFAULT_SDC_METRIC], 1.0),)
    return _EFFECTS.get(spec.kind, ())


def _primary_metric(spec: FaultSpec) -> str | None:
    if spec.kind == "sdc_drift":
        return spec.metric or DEFAULT_SDC_METRIC
    return _PRIMARY.get(spec.kind)


def _affected_metrics(spec: FaultSpec, effects: tuple[tuple[int, float], ...]) -> tuple[str, ...]:
    if effects:
        return tuple(sorted(GAUGE_METRICS[ch] for ch, _ in effects))
    return ("ecc_dbe",) if spec.kind == "ecc_dbe" else ()


class _Placer:
    def __init__(self, layout: Layout, seed: int) -> None:
        self.layout = layout
        self.rng = stream(seed, TARGET_STREAM)
        self.used = np.zeros(len(layout.shard_ids), dtype=bool)

    def place(self, spec: FaultSpec) -> tuple[str, str, np.ndarray]:
        """(scope kind, target id, shard rows) for one spec."""
        allowed = SCOPE_KINDS[spec.kind]
        if spec.target is not None:
            kind = self.layout.kind_of.get(spec.target)
            if kind is None:
                raise ConfigError("sim.scenario", f"{spec.kind}: unknown target node {spec.target!r}")
            if kind not in allowed:
                raise ConfigError(
                    "sim.scenario", f"{spec.kind}: target {spec.target!r} is a {kind}; expected {allowed}"
                )
            target = spec.target
        else:
            kind, target = allowed[0], ""
        if kind == "fleet" and spec.kind == "sparse":
            rows = self._scatter(spec.fraction)
        elif target:
            rows = self.layout.rows_of[target]
        else:
            target = self._pick_group(kind)
            rows = self.layout.rows_of[target]
        if kind == "fleet":
            target = FLEET
        if not spec.benign:
            self.used[rows] = True
        return kind, target, rows

    def _pick_group(self, kind: str) -> str:
        candidates = self.layout.ids_of_kind(kind)
        free = [c for c in candidates if not self.used[self.layout.rows_of[c]].any()]
        pool = free or candidates
        return pool[int(self.rng.integers(len(pool)))]

    def _scatter(self, fraction: float) -> np.ndarray:
        n = len(self.layout.shard_ids)
        k = max(1, round(fraction * n))
        free = np.flatnonzero(~self.used)
        pool = free if len(free) >= k else np.arange(n)
        return np.sort(self.rng.choice(pool, size=k, replace=False)).astype(np.intp)


def _order_key(item: tuple[int, FaultSpec]) -> tuple[int, int, int, int]:
    """Explicit targets first, then non-benign faults broadest first, then benign ones."""
    i, spec = item
    breadth = _BREADTH.index(SCOPE_KINDS[spec.kind][0])
    return (0 if spec.target is not None else 1, int(spec.benign), breadth, i)


def resolve_faults(scenario: Scenario, layout: Layout, seed: int, start_ts: float, tick_s: float) -> list[Injection]:
    """Bind every fault of ``scenario`` to the cluster; the result is in scenario order."""
    placer = _Placer(layout, seed)
    out: dict[int, Injection] = {}
    for i, spec in sorted(enumerate(scenario.faults), key=_order_key):
        scope, target, rows = placer.place(spec)
        fid = f"f{i}-{spec.kind}"
        start, dur = spec.start_tick, spec.duration_ticks
        row_start = np.full(len(rows), start, dtype=np.int64)
        end = None if dur is None else start + dur
        dbe_increment = 0
        event = None
        if spec.kind == "xid79":
            end = None if dur is None else start + 1 + dur
        elif spec.kind == "ecc_dbe":
            end = start + 1
            dbe_increment = int(placer.rng.integers(1, 4))
        elif spec.kind == "firmware_push":
            hosts = layout.hosts_under(target)
            if dur is not None:
                order = placer.rng.permutation(len(hosts))
                host_start = {h: start + (int(order[j]) * dur) // len(hosts) for j, h in enumerate(hosts)}
                host_ids = [layout.host_ids[h] for h in layout.host_of[rows].tolist()]
                row_start = np.array([host_start[h] for h in host_ids], dtype=np.int64)
            event = ClusterEvent(
                id=f"evt-{fid}",
                kind="firmware_push",
                ts=start_ts + start * tick_s,
                scope=tuple(hosts),
                end_ts=None if dur is None else start_ts + (start + dur) * tick_s,
            )
            end = None  # the new firmware stays: its clocks persist after the rollout window
        effects = _effects(spec)
        out[i] = Injection(
            id=fid,
            spec=spec,
            scope=scope,
            target=target,
            rows=rows,
            shards=tuple(layout.shard_ids[r] for r in rows.tolist()),
            start=start,
            end=end,
            row_start=row_start,
            effects=effects,
            metric=_primary_metric(spec),
            metrics=_affected_metrics(spec, effects),
            dbe_increment=dbe_increment,
            event=event,
        )
    return [out[i] for i in range(len(scenario.faults))]
