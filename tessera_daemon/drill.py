"""End-to-end alerting drill: simulator -> daemon -> Prometheus -> Alertmanager -> PagerDuty (a local stand-in).

``tessera-daemon drill [--out FILE] [--speedup X]`` (or :func:`run_drill`) starts, on free loopback ports:

* the daemon (:func:`tessera_daemon.daemon.run`, in this process) on the built-in simulator;
* a real Prometheus scraping it every second with ``alert_rules.yml`` (every group evaluated each second;
  the ``for:`` of the ``tessera-firings`` group capped at one minute of *simulated* time, ``60 / speedup``
  seconds, at least 1 s; the ``tessera-health`` group keeps its wall-clock ``for:`` so that Prometheus'
  own start-up, where ``up`` is still absent, does not page ``TesseraDaemonDown``);
* a real Alertmanager with ``deploy/alertmanager/alertmanager.yml`` (routes, receivers, templates and
  inhibitions as shipped; timers 1 s) whose PagerDuty URL points at a local Events API v2 receiver that
  records every event, and whose ticket webhook points at the same receiver.

The simulated cluster is small and fixed: one cooling zone, 4 racks of 2 hosts of 8 GPUs (64 shards), two
jobs taking hosts round-robin, so each rack is a quarter of each cohort. Windows are 5 s of simulated time
with 1 s ticks; the detector settings (warm-up included, 60 windows by default) and the hard-fault rules
come from the given configuration, everything else is the drill's. Simulated time runs ``speedup`` times
faster than wall time (20: the 300 s warm-up takes 15 s); the source is polled once per window.

Three faults start once warm-up is over, 20 ticks apart, and clear after ``100 + 12 * speedup`` ticks (12 s
of wall time after the ~100 ticks detection needs), so Prometheus and Alertmanager see every firing:

============  ==========================  ========================================================  ==========
fault         simulator                   expected                                                  PagerDuty
============  ==========================  ========================================================  ==========
shard         straggler 5 sigma on        shard firing (shard_fault) -> TesseraShardFault, page,     error
              ``z0-r00-h00-g3``           one incident for rack z0-r00
rack          thermal_rack 3 sigma on     rack firing (common_mode, scope rack) ->                   error
              ``z0-r02``                  TesseraCommonModeRack, page, one incident for rack
                                          z0-r02; no TesseraShardFault page from that rack
                                          (member firings are relabelled common_mode and shard
                                          alerts of the rack are inhibited)
hard          xid79 on ``z0-r03-h01-g5``  rule:xid / rule:device_lost firings (hard_fault) ->         critical
              (lost while it lasts)       TesseraHardFault, page, one incident for rack z0-r03
============  ==========================  ========================================================  ==========

Every incident must resolve (Events API ``resolve`` with the trigger's ``dedup_key``) after its fault
clears, no other page may arrive, PagerDuty must reject nothing, and every event must carry the routing key
read from ``routing_key_file``. The drill prints the timeline of each fault (injected, firing opened, alert
firing, page received, cleared, firing resolved, alert resolved, resolve received) in wall seconds since the
start of simulated time, with event times (simulated seconds) where the moment has one, and the latencies
between them; ``out`` gets all of it as JSON, with every firing, alert and PagerDuty event seen. Moments are
observed by polling every 0.1 s (the receiver stamps arrivals itself), so a latency below that can come out
slightly negative. Exit status 0 when every expectation held. Observations that do not fail the drill
(e.g. alerts of a rule that also match series it was not meant for) are printed as notes.

Simulated time starts at the simulator's fixed ``DEFAULT_START_TS`` (window-aligned), so a given seed and
detector configuration produce the same firings, at the same event times, on every run; only the wall-clock
latencies vary. The scenario is registered under the name ``drill`` in the simulator's catalogue while the
drill runs (the daemon builds its simulator from ``sim.scenario``, a name), then removed again.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import math
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

import aiohttp

from tessera_daemon.config import (
    Config,
    DaemonConfig,
    HttpConfig,
    SimConfig,
    WindowConfig,
)
from tessera_daemon.daemon import Running
from tessera_daemon.daemon import run as run_daemon
from tessera_daemon.drill_stack import (
    MissingBinaryError,
    PagerDutyReceiver,
    alertmanager_server,
    drill_alert_rules,
    drill_alertmanager_config,
    prometheus_server,
)
from tessera_daemon.engine.snapshot import PipelineSnapshot
from tessera_daemon.model import Firing
from tessera_daemon.shipped import shipped_file
from tessera_daemon.sim import DEFAULT_START_TS, SCENARIOS, FaultSpec, Scenario
from tessera_daemon.sources.settings import SourcesConfig

JSON = dict[str, Any]

SCENARIO_NAME = "drill"
ROUTING_KEY = "0123456789abcdef0123456789abcdef"
CLUSTER = "drill"
TICK_S = 1.0
WINDOW_S = 5.0
TOPOLOGY = {"zones": 1, "racks_per_zone": 4, "hosts_per_rack": 2, "shards_per_host": 8, "cohorts": 2}
READY_MARGIN_TICKS = 20  # faults start this long after the last warm-up window
STAGGER_TICKS = 20
DETECT_TICKS = 100  # simulated time the detectors need (straggler ~70 ticks, rack ~100 with the 30-tick ramp)
HOLD_WALL_S = 12.0  # wall time each firing stays open after detection: scrape + eval + for + group_wait + margin
RESOLVE_TICKS = 200  # simulated time to resolve after the fault clears (rules.clear_windows, evidence decay)
SLACK_WALL_S = 45.0  # start-up (kernels, Prometheus discovery ~5 s) and notification slack
POLL_S = 0.1
SETTLE_S = 3.0  # keep watching after the last resolve: late or stray notifications still count

MOMENTS = (
    "injected",
    "firing_opened",
    "alert_firing",
    "page_received",
    "cleared",
    "firing_resolved",
    "alert_resolved",
    "resolve_received",
)
LATENCIES: tuple[tuple[str, str, str], ...] = (
    ("fault_to_firing", "injected", "firing_opened"),
    ("firing_to_alert", "firing_opened", "alert_firing"),
    ("alert_to_page", "alert_firing", "page_received"),
    ("fault_to_page", "injected", "page_received"),
    ("clear_to_firing_resolved", "cleared", "firing_resolved"),
    ("firing_to_alert_resolved", "firing_resolved", "alert_resolved"),
    ("alert_resolved_to_resolve", "alert_resolved", "resolve_received"),
    ("clear_to_resolve", "cleared", "resolve_received"),
)
_PD_SUMMARY = re.compile(r"^\[(FIRING|RESOLVED)(?::\d+)?\] (\S+)")


# ------------------------------------------------------------------------------------------ the scenario


@dataclass(frozen=True, slots=True)
class Case:
    """One injected fault and what it must produce."""

    name: str
    spec: FaultSpec
    target: str
    rack: str
    alertname: str
    pd_severity: str
    classification: str

    def opens(self, f: FiringSeen) -> bool:
        """The daemon firing that stands for this fault."""
        if self.name == "rack":
            return f.scope == "rack" and f.target == self.target and f.classification == "common_mode"
        return f.scope == "shard" and f.target == self.target and self.classification in f.classifications

    def alert(self, labels: dict[str, str]) -> bool:
        """The Prometheus alert (labels) that stands for this fault."""
        if labels.get("alertname") != self.alertname:
            return False
        if self.name == "rack":
            return labels.get("scope") == "rack" and labels.get("rack") == self.rack
        return labels.get("target") == self.target


def fault_ticks(speedup: float) -> int:
    """How long each fault lasts, in ticks: detection plus HOLD_WALL_S of wall time."""
    return DETECT_TICKS + math.ceil(HOLD_WALL_S * speedup / TICK_S)


def drill_cases(warmup_windows: int, speedup: float) -> list[Case]:
    """The drill's faults; ``warmup_windows`` is the longest warm-up (``detector.warmup_max_windows``):
    a fault inside a stream's adaptive warm-up would be learnt as its baseline."""
    start = math.ceil(warmup_windows * WINDOW_S / TICK_S) + READY_MARGIN_TICKS
    d = fault_ticks(speedup)
    shard, rack, hard = "z0-r00-h00-g3", "z0-r02", "z0-r03-h01-g5"
    return [
        Case(
            "shard",
            FaultSpec("straggler", start_tick=start, duration_ticks=d, magnitude=5.0, target=shard),
            shard,
            "z0-r00",
            "TesseraShardFault",
            "error",
            "shard_fault",
        ),
        Case(
            "rack",
            FaultSpec("thermal_rack", start_tick=start + STAGGER_TICKS, duration_ticks=d, magnitude=3.0, target=rack),
            rack,
            rack,
            "TesseraCommonModeRack",
            "error",
            "common_mode",
        ),
        Case(
            "hard",
            FaultSpec("xid79", start_tick=start + 2 * STAGGER_TICKS, duration_ticks=d, target=hard),
            hard,
            "z0-r03",
            "TesseraHardFault",
            "critical",
            "hard_fault",
        ),
    ]


