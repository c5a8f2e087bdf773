"""Bounded history for the console: per-stream ring buffers and per-firing evidence curves.

The detector keeps only the current window's state; the console needs the last few minutes to draw
a shard's values against its cohort and an incident's evidence climbing to its threshold. ``History``
copies what it needs out of each window's ``PipelineSnapshot`` into fixed-size rings, with array code
only (one copy of the [shards, metrics] table per window; no Python loop over shards):

- ``x`` / ``log_m`` [depth, shards, metrics] (float32): window values (on the detector's scale; log
  metrics in log) and Family A log-evidence;
- ``centre`` [depth, cohorts, metrics]: the cohort centre (median of warm members' offset-adjusted
  values, as the residual model computes it);
- ``group_log_m`` [depth, groups, metrics]: the pooled group detectors' log-evidence;
- per active firing, the log-evidence of the firing's own statistic each window (seeded, when it
  opens, from the rings, so the curve shows the climb before the crossing), kept for a bounded number
  of recently resolved firings too.

Memory is ``2 x depth x shards x metrics x 4`` bytes plus small change: 10k shards x 7 metrics x 60
windows is 34 MB. The rings reset when the shard set changes (a topology change).
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tessera_daemon.detect.quiet import quiet_runtime_warnings
from tessera_daemon.engine.snapshot import PipelineSnapshot
from tessera_daemon.model import Firing

DEPTH = 60  # windows per stream ring (5 min at 5 s windows)
FIRING_DEPTH = 720  # windows per firing curve
FIRINGS_KEPT = 256  # firing curves kept (active first, then the most recently seen)
F32 = npt.NDArray[np.float32]


@dataclass(slots=True)
class Curve:
    """One firing's evidence over time (window index, window end ts, log-evidence)."""

    threshold_log: float
    window: deque[int] = field(default_factory=lambda: deque(maxlen=FIRING_DEPTH))
    ts: deque[float] = field(default_factory=lambda: deque(maxlen=FIRING_DEPTH))
    log_e: deque[float] = field(default_factory=lambda: deque(maxlen=FIRING_DEPTH))

    def add(self, window: int, ts: float, value: float) -> None:
        if self.window and window <= self.window[-1]:
            return
        self.window.append(window)
        self.ts.append(ts)
        self.log_e.append(value)

    def to_obj(self) -> dict[str, Any]:
        return {
            "window": list(self.window),
            "ts": list(self.ts),
            "log_evidence": [_num(v) for v in self.log_e],
            "threshold_log": _num(self.threshold_log),
        }


def _num(v: float) -> float | None:
    return round(float(v), 4) if math.isfinite(v) else None


def _log_mean_exp(a: npt.NDArray[np.floating[Any]], axis: int) -> npt.NDArray[np.float64]:
    a = np.asarray(a, np.float64)
    with np.errstate(invalid="ignore"):
        m = np.nanmax(np.where(np.isnan(a), -np.inf, a), axis=axis, keepdims=True)
        m = np.where(np.isfinite(m), m, 0.0)
        out: npt.NDArray[np.float64] = np.squeeze(m, axis) + np.log(np.nanmean(np.exp(a - m), axis=axis))
    return out


