"""What the drill observes: firings in the daemon, alerts in Prometheus and Alertmanager, PagerDuty events."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field

from tessera_daemon.drill.scenario import JSON, PD_SUMMARY
from tessera_daemon.engine.snapshot import PipelineSnapshot
from tessera_daemon.model import Firing

# ------------------------------------------------------------------------------------------ observations


@dataclass(slots=True)
class Moment:
    wall: float | None = None  # Unix time on the wall clock
    event_ts: float | None = None  # simulated (event) time, when the moment has one

    def to_obj(self, wall0: float, start_ts: float) -> JSON:
        return {
            "wall": self.wall,
            "wall_rel_s": None if self.wall is None else round(self.wall - wall0, 3),
            "event_ts": self.event_ts,
            "event_rel_s": None if self.event_ts is None else round(self.event_ts - start_ts, 3),
        }


@dataclass(slots=True)
class FiringSeen:
    id: str
    target: str
    scope: str
    detector: str
    metric: str | None
    opened_ts: float
    seen_wall: float
    classifications: list[str] = field(default_factory=list)
    resolved_ts: float | None = None
    resolved_seen_wall: float | None = None

    @property
    def classification(self) -> str:
        return self.classifications[-1]

    def to_obj(self) -> JSON:
        return {k: getattr(self, k) for k in self.__slots__}


@dataclass(slots=True)
class AlertSeen:
    labels: dict[str, str]
    first_state: str
    first_seen_wall: float
    active_at: str | None = None
    firing_wall: float | None = None
    gone_wall: float | None = None

    def to_obj(self) -> JSON:
        return {k: getattr(self, k) for k in self.__slots__}


def _alert_key(labels: dict[str, str]) -> str:
    return json.dumps(labels, sort_keys=True)


@dataclass(slots=True)
class Observer:
    """What the drill saw of the daemon, Prometheus and Alertmanager, polled every POLL_S."""

    start_ts: float
    speedup: float
    wall0: float = math.inf  # wall time of simulated start_ts (estimated from the watermark, the minimum)
    firings: dict[str, FiringSeen] = field(default_factory=dict)
    alerts: list[AlertSeen] = field(default_factory=list)  # every alert instance Prometheus reported
    _current: dict[str, AlertSeen] = field(default_factory=dict)  # those present at the last poll
    inhibited: dict[str, JSON] = field(default_factory=dict)  # Alertmanager alerts seen suppressed
    errors: list[str] = field(default_factory=list)

    def wall_of(self, ts: float) -> float:
        return self.wall0 + (ts - self.start_ts) / self.speedup

    def watch_daemon(self, snap: PipelineSnapshot, now: float) -> None:
        wm = snap.stats.watermark
        if math.isfinite(wm):
            self.wall0 = min(self.wall0, now - (wm - self.start_ts) / self.speedup)
        for f in snap.active:
            self._seen(f, now)
        for f in snap.recent:
            seen = self._seen(f, now)
            if seen.resolved_seen_wall is None:
                seen.resolved_ts, seen.resolved_seen_wall = f.resolved_ts, now

    def _seen(self, f: Firing, now: float) -> FiringSeen:
        seen = self.firings.get(f.id)
        if seen is None:
            seen = self.firings[f.id] = FiringSeen(f.id, f.target, f.scope, f.detector, f.metric, f.opened_ts, now)
        if not seen.classifications or seen.classifications[-1] != f.classification:
            seen.classifications.append(f.classification)
        return seen

    def watch_prometheus(self, alerts: list[JSON], now: float) -> None:
        present: set[str] = set()
        for a in alerts:
            labels = {str(k): str(v) for k, v in a.get("labels", {}).items()}
            key = _alert_key(labels)
            present.add(key)
            seen = self._current.get(key)
            if seen is None:  # new, or back after it went away
                seen = self._current[key] = AlertSeen(labels, str(a.get("state")), now, a.get("activeAt"))
                self.alerts.append(seen)
            if a.get("state") == "firing" and seen.firing_wall is None:
                seen.firing_wall = now
        for key in [k for k in self._current if k not in present]:
            self._current.pop(key).gone_wall = now

    def watch_alertmanager(self, alerts: list[JSON]) -> None:
        for a in alerts:
            status = a.get("status") or {}
            if status.get("inhibitedBy"):
                labels = {str(k): str(v) for k, v in a.get("labels", {}).items()}
                self.inhibited.setdefault(_alert_key(labels), {"labels": labels, "inhibited_by": status["inhibitedBy"]})


def pd_details(event: JSON) -> dict[str, str]:
    details = (event.get("payload") or {}).get("custom_details") or {}
    return {str(k): str(v) for k, v in details.items()}


def pd_alertname(event: JSON) -> str | None:
    m = PD_SUMMARY.match(str((event.get("payload") or {}).get("summary", "")))
    return m.group(2) if m else None
