"""The fleet map's data: the topology laid out by zone, rack and host, and a state code per shard.

State codes (one digit per shard per selector in ``/v1/fleet``)::

    0 warming   1 healthy   2 evidence building (log-evidence >= BUILDING_FRACTION x threshold)
    3 firing    4 frozen by an announced event    5 stale or lost    6 no data this window

Selectors: ``any`` (the worst state over every metric and detector), one per metric (Family A on
that metric), and ``C``, ``D``, ``E`` for the families beside A.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from tessera_daemon.engine.snapshot import PipelineSnapshot
from tessera_daemon.model import Topology

WARMING, HEALTHY, BUILDING, FIRING, FROZEN, STALE, NODATA = range(7)
STATE_NAMES = ("warming", "healthy", "evidence building", "firing", "frozen by event", "stale or lost", "no data")
# precedence when several metrics / detectors are combined ("any"): firing first, healthy last
_RANK = np.array([1, 0, 3, 6, 4, 5, 2], np.int8)
_BY_RANK = np.argsort(_RANK).astype(np.uint8)
BUILDING_FRACTION = 0.3


# ------------------------------------------------------------------------------------------ layout


@dataclass(slots=True)
class Layout:
    """The fleet map's arrangement: zones > racks > hosts > shard rows, and where each node sits."""

    key: str
    shards: list[str]
    zones: list[dict[str, Any]]
    where: dict[str, dict[str, str]]  # node id -> {"zone", "rack", "host"} (what it lies in)

    def to_obj(self, topology: Topology) -> dict[str, Any]:
        kinds: dict[str, int] = {}
        for n in topology.nodes.values():
            kinds[n.kind] = kinds.get(n.kind, 0) + 1
        return {
            "v": 1,
            "key": self.key,
            "shards": self.shards,
            "zones": self.zones,
            "counts": kinds,
            "cohorts": sorted({topology.cohort_of(s) for s in self.shards}),
        }


def build_layout(topology: Topology, shards: list[str]) -> Layout:
    nodes = topology.nodes
    where: dict[str, dict[str, str]] = {}
    tree: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
    kinds_up: dict[str, dict[str, str]] = {}  # parent id -> {kind: nearest ancestor of that kind}

    def chain(parent: str | None) -> dict[str, str]:
        if parent is None:
            return {}
        got = kinds_up.get(parent)
        if got is None:
            pn = nodes[parent]
            got = {**chain(pn.parent), pn.kind: parent}
            kinds_up[parent] = got
        return got

    for idx, s in enumerate(shards):
        node = nodes[s]
        up = chain(node.parent)
        labels = node.labels
        host = up.get("host") or labels.get("host") or s
        rack = up.get("rack") or labels.get("rack") or "-"
        zone = up.get("cooling_zone") or labels.get("cooling_zone") or "-"
        loc = {"zone": zone, "rack": rack, "host": host}
        where[s] = loc
        for nid in (host, rack, zone, labels.get("psu"), labels.get("nvlink_domain")):
            if nid and nid not in where:
                where[nid] = loc
        h = (
            tree.setdefault(zone, {})
            .setdefault(rack, {})
            .setdefault(
                host, {"id": host, "psu": labels.get("psu"), "nvlink_domain": labels.get("nvlink_domain"), "shards": []}
            )
        )
        h["shards"].append(idx)
    zones = [
        {
            "id": z,
            "racks": [{"id": r, "hosts": [hosts[h] for h in sorted(hosts)]} for r, hosts in sorted(racks.items())],
        }
        for z, racks in sorted(tree.items())
    ]
    text = "\n".join(f"{s}:{where[s]['host']}:{where[s]['rack']}:{where[s]['zone']}" for s in shards)
    key = hashlib.sha1(text.encode(), usedforsecurity=False).hexdigest()[:16]
    return Layout(key, list(shards), zones, where)


# ------------------------------------------------------------------------------------------ state codes


def selectors(p: PipelineSnapshot) -> list[str]:
    fam = [f for f in ("C", "D", "E") if f in p.cfg.detector.families]
    return ["any", *p.metrics, *fam]


def fleet_codes(p: PipelineSnapshot) -> dict[str, npt.NDArray[np.uint8]]:
    """State code per shard (pipeline row order) for every selector, from the last window (array code;
    Python loops only over active firings and active events)."""
    t = p.table
    s, m = len(p.shards), len(p.metrics)
    sels = selectors(p)
    if t.window < 0 or t.log_m.shape != (s, m):
        return {k: np.zeros(s, np.uint8) for k in sels}
    thr = p.threshold_log
    warm = t.warm
    with np.errstate(invalid="ignore"):
        building = warm & (t.log_m >= BUILDING_FRACTION * thr)
    base = np.where(warm, HEALTHY, WARMING).astype(np.uint8)
    base[building] = BUILDING
    base[warm & np.isnan(t.last_x)] = NODATA
    stale = t.stale.copy()
    if t.lost:
        stale[[p.row[x] for x in t.lost if x in p.row]] = True
    frozen = np.zeros(s, np.bool_)
    frozen_rows = [p.row[x] for x in p.events.frozen_now if x in p.row]
    if frozen_rows:
        frozen[frozen_rows] = True
    firing = {k: np.zeros(s, np.bool_) for k in sels}
    for f in p.active:
        rows = [p.row[x] for x in f.members if x in p.row]
        if f.target in p.row:
            rows.append(p.row[f.target])
        if not rows:
            continue
        if f.detector.startswith("rule:"):
            for k in sels:
                firing[k][rows] = True
            continue
        firing["any"][rows] = True
        sel = f.metric if f.detector == "A" else f.detector
        if sel in firing:
            firing[sel][rows] = True
    out: dict[str, npt.NDArray[np.uint8]] = {}
    fam_lm = p.family_log_m
    any_warm = warm.any(axis=1)
    for k in sels:
        if k in p.metrics:
            code = base[:, p.metrics.index(k)].copy()
        elif k == "any":
            code = _BY_RANK[_RANK[base].max(axis=1)] if m else np.zeros(s, np.uint8)
        else:
            code = np.where(any_warm, HEALTHY, WARMING).astype(np.uint8)
            lm = fam_lm.get(k)
            if lm is not None:
                with np.errstate(invalid="ignore"):
                    code[any_warm & (lm >= BUILDING_FRACTION * thr)] = BUILDING
        code[frozen] = FROZEN
        code[stale] = STALE
        code[firing[k]] = FIRING
        out[k] = code
    return out


def codes_str(code: npt.NDArray[np.uint8]) -> str:
    return (code + ord("0")).astype(np.uint8).tobytes().decode("ascii")
