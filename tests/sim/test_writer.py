from __future__ import annotations

import json
from pathlib import Path

import pytest

from tessera_daemon.config import SimConfig
from tessera_daemon.errors import ConfigError
from tessera_daemon.model import ClusterEvent, Frame, Topology
from tessera_daemon.sim import FaultSpec, Scenario, write_simulation
from tests.sim.runs import SMALL

FILES = ("frames.jsonl", "topology.json", "events.jsonl", "labels.json")

LABEL_KEYS = {
    "id",
    "kind",
    "scope",
    "target",
    "shards",
    "metric",
    "start_ts",
    "end_ts",
    "magnitude",
    "hard",
    "benign",
    "event_id",
}

SCENARIO = Scenario(
    "writer",
    "a bit of everything, early",
    (
        FaultSpec("firmware_push", start_tick=5, duration_ticks=10),
        FaultSpec("xid79", start_tick=8, duration_ticks=5),
        FaultSpec("sparse", start_tick=10, duration_ticks=10),
        FaultSpec("straggler", start_tick=12),
        FaultSpec("psu_cap", start_tick=500),  # after the run: not labelled
    ),
)


def test_files_parse_with_the_contract_types(tmp_path: Path) -> None:
    summary = write_simulation(SMALL, tmp_path, scenario=SCENARIO, seed=11, duration_s=30.0)
    assert {p.name for p in tmp_path.iterdir()} == set(FILES)
    frames = [Frame.from_json(line) for line in (tmp_path / "frames.jsonl").read_text().splitlines()]
    assert summary["ticks"] == 30
    assert summary["shards"] == 128
    assert summary["frames"] == len(frames)
    assert len(frames) == 30 * 128 - 10 * 4  # 4 sparse shards silent for 10 ticks
    assert [f.ts for f in frames] == sorted(f.ts for f in frames)
    assert sum(1 for f in frames if f.xid == (79,)) == 1
    assert sum(f.lost for f in frames) == 5
    topo = Topology.from_json((tmp_path / "topology.json").read_text())
    assert set(topo.shards) == {f.shard for f in frames}
    events = [ClusterEvent.from_json(line) for line in (tmp_path / "events.jsonl").read_text().splitlines()]
    assert [e.kind for e in events] == ["firmware_push"]
    labels = json.loads((tmp_path / "labels.json").read_text())
    assert labels["v"] == 1
    assert labels["scenario"] == "writer"
    assert labels["seed"] == 11
    assert labels["tick_s"] == 1.0
    assert labels["start_ts"] == frames[0].ts
    kinds = [f["kind"] for f in labels["faults"]]
    assert kinds == ["firmware_push", "xid79", "sparse", "straggler"]
    assert summary["faults"] == 4
    fw = labels["faults"][0]
    assert fw["event_id"] == events[0].id
    assert fw["benign"]
    for f in labels["faults"]:
        assert set(f) >= LABEL_KEYS
        assert set(f["shards"]) <= set(topo.shards)
        assert f["target"] in topo.nodes


def test_output_is_byte_identical_for_the_same_seed(tmp_path: Path) -> None:
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    write_simulation(SMALL, a, scenario="mixed", seed=3, duration_s=20.0)
    write_simulation(SMALL, b, scenario="mixed", seed=3, duration_s=20.0)
    write_simulation(SMALL, c, scenario="mixed", seed=4, duration_s=20.0)
    for name in FILES:
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    assert (a / "frames.jsonl").read_bytes() != (c / "frames.jsonl").read_bytes()


def test_named_scenario_and_bad_duration(tmp_path: Path) -> None:
    cfg = SimConfig(zones=1, racks_per_zone=1, hosts_per_rack=2, cohorts=1, tick_s=0.5)
    summary = write_simulation(cfg, tmp_path, scenario="clean", seed=1, duration_s=5.0)
    assert summary["ticks"] == 10
    assert summary["frames"] == 160
    assert summary["faults"] == 0
    assert (tmp_path / "events.jsonl").read_text() == ""
    with pytest.raises(ConfigError, match="duration_s"):
        write_simulation(cfg, tmp_path, scenario="clean", seed=1, duration_s=0.0)
    with pytest.raises(ConfigError, match="unknown scenario"):
        write_simulation(cfg, tmp_path, scenario="nope", seed=1, duration_s=1.0)