def drill_config(cfg: Config, speedup: float, start_ts: float) -> Config:
    """The daemon configuration of the drill: the given detector and rules, the drill's simulator, window,
    sources (the simulator, polled once per window), HTTP (loopback, a free port) and defaults elsewhere."""
    sim = dataclasses.replace(
        SimConfig(),
        seed=cfg.sim.seed,
        scenario=SCENARIO_NAME,
        tick_s=TICK_S,
        speedup=speedup,
        start_ts=start_ts,
        duration_s=0.0,
        **TOPOLOGY,
    )
    return Config(
        daemon=DaemonConfig(cluster=CLUSTER),
        http=HttpConfig(host="127.0.0.1", port=0),
        log=cfg.log,
        window=WindowConfig(length_s=WINDOW_S),
        detector=cfg.detector,
        rules=cfg.rules,
        sim=sim,
        sources=dataclasses.replace(SourcesConfig(), poll_interval_s=max(0.02, WINDOW_S / speedup)),
    )


@contextlib.contextmanager
def registered(scenario: Scenario) -> Iterator[None]:
    """``scenario`` in the simulator's catalogue (``sim.scenario`` takes a name) for the duration."""
    previous = SCENARIOS.get(scenario.name)
    SCENARIOS[scenario.name] = scenario
    try:
        yield
    finally:
        if previous is None:
            SCENARIOS.pop(scenario.name, None)
        else:
            SCENARIOS[scenario.name] = previous


