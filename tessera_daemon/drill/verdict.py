"""The drill's verdict: each case's timeline and latencies, its checks, and the checks across cases."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from tessera_daemon.drill.observe import AlertSeen, FiringSeen, Moment, Observer, pd_alertname, pd_details
from tessera_daemon.drill.scenario import CLUSTER, JSON, LATENCIES, MOMENTS, ROUTING_KEY, TICK_S, Case

if TYPE_CHECKING:
    from tessera_daemon.testing.receivers import PagerDutyReceiver

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
            and pd_alertname(e) == case.alertname
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
        targets = sorted({t for _, e in r.pages for t in pd_details(e).get("firing", "").split()})
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
        and (pd_alertname(e), (e.get("payload") or {}).get("group")) not in expected
    ]
    shard_in_rack = [
        e
        for e in stray
        if pd_alertname(e) == "TesseraShardFault" and (e.get("payload") or {}).get("group") == rack.rack
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
            str(pd_alertname(e))
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
