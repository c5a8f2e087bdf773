"""A read-only :class:`Pipeline` that shows every partition a worker owns, for the HTTP API.

The worker runs one pipeline per partition (windows close per partition, in that partition's event
time). ``web/app.py`` and ``web/metrics.py`` read one ``Status.pipeline``; this view is a real
``Pipeline`` over the union of the owned partitions' topologies whose readable parts (window table,
warm-up state, firing book, event book, assembler counters, threshold) are refreshed from the
partitions after each batch. It is never fed frames and never processes a window itself.
"""

from __future__ import annotations

import dataclasses
from collections import Counter, deque
from collections.abc import Mapping

import numpy as np

from tessera_daemon.config import Config
from tessera_daemon.engine.events import EventBook, EventRecord
from tessera_daemon.engine.firings import FiringBook
from tessera_daemon.engine.pipeline import Pipeline, ShardTable
from tessera_daemon.engine.window import AssemblerStats
from tessera_daemon.model import Firing, Topology
from tessera_daemon.transport.registry import merge_slices


class PartitionView:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.pipeline = Pipeline(cfg, Topology([]))
        self._members: tuple[tuple[str, str], ...] = ()
        self._rows: dict[str, np.ndarray] = {}
        self._event_versions: tuple[tuple[str, int], ...] = ()

    def refresh(self, parts: Mapping[str, Pipeline], threshold_log: float | None = None) -> Pipeline:
        """Bring the view up to date with ``parts`` (partition token -> pipeline); returns the view."""
        members = tuple(sorted((t, p.topology.content_hash()) for t, p in parts.items()))
        if members != self._members:
            topo = merge_slices([p.topology.to_json() for _t, p in sorted(parts.items())]) if parts else Topology([])
            self.pipeline.set_topology(topo)
            self._members = members
            self._rows = {t: np.array([self.pipeline.row[s] for s in p.shards], np.int64) for t, p in parts.items()}
            self._event_versions = ()
        v = self.pipeline
        if threshold_log is not None:
            v.threshold_log = threshold_log
        elif parts:
            v.threshold_log = next(iter(parts.values())).threshold_log
        s, m = len(v.shards), len(v.metrics)
        v.windows_processed = sum(p.windows_processed for p in parts.values())
        v.missing_run = np.zeros(s, np.int64)
        v.state.n_warm[:] = 0
        stats = AssemblerStats()
        watermark = -np.inf
        table = ShardTable(
            window=-1,
            end_ts=0.0,
            log_m=np.full((s, m), np.nan),
            last_x=np.full((s, m), np.nan),
            last_w=np.full((s, m), np.nan),
            warm=np.zeros((s, m), np.bool_),
            stale=np.zeros(s, np.bool_),
            present=np.zeros(s, np.bool_),
        )
        lost: set[str] = set()
        skewed: dict[str, tuple[float, float, str]] = {}
        rejected: Counter[str] = Counter()
        for t, p in parts.items():
            rows = self._rows[t]
            v.missing_run[rows] = p.missing_run
            v.state.n_warm[rows] = p.state.n_warm
            a = p.assembler.stats
            stats.frames += a.frames
            stats.late += a.late
            stats.unknown_shard += a.unknown_shard
            stats.missing_samples += a.missing_samples
            stats.windows += a.windows
            stats.future += a.future
            rejected.update(p.bounds.rejected)
            skewed.update(p.assembler.skewed)
            watermark = max(watermark, p.assembler.watermark)
            pt = p.table
            if pt.window >= 0 and pt.log_m.shape[0] == rows.size:
                table.window = max(table.window, pt.window)
                table.end_ts = max(table.end_ts, pt.end_ts)
                table.log_m[rows], table.last_x[rows], table.last_w[rows] = pt.log_m, pt.last_x, pt.last_w
                table.warm[rows], table.stale[rows], table.present[rows] = pt.warm, pt.stale, pt.present
                lost |= pt.lost
        table.lost = frozenset(lost)
        v.table = table if table.window >= 0 else ShardTable()
        v.assembler.stats = stats
        v.assembler.skewed = skewed
        v.bounds.rejected = rejected
        v.assembler.watermark = float(watermark)
        v.book = _merged_books([p.book for p in parts.values()], self.cfg.detector.recent_resolved)
        versions = tuple(sorted((t, p.events.version) for t, p in parts.items()))
        if versions != self._event_versions:
            self._event_versions = versions
            v.events = _merged_events(v.topology, [p.events for p in parts.values()], self.cfg)
        return v


def _merged_books(books: list[FiringBook], recent_limit: int) -> FiringBook:
    out = FiringBook(recent_limit=recent_limit)
    recent: list[Firing] = []
    opened: Counter[tuple[str, str]] = Counter()
    resolved: Counter[str] = Counter()
    for b in books:
        for key, track in b._active.items():
            # a node spanning partitions (a cooling zone over two jobs) can hold a firing in each: the
            # view keeps both, keyed apart by firing id (the view is read-only; keys only index it)
            out._active[(f"{key[0]}#{track.firing.id}", key[1], key[2]) if key in out._active else key] = track
        recent.extend(b.recent)
        opened.update(b.opened_total)
        resolved.update(b.resolved_total)
    recent.sort(key=lambda f: (f.resolved_window or 0, f.id))
    out.recent = deque(recent[-recent_limit:] if recent_limit else [])
    out.opened_total = opened
    out.resolved_total = resolved
    return out


def _merged_events(topology: Topology, books: list[EventBook], cfg: Config) -> EventBook:
    """One event book over the view's topology holding every partition's events (for /metrics and
    the API). A partition's copy of an event has its scope cut to that partition's nodes, so copies
    of one event are joined back: the union of their scopes (fleet-wide if any copy is)."""
    copies: dict[str, list[EventRecord]] = {}
    for b in books:
        for rec in b.records():
            copies.setdefault(rec.id, []).append(rec)
    out = EventBook(topology, cfg.events)
    for recs in copies.values():
        first = recs[0]
        fleet = any(r.event.fleet_wide for r in recs)
        scope = ("fleet",) if fleet else tuple(dict.fromkeys(n for r in recs for n in r.event.scope))
        out.add(dataclasses.replace(first.event, scope=scope), source=first.source, metadata=first.metadata)
    return out
