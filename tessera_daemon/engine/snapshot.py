"""What the pipeline shows the outside world after a window: one immutable ``PipelineSnapshot``.

``Pipeline.snapshot()`` copies what the web layer reads (firings, the shard table, per-metric detector
states, group and family evidence, the event book, window statistics) into frozen dataclasses, tuples,
read-only mappings and read-only NumPy arrays. The window thread builds one after each batch of
windows and hands it to the event loop; HTTP handlers, ``/metrics`` rendering and the web console read
only snapshots, so they never see a window half processed and never touch the live pipeline.

``engine/snapshot_merge.py`` joins the snapshots of a detector worker's partitions (split mode) into
one over the union of their topologies (``split/view.py`` caches the union topology and event book).

Firings are private copies (``Firing`` is the mutable lifecycle object of ``engine/firings.py``): an
active firing is copied on every snapshot, a resolved one once (it no longer changes) and reused by
the next snapshot through ``previous``.
"""

from __future__ import annotations

import copy
import dataclasses
import itertools
import math
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tessera_daemon.config import Config
from tessera_daemon.detect.residuals import ResidualParams
from tessera_daemon.engine.events import EventBook, EventRecord
from tessera_daemon.model import Firing, Topology

if TYPE_CHECKING:
    from tessera_daemon.engine.pipeline import Pipeline

F64 = npt.NDArray[np.float64]
_versions = itertools.count(1)
_EMPTY: Mapping[Any, Any] = MappingProxyType({})


def frozen_array(a: npt.ArrayLike, dtype: Any = None, *, copy_: bool = True) -> npt.NDArray[Any]:
    """A read-only copy of ``a`` (writing to it raises)."""
    out = np.array(a, dtype=dtype, copy=copy_)
    out.setflags(write=False)
    return out


def _ro(mapping: Mapping[Any, Any]) -> Mapping[Any, Any]:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True, slots=True)
class TableSnapshot:
    """The last window's [shards x metrics] table (``Pipeline.table``), read-only."""

    window: int = -1
    end_ts: float = 0.0
    log_m: F64 = field(default_factory=lambda: frozen_array(np.zeros((0, 0))))
    last_x: F64 = field(default_factory=lambda: frozen_array(np.zeros((0, 0))))
    last_w: F64 = field(default_factory=lambda: frozen_array(np.zeros((0, 0))))
    warm: npt.NDArray[np.bool_] = field(default_factory=lambda: frozen_array(np.zeros((0, 0), np.bool_)))
    stale: npt.NDArray[np.bool_] = field(default_factory=lambda: frozen_array(np.zeros(0, np.bool_)))
    present: npt.NDArray[np.bool_] = field(default_factory=lambda: frozen_array(np.zeros(0, np.bool_)))
    lost: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class MetricStates:
    """Per-stream detector state the console draws: [S, M] offset, AR(1) phi, innovation scale, warm-up
    count; ``depth`` the longest warm-up; ``missing_run`` [S] windows since each shard last reported."""

    offset: F64
    phi: F64
    scale: F64
    n_warm: npt.NDArray[np.int64]
    depth: int
    missing_run: npt.NDArray[np.int64]

    def marginal_sd(self, i: int, j: int) -> float:
        """The stream's marginal sd on the detector's scale: innovation scale / sqrt(1 - phi^2)."""
        phi = float(self.phi[i, j])
        return float(self.scale[i, j]) / math.sqrt(max(1.0 - phi * phi, 1e-3))


@dataclass(frozen=True, slots=True)
class EventsSnapshot:
    """The event book's kept records (oldest first), its version and who is frozen at the window end."""

    records: tuple[EventRecord, ...] = ()
    version: int = 0
    frozen_now: Mapping[str, str] = field(default_factory=lambda: _EMPTY)  # shard -> event id

    def __len__(self) -> int:
        return len(self.records)

    def __contains__(self, event_id: object) -> bool:
        return any(r.id == event_id for r in self.records)

    def get(self, event_id: str) -> EventRecord | None:
        return next((r for r in self.records if r.id == event_id), None)

    def recent(self, limit: int | None = None) -> list[EventRecord]:
        """Newest first (by ts, then id descending), as ``EventBook.recent``."""
        out = sorted(self.records, key=lambda r: (r.event.ts, r.id), reverse=True)
        return out if limit is None else out[:limit]

    @classmethod
    def of(cls, book: EventBook, end_ts: float) -> EventsSnapshot:
        return cls(tuple(book.records()), book.version, MappingProxyType(book.frozen(end_ts)))


@dataclass(frozen=True, slots=True)
class WindowStats:
    """Assembler counters, the watermark, quarantined clock skews and rejected values."""

    frames: int = 0
    late: int = 0
    unknown_shard: int = 0
    missing_samples: int = 0
    windows: int = 0
    future: int = 0
    watermark: float = -math.inf
    skewed: Mapping[str, tuple[float, float, str]] = field(default_factory=lambda: _EMPTY)
    rejected: Mapping[str, int] = field(default_factory=lambda: _EMPTY)
    last_duration_s: float = 0.0


