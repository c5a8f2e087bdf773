"""Each fault changes exactly the labelled shards and metrics (against a clean run, same seed)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tessera_daemon.model import Frame
from tessera_daemon.sim import METRICS, ClusterSim, FaultSpec, Scenario
from tests.sim.runs import SMALL, Run, differs, run

START, DURATION, TICKS = 60, 100, 220
STATISTICAL = {
    # kind: (expected metrics, scope kind, {metric: expected shift in metric units after the ramp})
    "sdc_drift": ({"power_w"}, "shard", {"power_w": 45.0}),
    "straggler": ({"step_time_ms", "gpu_util"}, "shard", {}),
    "thermal_rack": ({"temp_c"}, "rack", {"temp_c": 3.0}),
    "psu_cap": ({"power_w", "sm_clock_mhz"}, "psu", {"power_w": -45.0, "sm_clock_mhz": -45.0}),
    "nvlink_degrade": ({"nvlink_tx_bytes", "step_time_ms"}, "host", {}),
    "fleet_regime_change": ({"gpu_util", "power_w", "mem_bw_util", "step_time_ms"}, "cohort", {"power_w": 45.0}),
    "firmware_push": ({"sm_clock_mhz"}, "rack", {"sm_clock_mhz": 45.0}),
}


@pytest.fixture(scope="module")
def clean() -> Run:
    return run(SMALL, "clean", ticks=TICKS)


def faulted(spec: FaultSpec) -> tuple[Run, dict[str, Any]]:
    r = run(SMALL, Scenario("t", "test", (spec,)), ticks=TICKS)
    labels = r.sim.labels()
    assert len(labels["faults"]) == 1
    return r, labels["faults"][0]


def members(r: Run, node: str) -> list[str]:
    topo = r.sim.topology
    if topo.nodes[node].kind == "shard":
        return [node]
    if topo.nodes[node].kind == "cohort":
        return [s for s in topo.shards if topo.cohort_of(s) == node]
    return topo.members()[node]


def mask_of(r: Run, label: dict[str, Any]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = r.rows(label["shards"])
    cols = np.array([METRICS.index(m) for m in label["metrics"]], dtype=np.intp)
    mask = np.zeros((len(r.sim.shard_ids), len(METRICS)), dtype=bool)
    mask[np.ix_(rows, cols)] = True
    return rows, cols, mask


def metric_series(r: Run, metric: str) -> np.ndarray:
    x = r.values[:, :, r.col(metric)]
    if metric == "nvlink_tx_bytes":
        d = np.diff(x, axis=0, prepend=x[:1])
        return np.where(d < 0, d + 2.0**64, d)
    return x


@pytest.mark.parametrize("kind", sorted(STATISTICAL))
def test_statistical_fault_changes_exactly_its_shards_and_metrics(clean: Run, kind: str) -> None:
    metrics, scope, shift = STATISTICAL[kind]
    spec = FaultSpec(kind, start_tick=START, duration_ticks=DURATION, magnitude=3.0, ramp_ticks=20)
    r, label = faulted(spec)
    assert set(label["metrics"]) == metrics
    assert label["metric"] in metrics
    assert label["scope"] == scope
    assert r.sim.topology.nodes[label["target"]].kind == scope
    assert label["shards"] == members(r, label["target"])
    assert label["benign"] == (kind in ("fleet_regime_change", "firmware_push"))
    assert not label["hard"]
    assert label["start_ts"] == r.ts[START]
    rows, _cols, mask = mask_of(r, label)
    diff = differs(r.values, clean.values)
    assert not diff[:START].any()
    assert not diff[:, ~mask].any()
    assert r.reporting.all()
    assert not r.lost.any()
    assert all(not x for x in r.xid)
    # firmware: hosts switch over the rollout window [START, START + DURATION), then ramp 20 ticks
    hold = slice(START + 40, START + DURATION) if kind != "firmware_push" else slice(START + 120, TICKS)
    for m in label["metrics"]:
        d = metric_series(r, m)[hold][:, rows] - metric_series(clean, m)[hold][:, rows]
        assert (d != 0).mean() > 0.9, m
        if m in shift:
            assert np.allclose(d, shift[m], atol=0.011), m
    if kind == "firmware_push":
        assert label["end_ts"] is None
    else:
        assert label["end_ts"] == r.ts[START + DURATION]
        after = slice(START + DURATION, TICKS)
        for m in METRICS:
            a, b = metric_series(r, m)[after], metric_series(clean, m)[after]
            # counter rates of float64 counters near 2**63 differ by float spacing only (2 KiB)
            assert np.allclose(a, b, rtol=0.0, atol=8192.0 if m == "nvlink_tx_bytes" else 0.0), m


def test_fault_directions(clean: Run) -> None:
    def shift(kind: str, metric: str) -> float:
        r, label = faulted(FaultSpec(kind, start_tick=START, duration_ticks=DURATION, magnitude=3.0))
        rows = r.rows(label["shards"])
        win = slice(START + 50, START + DURATION)
        d = metric_series(r, metric)[win][:, rows] - metric_series(clean, metric)[win][:, rows]
        return float(np.mean(d))

    assert shift("straggler", "step_time_ms") > 20.0  # 3 sigma on log scale: ~ +9 %
    assert shift("straggler", "gpu_util") < 0.0
    assert shift("nvlink_degrade", "nvlink_tx_bytes") == pytest.approx(-4.5e9, rel=0.01)
    assert shift("nvlink_degrade", "step_time_ms") > 0.0


def test_sdc_drift_ramps_linearly_then_holds(clean: Run) -> None:
    spec = FaultSpec("sdc_drift", start_tick=START, magnitude=2.0, metric="temp_c", ramp_ticks=50)
    r, label = faulted(spec)
    assert label["metric"] == "temp_c"
    assert label["end_ts"] is None
    assert label["magnitude"] == 2.0
    row = r.rows(label["shards"])[0]
    d = r.values[:, row, r.col("temp_c")] - clean.values[:, row, clean.col("temp_c")]
    want = np.clip((np.arange(TICKS) - START + 1) / 50.0, 0.0, 1.0) * 2.0
    assert np.allclose(d, want, atol=0.011)


def test_firmware_push_is_announced_and_staggered(clean: Run) -> None:
    r, label = faulted(FaultSpec("firmware_push", start_tick=START, duration_ticks=40, magnitude=3.0))
    (event,) = r.sim.events
    assert label["event_id"] == event.id
    assert event.kind == "firmware_push"
    assert event.ts == r.ts[START]
    assert event.end_ts == r.ts[START + 40]
    hosts = sorted({r.sim.topology.nodes[s].parent or "" for s in label["shards"]})
    assert list(event.scope) == hosts
    assert len(hosts) == 4
    col = r.col("sm_clock_mhz")
    switch = []
    for h in hosts:
        rows = r.rows([s for s in label["shards"] if s.startswith(h)])
        moved = np.flatnonzero(differs(r.values[:, rows, col], clean.values[:, rows, col]).all(axis=1))
        switch.append(int(moved[0]))
        assert np.array_equal(moved, np.arange(moved[0], TICKS))  # the new firmware stays
    assert all(START <= s < START + 40 for s in switch)
    assert len(set(switch)) > 1


def test_xid79_then_lost(clean: Run) -> None:
    r, label = faulted(FaultSpec("xid79", start_tick=START, duration_ticks=50))
    assert label["hard"]
    assert label["metric"] is None
    assert label["magnitude"] is None
    (row,) = r.rows(label["shards"])
    assert [(t, x) for t, x in enumerate(r.xid) if x] == [(START, {int(row): (79,)})]
    lost_ticks = np.flatnonzero(r.lost[:, row])
    assert lost_ticks.tolist() == list(range(START + 1, START + 51))
    assert label["end_ts"] == r.ts[START + 51]
    assert r.lost.sum() == 50
    assert r.reporting.all()
    diff = differs(r.values, clean.values)
    assert diff[lost_ticks, row].all()
    assert np.isnan(r.values[lost_ticks, row]).all()
    diff[lost_ticks, row] = False
    assert not diff.any()  # the XID tick itself still carries normal metrics


def test_device_lost(clean: Run) -> None:
    r, label = faulted(FaultSpec("device_lost", start_tick=START, duration_ticks=DURATION))
    (row,) = r.rows(label["shards"])
    assert np.flatnonzero(r.lost[:, row]).tolist() == list(range(START, START + DURATION))
    assert r.lost.sum() == DURATION
    assert all(not x for x in r.xid)
    diff = differs(r.values, clean.values)
    diff[START : START + DURATION, row] = False
    assert not diff.any()


def test_ecc_dbe_increments_once(clean: Run) -> None:
    r, label = faulted(FaultSpec("ecc_dbe", start_tick=START))
    assert label["metrics"] == ["ecc_dbe"]
    assert label["hard"]
    assert label["end_ts"] == r.ts[START + 1]
    (row,) = r.rows(label["shards"])
    ecc = r.values[:, row, r.col("ecc_dbe")]
    assert (ecc[:START] == 0).all()
    assert len(set(ecc[START:].tolist())) == 1
    assert 1 <= ecc[START] <= 3
    diff = differs(r.values, clean.values)
    diff[START:, row, r.col("ecc_dbe")] = False
    assert not diff.any()


@pytest.mark.parametrize(("target", "count", "scope"), [(None, 4, "fleet"), ("z1-r01-h02", 8, "host")])
def test_sparse_shards_stop_reporting(clean: Run, target: str | None, count: int, scope: str) -> None:
    r, label = faulted(FaultSpec("sparse", start_tick=START, duration_ticks=DURATION, target=target))
    assert label["scope"] == scope
    assert len(label["shards"]) == count
    rows = r.rows(label["shards"])
    silent = ~r.reporting
    assert silent[START : START + DURATION][:, rows].all()
    assert silent.sum() == count * DURATION
    diff = differs(r.values, clean.values)
    diff[START : START + DURATION][:, rows] = False
    assert not diff.any()


def test_frames_carry_xid_once_lost_flags_and_skip_sparse_shards() -> None:
    scenario = Scenario(
        "frames",
        "hard faults as frames",
        (
            FaultSpec("xid79", start_tick=5, duration_ticks=3),
            FaultSpec("device_lost", start_tick=6, duration_ticks=2),
            FaultSpec("sparse", start_tick=4, duration_ticks=4, target="z0-r00-h01"),
        ),
    )
    sim = ClusterSim(SMALL, scenario)
    labels = {f["kind"]: f for f in sim.labels()["faults"]}
    xid_shard = labels["xid79"]["shards"][0]
    lost_shard = labels["device_lost"]["shards"][0]
    sparse = set(labels["sparse"]["shards"])
    assert not sparse & {xid_shard, lost_shard}
    for tick in range(12):
        ts, frames = sim.step()
        by_shard = {f.shard: f for f in frames}
        assert all(f.ts == ts for f in frames)
        assert list(by_shard) == [s for s in sim.shard_ids if s in by_shard]  # shard order
        silent = sparse if 4 <= tick < 8 else set()
        assert set(by_shard) == set(sim.shard_ids) - silent
        for f in frames:
            assert f.counters == frozenset({"nvlink_tx_bytes", "ecc_dbe"})
            assert set(f.metrics) == set(METRICS)
            assert f.xid == ((79,) if (f.shard == xid_shard and tick == 5) else ())
            want_lost = (f.shard == xid_shard and 6 <= tick <= 8) or (f.shard == lost_shard and 6 <= tick < 8)
            assert f.lost == want_lost
            if f.lost:
                assert all(v is None for v in f.metrics.values())
            else:
                assert all(isinstance(v, float) for v in f.metrics.values())
            assert Frame.from_json(f.to_json()) == f
