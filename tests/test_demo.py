"""`tessera-daemon demo`: the scenario list, a bad name, and where the fast-forward stops."""

from __future__ import annotations

import dataclasses

import pytest

from tessera_daemon.cli import main
from tessera_daemon.config import load_config
from tessera_daemon.demo import LEAD_TICKS, fast_forward_ticks
from tessera_daemon.sim.catalogue import catalogue
from tessera_daemon.sim.scenarios import SCENARIOS


def test_list_names_every_scenario_with_what_it_injects_and_what_to_find(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "--list"]) == 0
    out = capsys.readouterr().out
    for name in SCENARIOS:
        assert f"\n{name}\n" in f"\n{out}"
    assert out.count("injects:") == out.count("expect:") == len(SCENARIOS)
    assert all(s["expect"] for s in catalogue())


def test_unknown_scenario_exits_2_naming_the_known_ones(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["demo", "no-such-scenario"]) == 2
    err = capsys.readouterr().err
    assert "sim.scenario" in err and "straggler" in err


def test_fast_forward_stops_before_the_first_fault_or_after_the_warm_up() -> None:
    cfg = load_config(None, {})
    demo = dataclasses.replace(cfg, sim=dataclasses.replace(cfg.sim, scenario="demo"))
    assert fast_forward_ticks(demo) == 900 - LEAD_TICKS
    clean = dataclasses.replace(cfg, sim=dataclasses.replace(cfg.sim, scenario="clean"))
    window_s = cfg.window.length_s or cfg.sim.tick_s  # "auto": the simulator's cadence
    assert fast_forward_ticks(clean) == cfg.detector.warmup_max_windows * window_s / cfg.sim.tick_s
