"""The drill's report: the timeline printed for an operator, and the same as JSON."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, TextIO

from tessera_daemon.drill.observe import Observer
from tessera_daemon.drill.scenario import JSON, LATENCIES, MOMENTS
from tessera_daemon.drill.verdict import CaseResult, Check

if TYPE_CHECKING:
    from tessera_daemon.testing.receivers import PagerDutyReceiver

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
