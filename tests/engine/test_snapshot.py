"""``Pipeline.snapshot()``: an immutable copy of what the web layer reads, unaffected by later windows."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from tessera_daemon.config import Config, load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.engine.snapshot import PipelineSnapshot
from tessera_daemon.model import ClusterEvent
from tessera_daemon.sim import ClusterSim

ENV = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "1",
    "TESSERA_SIM__HOSTS_PER_RACK": "4",
    "TESSERA_SIM__COHORTS": "1",
    "TESSERA_SIM__SCENARIO": "xid79",
    "TESSERA_DETECTOR__WARMUP_WINDOWS": "8",
    "TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "8",
    "TESSERA_WINDOW__LENGTH_S": "5",
}


def run_until(cfg: Config, sim: ClusterSim, p: Pipeline, done: object, ticks: int = 2000) -> None:
    for _ in range(ticks):
        p.ingest(sim.step()[1])
        p.advance()
        if callable(done) and done():
            return
    raise AssertionError("the condition never held")


@pytest.fixture(scope="module")
def fired() -> tuple[Config, ClusterSim, Pipeline]:
    cfg = load_config(None, ENV)
    sim = ClusterSim(cfg.sim, scenario="xid79")
    p = Pipeline(cfg, sim.topology)
    run_until(cfg, sim, p, lambda: bool(p.book.active()))
    return cfg, sim, p


def test_snapshot_copies_the_pipeline_read_only(fired: tuple[Config, ClusterSim, Pipeline]) -> None:
    _cfg, _sim, p = fired
    snap = p.snapshot()
    assert snap.shards == tuple(p.shards) and snap.metrics == tuple(p.metrics)
    assert snap.windows_processed == p.windows_processed and snap.threshold_log == p.threshold_log
    assert snap.warm_fraction() == pytest.approx(p.warm_fraction())
    assert snap.end_ts == p.table.end_ts and snap.table.window == p.table.window
    np.testing.assert_array_equal(snap.table.log_m, p.table.log_m)
    np.testing.assert_array_equal(snap.states.offset, p.state.offset)
    assert [f.to_obj() for f in snap.active] == [f.to_obj() for f in p.book.active()]
    assert dict(snap.opened_total) == dict(p.book.opened_total)
    assert snap.stats.frames == p.assembler.stats.frames and snap.stats.watermark == p.assembler.watermark
    for a in (snap.table.log_m, snap.table.warm, snap.states.phi, snap.states.n_warm, snap.group_log_m, snap.cohort_of):
        with pytest.raises(ValueError, match="read-only"):
            a.flat[:1] = 0
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.windows_processed = 0  # type: ignore[misc]
    with pytest.raises(TypeError):
        snap.row["x"] = 1  # type: ignore[index]
    assert all(a is not b for a, b in zip(snap.active, p.book.active(), strict=True))  # private copies


def test_later_windows_and_events_leave_a_snapshot_as_it_was(fired: tuple[Config, ClusterSim, Pipeline]) -> None:
    _cfg, sim, p = fired
    snap = p.snapshot()
    before = (snap.table.log_m.copy(), [f.to_obj() for f in snap.active], snap.windows_processed, len(snap.events))
    host = p.topology.nodes[p.shards[0]].parent
    assert host is not None
    p.events.add(ClusterEvent("fw-1", "firmware_push", p.table.end_ts - 1, (host,), p.table.end_ts + 600))
    for _ in range(40):
        p.ingest(sim.step()[1])
        p.advance()
    assert p.windows_processed > before[2]
    np.testing.assert_array_equal(snap.table.log_m, before[0])
    assert [f.to_obj() for f in snap.active] == before[1]
    assert snap.windows_processed == before[2] and len(snap.events) == before[3] == 0
    after = p.snapshot(snap)
    assert after.version > snap.version and len(after.events) == 1 and after.events.get("fw-1") is not None
    frozen = {s for s in p.shards if p.topology.nodes[s].parent == host}
    assert set(after.events.frozen_now) == frozen


def test_resolved_firings_are_copied_once(fired: tuple[Config, ClusterSim, Pipeline]) -> None:
    _cfg, _sim, p = fired
    key = p.book.active_keys()[0]
    p.book.resolve(key, ts=p.table.end_ts, window=p.table.window, reason="cleared")  # (the last test to use it)
    first = p.snapshot()
    second = p.snapshot(first)
    assert second.recent and all(a is b for a, b in zip(first.recent, second.recent, strict=True))
    assert all(a is not b for a, b in zip(first.active, second.active, strict=True))  # open ones still change


def test_a_snapshot_of_an_empty_pipeline() -> None:
    cfg = load_config(None, ENV)
    snap: PipelineSnapshot = Pipeline(cfg, ClusterSim(cfg.sim).topology).snapshot()
    assert snap.table.window == -1 and snap.windows_processed == 0 and snap.active == () and snap.warm_fraction() == 0