def for_cap(speedup: float) -> str:
    """One minute of simulated time in wall seconds (Prometheus duration), at least 1 s."""
    return f"{max(1, math.ceil(60.0 / speedup))}s"


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


def _pd_details(event: JSON) -> dict[str, str]:
    details = (event.get("payload") or {}).get("custom_details") or {}
    return {str(k): str(v) for k, v in details.items()}


def _pd_alertname(event: JSON) -> str | None:
    m = _PD_SUMMARY.match(str((event.get("payload") or {}).get("summary", "")))
    return m.group(2) if m else None


# ------------------------------------------------------------------------------------------ the verdict


@dataclass(slots=True)
class Check:
    name: str
    ok: bool
    detail: str = ""


@dataclass(slots=True)
class CaseResult:
    case: Case
    moments: dict[str, Moment] = field(default_factory=lambda: {m: Moment() for m in MOMENTS})
    firings: list[FiringSeen] = field(default_factory=list)
    alerts: list[AlertSeen] = field(default_factory=list)
    pages: list[tuple[float, JSON]] = field(default_factory=list)
    dedup_keys: list[str] = field(default_factory=list)

    def event_latencies(self) -> dict[str, float | None]:
        """Detection and resolution delays in simulated (event) seconds."""
        out: dict[str, float | None] = {}
        for name, a, b in (
            ("fault_to_firing", "injected", "firing_opened"),
            ("clear_to_firing_resolved", "cleared", "firing_resolved"),
        ):
            ea, eb = self.moments[a].event_ts, self.moments[b].event_ts
            out[name] = None if ea is None or eb is None else round(eb - ea, 3)
        return out

    def latencies(self) -> dict[str, float | None]:
        out: dict[str, float | None] = {}
        for name, a, b in LATENCIES:
            wa, wb = self.moments[a].wall, self.moments[b].wall
            out[name] = None if wa is None or wb is None else round(wb - wa, 3)
        return out


