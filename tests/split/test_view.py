"""A detector worker's merged snapshot: every partition's snapshot placed at the union's rows."""

from __future__ import annotations

import numpy as np
import pytest

from tessera_daemon.config import load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.model import ClusterEvent
from tessera_daemon.sim import ClusterSim
from tessera_daemon.split.view import PartitionView
from tessera_daemon.transport.registry import Router

ENV = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "2",
    "TESSERA_SIM__HOSTS_PER_RACK": "2",
    "TESSERA_SIM__COHORTS": "2",
    "TESSERA_SIM__SCENARIO": "xid79",
    "TESSERA_DETECTOR__WARMUP_WINDOWS": "8",
    "TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "8",
    "TESSERA_WINDOW__LENGTH_S": "5",
}


def test_partitions_merge_into_one_snapshot() -> None:
    cfg = load_config(None, ENV)
    sim = ClusterSim(cfg.sim, scenario="xid79")
    router = Router(sim.topology)
    assert len(router.partitions) == 2
    parts = {t: Pipeline(cfg, part.topology) for t, part in router.partitions.items()}
    rack = next(n.id for n in sim.topology.nodes.values() if n.kind == "rack")
    for tick in range(430):  # the XID comes at tick 400
        _ts, frames = sim.step()
        for t, p in parts.items():
            p.ingest([f for f in frames if router.route[f.shard][0] == t])
            p.advance()
        if tick == 300:  # a rack spans both partitions: each holds its own cut of the event
            for p in parts.values():
                p.events.add(ClusterEvent("fw-rack", "firmware_push", p.table.end_ts, (rack,), p.table.end_ts + 900))
    snaps = {t: p.snapshot() for t, p in parts.items()}
    view = PartitionView(cfg)
    merged = view.refresh(snaps, threshold_log=21.5)

    assert set(merged.shards) == set(sim.topology.shards)
    assert merged.threshold_log == 21.5
    assert merged.windows_processed == sum(p.windows_processed for p in parts.values())
    for t, p in parts.items():
        rows = [merged.row[s] for s in p.shards]
        np.testing.assert_array_equal(merged.table.log_m[rows], p.table.log_m)
        np.testing.assert_array_equal(merged.states.scale[rows], p.state.scale)
        assert [merged.cohorts[c] for c in merged.cohort_of[rows]] == [p.cohorts[c] for c in p.cohort_of]
        for k, v in snaps[t].family_log_m.items():
            np.testing.assert_array_equal(merged.family_log_m[k][rows], v)
    fresh = sum(int((p.missing_run == 0).sum()) * len(p.metrics) for p in parts.values())
    warm = sum(int(p.state.warm()[p.missing_run == 0].sum()) for p in parts.values())
    assert merged.warm_fraction() == pytest.approx(warm / fresh)
    active = sorted(f.id for p in parts.values() for f in p.book.active())
    assert active and sorted(f.id for f in merged.active) == active
    assert merged.stats.frames == sum(p.assembler.stats.frames for p in parts.values())
    # the partitions' cuts of the rack event are joined back into one event over the whole rack
    assert len(merged.events) == 1
    rec = merged.events.get("fw-rack")
    cuts = [p.events.get("fw-rack") for p in parts.values()]
    assert rec is not None and set(rec.shards) == {s for c in cuts if c is not None for s in c.shards}
    assert set(merged.events.frozen_now) == set(rec.shards)
    again = view.refresh(snaps, threshold_log=21.5)  # cached union topology and event book, a new version
    assert again.topology is merged.topology and again.version > merged.version