@dataclass(frozen=True, slots=True)
class PipelineSnapshot:
    """Everything the web layer reads, as of the end of one window (see the module doc)."""

    version: int
    cfg: Config
    topology: Topology
    members: Mapping[str, list[str]]  # topology.members(), computed once per topology
    shards: tuple[str, ...]
    metrics: tuple[str, ...]
    row: Mapping[str, int]
    cohorts: tuple[str, ...]
    cohort_of: npt.NDArray[np.int64]
    log_cols: npt.NDArray[np.int64]
    params: ResidualParams
    table: TableSnapshot
    active: tuple[Firing, ...]  # open firings, by (window, id)
    recent: tuple[Firing, ...]  # recently resolved, oldest first
    opened_total: Mapping[tuple[str, str], int]
    resolved_total: Mapping[str, int]
    states: MetricStates
    group_log_m: F64  # [G, M] pooled group detectors' log-evidence
    group_index: Mapping[str, int]  # group node id -> row of group_log_m
    family_log_m: Mapping[str, F64]  # "C" / "D" (max over its metrics) / "E" -> [S]
    family_d: F64  # [S, len(family_d_cols)] Family D per oscillation metric
    family_d_cols: npt.NDArray[np.int64]
    events: EventsSnapshot
    stats: WindowStats
    windows_processed: int
    window_length_s: float
    threshold_log: float
    fresh_warm: int  # warm streams of shards that reported in the last window
    fresh_streams: int  # streams of those shards
    observed_cadence_s: float
    window_too_short: bool

    @property
    def end_ts(self) -> float:
        return self.table.end_ts

    def warm_fraction(self) -> float:
        return self.fresh_warm / self.fresh_streams if self.fresh_streams else 0.0

    def event_now(self, wall: float) -> float:
        """The event time: the end of the last processed window (``wall`` before any)."""
        return self.table.end_ts if self.windows_processed else wall

    def find(self, firing_id: str) -> Firing | None:
        for f in self.active:
            if f.id == firing_id:
                return f
        for f in reversed(self.recent):
            if f.id == firing_id:
                return f
        return None


def _copy_firings(
    firings: Iterable[Firing], reuse: Mapping[tuple[str, int | None], Firing] | None = None
) -> tuple[Firing, ...]:
    out = []
    for f in firings:
        kept = reuse.get((f.id, f.resolved_window)) if reuse is not None else None
        out.append(kept if kept is not None else copy.deepcopy(f))
    return tuple(out)


def take_snapshot(p: Pipeline, previous: PipelineSnapshot | None = None) -> PipelineSnapshot:
    """Copy ``p``'s readable state (see the module doc); ``previous`` lends its resolved firings and,
    when the topology is the same, its topology-derived mappings."""
    same_topo = previous is not None and previous.topology is p.topology and previous.shards == tuple(p.shards)
    t = p.table
    table = TableSnapshot(
        window=t.window,
        end_ts=t.end_ts,
        log_m=frozen_array(t.log_m, np.float64),
        last_x=frozen_array(t.last_x, np.float64),
        last_w=frozen_array(t.last_w, np.float64),
        warm=frozen_array(t.warm, np.bool_),
        stale=frozen_array(t.stale, np.bool_),
        present=frozen_array(t.present, np.bool_),
        lost=frozenset(t.lost),
    )
    st = p.state
    fresh = p.missing_run == 0
    warm = st.warm()
    states = MetricStates(
        offset=frozen_array(st.offset, np.float64),
        phi=frozen_array(st.phi, np.float64),
        scale=frozen_array(st.scale, np.float64),
        n_warm=frozen_array(st.n_warm, np.int64),
        depth=st.depth,
        missing_run=frozen_array(p.missing_run, np.int64),
    )
    stats = window_stats(p)
    reuse = {(f.id, f.resolved_window): f for f in previous.recent} if previous is not None else None
    fam_d, fam_d_cols = _family_d(p)
    g_lm = np.asarray(p.groups.log_m, np.float64)
    return PipelineSnapshot(
        version=next(_versions),
        cfg=p.cfg,
        topology=p.topology,
        members=previous.members if same_topo and previous is not None else _ro(p.topology.members()),
        shards=previous.shards if same_topo and previous is not None else tuple(p.shards),
        metrics=tuple(p.metrics),
        row=previous.row if same_topo and previous is not None else _ro(p.row),
        cohorts=tuple(p.cohorts),
        cohort_of=frozen_array(p.cohort_of, np.int64),
        log_cols=frozen_array(p.log_cols, np.int64),
        params=p.params,
        table=table,
        active=_copy_firings(p.book.active()),
        recent=_copy_firings(p.book.recent, reuse),
        opened_total=_ro(p.book.opened_total),
        resolved_total=_ro(p.book.resolved_total),
        states=states,
        group_log_m=frozen_array(g_lm if g_lm.ndim == 2 else np.zeros((0, len(p.metrics)))),
        group_index=_ro(getattr(p.groups, "index", {})),
        family_log_m=MappingProxyType({k: frozen_array(v) for k, v in _family_log_m(p).items()}),
        family_d=fam_d,
        family_d_cols=fam_d_cols,
        events=EventsSnapshot.of(p.events, t.end_ts if p.windows_processed else time.time()),
        stats=stats,
        windows_processed=p.windows_processed,
        window_length_s=p.window_length_s,
        threshold_log=p.threshold_log,
        fresh_warm=int(warm[fresh].sum()) if warm.shape[:1] == fresh.shape else 0,
        fresh_streams=int(fresh.sum()) * len(p.metrics),
        observed_cadence_s=p.observed_cadence_s(),
        window_too_short=p.window_too_short(),
    )