def _first(values: list[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return min(found) if found else None


def _last_if_all(values: list[float | None]) -> float | None:
    if not values or any(v is None for v in values):
        return None
    return max(v for v in values if v is not None)


def assess_case(case: Case, obs: Observer, events: list[tuple[float, JSON]], start_ts: float) -> CaseResult:
    """Fill the timeline of one fault from what was observed."""
    r = CaseResult(case)
    start = start_ts + case.spec.start_tick * TICK_S
    end = start + (case.spec.duration_ticks or 0) * TICK_S
    r.moments["injected"] = Moment(obs.wall_of(start), start)
    r.moments["cleared"] = Moment(obs.wall_of(end), end)
    r.firings = sorted((f for f in obs.firings.values() if case.opens(f)), key=lambda f: f.opened_ts)
    if r.firings:
        r.moments["firing_opened"] = Moment(r.firings[0].seen_wall, r.firings[0].opened_ts)
        last = _last_if_all([f.resolved_seen_wall for f in r.firings])
        if last is not None:
            ts = max(f.resolved_ts or 0.0 for f in r.firings)
            r.moments["firing_resolved"] = Moment(last, ts)
    r.alerts = [a for a in obs.alerts if case.alert(a.labels)]
    r.moments["alert_firing"].wall = _first([a.firing_wall for a in r.alerts])
    fired = [a for a in r.alerts if a.firing_wall is not None]
    r.moments["alert_resolved"].wall = _last_if_all([a.gone_wall for a in fired])
    for t, e in events:
        if (
            e.get("event_action") == "trigger"
            and _pd_alertname(e) == case.alertname
            and (e.get("payload") or {}).get("group") == case.rack
        ):
            r.pages.append((t, e))
            if e.get("dedup_key") not in r.dedup_keys:
                r.dedup_keys.append(str(e.get("dedup_key")))
    if r.pages:
        r.moments["page_received"].wall = r.pages[0][0]
        resolves = [t for t, e in events if e.get("event_action") == "resolve" and e.get("dedup_key") in r.dedup_keys]
        r.moments["resolve_received"].wall = resolves[0] if resolves else None
    return r


def case_checks(r: CaseResult) -> list[Check]:
    c = r.case
    checks: list[Check] = []
    m = r.moments
    opened = ", ".join(f"{f.scope} {f.target} {f.detector} {'->'.join(f.classifications)}" for f in r.firings)
    checks.append(Check(f"{c.name}: firing opened", m["firing_opened"].wall is not None, opened or "none"))
    severities = sorted({a.labels.get("severity", "") for a in r.alerts if a.firing_wall is not None})
    checks.append(
        Check(
            f"{c.name}: {c.alertname} firing in Prometheus with severity page",
            m["alert_firing"].wall is not None and severities == ["page"],
            f"severity {severities or 'none'}",
        )
    )
    if not r.pages:
        checks.append(Check(f"{c.name}: page received", False, f"no {c.alertname} trigger for rack {c.rack}"))
    else:
        payload = r.pages[0][1].get("payload") or {}
        sev = sorted({str((e.get("payload") or {}).get("severity")) for _, e in r.pages})
        checks.append(
            Check(
                f"{c.name}: page received with PagerDuty severity {c.pd_severity}",
                sev == [c.pd_severity],
                f"severity {sev}; summary {payload.get('summary')!r}",
            )
        )
        details = payload.get("custom_details") or {}
        targets = sorted({t for _, e in r.pages for t in _pd_details(e).get("firing", "").split()})
        checks.append(
            Check(
                f"{c.name}: page names the target and its rack",
                c.target in targets and details.get("rack") == c.rack and details.get("cluster") == CLUSTER,
                f"targets {' '.join(targets)}, rack {details.get('rack')!r}, "
                f"cluster {details.get('cluster')!r}, class {payload.get('class')!r}",
            )
        )
        checks.append(
            Check(
                f"{c.name}: one incident (one Alertmanager group: {c.alertname}/{CLUSTER}/{c.rack})",
                len(r.dedup_keys) == 1,
                f"dedup_keys {r.dedup_keys}",
            )
        )
    checks.append(
        Check(
            f"{c.name}: firing resolved after the fault cleared",
            m["firing_resolved"].wall is not None
            and (m["firing_resolved"].event_ts or 0.0) >= (m["cleared"].event_ts or math.inf),
            f"resolved at event time {m['firing_resolved'].event_ts}, cleared {m['cleared'].event_ts}",
        )
    )
    checks.append(Check(f"{c.name}: alert resolved", m["alert_resolved"].wall is not None))
    checks.append(
        Check(
            f"{c.name}: resolve received for the incident",
            m["resolve_received"].wall is not None,
            f"dedup_keys {r.dedup_keys}",
        )
    )
    return checks


def global_checks(results: list[CaseResult], pd: PagerDutyReceiver, obs: Observer) -> tuple[list[Check], list[str]]:
    checks: list[Check] = []
    events = pd.snapshot()
    expected = {(r.case.alertname, r.case.rack) for r in results}
    rack = next(r.case for r in results if r.case.name == "rack")
    stray = [
        e
        for _, e in events
        if e.get("event_action") == "trigger"
        and (_pd_alertname(e), (e.get("payload") or {}).get("group")) not in expected
    ]
    shard_in_rack = [
        e
        for e in stray
        if _pd_alertname(e) == "TesseraShardFault" and (e.get("payload") or {}).get("group") == rack.rack
    ]
    checks.append(
        Check(
            f"rack: no TesseraShardFault page from rack {rack.rack}", not shard_in_rack, f"{len(shard_in_rack)} pages"
        )
    )
    checks.append(
        Check(
            "no unexpected page",
            not stray,
            "; ".join(str((e.get("payload") or {}).get("summary")) for e in stray) or "none",
        )
    )
    checks.append(Check("PagerDuty rejected no event", not pd.rejected, json.dumps(pd.rejected)[:500]))
    last: dict[str, str] = {}
    for _, e in events:
        last[str(e.get("dedup_key"))] = str(e.get("event_action"))
    still_open = sorted(k for k, action in last.items() if action != "resolve")
    checks.append(Check("every incident ends resolved", not still_open, f"open: {still_open}"))
    keys = {k for r in results for k in r.dedup_keys}
    checks.append(
        Check(f"{len(results)} incidents, one per fault", len(keys) == len(results), f"{len(keys)} dedup keys")
    )
    routing = sorted({str(e.get("routing_key")) for _, e in events})
    checks.append(
        Check("every event carries the routing key from routing_key_file", routing == [ROUTING_KEY], f"{routing}")
    )
    return checks, observations(results, events, list(pd.tickets), obs)


def observations(
    results: list[CaseResult], events: list[tuple[float, JSON]], tickets: list[JSON], obs: Observer
) -> list[str]:
    """Observations that do not fail the drill but that an operator (or the rules' author) should know."""
    notes: list[str] = []
    rack = next(r for r in results if r.case.name == "rack")
    rc = rack.case
    if obs.errors:
        notes.append(f"{len(obs.errors)} polling errors, first: {obs.errors[0]}")
    if tickets:
        names = sorted({str((t.get("commonLabels") or {}).get("alertname")) for t in tickets})
        notes.append(f"{len(tickets)} ticket webhook notification(s): {names}")
    shard_alerts = [
        a for a in obs.alerts if a.labels.get("alertname") == "TesseraShardFault" and a.labels.get("rack") == rc.rack
    ]
    shard_firing = [a for a in shard_alerts if a.firing_wall is not None]
    inhibited = [
        i["labels"]
        for i in obs.inhibited.values()
        if i["labels"].get("alertname") == "TesseraShardFault" and i["labels"].get("rack") == rc.rack
    ]
    notes.append(
        f"rack {rc.rack}: {len(shard_alerts)} TesseraShardFault alert(s) in Prometheus ({len(shard_firing)} "
        f"firing, the others pending only), {len(inhibited)} inhibited in Alertmanager by the rack's "
        "TesseraCommonModeRack"
    )
    unrelabelled = [
        f
        for f in obs.firings.values()
        if f.scope == "shard" and f.target.startswith(f"{rc.rack}-") and f.classification == "shard_fault"
    ]
    if unrelabelled:
        spans = ", ".join(
            f"{f.target} {f.detector} [{f.opened_ts - obs.start_ts:.0f}-"
            f"{(f.resolved_ts or math.nan) - obs.start_ts:.0f}]"
            for f in unrelabelled
        )
        rack_span = ", ".join(
            f"[{f.opened_ts - obs.start_ts:.0f}-{(f.resolved_ts or math.nan) - obs.start_ts:.0f}]"
            for f in rack.firings
            if f.scope == "rack"
        )
        notes.append(
            f"rack {rc.rack}: {len(unrelabelled)} member firing(s) stayed shard_fault (not relabelled "
            f"common_mode by the attribution), event times: {spans}; rack firing {rack_span}. Only "
            "Alertmanager's inhibition, while the rack alert fires, keeps them from paging "
            "TesseraShardFault"
        )
    rack_firings = [f for f in rack.firings if f.scope == "rack"]
    if len(rack_firings) > 1:
        hosts = sorted(
            {f.target for f in obs.firings.values() if f.scope == "host" and f.target.startswith(f"{rc.rack}-")}
        )
        notes.append(
            f"rack {rc.rack}: the daemon opened the rack firing {len(rack_firings)} times (event times "
            f"{[round(f.opened_ts - obs.start_ts) for f in rack_firings]} s; attribution moved to "
            f"host(s) {hosts} in between), so the first rack firing never lasted the alert's for:"
        )
    extra = [
        a.labels
        for a in obs.alerts
        if a.labels.get("alertname") == rc.alertname
        and a.labels.get("rack") == rc.rack
        and a.labels.get("scope") != "rack"
    ]
    if extra:
        scopes = sorted({a.get("scope", "") for a in extra})
        first = rack.pages[0][1] if rack.pages else {}
        notes.append(
            f"{len(extra)} {rc.alertname} alert(s) of rack {rc.rack} with scope {scopes} besides the rack one: the "
            'rule\'s third branch (scope!~"rack|host|cooling_zone") also matches the member shard firings the '
            'daemon relabels common_mode (scope="shard"); they join the rack\'s incident (component of its first '
            f"page: {((first.get('payload') or {}).get('component'))!r}, not 'rack') and the page loses the common "
            'summary. Fix in alert_rules.yml: scope!~"shard|rack|host|cooling_zone" in that branch'
        )
    empty = sorted(
        {
            str(_pd_alertname(e))
            for _, e in events
            if e.get("event_action") == "trigger" and str((e.get("payload") or {}).get("summary", "")).endswith(": ")
        }
    )
    if empty:
        notes.append(
            f"PagerDuty summaries with nothing after the alert name for {empty}: the incident groups alerts whose "
            "summary annotations differ (e.g. rule:xid and rule:device_lost on one GPU), so "
            ".CommonAnnotations.summary is empty. Fix in deploy/alertmanager/alertmanager.yml, description: "
            "fall back to the first alert's summary, e.g. {{ with .CommonAnnotations.summary }}{{ . }}{{ else }}"
            "{{ (index .Alerts 0).Annotations.summary }}{{ end }}"
        )
    return notes


# ------------------------------------------------------------------------------------------ report


def _fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def print_report(results: list[CaseResult], checks: list[Check], notes: list[str], obs: Observer, out: TextIO) -> None:
    w = out.write
    col = 18
    head = f"{'':<26}" + "".join(f"{r.case.name:>{col}}" for r in results) + "\n"
    w("\nTimeline: wall seconds since simulated start [event time: simulated seconds since start]\n" + head)
    for name in MOMENTS:
        cells = []
        for r in results:
            mo = r.moments[name]
            wall = _fmt(None if mo.wall is None else mo.wall - obs.wall0)
            ev = "" if mo.event_ts is None else f" [{mo.event_ts - obs.start_ts:.0f}]"
            cells.append(f"{wall + ev:>{col}}")
        w(f"{name:<26}" + "".join(cells) + "\n")
    w("\nLatencies: wall seconds\n" + head)
    lat = [r.latencies() for r in results]
    for name, _, _ in LATENCIES:
        w(f"{name:<26}" + "".join(f"{_fmt(x[name]):>{col}}" for x in lat) + "\n")
    w("\nChecks\n")
    for c in checks:
        w(f"  [{'ok' if c.ok else 'FAIL'}] {c.name}{': ' + c.detail if c.detail else ''}\n")
    for n in notes:
        w(f"  [note] {n}\n")
    ok = all(c.ok for c in checks)
    w(f"\ndrill {'passed' if ok else 'FAILED'}: {sum(c.ok for c in checks)}/{len(checks)} checks\n")


def report_obj(
    results: list[CaseResult],
    checks: list[Check],
    findings: list[str],
    obs: Observer,
    pd: PagerDutyReceiver,
    meta: JSON,
) -> JSON:
    return {
        "v": 1,
        "ok": all(c.ok for c in checks),
        **meta,
        "wall0": obs.wall0,
        "start_ts": obs.start_ts,
        "faults": [
            {
                "name": r.case.name,
                "kind": r.case.spec.kind,
                "target": r.case.target,
                "rack": r.case.rack,
                "start_tick": r.case.spec.start_tick,
                "duration_ticks": r.case.spec.duration_ticks,
                "magnitude": r.case.spec.magnitude,
                "expected": {
                    "alertname": r.case.alertname,
                    "classification": r.case.classification,
                    "pagerduty_severity": r.case.pd_severity,
                },
                "timeline": {m: r.moments[m].to_obj(obs.wall0, obs.start_ts) for m in MOMENTS},
                "latencies_s": r.latencies(),
                "event_latencies_s": r.event_latencies(),
                "firings": [f.to_obj() for f in r.firings],
                "alerts": [a.to_obj() for a in r.alerts],
                "dedup_keys": r.dedup_keys,
            }
            for r in results
        ],
        "checks": [dataclasses.asdict(c) for c in checks],
        "findings": findings,
        "firings": [f.to_obj() for f in obs.firings.values()],
        "alerts": [a.to_obj() for a in obs.alerts],
        "alertmanager_inhibited": list(obs.inhibited.values()),
        "pagerduty_events": [{"received": t, "event": e} for t, e in pd.snapshot()],
        "pagerduty_rejected": pd.rejected,
        "tickets": pd.tickets,
    }


# ------------------------------------------------------------------------------------------ the run


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


async def _watch(
    obs: Observer, running: Running, prom: str, am: str, done: Callable[[], bool], deadline: float
) -> None:
    """Poll the daemon, Prometheus and Alertmanager until ``done()`` (then SETTLE_S more, so that late
    notifications and the alerts' disappearance are seen too) or ``deadline``."""
    timeout = aiohttp.ClientTimeout(total=2.0)
    settle_until = math.inf
    async with aiohttp.ClientSession(timeout=timeout) as session:
        n = 0
        while (now := time.time()) < min(deadline, settle_until):
            obs.watch_daemon(running.status.snapshot, now)
            try:
                answer = await _get_json(session, f"{prom}/api/v1/alerts")
                obs.watch_prometheus(answer["data"]["alerts"], time.time())
                if n % 3 == 0:
                    obs.watch_alertmanager(
                        await _get_json(session, f"{am}/api/v2/alerts?active=true&inhibited=true&silenced=true")
                    )
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
                obs.errors.append(f"{type(exc).__name__}: {exc}")
            n += 1
            if settle_until == math.inf and done():
                settle_until = time.time() + SETTLE_S
            await asyncio.sleep(POLL_S)


def _all_resolved(results: Callable[[], list[CaseResult]]) -> Callable[[], bool]:
    def done() -> bool:
        return all(r.moments["resolve_received"].wall is not None for r in results())

    return done


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def run_drill(cfg: Config, *, out: Path | None = None, speedup: float = 20.0) -> int:
    """Run the drill; print the timeline; write it as JSON to ``out``. 0 when every expectation held, else 1."""
    if not speedup > 0:
        print("drill: --speedup must be > 0", file=sys.stderr)
        return 1
    try:
        rules_src = shipped_file("alert_rules.yml")
        am_src = shipped_file("deploy/alertmanager/alertmanager.yml")
    except FileNotFoundError as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return 1
    start_ts = DEFAULT_START_TS  # fixed, window-aligned: the same seed gives the same firings in event time
    dcfg = drill_config(cfg, speedup, start_ts)
    cases = drill_cases(dcfg.detector.warmup_max_windows, speedup)
    scenario = Scenario(
        SCENARIO_NAME, "end-to-end alerting drill: shard, rack and hard fault", tuple(c.spec for c in cases)
    )
    last_clear = max(c.spec.start_tick + (c.spec.duration_ticks or 0) for c in cases)
    budget_s = (last_clear + RESOLVE_TICKS) * TICK_S / speedup + SLACK_WALL_S
    meta: JSON = {
        "speedup": speedup,
        "tick_s": TICK_S,
        "window_s": WINDOW_S,
        "topology": TOPOLOGY,
        "warmup_windows": dcfg.detector.warmup_max_windows,
        "for_cap_firings": for_cap(speedup),
        "poll_interval_s": dcfg.sources.poll_interval_s,
        "budget_s": round(budget_s, 1),
    }
    print(
        f"drill: speedup {speedup:g}, warm-up up to {dcfg.detector.warmup_max_windows} windows "
        f"({dcfg.detector.warmup_max_windows * WINDOW_S / speedup:.1f} s wall), faults at ticks "
        f"{[c.spec.start_tick for c in cases]} for {cases[0].spec.duration_ticks} ticks, "
        f"for: capped at {for_cap(speedup)}, budget {budget_s:.0f} s",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="tessera-drill-") as tmp, registered(scenario):
            results, checks, findings, obs, pd = await _run(
                dcfg, cases, Path(tmp), rules_src, am_src, speedup, start_ts, budget_s
            )
    except MissingBinaryError as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return 1
    print_report(results, checks, findings, obs, sys.stdout)
    if out is not None:
        text = json.dumps(report_obj(results, checks, findings, obs, pd, meta), indent=2, default=str)
        await asyncio.to_thread(_write, out, text)
        print(f"drill: timeline written to {out}")
    return 0 if all(c.ok for c in checks) else 1


async def _run(
    dcfg: Config,
    cases: list[Case],
    tmp: Path,
    rules_src: Path,
    am_src: Path,
    speedup: float,
    start_ts: float,
    budget_s: float,
) -> tuple[list[CaseResult], list[Check], list[str], Observer, PagerDutyReceiver]:
    obs = Observer(start_ts=start_ts, speedup=speedup)
    stack = contextlib.ExitStack()
    daemon_task: asyncio.Task[int] | None = None
    running_fut: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    pd = PagerDutyReceiver()

    def current() -> list[CaseResult]:
        return [assess_case(c, obs, pd.snapshot(), start_ts) for c in cases]

    try:
        await asyncio.to_thread(stack.enter_context, pd)
        key = PagerDutyReceiver.write_routing_key(tmp, ROUTING_KEY)
        am_text = drill_alertmanager_config(pd.enqueue_url, key, ticket_url=pd.ticket_url, source=am_src)
        rules = drill_alert_rules(tmp, max_for=for_cap(speedup), source=rules_src, groups={"tessera-firings"})
        am = await asyncio.to_thread(stack.enter_context, alertmanager_server(tmp, am_text))

        def on_running(r: Running) -> None:
            if not running_fut.done():
                running_fut.set_result(r)

        daemon_task = asyncio.create_task(run_daemon(dcfg, on_running=on_running, install_signals=False))
        while not running_fut.done():
            if daemon_task.done():
                raise RuntimeError(f"the daemon exited before serving: {daemon_task.result()}")
            await asyncio.sleep(0.05)
        running = running_fut.result()
        prom = await asyncio.to_thread(
            stack.enter_context,
            prometheus_server(tmp, [f"127.0.0.1:{running.port}"], [rules], am, external_labels={"cluster": CLUSTER}),
        )
        deadline = time.time() + budget_s
        await _watch(obs, running, prom, am, _all_resolved(current), deadline)
    finally:
        await asyncio.to_thread(stack.close)  # Prometheus, Alertmanager, then the receiver
        if daemon_task is not None:
            if running_fut.done():
                running_fut.result().stop.set()
            else:
                daemon_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await daemon_task
    results = current()
    checks = [c for r in results for c in case_checks(r)]
    more, findings = global_checks(results, pd, obs)
    return results, checks + more, findings, obs, pd
