"""The detector pipeline: frames -> windows -> residuals -> e-detectors -> rules -> firings.

Synchronous and deterministic: the live daemon and ``replay`` drive the very same object, so the
same frames give the same firings. No asyncio, Redis or HTTP here.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from tessera_daemon.config import Config
from tessera_daemon.detect.kernels import family_a_update, resolve_threads
from tessera_daemon.detect.quiet import quiet_runtime_warnings
from tessera_daemon.detect.residuals import ResidualOut, ResidualParams, residual_step
from tessera_daemon.detect.state import DetectorState
from tessera_daemon.engine.attribution import Candidate, attribute
from tessera_daemon.engine.bounds import ValueBounds
from tessera_daemon.engine.ebh import e_d_bh_selected
from tessera_daemon.engine.events import EventBook
from tessera_daemon.engine.families import Families, FamilyView
from tessera_daemon.engine.firings import FiringBook, Key
from tessera_daemon.engine.groups import CHILD_FRACTION, GroupDetector, GroupResult
from tessera_daemon.engine.rules import RuleHit, evaluate_rules
from tessera_daemon.engine.window import WindowAssembler, WindowData
from tessera_daemon.model import ClusterEvent, Firing, Frame, FrameBlock, Topology, firing_id

if TYPE_CHECKING:
    from tessera_daemon.engine.snapshot import PipelineSnapshot

V_INFLATION = 1.2  # null second-moment bound of a group's pooled z (plus estimation slack)
FAMILY_NAMES = {"C": "multivariate", "D": "oscillation", "E": "conformal novelty"}
BROAD_FRACTION = 0.6  # share of a cohort that must move for a fleet_event
RULE_METRIC = {"xid": "xid", "ecc_dbe": "ecc_dbe", "device_lost": None, "device_missing": None, "host_silent": None}
CADENCE_RATE = 0.05  # weight of each new gap in a shard's own cadence estimate
WIDE_SCOPES = frozenset({"cooling_zone", "pod", "fleet"})  # incidents that hold only their own metric
RELATED_MAX = 32  # related evidence entries kept in one incident's receipt
RECOVERY_WINDOWS = 30  # after a shard's incident closes, its recovery transient opens nothing new
STEP_LOOKBACK = 3  # a fleet event's level is compared with the level this many persistence spans ago
STEP_SMOOTH = 10  # windows averaged at each end of that comparison
STEP_RING_MAX = 5000  # most windows kept for it
LEVEL_RATE = 0.2  # weight of each window in the smoothed residual that decides whether a deviation lasts


def threshold_log(n_streams: int, window_s: float, false_pages_per_day: float, floor: float) -> float:
    """The evidence threshold: log(streams x windows per day / false pages per day), floored.

    Every e-detector stream (shard, group, cohort, family) alarms at average run length >= the
    threshold's exp, so the fleet expects at most ``false_pages_per_day`` false alarms a day."""
    windows_per_day = 86_400.0 / window_s
    return max(floor, math.log(max(1, n_streams) * windows_per_day / false_pages_per_day))


def _relate(incident: Firing, entry: dict[str, Any], same: tuple[str, ...]) -> None:
    """Record ``entry`` (a crossing an open incident holds instead of paging) in the incident's receipt,
    once per value of the ``same`` fields and at most ``RELATED_MAX`` entries."""
    rel = incident.receipt.setdefault("related", [])
    if len(rel) < RELATED_MAX and not any(all(r.get(k) == entry[k] for k in same) for r in rel):
        rel.append(entry)


def _hosts(topology: Topology, shards: list[str]) -> dict[str, npt.NDArray[np.int64]]:
    """Rows of each host's shards (a shard's nearest ancestor of kind host; none: not grouped)."""
    out: dict[str, list[int]] = {}
    for i, s in enumerate(shards):
        for a in topology.ancestors(s):
            if topology.nodes[a].kind == "host":
                out.setdefault(a, []).append(i)
                break
    return {h: np.array(r, np.int64) for h, r in out.items()}


@dataclass(slots=True)
class WindowResult:
    index: int
    end_ts: float
    opened: list[Firing]
    resolved: list[Firing]
    duration_s: float
    n_frames: int
    ended_events: list[tuple[ClusterEvent, list[str]]] = field(default_factory=list)


@dataclass(slots=True)
class ShardTable:
    """Per-window copy of what /v1/shards and /metrics read (immune to the next window's update)."""

    window: int = -1
    end_ts: float = 0.0
    log_m: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    last_x: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    last_w: npt.NDArray[np.float64] = field(default_factory=lambda: np.zeros((0, 0)))
    warm: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros((0, 0), np.bool_))
    stale: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    present: npt.NDArray[np.bool_] = field(default_factory=lambda: np.zeros(0, np.bool_))
    lost: frozenset[str] = frozenset()