def empty_snapshot(cfg: Config, topology: Topology | None = None) -> PipelineSnapshot:
    """A snapshot of nothing (before a detector worker holds a partition)."""
    topo = topology if topology is not None else Topology([])
    m = len(cfg.detector.metrics)
    return PipelineSnapshot(
        version=next(_versions),
        cfg=cfg,
        topology=topo,
        members=_ro(topo.members()),
        shards=(),
        metrics=tuple(cfg.detector.metrics),
        row=_EMPTY,
        cohorts=(),
        cohort_of=frozen_array(np.zeros(0, np.int64)),
        log_cols=frozen_array(
            [j for j, x in enumerate(cfg.detector.metrics) if x in cfg.detector.log_metrics], np.int64
        ),
        params=ResidualParams.from_config(cfg.detector),
        table=TableSnapshot(),
        active=(),
        recent=(),
        opened_total=_EMPTY,
        resolved_total=_EMPTY,
        states=MetricStates(
            offset=frozen_array(np.zeros((0, m))),
            phi=frozen_array(np.zeros((0, m))),
            scale=frozen_array(np.zeros((0, m))),
            n_warm=frozen_array(np.zeros((0, m), np.int64)),
            depth=cfg.detector.warmup_max_windows,
            missing_run=frozen_array(np.zeros(0, np.int64)),
        ),
        group_log_m=frozen_array(np.zeros((0, m))),
        group_index=_EMPTY,
        family_log_m=_EMPTY,
        family_d=frozen_array(np.zeros((0, 0))),
        family_d_cols=frozen_array(np.zeros(0, np.int64)),
        events=EventsSnapshot(),
        stats=WindowStats(),
        windows_processed=0,
        window_length_s=cfg.window.length_s,
        threshold_log=cfg.detector.min_threshold_log,
        fresh_warm=0,
        fresh_streams=0,
        observed_cadence_s=math.nan,
        window_too_short=False,
    )


def _family_log_m(p: Pipeline) -> dict[str, F64]:
    """Each family's current log-evidence per shard (D: the largest over its metrics)."""
    fam: Any = p.families
    s = len(p.shards)
    out: dict[str, F64] = {}
    try:
        if "C" in fam.enabled and fam.c[5].shape[:1] == (s,):
            out["C"] = np.asarray(fam.c[5], np.float64).reshape(s)
        if "D" in fam.enabled and fam.d[4].shape[:1] == (s,) and fam.d[4].size:
            out["D"] = np.asarray(fam.d[4], np.float64).reshape(s, -1).max(axis=1)
        if "E" in fam.enabled and fam.e[2].shape[:1] == (s,):
            out["E"] = np.asarray(fam.e[2], np.float64).reshape(s)
    except (AttributeError, IndexError, TypeError, ValueError):
        return {}
    return out


def _family_d(p: Pipeline) -> tuple[F64, npt.NDArray[np.int64]]:
    fam: Any = p.families
    cols = frozen_array(getattr(fam, "d_cols", np.zeros(0, np.int64)), np.int64)
    try:
        d = np.asarray(fam.d[4], np.float64).reshape(len(p.shards), -1) if "D" in fam.enabled else None
    except (AttributeError, IndexError, TypeError, ValueError):
        d = None
    return frozen_array(d if d is not None else np.zeros((len(p.shards), 0))), cols


def window_stats(p: Pipeline) -> WindowStats:
    """The pipeline's window statistics now (frames move between windows: readiness watches them)."""
    a = p.assembler
    return WindowStats(
        frames=a.stats.frames,
        late=a.stats.late,
        unknown_shard=a.stats.unknown_shard,
        missing_samples=a.stats.missing_samples,
        windows=a.stats.windows,
        future=a.stats.future,
        watermark=float(a.watermark),
        skewed=_ro(a.skewed),
        rejected=_ro(p.bounds.rejected),
        last_duration_s=p.last_duration_s,
    )


def with_stats(snap: PipelineSnapshot, p: Pipeline) -> PipelineSnapshot:
    """``snap`` with ``p``'s current window statistics (a batch that closed no window), a new version."""
    return dataclasses.replace(snap, version=next(_versions), stats=window_stats(p))
