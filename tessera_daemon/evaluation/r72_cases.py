"""R72's cases: the six failure types, each re-generated bit-exactly and scored ours beside Tessera's
own rules (the matrix itself, its reproduction checks and report are in ``r72.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tessera_daemon.config import Config
from tessera_daemon.engine.attribution import attribute
from tessera_daemon.engine.ebh import e_bh
from tessera_daemon.engine.events import EventBook, from_deploy_event
from tessera_daemon.evaluation.ours import OurSettings, first_crossing, oracle_ville
from tessera_daemon.evaluation.tessera_bettor import (
    TesseraFamilyA,
    TesseraFleetTracker,
    tessera_combine_average,
    tessera_e_bh,
)
from tessera_daemon.evaluation.tessera_lcg import linear_ramp, window_major_draws
from tessera_daemon.model import Firing, Topology, TopoNode

PREFIX = 0x71C00
SHARDS = 10
WINDOWS = 30
ALPHA = 5e-3
FLEET_ALPHA = 0.05
LOG_THR = math.log(1.0 / ALPHA)
LOG_FLEET_THR = math.log(1.0 / FLEET_ALPHA)
TYPE_NAMES = (
    "sdc-drift",
    "common-mode-rack",
    "event-conditional",
    "fdr-multiple-testing",
    "hierarchical-evalue",
    "topology-spanning-common-mode",
)
TYPE1_TARGETS = (1, 3, 4, 7)
TYPE1_TUPLES = ((0.20, 10), (0.30, 8), (0.40, 6), (0.50, 5), (0.70, 4))
TYPE2_SETS = (("rack-A", (0, 1, 2)), ("rack-A", (0, 1)), ("rack-B", (3, 4, 5)), ("rack-B", (3, 4)))
TYPE3_CLASSES = ("firmware_push", "model_redeploy", "config_change", "env_change")
TYPE3_OFFSETS = ((10, 20), (50, 100), (100, 150), (200, 250), (290, 295))
TYPE3_BASE_TS = 1_700_000_000
TYPE4_COUNTS = (1, 3, 5, 8)
TYPE4_Q = (0.05, 0.10, 0.15, 0.20, 0.25)
TYPE4_DRIFT, TYPE4_START = 0.45, 4
TYPE5_N = (5, 8, 10, 15)
TYPE5_TUPLES = ((0.10, 8), (0.13, 7), (0.16, 6), (0.20, 5), (0.25, 5))
TYPE6_SETS = ((0, 1, 3, 4), (0, 1, 2, 3, 4, 5), (0, 3), (0, 1, 2, 3))
TYPE6_HOPS = (1, 2, 3, 4, 5)
TESSERA_ATTRIBUTION_AFTER_AUDIT = 94  # tessera.md 8.3: type 5 attribution made "not measured"


def sid(i: int) -> str:
    return f"shard-{i:02d}"


@dataclass(slots=True)
class Outcome:
    detected: bool
    correct: bool | None
    window: int | None = None
    fp: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    def to_obj(self) -> dict[str, Any]:
        return {
            "detected": self.detected,
            "attribution_correct": self.correct,
            "detection_window": self.window,
            "false_positive_count": self.fp,
            **self.extra,
        }


@dataclass(slots=True)
class Row:
    type_idx: int
    idx: int
    params: dict[str, Any]
    ours: Outcome
    tessera: dict[str, Any] | None  # the published observation
    rerun: dict[str, Any] | None = None  # Tessera's rule re-run on our re-generated inputs

    def to_obj(self) -> dict[str, Any]:
        return {
            "type": TYPE_NAMES[self.type_idx],
            "variation": self.idx,
            "params": self.params,
            "ours": self.ours.to_obj(),
            "tessera_published": self.tessera,
            "tessera_rerun": self.rerun,
        }


def _first(hit_row: object) -> int | None:
    idx = np.flatnonzero(np.asarray(hit_row))
    return int(idx[0]) if idx.size else None


# ---------------------------------------------------------------------------------- topologies


def two_rack_topology(with_cz: bool) -> Topology:
    nodes = [TopoNode("cz-1", "cooling_zone", None, {})] if with_cz else []
    parent = "cz-1" if with_cz else None
    nodes += [TopoNode("rack-A", "rack", parent, {}), TopoNode("rack-B", "rack", parent, {})]
    nodes += [TopoNode(sid(i), "shard", "rack-A" if i < 3 else "rack-B", {}) for i in range(6)]
    return Topology(nodes)


def attribute_set(fired: list[str], topology: Topology, cfg: Config) -> list[tuple[str, tuple[str, ...]]]:
    d = cfg.detector
    cands = attribute(fired, topology, p0=d.attribution_p0, alpha=d.attribution_alpha, kinds=d.attribution_kinds)
    return [(c.node, c.members) for c in cands]


# ---------------------------------------------------------------------------------- per type


def type1_rows(s: OurSettings, published: list[dict[str, Any]] | None) -> list[Row]:
    seeds = [PREFIX ^ v for v in range(20)]
    x = window_major_draws(seeds, WINDOWS, SHARDS)  # [20, W, N]
    targets = []
    for v in range(20):
        t = TYPE1_TARGETS[v // 5]
        drift, start = TYPE1_TUPLES[v % 5]
        x[v, :, t] += linear_ramp(WINDOWS, drift, start)
        targets.append(t)
    tess = TesseraFamilyA(20 * SHARDS)
    m_hist = np.empty((20, WINDOWS, SHARDS))
    for w in range(WINDOWS):
        m_hist[:, w, :] = tess.update(x[:, w, :].reshape(-1)).reshape(20, SHARDS)
    ours = oracle_ville(np.ascontiguousarray(x.transpose(0, 2, 1).reshape(20 * SHARDS, WINDOWS)), s)
    ours = ours.reshape(20, SHARDS, WINDOWS)
    rows = []
    for v in range(20):
        t = targets[v]
        drift, start = TYPE1_TUPLES[v % 5]
        fired_t = [i for i in range(SHARDS) if m_hist[v, -1, i] >= 1 / ALPHA]
        rerun = {
            "detected": t in fired_t,
            "detection_window_index": _first(m_hist[v, :, t] >= 1 / ALPHA),
            "firing_shards": [sid(i) for i in fired_t],
            "target_M": float(m_hist[v, -1, t]),
        }
        crossed = [i for i in range(SHARDS) if (ours[v, i] >= LOG_THR).any()]
        det = t in crossed
        out = Outcome(
            det,
            (crossed == [t]) if det else None,
            _first(ours[v, t] >= LOG_THR),
            len([i for i in crossed if i != t]),
            {"target_terminal_log_m": float(ours[v, t, -1]), "crossed": [sid(i) for i in crossed]},
        )
        params = {"target_shard_id": sid(t), "drift_per_window": drift, "drift_start_window": start}
        rows.append(Row(0, v, params, out, published[v]["observation"] if published else None, rerun))
    return rows


def type2_rows(cfg: Config, published: list[dict[str, Any]] | None) -> list[Row]:
    topo = two_rack_topology(with_cz=False)
    rows = []
    for v in range(20):
        rack, members = TYPE2_SETS[v // 5]
        fired = [sid(i) for i in members]
        cands = attribute_set(fired, topo, cfg)
        det = len(cands) >= 1
        correct = det and len(cands) == 1 and cands[0] == (rack, tuple(sorted(fired)))
        out = Outcome(
            det,
            correct if det else None,
            v % 5 if det else None,
            len([c for c in cands if c[0] != rack]),
            {"candidates": [{"node": n, "members": list(m)} for n, m in cands]},
        )
        params = {"target_rack": rack, "fired_set": fired, "attribution_window": v % 5}
        rows.append(Row(1, v, params, out, published[v]["observation"] if published else None))
    return rows


def type3_rows(cfg: Config, published: list[dict[str, Any]] | None) -> list[Row]:
    events_cfg = cfg.events
    topo = Topology([TopoNode("rack-A", "rack", None, {}), TopoNode(sid(0), "shard", "rack-A", {})])
    rows = []
    for v in range(20):
        kind = TYPE3_CLASSES[v // 5]
        ev_off, sample_off = TYPE3_OFFSETS[v % 5]
        book = EventBook(topo, events_cfg)
        event, meta = from_deploy_event(
            {"event_id": f"evt-r72-t3-v{v}", "event_class": kind, "event_ts": TYPE3_BASE_TS + ev_off}
        )
        added = book.add(event, source="deploysignal", metadata=meta)
        sample_ts = float(TYPE3_BASE_TS + sample_off)
        det = added.ok and book.frozen(sample_ts).get(sid(0)) == event.id
        correct: bool | None = None
        if det:
            f = Firing(
                id=f"r72-t3-{v}",
                state="open",
                opened_ts=sample_ts,
                window=1,
                scope="shard",
                target=sid(0),
                members=[sid(0)],
                detector="A",
                metric="x",
                log_evidence=LOG_THR,
                threshold_log=LOG_THR,
                classification="shard_fault",
                receipt={},
            )
            got = book.attribute(f)
            correct = got is not None and got.id == event.id and f.classification == "event_conditional"
        out = Outcome(det, correct, 1 if det else None, None, {"add_status": added.status})
        params = {"event_class": kind, "event_ts_offset_s": ev_off, "sample_ts_offset_s": sample_off}
        rows.append(Row(2, v, params, out, published[v]["observation"] if published else None))
    return rows


def type4_rows(s: OurSettings, published: list[dict[str, Any]] | None) -> list[Row]:
    seeds = [PREFIX ^ (0x400 + v) for v in range(20)]
    x = window_major_draws(seeds, WINDOWS, SHARDS)
    ramp = linear_ramp(WINDOWS, TYPE4_DRIFT, TYPE4_START)
    for v in range(20):
        k = TYPE4_COUNTS[v // 5]
        x[v, :, :k] += ramp[:, None]
    tess = TesseraFamilyA(20 * SHARDS)
    m_hist = np.empty((20, WINDOWS, SHARDS))
    for w in range(WINDOWS):
        m_hist[:, w, :] = tess.update(x[:, w, :].reshape(-1)).reshape(20, SHARDS)
    ours = oracle_ville(np.ascontiguousarray(x.transpose(0, 2, 1).reshape(20 * SHARDS, WINDOWS)), s)
    ours = ours.reshape(20, SHARDS, WINDOWS)
    rows = []
    for v in range(20):
        k, q = TYPE4_COUNTS[v // 5], TYPE4_Q[v % 5]
        drifting = list(range(k))
        terminal = m_hist[v, -1, :]
        sel_t = tessera_e_bh(terminal.tolist(), q)
        crossed_t = m_hist[v][:, :k] >= 1 / ALPHA
        rerun = {
            "fdr_K": len(sel_t),
            "fdr_selected_indices": sel_t,
            "detection_window_index": _first(crossed_t.any(axis=1)),
            "firing_shards": [sid(i) for i in range(SHARDS) if terminal[i] >= 1 / ALPHA],
        }
        e_ours = np.exp(np.minimum(ours[v, :, -1], 700.0))
        sel = [int(i) for i in e_bh(e_ours, q)]
        det = len(sel) >= 1
        nulls = [i for i in sel if i not in drifting]
        out = Outcome(
            det,
            (not nulls) if det else None,
            _first((ours[v, :k] >= LOG_THR).any(axis=0)),
            len(nulls) if det else None,
            {"fdr_K": len(sel), "fdr_selected_indices": sel, "all_drifting_selected": sel == drifting},
        )
        params = {"drifting_shard_count": k, "drifting_indices": drifting, "qLevel": q}
        rows.append(Row(3, v, params, out, published[v]["observation"] if published else None, rerun))
    return rows


def type5_rows(s: OurSettings, published: list[dict[str, Any]] | None) -> list[Row]:
    rows = []
    for v in range(20):
        n = TYPE5_N[v // 5]
        drift, start = TYPE5_TUPLES[v % 5]
        x = window_major_draws([PREFIX ^ (0x800 + v)], WINDOWS, n)[0] + linear_ramp(WINDOWS, drift, start)[:, None]
        tess = TesseraFamilyA(n)
        tracker = TesseraFleetTracker(LOG_FLEET_THR)
        first_t: list[int | None] = [None] * n
        for w in range(WINDOWS):
            m = tess.update(x[w])
            for i in range(n):
                if first_t[i] is None and m[i] >= 1 / ALPHA:
                    first_t[i] = w
            tracker.update(tessera_combine_average([math.log(max(float(mi), 1e-12)) for mi in m]))
        rerun = {
            "fleet_fired": tracker.fired,
            "fleet_tick_at_first_fire": tracker.tick_at_first_fire,
            "per_shard_first_fire_tick": first_t,
        }
        shard_lm = oracle_ville(np.ascontiguousarray(x.T), s)  # [n, W]
        cohort = (math.sqrt(n) * x.mean(axis=1))[None, :]
        cohort_lm = oracle_ville(np.ascontiguousarray(cohort), s)[0]
        fleet_w = _first(cohort_lm >= LOG_FLEET_THR)
        shard_first = first_crossing(shard_lm, LOG_THR)
        earliest = int(shard_first[shard_first >= 0].min()) if (shard_first >= 0).any() else None
        top = shard_lm.max(axis=0)
        aoe = top + np.log(np.exp(shard_lm - top).mean(axis=0))
        det = fleet_w is not None
        correct = det and (earliest is None or (fleet_w is not None and fleet_w <= earliest))
        out = Outcome(
            det,
            correct if det else None,
            fleet_w,
            None,
            {
                "earliest_shard_crossing": earliest,
                "per_shard_first_crossing": [None if i < 0 else int(i) for i in shard_first],
                "aoe_first_crossing": _first(np.maximum.accumulate(aoe) >= LOG_FLEET_THR),
            },
        )
        params = {"shard_count": n, "drift_per_window": drift, "drift_start_window": start}
        rows.append(Row(4, v, params, out, published[v]["observation"] if published else None, rerun))
    return rows


def type6_rows(cfg: Config, published: list[dict[str, Any]] | None) -> list[Row]:
    topo = two_rack_topology(with_cz=True)
    rows = []
    for v in range(20):
        fired = [sid(i) for i in TYPE6_SETS[v // 5]]
        cands = attribute_set(fired, topo, cfg)
        cz = [c for c in cands if c[0] == "cz-1"]
        det = bool(cz)
        correct = det and len(cands) == 1 and cz[0][1] == tuple(sorted(fired))
        out = Outcome(
            det,
            correct if det else None,
            3 if det else None,
            len([c for c in cands if c[0] != "cz-1"]),
            {"candidates": [{"node": n, "members": list(m)} for n, m in cands]},
        )
        params = {"fired_set": fired, "max_hop_distance": TYPE6_HOPS[v % 5]}
        rows.append(Row(5, v, params, out, published[v]["observation"] if published else None))
    return rows