class Pipeline:
    def __init__(self, cfg: Config, topology: Topology) -> None:
        d = cfg.detector
        self.cfg = cfg
        self.metrics = list(d.metrics)
        self.log_cols = np.array([j for j, m in enumerate(self.metrics) if m in d.log_metrics], np.int64)
        self.params = ResidualParams.from_config(d)
        self.bets = np.array(d.bets, np.float64)
        self.critical_xids = frozenset(cfg.rules.critical_xids)
        self.book = FiringBook(recent_limit=d.recent_resolved)
        self.bounds = ValueBounds(self.metrics, cfg.window)  # implausible window values become missing
        self.assembler = WindowAssembler(
            [],
            self.metrics,
            None if cfg.window.auto else cfg.window.length_s,
            cfg.window.grace_s,
            cfg.rules.ecc_dbe_counter,
        )
        self.state = DetectorState.empty(0, len(self.metrics), d.warmup_max_windows, len(self.bets))
        self.cstate = DetectorState.empty(0, len(self.metrics), d.warmup_max_windows, len(self.bets))
        self.families = Families(0, self.metrics, d.families, d.oscillation_metrics, d.conformal_seed)
        self.cohorts: list[str] = []
        self.missing_run = np.zeros(0, np.int64)
        self.cadence = np.ones(0)  # [S] each shard's own sample interval, in windows (EW, >= 1)
        self.quiet_until = np.zeros(0, np.int64)  # [S] no new statistical page before this window (recovery)
        self._window_index = -1
        self.r_ew = np.zeros((0, len(self.metrics)))  # [S, M] smoothed peer residual (analysed units)
        self.level_out = np.zeros((0, len(self.metrics)), np.bool_)  # [S, M] r_ew beyond the margin
        self.seen = np.zeros(0, np.bool_)  # [S] the shard has reported at least once
        self.shards: list[str] = []
        self.row: dict[str, int] = {}
        self.table = ShardTable()
        self.threshold_override: float | None = None
        self._merged: list[Firing] = []  # where _open reports member firings a group incident took over
        self.windows_processed = 0
        self.last_duration_s = 0.0
        self.topology = topology
        self.events = EventBook(topology, cfg.events)
        self.set_topology(topology)

    # ------------------------------------------------------------------------------ topology

    def set_topology(self, topology: Topology) -> None:
        """Adopt a (new) topology, keeping the state of shards that persist by id."""
        shards = topology.shards
        rows = np.array([self.row.get(s, -1) for s in shards], np.int64)
        self.state = self.state.take(rows)
        self.families.take(rows)
        missing = np.zeros(len(shards), np.int64)
        keep = rows >= 0
        missing[keep] = self.missing_run[rows[keep]]
        self.missing_run = missing
        cadence = np.ones(len(shards))
        cadence[keep] = self.cadence[rows[keep]]
        self.cadence = cadence
        quiet = np.full(len(shards), np.iinfo(np.int64).min, np.int64)
        quiet[keep] = self.quiet_until[rows[keep]]
        self.quiet_until = quiet
        m = len(self.metrics)
        r_ew = np.full((len(shards), m), np.nan)
        r_ew[keep] = self.r_ew[rows[keep]]
        self.r_ew = r_ew
        self.level_out = np.zeros((len(shards), m), np.bool_)
        seen = np.zeros(len(shards), np.bool_)
        seen[keep] = self.seen[rows[keep]]
        self.seen = seen
        self.topology = topology
        self._members = topology.members()
        self._member_sets: dict[str, frozenset[str]] = {}
        self.host_of = _hosts(topology, shards)
        self.shards = shards
        self.row = {s: i for i, s in enumerate(shards)}
        cohort_names = [topology.cohort_of(s) for s in shards]  # once: 100k shards x cohorts was seconds
        cohorts = sorted(set(cohort_names))
        old_c = {c: i for i, c in enumerate(self.cohorts)}
        self.cstate = self.cstate.take(np.array([old_c.get(c, -1) for c in cohorts], np.int64))
        self.cohorts = cohorts
        self.cohort_pending = np.zeros((len(cohorts), len(self.metrics)), np.int64)
        self.cohort_ring = np.zeros((0, 0, 0))  # [C, M, depth] recent cohort centres (``_cohort_step``)
        self.cohort_ring_at = 0
        cidx = {c: i for i, c in enumerate(cohorts)}
        self._cohort_members: dict[str, list[str]] = {c: [] for c in cohorts}
        for s, c in zip(shards, cohort_names, strict=True):
            self._cohort_members[c].append(s)
        self.cohort_of = np.array([cidx[c] for c in cohort_names], np.int64)
        self.assembler.set_shards(shards)
        if hasattr(self, "events"):
            self.events.set_topology(topology)
        d = self.cfg.detector
        self.groups = GroupDetector(
            topology,
            self.row,
            len(self.metrics),
            d.attribution_kinds,
            self.bets,
            d.warmup_windows,
            d.baseline_halflife_windows,
            previous=getattr(self, "groups", None),
            old_row=rows,
        )
        self._groups_of_row: dict[int, list[int]] = {}
        for gi, rows in enumerate(self.groups.rows):
            for r in rows.tolist():
                self._groups_of_row.setdefault(r, []).append(gi)
        # every e-detector stream counts toward the false-page budget: shards, groups and cohorts
        self.n_streams = max(
            1,
            (len(shards) + len(self.groups) + len(cohorts)) * len(self.metrics)
            + len(shards) * self.families.n_streams_per_shard,
        )

    @property
    def kernel_threads(self) -> int:
        """Threads of the Family A kernel (``detector.threads`` resolved against the usable cores)."""
        return resolve_threads(self.cfg.detector.threads)

    @property
    def window_length_s(self) -> float:
        """The window length in force (measured from the poll cadence when ``window.length_s`` is auto;
        until then, the fallback the assembler reports)."""
        return self.assembler.length_s

    def observed_cadence_s(self) -> float:
        """Median over reporting shards of their own sample interval (seconds; NaN before any)."""
        seen = self.seen
        if not seen.any():
            return math.nan
        return float(np.median(self.cadence[seen])) * self.window_length_s

    def window_too_short(self) -> bool:
        """An explicit window shorter than the shards' median cadence: most windows hold no sample."""
        cad = self.observed_cadence_s()
        return math.isfinite(cad) and self.windows_processed >= 10 and cad > 1.5 * self.window_length_s

    @property
    def threshold_log(self) -> float:
        """The evidence threshold of this pipeline's streams (a split-mode worker sets the fleet's)."""
        if self.threshold_override is not None:
            return self.threshold_override
        return threshold_log(
            self.n_streams,
            self.window_length_s,
            self.cfg.detector.false_pages_per_day,
            self.cfg.detector.min_threshold_log,
        )

    @threshold_log.setter
    def threshold_log(self, value: float) -> None:
        self.threshold_override = float(value)

    # ------------------------------------------------------------------------------ ingest

    def ingest(self, frames: Iterable[Frame]) -> None:
        """Frames into the window assembler: a :class:`FrameBlock` as it is, anything else converted to
        one block at this boundary (``WindowAssembler.add_frames``)."""
        self.assembler.add_frames(frames if isinstance(frames, FrameBlock) else list(frames))

    def advance(self, watermark: float | None = None) -> list[WindowResult]:
        return [self.process(w) for w in self.assembler.close_ready(watermark)]

    def flush(self) -> list[WindowResult]:
        return [self.process(w) for w in self.assembler.flush()]

    def warm_fraction(self) -> float:
        fresh = self.missing_run == 0
        if not fresh.any():
            return 0.0
        return float(self.state.warm()[fresh].mean())

    # ------------------------------------------------------------------------------ one window

    def process(self, win: WindowData) -> WindowResult:
        t0 = time.perf_counter()
        st = self.state
        thr = self.threshold_log
        resolve_below = self.cfg.detector.resolve_fraction * thr

        # announced events: shards whose event window ended re-learn their baseline (a firmware push
        # legitimately moves clocks); shards inside a window do not learn, and what opens there is
        # labelled event_conditional instead of paged
        ended = self.events.take_ended(win.end_ts)
        for _ev, ev_shards in ended:
            rows = np.array([self.row[s] for s in ev_shards if s in self.row], np.int64)
            if rows.size:
                st.relearn(rows)
                self.families.relearn(rows)
                self.groups.relearn(rows)
        event_frozen = [self.row[s] for s in self.events.frozen(win.end_ts) if s in self.row]
        stale = self._cadence(win.present)
        st.r_prev[stale] = np.nan  # a stale shard's AR(1) restarts when it reports again
        x = self.bounds.apply(win.values)  # a copy; values outside their plausible range are missing
        if self.log_cols.size:
            lx = x[:, self.log_cols]
            with np.errstate(invalid="ignore", divide="ignore"):
                x[:, self.log_cols] = np.where(lx > 0, np.log(lx), np.nan)
        lost_rows = np.array([self.row[s] for s in win.lost if s in self.row], np.int64)
        if lost_rows.size:
            x[lost_rows] = np.nan
        x[stale] = np.nan
        fresh_rows = [np.nonzero((self.cohort_of == c) & ~stale)[0] for c in range(len(self.cohorts))]

        frozen = st.log_m >= self.cfg.detector.learn_below_log
        if event_frozen:
            frozen[event_frozen, :] = True
        for gi, j in zip(*np.nonzero(self.groups.log_m >= self.cfg.detector.learn_below_log), strict=True):
            frozen[self.groups.rows[gi], j] = True  # a group showing evidence: its members must not absorb it
        lone = np.zeros_like(frozen)  # streams with an open shard_fault firing of their own
        for key in self.book.active_keys():
            target, det, metric = key
            if det == "A" and metric is not None and target in self.row:
                frozen[self.row[target], self.metrics.index(metric)] = True
                f = self.book.get(key)
                lone[self.row[target], self.metrics.index(metric)] = f is not None and f.classification == "shard_fault"

        res = residual_step(st, x, self.cohort_of, fresh_rows, frozen, self.params)
        mat_units = self.params.material_units(st.offset + np.nan_to_num(res.centre[self.cohort_of]))
        self._track_level(mat_units, stale)
        family_a_update(
            res.w,
            res.delta_a,
            res.v_a,
            self.bets,
            self.cfg.detector.clip_sigma,
            win.index,
            st.e_state,
            st.run_start,
            st.log_m,
            st.side,
            margin=res.margin,
            threads=self.kernel_threads,
        )

        views = self.families.update(
            res.w,
            res.delta,
            res.v,
            self.cohort_of,
            len(self.cohorts),
            self.cfg.detector.clip_sigma,
            win.index,
            material=self._step_margin(res, mat_units),
            settled=st.n_learn >= self.cfg.detector.warmup_max_windows,
        )
        self.groups.seed(st, self.cfg.detector.clip_sigma)
        # pooled detectors are for shifts too small to fire single shards: a member already firing as a
        # shard fault is explained by its own firing and left out of its groups' pools (a straggler must
        # not slowly drag its host over the threshold with seven healthy GPUs in it)
        marg_sd = st.scale / np.sqrt(np.maximum(1.0 - st.phi * st.phi, 1e-3))
        self.groups.learn_wander(st.last_r, marg_sd, self.window_length_s, self.cfg.detector.learn_below_log)
        per_unit = (1.0 - st.phi) / st.scale
        gres = self.groups.update(
            np.where(lone, np.nan, res.w),
            res.delta_min,
            V_INFLATION,
            self.cfg.detector.clip_sigma,
            win.index,
            thr,
            self.cfg.detector.learn_below_log,
            per_unit=per_unit,
            margin=res.margin,
            threads=self.kernel_threads,
        )
        shard_cross = self._selection(st, stale, thr)
        if self.cfg.detector.selection == "e-d-bh" and len(self.groups):
            gres = self.groups.result(shard_cross[1], thr)
        gres = self._promote(gres, thr)
        opened: list[Firing] = []
        resolved: list[Firing] = []
        self._merged = resolved
        self._resolve_relearned(win, ended, resolved)
        self._cohort_streams(win, res.centre, thr, resolve_below, opened, resolved)
        self._lifecycle_family_a(win, res.centre, stale, shard_cross[0], thr, resolve_below, opened, resolved)
        for view in views:
            self._lifecycle_view(win, view, stale, thr, resolve_below, opened, resolved)
        self._attribution(win, gres, thr, resolve_below, opened, resolved)
        hits = evaluate_rules(win.xids, win.ecc_increments, win.lost, self.critical_xids)
        hits += self._silence(stale)
        self._lifecycle_rules(win, hits, thr, opened, resolved)

        self._window_index = win.index
        self._rearm_closed(resolved)
        self._merged = []
        self.table = ShardTable(
            window=win.index,
            end_ts=win.end_ts,
            log_m=st.log_m.copy(),
            last_x=x,
            last_w=np.where(np.isnan(res.w), np.nan, res.w),
            warm=st.warm(),
            stale=stale,
            present=win.present.copy(),
            lost=frozenset(win.lost),
        )
        self.windows_processed += 1
        self.last_duration_s = time.perf_counter() - t0
        return WindowResult(win.index, win.end_ts, opened, resolved, self.last_duration_s, win.n_frames, ended)

    def _step_margin(self, res: ResidualOut, mat: npt.NDArray[np.float64] | None) -> npt.NDArray[np.float64]:
        """The material margin as a one-window step (innovation units, not scaled by 1 - phi): what
        conformal novelty (E) treats as immaterial. A cohort-wide phase that moves one member a little
        more than its peers shows up as a step at each phase change, never as more than that."""
        st = self.state
        if mat is None:
            return res.material
        with np.errstate(invalid="ignore", divide="ignore"):
            out: npt.NDArray[np.float64] = np.nan_to_num(mat / st.scale, nan=0.0, posinf=0.0)
        return np.maximum(out, res.material)

    def _track_level(self, mat: npt.NDArray[np.float64] | None, stale: npt.NDArray[np.bool_]) -> None:
        """Smoothed peer residual per stream (analysed units) and whether it lies beyond the stream's
        margin (the material effect, or delta_min marginal sigmas when larger): what keeps an incident
        open while the deviation it stands for lasts."""
        st = self.state
        r = st.last_r
        obs = ~np.isnan(r)
        self.r_ew = np.where(
            obs,
            np.where(np.isnan(self.r_ew), r, self.r_ew + LEVEL_RATE * (r - self.r_ew)),
            np.where(stale[:, None], np.nan, self.r_ew),
        )
        root = np.sqrt(np.maximum(1.0 - st.phi * st.phi, 1e-6))
        marg = self.params.delta_min * st.scale / root
        if mat is not None:
            marg = np.maximum(marg, mat)
        self.level_out = np.abs(np.nan_to_num(self.r_ew)) > marg

    def _rearm_closed(self, resolved: list[Firing]) -> None:
        """Statistical incidents that closed this window re-arm the streams of the shards they covered."""
        rows: set[int] = set()
        for f in resolved:
            if (
                f.detector.startswith("rule:")
                or f.classification == "fleet_event"
                or "merged" in str(f.receipt.get("resolved_reason", ""))
            ):
                continue
            rows.update(self.row[s] for s in (*f.members, *self._member_set(f.target)) if s in self.row)
        covered = {
            s
            for key in self.book.active_keys()
            if (g := self.book.get(key)) is not None and not key[1].startswith("rule:")
            for s in g.members
        }
        for i in sorted(rows):
            if self.shards[i] not in covered:
                self._rearm_shard(i)
                self.quiet_until[i] = self._window_index + RECOVERY_WINDOWS

    def _cadence(self, present: npt.NDArray[np.bool_]) -> npt.NDArray[np.bool_]:
        """Update each shard's own cadence and return which shards are stale.

        A window without a sample is no observation; a shard is late only once it has sent nothing for
        ``stale_after_windows`` of its own sample intervals (a 30-s poller behind 10-s windows is not
        stale after three empty windows). The interval is an exponential mean of the gaps between the
        windows a shard reported in, each gap capped at twice the current estimate plus one (an outage
        does not teach the shard a slow cadence)."""
        gap = self.missing_run + 1
        back = present & self.seen
        if back.any():
            g = np.minimum(gap[back], 2.0 * self.cadence[back] + 1.0)
            self.cadence[back] = np.maximum(self.cadence[back] + CADENCE_RATE * (g - self.cadence[back]), 1.0)
        self.seen |= present
        self.missing_run = np.where(present, 0, self.missing_run + 1)
        limit = self.cfg.window.stale_after_windows * np.maximum(self.cadence, 1.0)
        stale: npt.NDArray[np.bool_] = self.missing_run >= np.ceil(limit)
        return stale

    def _silence(self, stale: npt.NDArray[np.bool_]) -> list[RuleHit]:
        """Silence is a signal: a shard that stopped reporting while its host's other shards still report
        is a missing device (hard fault); a host whose every shard went silent is one host-level hit."""
        gone = stale & self.seen
        if not gone.any():
            return []
        hits: list[RuleHit] = []
        for host, rows in self.host_of.items():
            g = gone[rows]
            if not g.any():
                continue
            if g.all():
                if self.missing_run[rows].min() * self.window_length_s < self.cfg.window.host_silent_s:
                    continue  # an agent restart or a short network blip: the host comes back
                if rows.size > 1:
                    hits.append(
                        RuleHit(
                            host,
                            "host_silent",
                            {"shards": int(rows.size)},
                            scope="host",
                            members=tuple(self.shards[r] for r in rows),
                        )
                    )
                else:
                    hits.append(RuleHit(self.shards[int(rows[0])], "device_missing", {"host_reporting": False}))
                continue
            alive = ~stale[rows]
            if alive.any():
                for r in rows[g]:
                    hits.append(
                        RuleHit(
                            self.shards[int(r)],
                            "device_missing",
                            {
                                "missing_windows": int(self.missing_run[r]),
                                "cadence_windows": round(float(self.cadence[r]), 2),
                                "host_reporting": int(alive.sum()),
                            },
                        )
                    )
        hits.sort(key=lambda h: (h.shard, h.rule))
        return hits

    def _open(self, f: Firing, opened: list[Firing]) -> None:
        """Open a firing, labelled event_conditional when it starts inside an announced event's window.

        One incident per fault: a statistical shard firing whose shard is already part of an open
        incident (its own statistical firing on another detector or metric, or a group firing that
        lists it) is not opened; it is recorded in that incident's receipt as related evidence. A group
        firing that opens takes over its members' open statistical firings (resolved as merged)."""
        if f.detector.startswith("rule:"):  # (a shard's second hard fault is folded in by _lifecycle_rules)
            self.events.attribute(f)
            self.book.open(f)
            opened.append(f)
            return
        if f.scope == "shard":
            i = self.row.get(f.target, -1)
            if i >= 0 and f.window < self.quiet_until[i]:
                return  # the shard's incident closed moments ago: its recovery is part of it, not a new page
            cover = self._incident_of(f.target, f.metric)
            if cover is not None:
                _relate(
                    cover,
                    {
                        "shard": f.target,
                        "detector": f.detector,
                        "metric": f.metric,
                        "window": f.window,
                        "log_evidence": round(f.log_evidence, 4),
                    },
                    ("shard", "detector", "metric"),
                )
                return
        if f.scope not in ("shard", "cohort"):
            cover = self._group_incident_of(f.target, f.metric)
            if cover is not None:  # the node (another metric) or a larger node already has the incident
                _relate(
                    cover,
                    {
                        "node": f.target,
                        "detector": f.detector,
                        "metric": f.metric,
                        "window": f.window,
                        "log_evidence": round(f.log_evidence, 4),
                    },
                    ("node", "metric"),
                )
                return
        self.events.attribute(f)
        self.book.open(f)
        opened.append(f)
        if f.scope not in ("shard", "cohort") and f.members:
            self._merge_members(f, opened)

    def _incident_of(self, shard: str, metric: str | None) -> Firing | None:
        """The open statistical incident that already covers a firing of ``shard`` on ``metric`` (None:
        none): the shard's own incident (any detector or metric), or a group incident holding the shard
        on the same metric (a multivariate / novelty firing, metric None, on any). One that closed in this
        very window still counts (its recovery is part of it)."""
        best: Firing | None = None
        for f in self._statistical_incidents():
            own = f.target == shard
            group = self._group_holds(f, shard, metric)
            if (own or group) and (best is None or (best.scope == "shard" and f.scope != "shard")):
                best = f
        return best

    def _group_incident_of(self, node: str, metric: str | None) -> Firing | None:
        """An open statistical group incident on ``node`` itself (any metric) or, on the same metric, on a
        node holding all of its shards; one that closed this very window counts too."""
        mine = self._member_set(node)
        for f in self._statistical_incidents():
            if f.scope in ("shard", "cohort"):
                continue
            same = f.metric == metric or f.scope not in WIDE_SCOPES
            if f.target == node or (same and mine and mine <= self._member_set(f.target)):
                return f
        return None

    def _statistical_incidents(self) -> Iterator[Firing]:
        """Open statistical incidents (not hard faults, not fleet events), those closed in this very
        window first."""
        for f in [*self._merged, *(self.book.get(k) for k in self.book.active_keys())]:
            if f is not None and not f.detector.startswith("rule:") and f.classification != "fleet_event":
                yield f

    def _member_set(self, node: str) -> frozenset[str]:
        """Every shard of a topology node (empty for a shard or an unknown id)."""
        cached = self._member_sets.get(node)
        if cached is None:
            cached = self._member_sets[node] = frozenset(self._members.get(node, ()))
        return cached

    def _merge_members(self, group: Firing, opened: list[Firing]) -> None:
        """A group incident opened: its members' open statistical shard firings become part of it."""
        members = set(group.members) | self._member_set(group.target)
        merged = group.receipt.setdefault("merged", [])
        for key in self.book.active_keys():
            _target, det, _metric = key
            if det.startswith("rule:") or key == self.book.key(group):
                continue
            f = self.book.get(key)
            if f is None or f is group or f.scope == "cohort" or not members.issuperset(f.members):
                continue  # only what lies inside the group is part of its incident
            if group.scope in WIDE_SCOPES and f.metric is not None and f.metric != group.metric:
                continue  # ... and, for a zone, on its metric (another metric inside a zone is another fault)
            merged.append(f.id)
            if f in opened:  # opened this very window: nobody saw it, the incident is all that is reported
                opened.remove(f)
                self.book.withdraw(key)
                continue
            f.classification = "common_mode"
            f.receipt["group"] = group.target
            done = self.book.resolve(key, ts=group.opened_ts, window=group.window, reason=f"merged into {group.id}")
            self._merged.append(done)

    def _rearm_shard(self, i: int) -> None:
        """An incident covering shard row ``i`` closed: its streams without an open firing of their own
        start from zero (evidence gathered during the incident belonged to it)."""
        shard = self.shards[i]
        cols = [j for j, m in enumerate(self.metrics) if not self.book.is_active((shard, "A", m))]
        if cols:
            self.state.rearm(np.full(len(cols), i, np.int64), np.array(cols, np.int64))
        for name in ("C", "E"):
            if not self.book.is_active((shard, name, None)):
                self.families.rearm(name, i, 0)
        for col, m in enumerate(self.families.metrics[c] for c in self.families.d_cols):
            if not self.book.is_active((shard, "D", m)):
                self.families.rearm("D", i, col)

    def _resolve_relearned(
        self, win: WindowData, ended: list[tuple[ClusterEvent, list[str]]], resolved: list[Firing]
    ) -> None:
        """Statistical firings of shards that just re-learned their baseline close with the event."""
        shards = {s for _ev, ss in ended for s in ss}
        if not shards:
            return
        for key in self.book.active_keys():
            target, det, _metric = key
            if target in shards and not det.startswith("rule:"):
                resolved.append(self.book.resolve(key, ts=win.end_ts, window=win.index, reason="event_ended"))

    def _selection(
        self, st: DetectorState, stale: npt.NDArray[np.bool_], thr: float
    ) -> tuple[npt.NDArray[np.bool_], npt.NDArray[np.bool_]]:
        """Family A shard streams and pooled group streams selected this window.

        e-d-BH runs over both sets jointly (every one of them counts in the threshold's stream count):
        a common mode that elevates many shard and group streams at once lowers the bar by log k for
        all of them. Bonferroni: each stream against the threshold on its own.
        """
        eligible = ~np.isnan(st.last_w) & ~stale[:, None]
        shard_lm = np.where(eligible, st.log_m, -np.inf)
        group_lm = self.groups.live_log_m() if len(self.groups) else np.zeros((0, shard_lm.shape[1]))
        if self.cfg.detector.selection != "e-d-bh":
            return shard_lm >= thr, group_lm >= thr
        sel = e_d_bh_selected(np.concatenate([shard_lm, group_lm], axis=0), thr)
        n = shard_lm.shape[0]
        return sel[:n], sel[n:]

    def _lifecycle_family_a(
        self,
        win: WindowData,
        centre: npt.NDArray[np.float64],
        stale: npt.NDArray[np.bool_],
        cross: npt.NDArray[np.bool_],
        thr: float,
        resolve_below: float,
        opened: list[Firing],
        resolved: list[Firing],
    ) -> None:
        st = self.state
        n_resolve = self.cfg.detector.resolve_windows
        cross = cross.copy()
        for key in self.book.active_keys():
            target, det, metric = key
            if det != "A" or metric is None or target not in self.row:
                continue  # rules and group firings have their own lifecycle
            i, j = self.row[target], self.metrics.index(metric)
            if stale[i]:
                resolved.append(self.book.resolve(key, ts=win.end_ts, window=win.index, reason="stale"))
                st.rearm(np.array([i]), np.array([j]))
                cross[i, j] = False
                continue
            if np.isnan(st.last_w[i, j]):
                continue  # no observation this window: neither evidence nor quiet
            ev = float(st.log_m[i, j])
            f = self.book.get(key)
            peak = f.log_evidence if f is not None else ev
            # quiet: evidence is low, or has fallen by (1 - resolve_fraction) x threshold from its peak
            # (the e-CUSUM is moving back toward the null; the slow small-bet components lag behind)
            quiet = ev < resolve_below or ev <= peak - (thr - resolve_below)
            # ... and the deviation itself is back within its margin: a persistent fault whose e-CUSUM
            # settles (the whitened innovation of a held shift is small at high phi) stays one incident
            quiet = quiet and not self.level_out[i, j]
            self.book.observe(key, above=ev >= thr, quiet=quiet, evidence=ev, window=win.index)
            if self.book.quiet_windows(key) >= n_resolve:
                resolved.append(self.book.resolve(key, ts=win.end_ts, window=win.index, reason="evidence"))
                st.rearm(np.array([i]), np.array([j]))
                cross[i, j] = False  # selected on the evidence it had before this resolve re-armed it
        for i, j in zip(*np.nonzero(cross), strict=True):
            shard, metric = self.shards[i], self.metrics[j]
            if self.book.is_active((shard, "A", metric)):
                continue
            gi = self._spread_group(int(i), int(j), thr)
            if gi >= 0:  # the shift is spread over a group the shard belongs to: the group is the incident
                g = self.groups.ids[gi]
                if self._incident_of(shard, metric) is None and self.book.get((g, "A", metric)) is None:
                    pf = self._pooled_firing(win, gi, int(j), thr)
                    pf.receipt.update(
                        {"promoted_from": shard, "log_evidence_of_shard": round(float(st.log_m[i, j]), 4)}
                    )
                    pf.log_evidence = max(pf.log_evidence, float(st.log_m[i, j]))
                    self._open(pf, opened)
                    continue
            f = self._family_a_firing(win, int(i), int(j), centre, thr)
            self._open(f, opened)

    def _spread_group(self, i: int, j: int, thr: float) -> int:
        """The largest group holding shard row ``i`` in which at least half the members show evidence
        (``CHILD_FRACTION`` of the threshold) on metric column j in the crossing shard's direction, and
        either the group's pooled evidence does too or a second member crosses (-1: none). A fault on an
        NVLink domain or a host moves all of its GPUs: the first GPU to cross
        names the group, not itself."""
        g = self.groups
        st = self.state
        side = st.side[i, j]
        bar = CHILD_FRACTION * thr
        best, best_n = -1, 0
        metric = self.metrics[j]
        for gi in self._groups_of_row.get(i, ()):
            rows = g.rows[gi]
            # members whose evidence an open incident already holds (a fault that just ended decays
            # slowly) are that incident's, not a sign that this shift is spread over the group
            free = np.array(
                [self.level_out[r, j] or self._group_holder(self.shards[r], metric) is None for r in rows], np.bool_
            )
            same = (st.side[rows, j] == side) & free
            up = (st.log_m[rows, j] >= bar) & same
            crossing = int(np.count_nonzero((st.log_m[rows, j] >= thr) & same))
            pooled = g.log_m[gi, j] >= bar and g.side[gi, j] == side
            if up.mean() >= 0.5 and (pooled or crossing >= 2) and rows.size > best_n:
                best, best_n = int(gi), int(rows.size)
        return best if best < 0 else self._wider(best, j, int(side), bar)

    def _group_holder(self, shard: str, metric: str | None) -> Firing | None:
        """The open statistical group incident holding ``shard`` on ``metric`` (None: none)."""
        return next((f for f in self._statistical_incidents() if self._group_holds(f, shard, metric)), None)

    def _group_holds(self, f: Firing, shard: str, metric: str | None) -> bool:
        """Group incident ``f`` holds ``shard`` on ``metric``: its node or member list has the shard, and
        it is on that metric (a cooling zone or wider holds only its own metric; a multivariate or
        novelty firing, metric None, is held by any)."""
        return (
            f.scope not in ("shard", "cohort")
            and (metric is None or f.metric == metric or f.scope not in WIDE_SCOPES)
            and (shard in f.members or shard in self._member_set(f.target))
        )

    def _shift_of(self, gi: int, j: int, side: int) -> float:
        """Median smoothed peer residual of group ``gi``'s observed members on metric column j, signed so
        that a shift on ``side`` is positive (NaN: none observed)."""
        r = self.r_ew[self.groups.rows[gi], j]
        r = r[~np.isnan(r)]
        return float(np.median(side * r)) if r.size else math.nan

    def _shifted(self, gi: int, j: int, side: int, ref: float) -> bool:
        """At least half of group ``gi``'s observed members sit beyond their material margin on metric
        column j, on ``side``, by at least half of ``ref`` (the crossing group's own shift): the group
        carries the same shift even where its pooled e-value is still small (a high-persistence member
        sees a step at only 1 - phi of its size per window)."""
        rows = self.groups.rows[gi]
        r = self.r_ew[rows, j]
        seen = ~np.isnan(r)
        if not seen.any() or not ref > 0:
            return False
        out = self.level_out[rows, j] & (side * np.nan_to_num(r) >= 0.5 * ref)
        return bool(np.count_nonzero(out) * 2 >= np.count_nonzero(seen))

    def _wider(self, gi: int, j: int, side: int, bar: float) -> int:
        """The largest parent of group ``gi`` that shows evidence itself (``bar``) on ``side`` and every
        one of whose sub-groups shows evidence or carries the same shift (``_shifted``); ``gi`` if none."""
        g = self.groups
        ref = self._shift_of(gi, j, side)
        for p in sorted(g.parents[gi], key=lambda q: -g.rows[q].size):
            if g.log_m[p, j] < bar or int(g.side[p, j]) != side:
                continue
            if all(
                (g.log_m[c, j] >= bar and int(g.side[c, j]) == side) or self._shifted(c, j, side, ref)
                for c in g.children[p]
            ):
                return int(p)
        return int(gi)

    def _promote(self, gres: GroupResult, thr: float) -> GroupResult:
        """Name the larger node when a selected group's siblings carry the same material shift.

        The alarm is the selected group's own crossing (its e-process); which node it names is
        parsimony. A parent that shows some evidence itself, and every one of whose sub-groups either
        shows evidence (CHILD_FRACTION of the threshold) or has half its members beyond their material
        margin in the same direction, explains the crossing better than the part that crossed first:
        a rack thermal fault is the rack, even where one PSU's members (high AR(1) persistence) build
        evidence more slowly than the other's."""
        g = self.groups
        if not gres.selected:
            return gres
        bar = CHILD_FRACTION * thr
        out: list[tuple[int, int]] = []
        for gi, j in gres.selected:
            pick = self._wider(gi, j, int(g.side[gi, j]), bar)
            if (pick, j) not in out:
                out.append((pick, j))
        if out == gres.selected:
            return gres
        return GroupResult(gres.crossing, out)

    def _cohort_streams(
        self,
        win: WindowData,
        centre: npt.NDArray[np.float64],
        thr: float,
        resolve_below: float,
        opened: list[Firing],
        resolved: list[Firing],
    ) -> None:
        """Each cohort's centre against its own past: the cohort itself moved (fleet_event).

        Peer residuals cancel anything the whole cohort does, by design; this stream set sees exactly
        that. Same residual model (offset = the cohort's usual level, AR(1), scale) and Family A kernel.
        """
        cs = self.cstate
        n_c, m = cs.shape
        if n_c == 0:
            return
        frozen = cs.log_m >= self.cfg.detector.learn_below_log
        res = residual_step(
            cs, centre, np.zeros(n_c, np.int64), [np.arange(n_c)], frozen, self.params, centre=np.zeros((1, m))
        )
        family_a_update(
            res.w,
            res.delta_a,
            res.v_a,
            self.bets,
            self.cfg.detector.clip_sigma,
            win.index,
            cs.e_state,
            cs.run_start,
            cs.log_m,
            cs.side,
            margin=res.margin,
        )
        n_resolve = self.cfg.detector.resolve_windows
        persist = max(1, math.ceil(self.cfg.detector.fleet_event_persist_s / self.window_length_s))
        if self.cohort_pending.shape != (n_c, m):
            self.cohort_pending = np.zeros((n_c, m), np.int64)
        stepped = self._cohort_step(centre, persist)
        for ci, cohort in enumerate(self.cohorts):
            for j, metric in enumerate(self.metrics):
                key: Key = (cohort, "A", metric)
                ev = float(cs.log_m[ci, j])
                f = self.book.get(key)
                if f is None:
                    if np.isnan(cs.last_w[ci, j]):
                        continue  # no observation: the pending run neither grows nor breaks
                    if (
                        ev >= thr
                        and stepped[ci, j]
                        and self._broad_shift(ci, j, float(cs.offset[ci, j]), int(cs.side[ci, j]))
                    ):
                        self.cohort_pending[ci, j] += 1
                    else:
                        self.cohort_pending[ci, j] = 0
                    # a ticket means a new persistent regime: a job phase (eval loop, checkpoint stall)
                    # moves the whole cohort for minutes and comes back; it must outlast
                    # detector.fleet_event_persist_s first
                    if self.cohort_pending[ci, j] >= persist:
                        f = Firing(
                            id=firing_id(cohort, "A", metric, win.index),
                            state="open",
                            opened_ts=win.end_ts,
                            window=win.index,
                            scope="cohort",
                            target=cohort,
                            members=list(self._cohort_members.get(cohort, [])),
                            detector="A",
                            metric=metric,
                            log_evidence=ev,
                            threshold_log=thr,
                            classification="fleet_event",
                            receipt={
                                "window_start_ts": win.start_ts,
                                "window_end_ts": win.end_ts,
                                "change_window": int(cs.run_start[ci, j]),
                                "direction": "up" if cs.side[ci, j] > 0 else "down",
                                "cohort_level": round(float(centre[ci, j]), 6),
                                "usual_level": round(float(cs.offset[ci, j]), 6),
                                "persisted_windows": int(self.cohort_pending[ci, j]),
                                "note": "the whole cohort moved together; peer residuals cancel it",
                            },
                        )
                        self._open(f, opened)
                    continue
                if np.isnan(cs.last_w[ci, j]):
                    continue
                quiet = ev < resolve_below or ev <= f.log_evidence - (thr - resolve_below)
                self.book.observe(key, above=ev >= thr, quiet=quiet, evidence=ev, window=win.index)
                if self.book.quiet_windows(key) >= n_resolve:
                    resolved.append(self.book.resolve(key, ts=win.end_ts, window=win.index, reason="evidence"))
                    cs.rearm(np.array([ci]), np.array([j]))

    def _cohort_step(self, centre: npt.NDArray[np.float64], persist: int) -> npt.NDArray[np.bool_]:
        """Whether each cohort centre [C, M] stepped: its recent level (the last ``STEP_SMOOTH`` windows)
        differs by more than the material margin from its level ``STEP_LOOKBACK x persist`` windows
        ago. A regime is a step; a slow drift (the room's diurnal temperature, a load that follows the
        day) moves the cohort too, but never by a material amount within the look-back, so it opens no
        ticket (the cohort stream's own baseline, frozen once it shows evidence, would otherwise page
        on every slow drift)."""
        n_c, m = centre.shape
        depth = min(STEP_LOOKBACK * persist + STEP_SMOOTH, STEP_RING_MAX)
        if self.cohort_ring.shape != (n_c, m, depth):
            self.cohort_ring = np.full((n_c, m, depth), np.nan)
            self.cohort_ring_at = 0
        k = self.cohort_ring_at % depth
        self.cohort_ring[:, :, k] = centre
        self.cohort_ring_at += 1
        if self.cohort_ring_at < depth:
            return np.zeros((n_c, m), np.bool_)
        order = (np.arange(depth) + self.cohort_ring_at) % depth  # oldest first
        ring = self.cohort_ring[:, :, order]
        with quiet_runtime_warnings():
            old = np.nanmean(ring[:, :, :STEP_SMOOTH], axis=2)
            new = np.nanmean(ring[:, :, -STEP_SMOOTH:], axis=2)
        mat = self.params.material_units(old)
        cs = self.cstate
        floor = self.params.delta_min * cs.scale / np.sqrt(np.maximum(1.0 - cs.phi * cs.phi, 1e-3))
        margin = floor if mat is None else np.maximum(mat, floor)
        out: npt.NDArray[np.bool_] = np.abs(np.nan_to_num(new - old)) > margin
        return out

    def _broad_shift(self, ci: int, j: int, usual: float, side: int) -> bool:
        """A fleet event moves most of the cohort: at least BROAD_FRACTION of its reporting shards sit
        1 sigma or more from their own baseline in the direction of the cohort shift. A rack or PSU
        fault drags the cohort median too, but only its own shards move: that is not a fleet event."""
        st = self.state
        metric = self.metrics[j]
        members = set(self._cohort_members.get(self.cohorts[ci], []))
        for node, det, m in self.book.active_keys():  # a common mode already explains the movement
            if (
                det == "A"
                and m == metric
                and node not in self.row
                and node in self._members
                and members & set(self._members[node])
            ):
                return False
        rows = np.nonzero(self.cohort_of == ci)[0]
        x = st.last_x[rows, j]
        ok = ~np.isnan(x) & st.warm()[rows, j]
        if ok.sum() < self.cfg.detector.min_cohort:
            return False
        phi = st.phi[rows, j][ok]
        marg = st.scale[rows, j][ok] / np.sqrt(np.maximum(1.0 - phi * phi, 1e-3))
        dev = side * (x[ok] - st.offset[rows, j][ok] - usual) / marg
        return bool(np.mean(dev >= 1.0) >= BROAD_FRACTION)

    def _attribution(
        self,
        win: WindowData,
        gres: GroupResult,
        thr: float,
        resolve_below: float,
        opened: list[Firing],
        resolved: list[Firing],
    ) -> None:
        """Common modes: co-firing shards (per metric) localised to the most specific node that explains
        them, and pooled group detectors for shifts too small to fire single shards."""
        present = self._cofiring(win, gres, thr, opened)
        present |= self._pooled(win, gres, thr, resolve_below, opened, present)
        present |= self._held_by_members(win, resolve_below, present)
        self._resolve_groups(win, present, resolved)

    def _cofiring(self, win: WindowData, gres: GroupResult, thr: float, opened: list[Firing]) -> set[Key]:
        d = self.cfg.detector
        firing_by_metric: dict[str, list[str]] = {}
        for target, det, metric in self.book.active_keys():
            if det == "A" and metric is not None and target in self.row:
                firing_by_metric.setdefault(metric, []).append(target)
        # shards whose evidence crosses but whose firing an open incident holds (one incident per fault)
        st = self.state
        over = (st.log_m >= thr) & ~np.isnan(st.last_w)
        for i, j in zip(*np.nonzero(over), strict=True):
            lst = firing_by_metric.setdefault(self.metrics[j], [])
            if self.shards[i] in lst:
                continue
            if not self.level_out[i, j] and self._group_holder(self.shards[i], self.metrics[j]) is not None:
                continue  # evidence an incident holds, decaying after its shift ended: not co-firing now
            lst.append(self.shards[i])
        present: set[Key] = set()
        for metric, shards in sorted(firing_by_metric.items()):
            if len(shards) < 2:
                continue
            cands = attribute(
                shards,
                self.topology,
                p0=d.attribution_p0,
                alpha=d.attribution_alpha,
                kinds=d.attribution_kinds,
                members=self._members,
            )
            j = self.metrics.index(metric)
            for c in cands:
                if self._explained_above(c.node, j, gres):
                    continue  # a firing on a larger group already explains these shards
                key: Key = (c.node, "A", metric)
                if self.book.get(key) is None:
                    # a new incident needs two co-firing shards of its own: shards whose evidence an
                    # open incident on another node holds (its decay after the fault ended) do not
                    # make one lone new crossing elsewhere a zone-wide common mode
                    fresh = 0
                    for s in c.members:
                        h = self._group_holder(s, metric)
                        fresh += h is None or h.target == c.node
                    if fresh < 2:
                        continue
                present.add(key)
                group_e = self._group_log_e(c.node, j)
                f = self.book.get(key)
                if f is None:
                    self._open(self._common_mode_firing(win, c, metric, group_e, thr), opened)
                else:
                    # an open firing's members only grow: a pooled group firing already names every
                    # member, and a shard that stops co-firing is still part of the incident
                    f.members = sorted(set(f.members) | set(c.members))
                    f.receipt["candidate"] = c.to_obj()
                    self.book.observe(key, above=True, quiet=False, evidence=group_e, window=win.index)
                self._relabel_members(c.members, c.node)
        return present

    def _held_by_members(self, win: WindowData, resolve_below: float, present: set[Key]) -> set[Key]:
        """A common-mode incident stays open while any of its members' own evidence on its metric is
        above the resolve level (the members' firings are part of it, not separate pages)."""
        out: set[Key] = set()
        for key in self.book.active_keys():
            node, det, metric = key
            if det != "A" or metric is None or key in present or node in self.row or node in self._cohort_members:
                continue
            f = self.book.get(key)
            if f is None:
                continue
            rows = [self.row[s] for s in f.members if s in self.row]
            j = self.metrics.index(metric)
            if rows and (
                float(np.max(self.state.log_m[rows, j])) >= resolve_below or np.mean(self.level_out[rows, j]) >= 0.5
            ):
                out.add(key)
                self.book.observe(key, above=False, quiet=False, evidence=self._group_log_e(node, j), window=win.index)
        return out

    def _relabel_members(self, members: Iterable[str], node: str) -> None:
        """Every statistical firing of a common mode's members is part of it (not a shard fault):
        Family A on the metric, and the multivariate / novelty families that see the same shift."""
        wanted = set(members)
        for key in self.book.active_keys():
            target, det, _metric = key
            if target in wanted and not det.startswith("rule:"):
                f = self.book.get(key)
                if f is not None and f.classification == "shard_fault":
                    f.classification = "common_mode"
                    f.receipt["group"] = node

    def _pooled(
        self,
        win: WindowData,
        gres: GroupResult,
        thr: float,
        resolve_below: float,
        opened: list[Firing],
        present: set[Key],
    ) -> set[Key]:
        g = self.groups
        out: set[Key] = set()
        for gi, j in gres.selected:
            key: Key = (g.ids[gi], "A", self.metrics[j])
            if key in present or self._explained_above(g.ids[gi], j, gres):
                continue
            if self.book.get(key) is None:
                self._open(self._pooled_firing(win, gi, j, thr), opened)
                out.add(key)
            self._relabel_members((self.shards[r] for r in g.rows[gi]), g.ids[gi])
        for key in self.book.active_keys():  # pooled group firings stay while their evidence stays up,
            gi = g.index.get(key[0], -1)  # unless a larger group now explains them
            if gi < 0 or key[2] is None or key in present or key in out:
                continue
            j = self.metrics.index(key[2])
            ev = float(g.log_m[gi, j])
            f = self.book.get(key)
            peak = max(f.log_evidence, ev) if f is not None else ev
            # as for shards: quiet once evidence is low or has fallen by (1 - resolve_fraction) x threshold
            # from its peak (the small-bet components of a large pooled shift take long to decay)
            live = ev >= resolve_below and ev > peak - (thr - resolve_below)
            if live and not self._explained_above(key[0], j, gres):
                out.add(key)
                self.book.observe(key, above=bool(gres.crossing[gi, j]), quiet=False, evidence=ev, window=win.index)
        return out

    def _resolve_groups(self, win: WindowData, present: set[Key], resolved: list[Firing]) -> None:
        g = self.groups
        for key in self.book.active_keys():
            node, det, metric = key
            if det != "A" or key in present or node in self.row or node in self._cohort_members:
                continue
            self.book.observe(key, above=False, quiet=True, evidence=-math.inf, window=win.index)
            if self.book.quiet_windows(key) >= self.cfg.detector.resolve_windows:
                resolved.append(self.book.resolve(key, ts=win.end_ts, window=win.index, reason="no co-firing"))
                gi = g.index.get(node, -1)
                if gi >= 0 and metric is not None:
                    # the incident closed: neither its sub-groups nor its quiet members may page later on
                    # evidence they gathered during it (a rack's PSUs re-fired 35 windows after a fault)
                    # (every metric: what the incident held as related evidence belonged to it too)
                    for j, m in enumerate(self.metrics):
                        if m == metric or not self.book.is_active((node, "A", m)):
                            g.rearm_within(gi, j)
                    j = self.metrics.index(metric)
                    quiet = [r for r in g.rows[gi] if not self.book.is_active((self.shards[r], "A", metric))]
                    if quiet:
                        self.state.rearm(np.array(quiet, np.int64), np.full(len(quiet), j, np.int64))

    def _explained_above(self, node: str, j: int, gres: GroupResult) -> bool:
        """A larger group containing ``node`` is reported on metric column j: selected by the pooled
        detectors this window, or already holding an open firing (sticky, so children do not flap)."""
        g = self.groups
        gi = g.index.get(node, -1)
        if gi < 0:
            return False
        metric = self.metrics[j]
        return any((pa, j) in gres.chosen or self.book.is_active((g.ids[pa], "A", metric)) for pa in g.parents[gi])

    def _pooled_firing(self, win: WindowData, gi: int, j: int, thr: float) -> Firing:
        g = self.groups
        node, metric = g.ids[gi], self.metrics[j]
        members = sorted(self.shards[r] for r in g.rows[gi])
        evidence = float(g.log_m[gi, j])
        extra: dict[str, Any] = {}
        if evidence < thr and g.descendants[gi]:  # promoted: a sub-group crossed, this node explains it
            best = max(g.descendants[gi], key=lambda c: float(g.log_m[c, j]))
            extra = {"promoted_from": g.ids[best], "own_log_evidence": round(evidence, 4)}
            evidence = max(evidence, float(g.log_m[best, j]))
        return Firing(
            id=firing_id(node, "A", metric, win.index),
            state="open",
            opened_ts=win.end_ts,
            window=win.index,
            scope=g.kinds[gi],
            target=node,
            members=members,
            detector="A",
            metric=metric,
            log_evidence=evidence,
            threshold_log=thr,
            classification="common_mode",
            receipt={
                **extra,
                "window_start_ts": win.start_ts,
                "window_end_ts": win.end_ts,
                "pooled": True,
                "pooled_z": round(float(g.last_z[gi, j]), 4),
                "pooled_variance": round(float(g.var[gi, j]), 4),
                "change_window": int(g.run_start[gi, j]),
                "direction": "up" if g.side[gi, j] > 0 else "down",
                "statistic": "sum of member innovations / sqrt(n), standardised by its learnt variance",
            },
        )

    def _group_log_e(self, node: str, j: int) -> float:
        """Log of the mean of the members' e-values on metric column j (valid under any dependence)."""
        rows = [self.row[s] for s in self._members.get(node, []) if s in self.row]
        if not rows:
            return -math.inf
        lm = self.state.log_m[rows, j]
        top = float(np.max(lm))
        return top + math.log(float(np.mean(np.exp(lm - top))))

    def _common_mode_firing(self, win: WindowData, c: Candidate, metric: str, group_e: float, thr: float) -> Firing:
        return Firing(
            id=firing_id(c.node, "A", metric, win.index),
            state="open",
            opened_ts=win.end_ts,
            window=win.index,
            scope=c.kind,
            target=c.node,
            members=list(c.members),
            detector="A",
            metric=metric,
            log_evidence=group_e,
            threshold_log=thr,
            classification="common_mode",
            receipt={
                "window_start_ts": win.start_ts,
                "window_end_ts": win.end_ts,
                "candidate": c.to_obj(),
                "null": "P(Binomial(n, p0) >= k) <= alpha / groups tested",
                "p0": self.cfg.detector.attribution_p0,
                "alpha": self.cfg.detector.attribution_alpha,
                "group_log_e": "log mean of member e-values",
            },
        )

    def _lifecycle_view(
        self,
        win: WindowData,
        view: FamilyView,
        stale: npt.NDArray[np.bool_],
        thr: float,
        resolve_below: float,
        opened: list[Firing],
        resolved: list[Firing],
    ) -> None:
        """Open / resolve / re-arm for Families C, D and E (same rules as Family A)."""
        for key in self.book.active_keys():
            target, det, metric = key
            if det != view.name or target not in self.row:
                continue
            i, col = self.row[target], view.metrics.index(metric)
            if stale[i]:
                resolved.append(self.book.resolve(key, ts=win.end_ts, window=win.index, reason="stale"))
                self.families.rearm(view.name, i, col)
                continue
            if not view.observed[i, col]:
                continue
            ev = float(view.log_m[i, col])
            f = self.book.get(key)
            peak = f.log_evidence if f is not None else ev
            quiet = ev < resolve_below or ev <= peak - (thr - resolve_below)
            self.book.observe(key, above=ev >= thr, quiet=quiet, evidence=ev, window=win.index)
            if self.book.quiet_windows(key) >= self.cfg.detector.resolve_windows:
                resolved.append(self.book.resolve(key, ts=win.end_ts, window=win.index, reason="evidence"))
                self.families.rearm(view.name, i, col)
        cross = (view.log_m >= thr) & view.observed & ~stale[:, None]
        for i, col in zip(*np.nonzero(cross), strict=True):
            shard, metric = self.shards[i], view.metrics[col]
            if self.book.is_active((shard, view.name, metric)):
                continue
            detail = {k: (v[i, col] if v.ndim == 2 else v[i]).item() for k, v in view.detail.items()}
            self._open(
                Firing(
                    id=firing_id(shard, view.name, metric, win.index),
                    state="open",
                    opened_ts=win.end_ts,
                    window=win.index,
                    scope="shard",
                    target=shard,
                    members=[shard],
                    detector=view.name,
                    metric=metric,
                    log_evidence=float(view.log_m[i, col]),
                    threshold_log=thr,
                    classification="shard_fault",
                    receipt={
                        "window_start_ts": win.start_ts,
                        "window_end_ts": win.end_ts,
                        "family": FAMILY_NAMES[view.name],
                        "cohort": self.cohorts[self.cohort_of[i]],
                        **detail,
                    },
                ),
                opened,
            )

    def _family_a_firing(self, win: WindowData, i: int, j: int, centre: npt.NDArray[np.float64], thr: float) -> Firing:
        st = self.state
        shard, metric = self.shards[i], self.metrics[j]
        log_scale = j in set(self.log_cols.tolist())

        def raw(v: float) -> float | None:
            if not math.isfinite(v):
                return None
            return round(math.exp(v) if log_scale else v, 6)

        c = float(centre[self.cohort_of[i], j])
        receipt: dict[str, Any] = {
            "window_start_ts": win.start_ts,
            "window_end_ts": win.end_ts,
            "change_window": int(st.run_start[i, j]),
            "direction": "up" if st.side[i, j] > 0 else "down",
            "value": raw(float(st.last_x[i, j])),
            "cohort": self.cohorts[self.cohort_of[i]],
            "cohort_centre": raw(c),
            "scale": "log" if log_scale else "linear",
            "offset": round(float(st.offset[i, j]), 6),
            "innovation_scale": round(float(st.scale[i, j]), 6),
            "ar1_phi": round(float(st.phi[i, j]), 4),
            "residual": round(float(st.last_r[i, j]), 6),
            "innovation_z": round(float(st.last_w[i, j]), 4),
            "delta_min_sigma": self.params.delta_min,
            "bets": [float(b) for b in self.bets],
            "threshold": "log(streams x windows_per_day / false_pages_per_day)",
        }
        return Firing(
            id=firing_id(shard, "A", metric, win.index),
            state="open",
            opened_ts=win.end_ts,
            window=win.index,
            scope="shard",
            target=shard,
            members=[shard],
            detector="A",
            metric=metric,
            log_evidence=float(st.log_m[i, j]),
            threshold_log=thr,
            classification="shard_fault",
            receipt=receipt,
        )

    def _lifecycle_rules(
        self, win: WindowData, hits: list[RuleHit], thr: float, opened: list[Firing], resolved: list[Firing]
    ) -> None:
        hit_keys: set[Key] = set()
        for h in hits:
            key: Key = (h.shard, f"rule:{h.rule}", RULE_METRIC[h.rule])
            hit_keys.add(key)
            if not self.book.is_active(key) and h.scope == "shard":
                # another hard fault of this shard is open: this hit is part of that incident and keeps it open
                other = next((k for k in self.book.active_keys() if k[1].startswith("rule:") and k[0] == h.shard), None)
                if other is not None:
                    hit_keys.add(other)
                    first = self.book.get(other)
                    if first is not None:
                        _relate(
                            first,
                            {"shard": h.shard, "detector": key[1], "metric": key[2], "window": win.index, **h.detail},
                            ("detector",),
                        )
                    key = other
            if self.book.is_active(key):
                self.book.observe(key, above=True, quiet=False, evidence=thr, window=win.index)
                continue
            f = Firing(
                id=firing_id(h.shard, key[1], key[2], win.index),
                state="open",
                opened_ts=win.end_ts,
                window=win.index,
                scope=h.scope,
                target=h.shard,
                members=list(h.members) if h.members else [h.shard],
                detector=key[1],
                metric=key[2],
                log_evidence=thr,
                threshold_log=thr,
                classification="hard_fault",
                receipt={"window_start_ts": win.start_ts, "window_end_ts": win.end_ts, **h.detail},
            )
            self._open(f, opened)
        clear = self.cfg.rules.clear_windows
        for key in self.book.active_keys():
            if not key[1].startswith("rule:") or key in hit_keys:
                continue
            if win.index - self.book.last_hit(key) >= clear:
                resolved.append(self.book.resolve(key, ts=win.end_ts, window=win.index, reason="cleared"))

    # ------------------------------------------------------------------------------ read side

    def snapshot(self, previous: PipelineSnapshot | None = None) -> PipelineSnapshot:
        """An immutable copy of what the web layer reads (``engine/snapshot.py``); ``previous`` (this
        pipeline's last snapshot) lends what has not changed since."""
        from tessera_daemon.engine.snapshot import take_snapshot  # noqa: PLC0415 - snapshot imports this module

        return take_snapshot(self, previous)
