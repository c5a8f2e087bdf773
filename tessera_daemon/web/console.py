"""What the web console reads: the daemon summary, incidents, evidence, and the live stream.

``Console`` sits beside the daemon's ``Status`` (``Status.console``) and builds the JSON of the
console's public API (``web/console_api.py`` serves it) from the detector's immutable snapshots
(``engine/snapshot.py``). The daemon calls :meth:`Console.record` with each window's snapshot; the
console copies what it needs into bounded rings (``web/history.py``) and, once per batch of windows,
pushes a small diff to the browsers on ``/v1/stream`` (Server-Sent Events). The
fleet map's layout and state codes are ``web/fleet.py``; the warm-up estimate ``web/warmup.py``.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import json
import math
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from tessera_daemon import __version__
from tessera_daemon.engine.snapshot import PipelineSnapshot
from tessera_daemon.model import Firing
from tessera_daemon.web.fleet import (
    BUILDING_FRACTION,
    STATE_NAMES,
    Layout,
    build_layout,
    codes_str,
    fleet_codes,
    selectors,
)
from tessera_daemon.web.history import History
from tessera_daemon.web.status import Status
from tessera_daemon.web.warmup import WarmupTracker

FULL_DIFF_ABOVE = 4096  # changed cells above which a browser refetches /v1/fleet instead of a diff
RECENT_INCIDENTS = 40
RUNBOOK = "https://github.com/tessera-daemon/tessera-daemon/blob/main/docs/runbook.md#"
SEVERITY_ORDER = {"page": 0, "ticket": 1, "info": 2}
MEMBERS = "common-mode members (not paged)"
WARMUP_SAMPLE_EVERY_S = 2.0


def alert_of(f: Firing) -> tuple[str, str]:
    """(alert name, severity) of the alert rule in alert_rules.yml that fires on this firing; a shard's
    own firing inside a common-mode incident matches no rule (its group's alert stands for it)."""
    c = f.classification
    if c == "hard_fault":
        return "TesseraHardFault", "page"
    if c == "shard_fault":
        return "TesseraShardFault", "page"
    if c == "common_mode":
        if f.scope == "shard":  # a member's own firing inside a group incident: no rule pages on it
            return MEMBERS, "info"
        return ("TesseraCommonModeZone", "page") if f.scope == "cooling_zone" else ("TesseraCommonModeRack", "page")
    if c == "fleet_event":
        return "TesseraFleetEvent", "ticket"
    return "TesseraEventConditional", "info"


# ------------------------------------------------------------------------------------------ SSE hub


class Hub:
    """Browsers on /v1/stream: one bounded queue each; a slow browser is told to resync, never waited for."""

    QUEUE = 32

    def __init__(self) -> None:
        self.clients: set[asyncio.Queue[bytes | None]] = set()

    def add(self) -> asyncio.Queue[bytes | None]:
        q: asyncio.Queue[bytes | None] = asyncio.Queue(self.QUEUE)
        self.clients.add(q)
        return q

    def remove(self, q: asyncio.Queue[bytes | None]) -> None:
        self.clients.discard(q)

    def publish(self, data: bytes) -> None:
        for q in list(self.clients):
            if q.full():
                while not q.empty():
                    q.get_nowait()
                q.put_nowait(b"event: resync\ndata: {}\n\n")
            else:
                q.put_nowait(data)

    def close(self) -> None:
        for q in list(self.clients):
            while q.full():
                q.get_nowait()
            q.put_nowait(None)


def sse(event: str, obj: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(obj, separators=(',', ':'), allow_nan=False)}\n\n".encode()


# ------------------------------------------------------------------------------------------ console


class Console:
    def __init__(self, status: Status) -> None:
        self.status = status
        self.history = History()
        self.hub = Hub()
        self.warmup = WarmupTracker()
        self.split: Callable[[], dict[str, Any]] | None = None  # a detector worker's partitions and peers
        self.simulator: Any = None  # the running sim.ClusterSim (run mode on the built-in simulator)
        self._scenario: dict[str, Any] | None = None
        self._layout: Layout | None = None
        self._layout_for: int = -1
        self._codes: dict[str, npt.NDArray[np.uint8]] | None = None
        self._codes_key: tuple[int, str] = (-2, "")
        self._incident_ids: tuple[tuple[str, str], ...] = ()
        self._flush_pending = False
        self._dirty = False
        self._recorded_ms = 0.0
        self._topology_bytes: tuple[str, bytes, bytes] | None = None

    @classmethod
    def of(cls, status: Status) -> Console:
        """The status's console, created on first use."""
        if status.console is None:
            status.console = cls(status)
        c: Console = status.console
        return c

    @property
    def p(self) -> PipelineSnapshot:
        return self.status.snapshot

    # ------------------------------------------------------------------------------ feeding

    def record(self, snap: PipelineSnapshot | None = None) -> None:
        """After a window: copy its snapshot (default: the status's) into the rings; one diff per batch
        of windows goes to the browsers."""
        if not self.history.record(snap if snap is not None else self.p):
            return
        self._recorded_ms = time.time() * 1000.0  # the live-update latency the browser reports starts here
        self.layout()  # built once per topology, before a browser asks for it
        self._dirty = True
        if self._flush_pending:
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            self.flush()
            return
        self._flush_pending = True
        loop.call_soon(self._scheduled_flush)

    def _scheduled_flush(self) -> None:
        self._flush_pending = False
        self.flush()

    def flush(self) -> None:
        """Push one diff for the windows recorded since the last one (the daemon calls it after each batch
        of windows, before rendering /metrics; otherwise it runs when the event loop next gets control)."""
        if not self._dirty:
            return
        self._dirty = False
        if not self.hub.clients:
            return
        self.hub.publish(sse("window", self.diff()))

    def diff(self) -> dict[str, Any]:
        """What changed since the last diff: fleet cells, whether the incident list changed, the live
        evidence of each active firing, and the summary."""
        p = self.p
        layout = self.layout()
        prev = self._codes
        now_codes = self.codes()
        body: dict[str, Any] = {
            "window": p.table.window,
            "end_ts": p.table.end_ts,
            "topology_key": layout.key,
            "sent_ms": self._recorded_ms or time.time() * 1000.0,
        }
        if prev is None or set(prev) != set(now_codes) or any(prev[k].shape != now_codes[k].shape for k in prev):
            body["fleet_full"] = True
        else:
            changes: dict[str, list[int]] = {}
            total = 0
            for k, code in now_codes.items():
                idx = np.nonzero(code != prev[k])[0]
                total += idx.size
                if idx.size:
                    changes[k] = np.stack([idx, code[idx]], axis=1).reshape(-1).tolist()
            if total > FULL_DIFF_ABOVE:
                body["fleet_full"] = True
            else:
                body["fleet"] = changes
        ids = tuple((f.id, f.state) for f in [*p.active, *p.recent[-RECENT_INCIDENTS:]])
        body["incidents_changed"] = ids != self._incident_ids
        self._incident_ids = ids
        body["evidence"] = {f.id: _num(self.history.evidence_now(p, f)) for f in p.active}
        body["summary"] = self.summary()
        return body

    # ------------------------------------------------------------------------------ views

    def layout(self) -> Layout:
        p = self.p
        if self._layout is None or self._layout_for != id(p.topology) or len(self._layout.shards) != len(p.shards):
            self._layout = build_layout(p.topology, list(p.shards))
            self._layout_for = id(p.topology)
        return self._layout

    def codes(self) -> dict[str, npt.NDArray[np.uint8]]:
        p = self.p
        key = (p.table.window, self.layout().key + f":{p.table.end_ts}:{len(p.active)}:{p.events.version}")
        if self._codes is None or key != self._codes_key:
            self._codes = fleet_codes(p)
            self._codes_key = key
        return self._codes

    def topology_obj(self) -> dict[str, Any]:
        return self.layout().to_obj(self.p.topology)

    def topology_bytes(self) -> tuple[bytes, bytes]:
        """/v1/topology as JSON and gzip bytes, serialised once per topology (it is the largest document)."""
        key = self.layout().key
        if self._topology_bytes is None or self._topology_bytes[0] != key:
            raw = json.dumps(self.topology_obj(), separators=(",", ":")).encode()
            self._topology_bytes = (key, raw, gzip.compress(raw, 6))
        return self._topology_bytes[1], self._topology_bytes[2]

    def fleet_obj(self) -> dict[str, Any]:
        p = self.p
        codes = self.codes()
        self._codes = codes
        return {
            "v": 1,
            "window": p.table.window,
            "end_ts": p.table.end_ts,
            "topology_key": self.layout().key,
            "count": len(p.shards),
            "states": list(STATE_NAMES),
            "selectors": list(codes),
            "building_fraction": BUILDING_FRACTION,
            "codes": {k: codes_str(c) for k, c in codes.items()},
        }

    def summary(self) -> dict[str, Any]:
        st = self.status
        p = self.p
        cfg = st.cfg
        now = time.time()
        t = p.table
        lag = 0.0
        if t.window >= 0 and math.isfinite(p.stats.watermark):
            lag = max(0.0, p.stats.watermark - t.end_ts - cfg.window.grace_s)
        tstats = st.transport.stats()
        active = p.active
        by_sev: dict[str, int] = {}
        by_class: dict[str, int] = {}
        for f in active:
            sev = alert_of(f)[1]
            by_sev[sev] = by_sev.get(sev, 0) + 1
            by_class[f.classification] = by_class.get(f.classification, 0) + 1
        frozen_now = p.events.frozen_now if t.window >= 0 else {}
        events = [{**r.to_obj(t.end_ts), "shards": r.shards[:20]} for r in p.events.recent(50)]
        body: dict[str, Any] = {
            "v": 1,
            "version": __version__,
            "mode": "detector" if self.split else "run",
            "now": now,
            "started_ts": st.started_ts,
            "window": t.window,
            "window_end_ts": t.end_ts,
            "window_length_s": p.window_length_s,
            "windows_processed": p.windows_processed,
            "lag_s": round(lag, 3),
            "threshold_log": round(p.threshold_log, 4),
            "resolve_fraction": cfg.detector.resolve_fraction,
            "shards": len(p.shards),
            "metrics": list(p.metrics),
            "selectors": selectors(p),
            "ready": not st.not_ready_reasons(now),
            "not_ready": st.not_ready_reasons(now),
            "warmup": self.warmup.progress(p, p.window_length_s),
            "sources": [
                {
                    "name": n,
                    "up": h.up,
                    "last_success_ts": h.last_success_ts,
                    "last_error": h.last_error,
                    "polls": dict(h.polls),
                    "frames": h.frames,
                }
                for n, h in sorted(st.health.items())
            ],
            "frames": p.stats.frames,
            "late_frames": p.stats.late,
            "dropped_frames": tstats.dropped_frames,
            "dead_letters": tstats.dead_lettered,
            "incidents": {"active": len(active), "by_severity": by_sev, "by_classification": by_class},
            "events": events,
            "frozen_shards": len(frozen_now),
            "scenario": self.scenario(),
        }
        if self.split is not None:
            body["split"] = self.split()
        return body

    def scenario(self) -> dict[str, Any] | None:
        cfg = self.status.cfg
        if cfg.sources.enabled:
            return None
        if self._scenario is None:
            from tessera_daemon.sim.catalogue import scenario_info  # noqa: PLC0415 - the simulator only when it runs

            self._scenario = scenario_info(cfg.sim.scenario, self.simulator)
        return self._scenario

    def incident(self, f: Firing) -> dict[str, Any]:
        alert, sev = alert_of(f)
        r = f.receipt
        length = self.p.window_length_s
        cw = r.get("change_window")
        change_ts = float(cw) * length if isinstance(cw, int) and cw > 0 else r.get("window_start_ts", f.opened_ts)
        curve = self.history.curve(f.id)
        now_e = curve.log_e[-1] if curve is not None and curve.log_e else f.log_evidence
        return {
            "id": f.id,
            "state": f.state,
            "alert": alert,
            "severity": sev,
            "classification": f.classification,
            "scope": f.scope,
            "target": f.target,
            "location": self.layout().where.get(f.target),
            "detector": f.detector,
            "metric": f.metric,
            "opened_ts": f.opened_ts,
            "resolved_ts": f.resolved_ts,
            "change_start_ts": change_ts,
            "direction": r.get("direction"),
            "log_evidence": _num(f.log_evidence),
            "evidence_now": _num(now_e),
            "threshold_log": _num(f.threshold_log),
            "members": len(f.members),
            "members_sample": f.members[:8],
            "event_id": f.event_id,
            "group": r.get("group"),
            "runbook": RUNBOOK + ("tesseracommonmoderack" if alert == MEMBERS else alert.lower()),
        }

    def incidents_obj(self) -> dict[str, Any]:
        p = self.p
        active = p.active
        recent = list(p.recent)[-RECENT_INCIDENTS:][::-1]
        groups: dict[str, dict[str, Any]] = {}
        for f in [*active, *recent]:
            inc = self.incident(f)
            g = groups.setdefault(
                inc["alert"],
                {
                    "alert": inc["alert"],
                    "severity": inc["severity"],
                    "runbook": inc["runbook"],
                    "active": 0,
                    "firings": [],
                },
            )
            g["active"] += f.state == "open"
            g["firings"].append(inc)
        ordered = sorted(
            groups.values(),
            key=lambda g: (g["active"] == 0, g["alert"] == MEMBERS, SEVERITY_ORDER[g["severity"]], g["alert"]),
        )
        return {"v": 1, "window": p.table.window, "active": len(active), "groups": ordered}

    def find(self, firing_id: str) -> Firing | None:
        return self.p.find(firing_id)

    def evidence_obj(self, f: Firing) -> dict[str, Any]:
        curve = self.history.curve(f.id)
        p = self.p
        return {
            "v": 1,
            "incident": self.incident(f),
            "evidence": curve.to_obj()
            if curve is not None
            else {"window": [], "ts": [], "log_evidence": [], "threshold_log": _num(f.threshold_log)},
            "resolve_below_log": _num(f.threshold_log * self.status.cfg.detector.resolve_fraction),
            "members_history": self.history.members_series(p, f) if f.state == "open" else None,
            "receipt": f.receipt,
        }

    def shard_extra(self, p: PipelineSnapshot, sid: str, i: int) -> dict[str, Any]:
        """What /v1/shards/<id> adds for the console: recent values, cohort centre, baseline, band and
        evidence per metric; warm-up per metric; family evidence; events that touched the shard."""
        st = p.states
        depth = st.depth
        warm = {}
        if i < st.n_warm.shape[0]:
            warm = {
                m: round(min(1.0, float(st.n_warm[i, j]) / depth), 3) if depth else 1.0 for j, m in enumerate(p.metrics)
            }
        families = {k: _num(float(v[i])) for k, v in p.family_log_m.items() if i < v.size}
        events = [r.to_obj(p.table.end_ts) for r in p.events.records if sid in r.shard_set][-20:]
        for e in events:
            e.pop("shards", None)
        return {
            "cohort": p.cohorts[int(p.cohort_of[i])] if i < p.cohort_of.size else None,
            "location": self.layout().where.get(sid),
            "warmup": warm,
            "family_log_evidence": families,
            "events": events,
            "history": self.history.shard_series(p, i),
            "recent_firings": [f.to_obj() for f in p.recent[-200:] if sid in f.members][-10:],
        }

    # ------------------------------------------------------------------------------ housekeeping

    async def tick_forever(self) -> None:
        """Warm-up samples (for the estimate) and the once-a-minute warm-up log line."""
        while True:
            now = time.time()
            with contextlib.suppress(Exception):  # never let a console bug stop the daemon
                self.warmup.sample(self.p, now)
                self.warmup.maybe_log(self.p, self.p.window_length_s, now)
            await asyncio.sleep(WARMUP_SAMPLE_EVERY_S if self.warmup.samples else 1.0)


def _num(v: float) -> float | None:
    return round(float(v), 4) if math.isfinite(v) else None
