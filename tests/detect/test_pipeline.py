"""The detector pipeline on the simulated cluster: residual calibration, detection, lifecycle."""

from __future__ import annotations

import numpy as np

from tessera_daemon.config import Config, load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.model import Firing
from tessera_daemon.sim import ClusterSim, FaultSpec, Scenario


def cfg_for(**env: str) -> Config:
    base = {"TESSERA_SIM__ZONES": "1", "TESSERA_SIM__RACKS_PER_ZONE": "2", "TESSERA_SIM__HOSTS_PER_RACK": "4",
            "TESSERA_SIM__COHORTS": "1"}
    return load_config(None, {**base, **env})


def drive(cfg: Config, scenario: Scenario | str, ticks: int, seed: int = 1) -> tuple[Pipeline, list[Firing]]:
    sim = ClusterSim(cfg.sim, scenario=scenario, seed=seed)
    p = Pipeline(cfg, sim.topology)
    events: list[Firing] = []
    for _ in range(ticks):
        _, frames = sim.step()
        p.ingest(frames)
        for r in p.advance():
            events.extend(r.opened)
            events.extend(r.resolved)
    for r in p.flush():
        events.extend(r.opened)
    return p, events


def test_innovations_are_calibrated_on_null_data() -> None:
    cfg = cfg_for()
    sim = ClusterSim(cfg.sim, scenario="clean", seed=4)
    p = Pipeline(cfg, sim.topology)
    ws = []
    for _ in range(1500):
        p.ingest(sim.step()[1])
        for _r in p.advance():
            ws.append(p.state.last_w.copy())
    w = np.array(ws[80:])
    assert abs(np.nanmean(w)) < 0.05
    assert 0.85 < np.nanstd(w) < 1.15
    lag1 = np.nanmean(w[1:] * w[:-1]) / np.nanvar(w)
    assert abs(lag1) < 0.1  # pre-whitening removed the AR(1) structure
    assert p.warm_fraction() == 1.0


def test_straggler_fires_only_on_its_shard_then_resolves_and_rearms() -> None:
    cfg = cfg_for()
    sc = Scenario("t", "straggler on, off", (FaultSpec("straggler", 400, 250, 5.0),))
    p, events = drive(cfg, sc, 1500)
    sim = ClusterSim(cfg.sim, scenario=sc, seed=1)
    target = sim.labels()["faults"][0]["shards"][0]
    opened = [f for f in events if f.state == "open" or f.resolved_ts is not None]
    stat = [f for f in opened if f.detector == "A"]
    assert stat, "straggler not detected"
    assert {f.target for f in stat} == {target}
    step = [f for f in stat if f.metric == "step_time_ms"]
    assert step and step[0].receipt["direction"] == "up"
    assert step[0].classification == "shard_fault" and step[0].members == [target]
    assert step[0].log_evidence >= step[0].threshold_log
    # the fault ends at tick 650: the firing resolves with hysteresis and the stream is re-armed
    assert step[0].state == "resolved" and step[0].resolved_window is not None
    assert step[0].resolved_window > step[0].window
    i, j = p.row[target], p.metrics.index("step_time_ms")
    assert p.state.log_m[i, j] < p.threshold_log


def test_hard_faults_fire_in_their_window() -> None:
    cfg = cfg_for()
    sc = Scenario("t", "hard", (FaultSpec("xid79", 200, 30, 1.0), FaultSpec("ecc_dbe", 220, 1, 1.0)))
    _, events = drive(cfg, sc, 300)
    rules = {(f.detector, f.target) for f in events if f.classification == "hard_fault"}
    labels = ClusterSim(cfg.sim, scenario=sc, seed=1).labels()["faults"]
    shard_of = {f["kind"]: f["shards"][0] for f in labels}
    assert ("rule:xid", shard_of["xid79"]) in rules
    assert ("rule:device_lost", shard_of["xid79"]) in rules
    assert ("rule:ecc_dbe", shard_of["ecc_dbe"]) in rules
    xid = next(f for f in events if f.detector == "rule:xid")
    # fault at tick 200 (1 s ticks, 5 s windows): the firing opens in the window that saw it
    assert xid.window - (int(xid.receipt["window_start_ts"]) // 5) == 0
    assert xid.receipt["xid"] == [79]


def test_cohort_wide_step_fires_no_shard_but_a_fleet_event() -> None:
    cfg = cfg_for()
    sc = Scenario("t", "benign", (FaultSpec("fleet_regime_change", 400, None, 3.0),))
    _, events = drive(cfg, sc, 1200)
    assert [f for f in events if f.scope == "shard"] == []  # peer residuals cancel it
    fleet = [f for f in events if f.scope == "cohort"]
    assert fleet and {f.classification for f in fleet} == {"fleet_event"}
    assert {f.metric for f in fleet} >= {"gpu_util", "power_w"}


def test_weak_rack_shift_is_found_by_the_pooled_group_detector() -> None:
    """0.8 sigma on every shard of one rack: pooled residuals see it before any single shard does."""
    cfg = load_config(None, {"TESSERA_SIM__ZONES": "1", "TESSERA_SIM__RACKS_PER_ZONE": "4",
                             "TESSERA_SIM__HOSTS_PER_RACK": "2", "TESSERA_SIM__COHORTS": "1"})
    sc = Scenario("t", "weak rack", (FaultSpec("thermal_rack", 1500, None, 0.8),))
    rack = ClusterSim(cfg.sim, scenario=sc, seed=3).labels()["faults"][0]["target"]
    _, events = drive(cfg, sc, 2600, seed=3)
    pooled = [f for f in events if f.receipt.get("pooled")]
    assert pooled, "the pooled group detector did not fire"
    rack_f = [f for f in pooled if f.target == rack]
    assert rack_f and rack_f[0].scope == "rack" and rack_f[0].classification == "common_mode"
    assert all(f.target == rack or f.target.startswith(rack + "-") for f in pooled)  # never outside the rack
    first_shard = min((f.window for f in events if f.scope == "shard"), default=10**12)
    assert min(f.window for f in pooled) < first_shard
    # once the rack explains it, the host-level firing gives way
    assert all(f.state == "resolved" for f in pooled if f.target != rack)
