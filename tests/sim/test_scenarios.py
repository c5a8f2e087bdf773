from __future__ import annotations

import itertools

import pytest

from tessera_daemon.config import Config, SimConfig
from tessera_daemon.errors import ConfigError
from tessera_daemon.sim import SCENARIOS, ClusterSim, FaultSpec, Scenario, get_scenario
from tessera_daemon.sim.scenarios import FAULT_KINDS
from tests.sim.runs import SMALL


def test_catalogue_has_one_scenario_per_kind_plus_clean_demo_mixed() -> None:
    assert set(SCENARIOS) == {*FAULT_KINDS, "clean", "demo", "mixed"}
    for kind in FAULT_KINDS:
        (spec,) = SCENARIOS[kind].faults
        assert spec.kind == kind
        assert spec.start_tick == 400
    assert SCENARIOS["clean"].faults == ()
    assert all(s.name == name and s.description for name, s in SCENARIOS.items())


def test_get_scenario() -> None:
    assert get_scenario("demo") is SCENARIOS["demo"]
    with pytest.raises(ConfigError, match=r"unknown scenario 'nope'.*clean.*demo.*mixed") as exc:
        get_scenario("nope")
    assert exc.value.field == "sim.scenario"
    with pytest.raises(ConfigError):
        ClusterSim(SMALL, "nope")


def test_demo_faults_are_sequential_and_visible() -> None:
    demo = SCENARIOS["demo"].faults
    assert [f.kind for f in demo] == ["straggler", "sdc_drift", "thermal_rack", "xid79"]
    # the first fault starts once every stream of the default fleet is warm (adaptive warm-up: all of
    # them by window 160 on the simulator, docs/evaluation.md), so none of it is learnt as baseline
    cfg = Config()
    assert demo[0].start_tick * cfg.sim.tick_s >= 160 * cfg.window.length_s
    last = demo[-1]
    assert last.start_tick + (last.duration_ticks or 0) < 1800  # all visible in the CLI's default run
    for a, b in itertools.pairwise(demo):
        assert a.duration_ticks is not None
        assert a.start_tick + a.duration_ticks < b.start_tick
    assert ClusterSim(SimConfig()).labels()["faults"] == []  # the sim's default scenario is clean
    sim = ClusterSim(SimConfig(), "demo")
    assert [f["kind"] for f in sim.labels()["faults"]] == ["straggler", "sdc_drift", "thermal_rack", "xid79"]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_mixed_faults_sit_on_disjoint_shards(seed: int) -> None:
    sim = ClusterSim(SimConfig(), "mixed", seed=seed)
    faults = sim.labels()["faults"]
    assert len(faults) >= 5
    seen: set[str] = set()
    for f in faults:
        assert not seen & set(f["shards"]), f["id"]
        seen |= set(f["shards"])
    assert len({f["start_ts"] for f in faults}) == len(faults)


def test_targets_depend_on_seed_only() -> None:
    def targets(seed: int) -> list[str]:
        return [f["target"] for f in ClusterSim(SimConfig(), "mixed", seed=seed).labels()["faults"]]

    assert targets(5) == targets(5)
    assert targets(5) != targets(6)


def test_tiny_cluster_still_places_every_fault() -> None:
    tiny = SimConfig(zones=1, racks_per_zone=1, hosts_per_rack=1, shards_per_host=2, cohorts=1)
    for name in SCENARIOS:
        sim = ClusterSim(tiny, name)
        for f in sim.labels()["faults"]:
            assert f["shards"]


def test_explicit_targets_and_their_validation() -> None:
    spec = FaultSpec("thermal_rack", target="z1-r01")
    sim = ClusterSim(SMALL, Scenario("x", "x", (spec,)))
    (label,) = sim.labels()["faults"]
    assert label["target"] == "z1-r01"
    assert label["scope"] == "rack"
    assert len(label["shards"]) == 32
    zone = ClusterSim(SMALL, Scenario("x", "x", (FaultSpec("thermal_rack", target="z0"),)))
    assert zone.labels()["faults"][0]["scope"] == "cooling_zone"
    with pytest.raises(ConfigError, match="unknown target"):
        ClusterSim(SMALL, Scenario("x", "x", (FaultSpec("straggler", target="nope"),)))
    with pytest.raises(ConfigError, match="is a rack"):
        ClusterSim(SMALL, Scenario("x", "x", (FaultSpec("straggler", target="z0-r00"),)))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"kind": "meteor"}, "unknown fault kind"),
        ({"kind": "straggler", "start_tick": -1}, "start_tick"),
        ({"kind": "straggler", "duration_ticks": 0}, "duration_ticks"),
        ({"kind": "straggler", "metric": "power_w"}, "only sdc_drift"),
        ({"kind": "sdc_drift", "metric": "ecc_dbe"}, "unknown metric"),
        ({"kind": "sparse", "fraction": 0.0}, "fraction"),
        ({"kind": "sdc_drift", "ramp_ticks": -3}, "ramp_ticks"),
    ],
)
def test_fault_spec_validation(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        FaultSpec(**kwargs)  # type: ignore[arg-type]


def test_ramp_defaults() -> None:
    assert FaultSpec("sdc_drift").ramp == 200
    assert FaultSpec("thermal_rack").ramp == 30
    assert FaultSpec("psu_cap").ramp == 0
    assert FaultSpec("sdc_drift", ramp_ticks=10).ramp == 10
