"""``merge_snapshots``: one ``PipelineSnapshot`` over a detector worker's partitions (split mode)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

import numpy as np
import numpy.typing as npt

from tessera_daemon.config import Config
from tessera_daemon.engine.snapshot import (
    _EMPTY,
    EventsSnapshot,
    MetricStates,
    PipelineSnapshot,
    TableSnapshot,
    WindowStats,
    _ro,
    _versions,
    empty_snapshot,
    frozen_array,
)
from tessera_daemon.model import Topology


def merge_snapshots(
    parts: Sequence[PipelineSnapshot],
    topology: Topology,
    events: EventsSnapshot,
    *,
    cfg: Config,
    threshold_log: float | None = None,
    members: Mapping[str, list[str]] | None = None,
) -> PipelineSnapshot:
    """One snapshot over ``topology`` (the union of the parts' topologies) holding every part: tables,
    states and family evidence placed at the union's rows, firings and counters joined, window
    statistics summed (watermark: the newest). ``events`` is the joined event book (its copies of one
    event re-joined by the caller, ``split/view.py``). Group evidence is the parts' own (their groups
    live in one partition each), so the merged snapshot carries none: the console falls back to
    members' evidence for group firings."""
    if not parts:
        return empty_snapshot(cfg, topology)
    shards = tuple(topology.shards)
    row = {s: i for i, s in enumerate(shards)}
    metrics = parts[0].metrics
    s_n, m = len(shards), len(metrics)
    rows = [np.array([row[x] for x in p.shards], np.int64) for p in parts]
    cohorts = tuple(sorted({c for p in parts for c in p.cohorts}))
    cidx = {c: i for i, c in enumerate(cohorts)}
    cohort_of = np.zeros(s_n, np.int64)

    def full(shape: int | tuple[int, ...], fill: Any, dtype: Any = np.float64) -> npt.NDArray[Any]:
        return np.full(shape, fill, dtype)

    log_m, last_x, last_w = full((s_n, m), np.nan), full((s_n, m), np.nan), full((s_n, m), np.nan)
    warm, stale, present = full((s_n, m), False, np.bool_), full(s_n, False, np.bool_), full(s_n, False, np.bool_)
    offset, phi, scale = full((s_n, m), np.nan), full((s_n, m), np.nan), full((s_n, m), np.nan)
    n_warm, missing = full((s_n, m), 0, np.int64), full(s_n, 0, np.int64)
    fam_keys = sorted({k for p in parts for k in p.family_log_m})
    fam = {k: full(s_n, np.nan) for k in fam_keys}
    d_cols = parts[0].family_d_cols
    fam_d = full((s_n, d_cols.size), np.nan)
    window, end_ts = -1, 0.0
    lost: set[str] = set()
    for p, r in zip(parts, rows, strict=True):
        cohort_of[r] = [cidx[p.cohorts[c]] for c in p.cohort_of.tolist()]
        t = p.table
        if t.window >= 0 and t.log_m.shape[0] == r.size:
            window, end_ts = max(window, t.window), max(end_ts, t.end_ts)
            log_m[r], last_x[r], last_w[r] = t.log_m, t.last_x, t.last_w
            warm[r], stale[r], present[r] = t.warm, t.stale, t.present
            lost |= t.lost
        st = p.states
        if st.offset.shape[0] == r.size:
            offset[r], phi[r], scale[r], n_warm[r] = st.offset, st.phi, st.scale, st.n_warm
        if st.missing_run.size == r.size:
            missing[r] = st.missing_run
        for k, v in p.family_log_m.items():
            if v.size == r.size:
                fam[k][r] = v
        if p.family_d.shape == (r.size, d_cols.size):
            fam_d[r] = p.family_d
    table = (
        TableSnapshot(
            window=window,
            end_ts=end_ts,
            log_m=frozen_array(log_m),
            last_x=frozen_array(last_x),
            last_w=frozen_array(last_w),
            warm=frozen_array(warm),
            stale=frozen_array(stale),
            present=frozen_array(present),
            lost=frozenset(lost),
        )
        if window >= 0
        else TableSnapshot()
    )
    recent = sorted((f for p in parts for f in p.recent), key=lambda f: (f.resolved_window or 0, f.id))
    limit = cfg.detector.recent_resolved
    opened: Counter[tuple[str, str]] = Counter()
    resolved: Counter[str] = Counter()
    rejected: Counter[str] = Counter()
    skewed: dict[str, tuple[float, float, str]] = {}
    for p in parts:
        opened.update(p.opened_total)
        resolved.update(p.resolved_total)
        rejected.update(p.stats.rejected)
        skewed.update(p.stats.skewed)
    cad = [p.observed_cadence_s for p in parts if math.isfinite(p.observed_cadence_s)]
    stats = WindowStats(
        frames=sum(p.stats.frames for p in parts),
        late=sum(p.stats.late for p in parts),
        unknown_shard=sum(p.stats.unknown_shard for p in parts),
        missing_samples=sum(p.stats.missing_samples for p in parts),
        windows=sum(p.stats.windows for p in parts),
        future=sum(p.stats.future for p in parts),
        watermark=max(p.stats.watermark for p in parts),
        skewed=MappingProxyType(skewed),
        rejected=MappingProxyType(dict(rejected)),
        last_duration_s=max(p.stats.last_duration_s for p in parts),
    )
    return PipelineSnapshot(
        version=next(_versions),
        cfg=cfg,
        topology=topology,
        members=members if members is not None else _ro(topology.members()),
        shards=shards,
        metrics=metrics,
        row=MappingProxyType(row),
        cohorts=cohorts,
        cohort_of=frozen_array(cohort_of),
        log_cols=parts[0].log_cols,
        params=parts[0].params,
        table=table,
        active=tuple(sorted((f for p in parts for f in p.active), key=lambda f: (f.window, f.id))),
        recent=tuple(recent[-limit:] if limit else ()),
        opened_total=MappingProxyType(dict(opened)),
        resolved_total=MappingProxyType(dict(resolved)),
        states=MetricStates(
            frozen_array(offset),
            frozen_array(phi),
            frozen_array(scale),
            frozen_array(n_warm),
            max(p.states.depth for p in parts),
            frozen_array(missing),
        ),
        group_log_m=frozen_array(np.zeros((0, m))),
        group_index=_EMPTY,
        family_log_m=MappingProxyType({k: frozen_array(v) for k, v in fam.items()}),
        family_d=frozen_array(fam_d),
        family_d_cols=d_cols,
        events=events,
        stats=stats,
        windows_processed=sum(p.windows_processed for p in parts),
        window_length_s=parts[0].window_length_s,
        threshold_log=threshold_log if threshold_log is not None else parts[0].threshold_log,
        fresh_warm=sum(p.fresh_warm for p in parts),
        fresh_streams=sum(p.fresh_streams for p in parts),
        observed_cadence_s=float(np.median(cad)) if cad else math.nan,
        window_too_short=any(p.window_too_short for p in parts),
    )
