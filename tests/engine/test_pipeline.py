"""The detector pipeline on the simulated cluster: residual calibration, detection, lifecycle."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from tessera_daemon.config import Config, load_config
from tessera_daemon.detect.residuals import ResidualParams, residual_step
from tessera_daemon.detect.state import DetectorState
from tessera_daemon.engine import checkpoint
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.errors import CheckpointError
from tessera_daemon.model import Firing
from tessera_daemon.sim import ClusterSim, FaultSpec, Scenario

# faults here are sized in noise sigmas of the simulator, the lifecycle is what is tested: sigma margins only
# (tests/engine/test_pipeline_messy.py covers the material margins)
_BASE_ENV = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "2",
    "TESSERA_SIM__HOSTS_PER_RACK": "4",
    "TESSERA_SIM__COHORTS": "1",
    **(_SIGMA := {"TESSERA_DETECTOR__MATERIAL": '["*=0"]', "TESSERA_WINDOW__LENGTH_S": "5"}),
}


def cfg_for(**env: str) -> Config:
    return load_config(None, {**_BASE_ENV, **env})


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
    # every statistical firing opened on evidence at the threshold (none re-opened on re-armed evidence)
    assert all(f.log_evidence >= f.threshold_log - 1e-9 for f in stat), [(f.window, f.log_evidence) for f in stat]
    assert len({f.id for f in step}) == 1
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
    assert ("rule:ecc_dbe", shard_of["ecc_dbe"]) in rules
    xid = next(f for f in events if f.detector == "rule:xid")
    # XID 79 and then the device lost: one incident, the loss recorded in it (one incident per fault)
    assert ("rule:device_lost", shard_of["xid79"]) not in rules
    assert [r["detector"] for r in xid.receipt["related"]] == ["rule:device_lost"]
    # fault at tick 200 (1 s ticks, 5 s windows): the firing opens in the window that saw it
    assert xid.window - (int(xid.receipt["window_start_ts"]) // 5) == 0
    assert xid.receipt["xid"] == [79]


def test_cohort_wide_step_fires_no_shard_but_a_fleet_event() -> None:
    cfg = cfg_for(TESSERA_DETECTOR__FLEET_EVENT_PERSIST_S="100")
    sc = Scenario("t", "benign", (FaultSpec("fleet_regime_change", 400, None, 3.0),))
    _, events = drive(cfg, sc, 1200)
    assert [f for f in events if f.scope == "shard"] == []  # peer residuals cancel it
    fleet = [f for f in events if f.scope == "cohort"]
    assert fleet and {f.classification for f in fleet} == {"fleet_event"}
    assert {f.metric for f in fleet} >= {"gpu_util", "power_w"}


def test_weak_rack_shift_is_found_by_the_pooled_group_detector() -> None:
    """0.8 sigma on every shard of one rack: pooled residuals see it before any single shard does."""
    cfg = load_config(
        None,
        {
            "TESSERA_SIM__ZONES": "1",
            "TESSERA_SIM__RACKS_PER_ZONE": "4",
            "TESSERA_SIM__HOSTS_PER_RACK": "2",
            "TESSERA_SIM__COHORTS": "1",
            **_SIGMA,
        },
    )
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


def _rack_warm_tick(cfg: Config, seed: int) -> int:
    """The tick at which every stream of the thermal_rack fault's rack has finished its (adaptive)
    warm-up; the simulator is deterministic up to a fault's start, so a probe run with the fault far
    ahead sees the same warm-up."""
    far = 4 * cfg.detector.warmup_max_windows * int(cfg.window.length_s / cfg.sim.tick_s)
    sim = ClusterSim(cfg.sim, scenario=Scenario("t", "probe", (FaultSpec("thermal_rack", far, None, 1.5),)), seed=seed)
    p = Pipeline(cfg, sim.topology)
    rows = [p.row[s] for s in sim.labels()["faults"][0]["shards"]]
    for t in range(far):
        p.ingest(sim.step()[1])
        p.advance()
        if p.state.warm()[rows].all():
            return t
    raise AssertionError("the rack never finished warm-up")


def test_group_detector_is_live_when_its_members_are_and_names_every_member() -> None:
    """A rack fault 20 windows after the rack's shards finish warm-up: the rack's pooled detector seeded
    its variance from the members' warm-up buffers (no second warm-up that would learn the fault as group
    noise), fires, and its firing keeps every rack member even after single shards co-fire."""
    cfg = load_config(
        None,
        {
            "TESSERA_SIM__ZONES": "1",
            "TESSERA_SIM__RACKS_PER_ZONE": "4",
            "TESSERA_SIM__HOSTS_PER_RACK": "2",
            "TESSERA_SIM__COHORTS": "1",
            **_SIGMA,
        },
    )
    start = _rack_warm_tick(cfg, 5) + 20 * int(cfg.window.length_s / cfg.sim.tick_s)
    sc = Scenario("t", "early rack", (FaultSpec("thermal_rack", start, None, 1.5),))
    sim = ClusterSim(cfg.sim, scenario=sc, seed=5)
    label = sim.labels()["faults"][0]
    p = Pipeline(cfg, sim.topology)
    opened: list[Firing] = []
    ready_at_onset = None
    for t in range(start + 400):
        _, frames = sim.step()
        p.ingest(frames)
        for r in p.advance():
            opened.extend(r.opened)
        if t == start:
            gi = p.groups.index[label["target"]]
            ready_at_onset = bool(p.groups.ready[gi].all())
            assert p.state.warm()[[p.row[s] for s in label["shards"]]].all()
    assert ready_at_onset, "the rack's group detector was still warming up when the fault began"
    rack = [f for f in opened if f.target == label["target"] and f.classification == "common_mode"]
    assert rack, "the rack fault was not found"
    assert set(rack[0].members) == set(label["shards"])
    assert not [f for f in opened if f.classification == "shard_fault"]


# ------------------------------------------------------------------------------ adaptive warm-up


def ar1_streams(n: int, windows: int, rho: float, seed: int) -> np.ndarray:
    """``[n, windows]`` stationary AR(1) paths with unit marginal variance."""
    rng = np.random.default_rng(seed)
    x = np.empty((n, windows))
    x[:, 0] = rng.standard_normal(n)
    for w in range(1, windows):
        x[:, w] = rho * x[:, w - 1] + np.sqrt(1.0 - rho * rho) * rng.standard_normal(n)
    return x


def warm_after(x: np.ndarray, cfg: Config) -> np.ndarray:
    """Feed lone streams ``x`` [n, windows] (centre fixed at 0, one metric) through the residual step;
    the number of windows each took to finish warm-up (-1: never)."""
    d = cfg.detector
    n = x.shape[0]
    st = DetectorState.empty(n, 1, d.warmup_max_windows, len(d.bets))
    params = ResidualParams.from_config(d)
    out = np.full(n, -1)
    for w in range(x.shape[1]):
        residual_step(
            st,
            x[:, w : w + 1],
            np.zeros(n, np.int64),
            [np.arange(n, dtype=np.int64)],
            np.zeros((n, 1), np.bool_),
            params,
            centre=np.zeros((1, 1)),
        )
        out = np.where((out < 0) & st.warm()[:, 0], w + 1, out)
    return out


def test_warmup_low_phi_stream_is_warm_after_the_minimum() -> None:
    cfg = load_config(None, {})
    assert cfg.detector.warmup_windows == 60
    n = warm_after(ar1_streams(20, 100, 0.0, seed=11), cfg)
    assert n.tolist() == [cfg.detector.warmup_windows] * 20
    n = warm_after(ar1_streams(40, 150, 0.3, seed=11), cfg)  # mostly at the minimum, never much later
    assert np.mean(n == cfg.detector.warmup_windows) >= 0.8 and (n > 0).all() and n.max() <= 100


def test_warmup_high_phi_stream_keeps_learning_then_stops_at_the_maximum() -> None:
    cfg = load_config(None, {})
    d = cfg.detector
    x = ar1_streams(20, d.warmup_max_windows + 40, 0.97, seed=12)
    n = warm_after(x, cfg)
    assert (n > d.warmup_windows).all()  # 60 windows of a near-unit-root stream are not enough
    assert (n <= d.warmup_max_windows).all() and (n > 0).all()
    # a moderately persistent stream lands in between: longer than the minimum, shorter than the maximum
    n_mid = warm_after(ar1_streams(20, d.warmup_max_windows + 40, 0.7, seed=13), cfg)
    assert np.median(n_mid) > d.warmup_windows and (n_mid < d.warmup_max_windows).all()


def test_warmup_persistence_zero_is_the_fixed_warmup() -> None:
    cfg = load_config(None, {"TESSERA_DETECTOR__WARMUP_PERSISTENCE": "0"})
    n = warm_after(ar1_streams(10, 100, 0.97, seed=14), cfg)
    assert n.tolist() == [cfg.detector.warmup_windows] * 10
    cfg = load_config(None, {"TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "60"})
    n = warm_after(ar1_streams(10, 100, 0.97, seed=14), cfg)
    assert n.tolist() == [60] * 10


def test_warmup_staggered_cohort_keeps_learning_until_enough_members_are_warm() -> None:
    """One white member finishes at 60 windows, three persistent ones later: the cohort centre falls back
    to the raw median meanwhile (no deadlock on a NaN centre), and the early member waits for an
    offset-adjusted centre (at least min_cohort warm members) before it gets innovations."""
    cfg = load_config(None, {})
    d = cfg.detector
    x = np.concatenate([ar1_streams(1, 400, 0.0, seed=15), ar1_streams(3, 400, 0.97, seed=16)]) + 10.0
    n = x.shape[0]
    st = DetectorState.empty(n, 1, d.warmup_max_windows, len(d.bets))
    params = ResidualParams.from_config(d)
    warm_at = np.full(n, -1)
    first_w = -1
    for w in range(x.shape[1]):
        res = residual_step(
            st,
            x[:, w : w + 1],
            np.zeros(n, np.int64),
            [np.arange(n, dtype=np.int64)],
            np.zeros((n, 1), np.bool_),
            params,
        )
        warm_before = int((warm_at >= 0).sum())
        if not np.isnan(res.w[0, 0]) and first_w < 0:
            first_w = w
            assert warm_before >= d.min_cohort
        warm_at = np.where((warm_at < 0) & st.warm()[:, 0], w + 1, warm_at)
    assert warm_at[0] == d.warmup_windows
    assert (warm_at[1:] > d.warmup_windows).all() and (warm_at[1:] <= d.warmup_max_windows).all()
    assert first_w > 0 and np.sum(np.isnan(st.last_w)) == 0  # everyone has innovations at the end


def test_suspect_members_leave_the_cohort_centre_while_enough_remain() -> None:
    """A shard whose baseline is frozen (alarmed) no longer pulls the peer centre toward itself; with
    too few trusted members left, every warm member counts again."""
    cfg = load_config(None, {})
    d = cfg.detector
    n = 10
    rng = np.random.default_rng(21)
    params = ResidualParams.from_config(d)
    st = DetectorState.empty(n, 1, d.warmup_max_windows, len(d.bets))
    cohort, rows = np.zeros(n, np.int64), [np.arange(n, dtype=np.int64)]
    trusted = np.zeros((n, 1), np.bool_)
    for _ in range(d.warmup_windows + 5):
        residual_step(st, rng.standard_normal((n, 1)), cohort, rows, trusted, params)
    assert st.warm().all()

    def centre(x: np.ndarray, frozen: np.ndarray) -> float:
        return float(residual_step(copy.deepcopy(st), x, cohort, rows, frozen, params).centre[0, 0])

    x = st.offset.copy()  # every member exactly at its own baseline ...
    x[0] += 6.0  # ... but shard 0, six sigma up,
    x[1:5] += 1.0  # and four members one sigma up
    shard0 = trusted.copy()
    shard0[0] = True
    assert centre(x, trusted) == pytest.approx(0.5)  # median of (6, 1, 1, 1, 1, 0 x 5)
    assert centre(x, shard0) == pytest.approx(0.0)  # median of (1, 1, 1, 1, 0 x 5): shard 0 left out
    few = np.ones((n, 1), np.bool_)
    few[:2] = False  # only two trusted members (< min_cohort): every warm member counts
    assert d.min_cohort > 2
    assert centre(x, few) == pytest.approx(0.5)


def test_checkpoint_holds_the_longest_warmup_and_names_it() -> None:
    cfg = cfg_for()
    sim = ClusterSim(cfg.sim, scenario="clean", seed=2)
    p = Pipeline(cfg, sim.topology)
    assert p.state.buf.shape[2] == cfg.detector.warmup_max_windows
    for _ in range(80):
        p.ingest(sim.step()[1])
        p.advance()
    blob = checkpoint.snapshot(p, partition="p", position="0")
    q, _ = checkpoint.restore(blob, cfg, partition="p")
    assert np.array_equal(q.state.n_warm, p.state.n_warm)
    shorter = load_config(None, {**_BASE_ENV, "TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "120"})
    with pytest.raises(CheckpointError, match="warmup_max"):
        checkpoint.restore(blob, shorter, partition="p")


def test_a_cleared_rack_fault_pages_once_and_nothing_inside_it_pages_afterwards() -> None:
    """When the rack's firing closes, its PSUs, hosts and quiet members are re-armed on that metric: the
    evidence they gathered during the incident must not page again after it cleared."""
    cfg = load_config(
        None,
        {
            "TESSERA_SIM__ZONES": "1",
            "TESSERA_SIM__RACKS_PER_ZONE": "4",
            "TESSERA_SIM__HOSTS_PER_RACK": "2",
            "TESSERA_SIM__COHORTS": "1",
            **_SIGMA,
        },
    )
    start, duration = 900, 200
    sc = Scenario("t", "rack on, off", (FaultSpec("thermal_rack", start, duration, 3.0),))
    label = ClusterSim(cfg.sim, scenario=sc, seed=2).labels()["faults"][0]
    rack = label["target"]
    _, events = drive(cfg, sc, start + duration + 600, seed=2)
    opened = {f.id: f for f in events}.values()
    rack_f = [f for f in opened if f.target == rack]
    assert rack_f and rack_f[0].classification == "common_mode"
    clear_window = int(label["end_ts"] // cfg.window.length_s)
    late = [
        (f.window - clear_window, f.target, f.metric)
        for f in opened
        if f.window > clear_window + 3 and f.classification != "fleet_event"
    ]
    assert late == [], late
