"""The end-to-end alerting drill (tessera_daemon/drill/, ``tessera-daemon drill``).

The marked test runs the whole drill: the daemon on the simulator, a real Prometheus with alert_rules.yml, a
real Alertmanager with the shipped configuration and a local PagerDuty Events API v2 receiver; a shard fault,
a rack common mode and a hard fault must page with the right severity, one incident each, and resolve after
they clear. The unmarked tests check the drill's scenario offline (the same pipeline, no servers).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tessera_daemon.config import load_config
from tessera_daemon.drill import (
    LATENCIES,
    MOMENTS,
    SCENARIO_NAME,
    drill_cases,
    drill_config,
    for_cap,
    registered,
    run_drill,
)
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.sim import DEFAULT_START_TS, SCENARIOS, ClusterSim, Scenario
from tests.servers import find_exe

SPEEDUP = 20.0


def _scenario(speedup: float = SPEEDUP) -> tuple[Scenario, list[str]]:
    cfg = load_config(environ={})
    cases = drill_cases(cfg.detector.warmup_max_windows, speedup)
    return Scenario(SCENARIO_NAME, "drill", tuple(c.spec for c in cases)), [c.target for c in cases]


def test_drill_topology_makes_a_rack_a_minority_of_each_cohort() -> None:
    cfg = drill_config(load_config(environ={}), SPEEDUP, DEFAULT_START_TS)
    scenario, targets = _scenario()
    sim = ClusterSim(cfg.sim, scenario=scenario, start_ts=DEFAULT_START_TS)
    topo = sim.topology
    assert all(t in topo.nodes for t in targets)
    members = topo.members()
    rack = set(members["z0-r02"])
    for cohort in sorted({topo.cohort_of(s) for s in topo.shards}):
        in_cohort = {s for s in topo.shards if topo.cohort_of(s) == cohort}
        assert 0 < len(in_cohort & rack) < len(in_cohort) / 2
    # the faults start after warm-up and clear, with the wall time the alerting chain needs
    warmup_ticks = cfg.detector.warmup_max_windows * cfg.window.length_s / cfg.sim.tick_s
    for spec in scenario.faults:
        assert spec.start_tick > warmup_ticks
        assert spec.duration_ticks is not None and spec.duration_ticks / SPEEDUP >= 15.0
    assert for_cap(20.0) == "3s" and for_cap(1000.0) == "1s" and for_cap(1.0) == "60s"


def test_drill_scenario_is_registered_only_while_the_drill_runs() -> None:
    scenario, _ = _scenario()
    assert SCENARIO_NAME not in SCENARIOS
    with registered(scenario):
        assert SCENARIOS[SCENARIO_NAME] is scenario
    assert SCENARIO_NAME not in SCENARIOS


def test_drill_scenario_offline() -> None:
    """The same pipeline over the drill's simulated cluster: each fault opens the firing the drill expects,
    which resolves after the fault clears (what the live drill relies on, in event time)."""
    cfg = drill_config(load_config(environ={}), SPEEDUP, DEFAULT_START_TS)
    scenario, (shard, rack, hard) = _scenario()
    sim = ClusterSim(cfg.sim, scenario=scenario, start_ts=DEFAULT_START_TS)
    pipeline = Pipeline(cfg, sim.topology)
    end = max(s.start_tick + (s.duration_ticks or 0) for s in scenario.faults) + 250
    opened: dict[str, list[tuple[str, str, float]]] = {}
    resolved: dict[str, float] = {}
    for _ in range(end):
        _, frames = sim.step()
        pipeline.ingest(frames)
        for r in pipeline.advance():
            for f in r.opened:
                opened.setdefault(f.target, []).append((f.scope, f.classification, f.opened_ts))
            for f in r.resolved:
                resolved[f.target] = max(resolved.get(f.target, 0.0), f.resolved_ts or 0.0)
    assert not pipeline.book.active(), [f.target for f in pipeline.book.active()]
    specs = {s.target: s for s in scenario.faults}
    for target, classification in ((shard, "shard_fault"), (rack, "common_mode"), (hard, "hard_fault")):
        spec = specs[target]
        start = DEFAULT_START_TS + spec.start_tick * cfg.sim.tick_s
        clear = start + (spec.duration_ticks or 0) * cfg.sim.tick_s
        assert target in opened, f"{target}: no firing"
        assert all(c == classification for _, c, _ in opened[target]), opened[target]
        assert min(ts for _, _, ts in opened[target]) >= start
        assert resolved[target] >= clear
    # nothing fires outside the faulted shards and the rack
    faulted = {shard, rack, hard, *sim.topology.members()[rack]}
    hosts_of_rack = {n for n in sim.topology.nodes if n.startswith(f"{rack}-h") and n.count("-") == 2}
    assert set(opened) <= faulted | hosts_of_rack, sorted(set(opened) - faulted)


@pytest.mark.prometheus
@pytest.mark.timeout(170)
async def test_drill_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    find_exe("prometheus")
    find_exe("prometheus-alertmanager", "alertmanager")
    out = tmp_path / "drill.json"
    rc = await run_drill(load_config(environ={}), out=out, speedup=SPEEDUP)
    printed = capsys.readouterr().out
    assert rc == 0, printed
    report = json.loads(out.read_text())
    assert report["ok"] is True
    assert all(c["ok"] for c in report["checks"]), printed
    by_name = {f["name"]: f for f in report["faults"]}
    assert set(by_name) == {"shard", "rack", "hard"}
    expected = {
        "shard": ("TesseraShardFault", "error"),
        "rack": ("TesseraCommonModeRack", "error"),
        "hard": ("TesseraHardFault", "critical"),
    }
    for name, fault in by_name.items():
        assert (fault["expected"]["alertname"], fault["expected"]["pagerduty_severity"]) == expected[name]
        timeline = fault["timeline"]
        assert all(timeline[m]["wall"] is not None for m in MOMENTS), (name, timeline)
        # causality on the wall clock (the rack page may be opened by its member alerts before the
        # rack-scope alert itself fires, so alert_firing -> page_received is not checked for it)
        assert timeline["injected"]["wall"] <= timeline["firing_opened"]["wall"] + 0.5
        assert timeline["firing_opened"]["wall"] <= timeline["alert_firing"]["wall"]
        assert timeline["cleared"]["wall"] <= timeline["firing_resolved"]["wall"] + 0.5
        assert timeline["firing_resolved"]["wall"] <= timeline["resolve_received"]["wall"]
        assert timeline["firing_opened"]["event_ts"] >= timeline["injected"]["event_ts"]
        assert timeline["firing_resolved"]["event_ts"] >= timeline["cleared"]["event_ts"]
        assert set(fault["latencies_s"]) == {n for n, _, _ in LATENCIES}
        assert len(fault["dedup_keys"]) == 1
    triggers = [e["event"] for e in report["pagerduty_events"] if e["event"]["event_action"] == "trigger"]
    assert {e["payload"]["group"] for e in triggers} == {"z0-r00", "z0-r02", "z0-r03"}
    assert not report["pagerduty_rejected"]
    for heading in ("Timeline", "Latencies", "drill passed"):
        assert heading in printed