class History:
    def __init__(self, depth: int = DEPTH) -> None:
        self.depth = depth
        self.n = 0  # windows recorded since the last reset
        self.last: tuple[int, float] = (-1, 0.0)
        self.curves: OrderedDict[str, Curve] = OrderedDict()
        self._key: tuple[int, int, int] = (-1, -1, -1)
        self._alloc(0, 0, 0, 0)

    def _alloc(self, s: int, m: int, c: int, g: int) -> None:
        d = self.depth
        self.ts = np.full(d, np.nan)
        self.win = np.full(d, -1, np.int64)
        self.x: F32 = np.full((d, s, m), np.nan, np.float32)
        self.log_m: F32 = np.full((d, s, m), np.nan, np.float32)
        self.centre: F32 = np.full((d, c, m), np.nan, np.float32)
        self.group_log_m: F32 = np.full((d, g, m), np.nan, np.float32)
        self.n = 0

    # ------------------------------------------------------------------------------ recording

    def record(self, p: PipelineSnapshot) -> bool:
        """Copy the snapshot's window into the rings; False when it was already recorded."""
        t = p.table
        if t.window < 0 or (t.window, t.end_ts) == self.last:
            return False
        s, m = len(p.shards), len(p.metrics)
        if t.log_m.shape != (s, m):
            return False
        g_lm = p.group_log_m
        g = int(g_lm.shape[0]) if g_lm.ndim == 2 and g_lm.shape[1] == m else 0
        key = (id(p.topology), s, g)
        if key != self._key:
            self._key = key
            self._alloc(s, m, len(p.cohorts), g)
            self._cohort_rows = [np.nonzero(p.cohort_of == c)[0] for c in range(len(p.cohorts))]
        k = self.n % self.depth
        self.ts[k] = t.end_ts
        self.win[k] = t.window
        self.x[k] = t.last_x
        self.log_m[k] = t.log_m
        self.centre[k] = self._centres(p)
        if g:
            self.group_log_m[k] = g_lm
        self.n += 1
        self.last = (t.window, t.end_ts)
        self._curves(p)
        return True

    def _centres(self, p: PipelineSnapshot) -> F32:
        """Cohort centre per metric: median of warm members' offset-adjusted values."""
        t = p.table
        off = p.states.offset if p.states.offset.shape == t.last_x.shape else 0.0
        adj = np.where(t.warm, t.last_x - off, np.nan)
        out = np.full((len(self._cohort_rows), adj.shape[1]), np.nan, np.float32)
        with quiet_runtime_warnings():  # a cohort with no warm member: NaN
            for c, rows in enumerate(self._cohort_rows):
                if rows.size:
                    out[c] = np.nanmedian(adj[rows], axis=0)
        return out

    def order(self) -> npt.NDArray[np.int64]:
        """Ring slots, oldest first."""
        n = min(self.n, self.depth)
        start = self.n - n
        return np.arange(start, self.n, dtype=np.int64) % self.depth

    # ------------------------------------------------------------------------------ firings

    def _curves(self, p: PipelineSnapshot) -> None:
        t = p.table
        active = p.active
        for f in active:
            c = self.curves.get(f.id)
            if c is None:
                c = Curve(f.threshold_log)
                self._seed(p, f, c)
                self.curves[f.id] = c
            else:
                self.curves.move_to_end(f.id)
            c.threshold_log = f.threshold_log
            c.add(t.window, t.end_ts, self.evidence_now(p, f))
        while len(self.curves) > max(FIRINGS_KEPT, len(active)):
            self.curves.popitem(last=False)

    def _stream(self, p: PipelineSnapshot, f: Firing) -> tuple[str, Any]:
        """Where a firing's evidence lives: ("shard", (i, j)), ("group", (gi, j)), ("members", (rows, j)),
        ("family", None) or ("rule", None)."""
        if f.detector.startswith("rule:"):
            return "rule", None
        if f.detector != "A" or f.metric is None or f.metric not in p.metrics:
            return "family", None
        j = p.metrics.index(f.metric)
        i = p.row.get(f.target)
        if i is not None:
            return "shard", (i, j)
        gi = p.group_index.get(f.target) if f.receipt.get("pooled") else None
        if gi is not None and self.group_log_m.shape[1] > gi:
            return "group", (gi, j)
        rows = np.array([p.row[s] for s in f.members if s in p.row], np.int64)
        return "members", (rows, j)

    def evidence_now(self, p: PipelineSnapshot, f: Firing) -> float:
        """The current log-evidence of the statistic that opened ``f``."""
        kind, where = self._stream(p, f)
        t = p.table
        if kind == "shard":
            return float(t.log_m[where])
        if kind == "group":
            return float(p.group_log_m[where])
        if kind == "members":
            rows, j = where
            return float(_log_mean_exp(t.log_m[rows, j], 0)) if rows.size else f.log_evidence
        if kind == "rule":
            return f.threshold_log
        return self._family_now(p, f)

    def _family_now(self, p: PipelineSnapshot, f: Firing) -> float:
        i = p.row.get(f.target)
        if i is None:
            return f.log_evidence
        try:
            if f.detector in ("C", "E") and f.detector in p.family_log_m:
                return float(p.family_log_m[f.detector][i])
            if f.detector == "D" and f.metric in p.metrics:
                col = int(np.nonzero(p.family_d_cols == p.metrics.index(f.metric))[0][0])
                return float(p.family_d[i, col])
        except IndexError:  # no such column or row in this snapshot
            pass
        return f.log_evidence

    def _seed(self, p: PipelineSnapshot, f: Firing, c: Curve) -> None:
        """The climb before the firing opened, from the rings (the current window is added after)."""
        kind, where = self._stream(p, f)
        slots = self.order()[:-1]  # the last slot is this window
        if not slots.size or kind in ("rule", "family"):
            return
        if kind == "shard":
            vals = self.log_m[slots, where[0], where[1]].astype(np.float64)
        elif kind == "group":
            vals = self.group_log_m[slots, where[0], where[1]].astype(np.float64)
        else:
            rows, j = where
            if not rows.size:
                return
            vals = _log_mean_exp(self.log_m[slots][:, rows, j], 1)
        for k, v in zip(slots.tolist(), vals.tolist(), strict=True):
            if math.isfinite(v):
                c.add(int(self.win[k]), float(self.ts[k]), v)

    # ------------------------------------------------------------------------------ reading

    def curve(self, firing_id: str) -> Curve | None:
        return self.curves.get(firing_id)

    def shard_series(self, p: PipelineSnapshot, i: int) -> dict[str, Any]:
        """Recent values per metric of shard row ``i`` with its cohort centre, baseline and band, and
        its Family A evidence (values back on the metric's own scale)."""
        slots = self.order()
        out: dict[str, Any] = {"ts": [_num(v) for v in self.ts[slots].tolist()], "metrics": {}}
        if i >= self.x.shape[1]:
            return out
        st = p.states
        same = st.offset.shape == (self.x.shape[1], self.x.shape[2])
        cohort = int(p.cohort_of[i]) if i < p.cohort_of.size else -1
        log_cols = set(np.asarray(p.log_cols).tolist())
        for j, m in enumerate(p.metrics):
            x = self.x[slots, i, j].astype(np.float64)
            centre = (
                self.centre[slots, cohort, j].astype(np.float64)
                if 0 <= cohort < self.centre.shape[1]
                else np.full(slots.size, np.nan)
            )
            offset = float(st.offset[i, j]) if same else 0.0
            band = st.marginal_sd(i, j) if same else math.nan
            base = centre + offset
            lo, hi = base - band, base + band
            if j in log_cols:
                x, centre, base, lo, hi = (np.exp(a) for a in (x, centre, base, lo, hi))
            out["metrics"][m] = {
                "value": [_num(v) for v in x.tolist()],
                "cohort_centre": [_num(v) for v in centre.tolist()],
                "baseline": [_num(v) for v in base.tolist()],
                "band_low": [_num(v) for v in lo.tolist()],
                "band_high": [_num(v) for v in hi.tolist()],
                "log_evidence": [_num(v) for v in self.log_m[slots, i, j].astype(np.float64).tolist()],
                "scale": "log" if j in log_cols else "linear",
            }
        return out

    def members_series(self, p: PipelineSnapshot, f: Firing, limit: int = 12) -> dict[str, Any] | None:
        """For a shard or group firing on a metric: its members' recent values against their cohort
        centre and each member's baseline, with the material margin (``delta_min_sigma``) around it."""
        if f.metric is None or f.metric not in p.metrics:
            return None
        j = p.metrics.index(f.metric)
        rows = [p.row[s] for s in f.members if s in p.row]
        if not rows:
            return None
        lm_now = p.table.log_m[rows, j] if p.table.log_m.shape[0] == len(p.shards) else np.zeros(len(rows))
        top = np.argsort(-np.nan_to_num(lm_now, nan=-np.inf), kind="stable")[:limit]
        shown = [rows[k] for k in top.tolist()]
        slots = self.order()
        log_scale = j in set(np.asarray(p.log_cols).tolist())
        cohort = int(p.cohort_of[shown[0]])
        centre = (
            self.centre[slots, cohort, j].astype(np.float64)
            if cohort < self.centre.shape[1]
            else np.full(slots.size, np.nan)
        )
        st = p.states
        same = st.offset.shape == p.table.log_m.shape
        delta = float(p.cfg.detector.delta_min_sigma)
        members = []
        for i in shown:
            x = self.x[slots, i, j].astype(np.float64) if i < self.x.shape[1] else np.full(slots.size, np.nan)
            offset = float(st.offset[i, j]) if same else 0.0
            base = centre + offset
            margin = _margin(p, j, base, delta * st.marginal_sd(i, j) if same else math.nan)
            lo, hi = base - margin, base + margin
            if log_scale:
                x, base, lo, hi = (np.exp(a) for a in (x, base, lo, hi))
            members.append(
                {
                    "shard": p.shards[i],
                    "value": [_num(v) for v in x.tolist()],
                    "baseline": [_num(v) for v in base.tolist()],
                    "margin_low": [_num(v) for v in lo.tolist()],
                    "margin_high": [_num(v) for v in hi.tolist()],
                }
            )
        c = np.exp(centre) if log_scale else centre
        return {
            "metric": f.metric,
            "ts": [_num(v) for v in self.ts[slots].tolist()],
            "cohort": p.cohorts[cohort] if cohort < len(p.cohorts) else None,
            "cohort_centre": [_num(v) for v in c.tolist()],
            "members": members,
            "members_total": len(rows),
            "delta_min_sigma": delta,
        }


def _margin(p: PipelineSnapshot, j: int, base: npt.NDArray[np.float64], sigma_margin: float) -> npt.NDArray[np.float64]:
    """The material margin around a baseline (analysed units, per window): the metric's material effect
    size at that level, or ``delta_min`` marginal sigmas when larger (as the pipeline's level tracking)."""
    out = np.full(base.shape, sigma_margin)
    level = np.full((base.size, len(p.metrics)), np.nan)
    level[:, j] = base
    mat = p.params.material_units(np.nan_to_num(level))
    if mat is not None:
        out = np.fmax(out, np.where(np.isnan(base), np.nan, mat[:, j]))
    return out
