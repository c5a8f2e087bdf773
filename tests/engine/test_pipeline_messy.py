"""The engine on messy telemetry: cadence independence, material margins, group wander, job phases,
silence and one incident per fault (issue 14). Every test drives the real ``Pipeline`` with the
production defaults (auto window, material margins) unless it says otherwise."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from tessera_daemon.config import Config, load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.model import Firing, Frame
from tessera_daemon.sim import ClusterSim, FaultSpec, Scenario

SMALL = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "2",
    "TESSERA_SIM__HOSTS_PER_RACK": "4",
    "TESSERA_SIM__COHORTS": "1",
}
PAGES = frozenset({"shard_fault", "common_mode", "hard_fault"})


def _host(shard: str) -> str:
    return shard.rsplit("-", 1)[0]


def thinned(sim: ClusterSim, ticks: int, cadence_s: float, jitter: float, seed: int) -> list[list[Frame]]:
    """The simulator's 1-s frames as pollers of ``cadence_s`` would see them: each host samples at its
    own phase, every cadence x U(1 - jitter, 1 + jitter) seconds (per-host jitter). One list per tick."""
    rng = np.random.default_rng(seed)
    next_poll: dict[str, float] = {}
    pending_xid: dict[str, tuple[int, ...]] = {}  # XIDs between polls reach the next poll (NVML events)
    out: list[list[Frame]] = []
    for _ in range(ticks):
        ts, frames = sim.step()
        keep: list[Frame] = []
        polled: set[str] = set()
        for f in frames:
            h = _host(f.shard)
            due = next_poll.setdefault(h, ts + float(rng.uniform(0.0, cadence_s)))
            xid = pending_xid.pop(f.shard, ()) + f.xid
            if ts >= due:
                keep.append(dataclasses.replace(f, xid=xid))
                polled.add(h)
            elif xid:
                pending_xid[f.shard] = xid
        for h in polled:
            next_poll[h] += cadence_s * float(rng.uniform(1.0 - jitter, 1.0 + jitter))
        out.append(keep)
    return out


def drive(cfg: Config, topology_sim: ClusterSim, ticks: list[list[Frame]]) -> tuple[Pipeline, list[Firing]]:
    p = Pipeline(cfg, topology_sim.topology)
    opened: list[Firing] = []
    for frames in ticks:
        if frames:
            p.ingest(frames)
        for r in p.advance():
            opened.extend(r.opened)
    for r in p.flush():
        opened.extend(r.opened)
    return p, opened


# ------------------------------------------------------------------------------------------- cadence


CADENCE_SCENARIO = Scenario(
    "cadence",
    "straggler, rack thermal, xid",
    (
        FaultSpec("straggler", start_tick=3600, duration_ticks=None, magnitude=12.0),
        FaultSpec("thermal_rack", start_tick=3700, duration_ticks=None, magnitude=6.0),
        FaultSpec("xid79", start_tick=3800, duration_ticks=None),
    ),
)


@pytest.mark.slow
def test_the_same_pages_whatever_the_poll_cadence() -> None:
    """One scenario sampled at 1, 5, 10, 15 and 30 s, each host with up to 20 % jitter: the window
    follows the cadence, and the same targets page (a straggler shard, a rack, an XID), each within a
    few polls of its onset (at most 15 windows), with nothing else paging."""
    cfg = load_config(None, {**SMALL, "TESSERA_SIM__RACKS_PER_ZONE": "4", "TESSERA_SIM__HOSTS_PER_RACK": "2"})
    ticks = 5200
    truth = ClusterSim(cfg.sim, scenario=CADENCE_SCENARIO, seed=2).labels()["faults"]
    onset = {f["target"]: f["start_ts"] for f in truth}
    expected = set(onset)
    for cadence in (1.0, 5.0, 10.0, 15.0, 30.0):
        sim = ClusterSim(cfg.sim, scenario=CADENCE_SCENARIO, seed=2)
        frames = thinned(sim, ticks, cadence, 0.2 if cadence > 1 else 0.0, seed=int(cadence))
        p, opened = drive(cfg, sim, frames)
        assert p.window_length_s == max(5.0, cadence), cadence
        pages = [f for f in opened if f.classification in PAGES]
        assert {f.target for f in pages} == expected, (cadence, [(f.target, f.detector, f.metric) for f in pages])
        assert len(pages) == len(expected), cadence  # one incident per fault
        for f in pages:  # in windows of the cadence: the same evidence takes the same number of polls
            delay_w = (f.opened_ts - onset[f.target]) / p.window_length_s
            assert 0 <= delay_w <= 15, (cadence, f.target, delay_w)


def test_a_window_without_sample_is_no_observation() -> None:
    """With 10-s polls behind an explicit 5-s window every other window is empty: no shard goes stale,
    the AR(1) step and the evidence skip the empty windows, and a clean fleet pages nothing."""
    cfg = load_config(None, {**SMALL, "TESSERA_WINDOW__LENGTH_S": "5"})
    sim = ClusterSim(cfg.sim, scenario="clean", seed=3)
    p, opened = drive(cfg, sim, thinned(sim, 4000, 10.0, 0.2, seed=1))
    assert not [f for f in opened if f.classification in PAGES]
    assert not p.table.stale.any()
    assert 1.6 < float(np.median(p.cadence)) < 2.4  # each shard's own cadence: two 5-s windows
    assert p.window_too_short()


def test_auto_window_measures_the_cadence_and_an_explicit_number_wins() -> None:
    cfg = load_config(None, SMALL)
    sim = ClusterSim(cfg.sim, scenario="clean", seed=1)
    p, _ = drive(cfg, sim, thinned(sim, 600, 15.0, 0.2, seed=2))
    assert p.window_length_s == 15.0 and p.windows_processed > 0
    cfg5 = load_config(None, {**SMALL, "TESSERA_WINDOW__LENGTH_S": "8"})
    assert Pipeline(cfg5, sim.topology).window_length_s == 8.0


# ------------------------------------------------------------------------------------------- silence


def test_a_silent_device_is_a_hard_fault_and_a_silent_host_one_ticket() -> None:
    cfg = load_config(None, SMALL)
    sim = ClusterSim(cfg.sim, scenario="clean", seed=5)
    shards = sim.topology.shards
    gone_shard = shards[3]
    gone_host = _host(shards[-1])
    frames = thinned(sim, 1200, 10.0, 0.1, seed=3)
    for t in range(600, 1200):  # one GPU stops at t=600 s; a whole host at t=800 s
        frames[t] = [f for f in frames[t] if f.shard != gone_shard and (t < 800 or _host(f.shard) != gone_host)]
    _, opened = drive(cfg, sim, frames)
    hard = [f for f in opened if f.classification == "hard_fault"]
    missing = [f for f in hard if f.detector == "rule:device_missing"]
    silent = [f for f in hard if f.detector == "rule:host_silent"]
    assert [f.target for f in missing] == [gone_shard]
    assert [(f.target, f.scope) for f in silent] == [(gone_host, "host")]
    assert len(silent[0].members) == 8
    assert len(hard) == 2  # never one page per shard of the silent host
    # stale after window.stale_after_windows of its own 10-s cadence, not before
    assert 25 <= missing[0].opened_ts - (sim.start_ts + 600) <= 45


# ------------------------------------------------------------------------------------------- materiality


def test_immaterial_shifts_never_page_and_material_ones_do() -> None:
    """A 1.5-sigma straggler (+4.5 % step time, below the 10 % material margin) pages with sigma margins
    only and not with the defaults; a 12-sigma one (+36 %) pages with both."""
    small = Scenario("s", "small", (FaultSpec("straggler", start_tick=2000, duration_ticks=None, magnitude=1.5),))
    big = Scenario("b", "big", (FaultSpec("straggler", start_tick=2000, duration_ticks=None, magnitude=12.0),))
    env = {**SMALL, "TESSERA_WINDOW__LENGTH_S": "5"}
    for sc, material, want in ((small, None, False), (small, '["*=0"]', True), (big, None, True)):
        cfg = load_config(None, env if material is None else {**env, "TESSERA_DETECTOR__MATERIAL": material})
        sim = ClusterSim(cfg.sim, scenario=sc, seed=4)
        _, opened = drive(cfg, sim, [sim.step()[1] for _ in range(4000)])
        target = ClusterSim(cfg.sim, scenario=sc, seed=4).labels()["faults"][0]["target"]
        pages = [f for f in opened if f.classification in PAGES]
        assert bool(pages) is want, (sc.name, material, [(f.target, f.metric) for f in pages])
        if want:
            assert {f.target for f in pages} == {target}


def test_material_table_merges_over_defaults_and_names_bad_entries() -> None:
    from tessera_daemon.errors import ConfigError  # noqa: PLC0415

    cfg = load_config(None, {"TESSERA_DETECTOR__MATERIAL": '["temp_c=3"]'})
    assert "temp_c=3" in cfg.detector.material and "power_w=8%" in cfg.detector.material
    assert load_config(None, {"TESSERA_DETECTOR__MATERIAL": '["*=0"]'}).detector.material == ("*=0",)
    with pytest.raises(ConfigError) as ei:
        load_config(None, {"TESSERA_DETECTOR__MATERIAL": '["temp_c=hot"]'})
    assert ei.value.field == "detector.material.temp_c"


# ------------------------------------------------------------------------------------------- incidents


def test_a_rack_fault_is_one_incident() -> None:
    cfg = load_config(
        None,
        {
            **SMALL,
            "TESSERA_SIM__RACKS_PER_ZONE": "4",
            "TESSERA_SIM__HOSTS_PER_RACK": "2",
            "TESSERA_WINDOW__LENGTH_S": "5",
        },
    )
    sc = Scenario("r", "rack", (FaultSpec("thermal_rack", start_tick=2000, duration_ticks=1000, magnitude=6.0),))
    sim = ClusterSim(cfg.sim, scenario=sc, seed=6)
    rack = ClusterSim(cfg.sim, scenario=sc, seed=6).labels()["faults"][0]["target"]
    _, opened = drive(cfg, sim, [sim.step()[1] for _ in range(4000)])
    pages = [f for f in opened if f.classification in PAGES]
    assert [f.target for f in pages if f.scope == "rack"] == [rack]
    assert not [f for f in pages if f.scope == "shard"]  # members are part of the rack's incident
    assert len(pages) <= 2  # the rack, at most one sub-group that crossed first (merged into it)


# ------------------------------------------------------------------------------------------- phases & wander


def _with_phases(values: np.ndarray, t: int, gains: np.ndarray) -> None:
    """A cohort-wide eval loop every 40 min (5 min long) and a checkpoint stall every 10 min (30 s):
    utilisation, power and memory bandwidth drop, step time triples; each member a few percent
    differently, the same member high each time."""
    in_eval = (t % 2400) >= 2100
    in_ckpt = (t % 600) < 30
    if in_eval:
        for col, drop in ((0, 0.55), (2, 0.45), (4, 0.5)):
            values[:, col] *= 1.0 - drop * gains
    if in_ckpt:
        values[:, 6] *= 1.0 + 2.0 * gains


def _frames(ts: float, shards: list[str], names: list[str], vals: np.ndarray) -> list[Frame]:
    """One tick's frames from a [shards, metrics] array (NaN: no reading)."""
    return [
        Frame(
            ts=ts,
            shard=s,
            metrics={n: (None if math.isnan(v) else float(v)) for n, v in zip(names, vals[i], strict=True)},
            counters=frozenset(("nvlink_tx_bytes", "ecc_dbe")),
        )
        for i, s in enumerate(shards)
    ]


def test_recurring_job_phases_are_normal() -> None:
    """Eval loops and checkpoint stalls hit every member (each a few percent differently): no shard,
    group, family or fleet_event firing on a clean fleet, whatever the phase."""
    cfg = load_config(None, {**SMALL, "TESSERA_WINDOW__LENGTH_S": "5"})
    sim = ClusterSim(cfg.sim, scenario="clean", seed=8)
    rng = np.random.default_rng(0)
    gains = 1.0 + 0.03 * rng.standard_normal(len(sim.topology.shards))
    names = sim.metric_names
    p = Pipeline(cfg, sim.topology)
    opened: list[Firing] = []
    for t in range(12000):
        tick = sim.step_arrays()
        vals = tick.values.copy()
        _with_phases(vals, t, gains)
        p.ingest(_frames(tick.ts, sim.shard_ids, names, vals))
        for r in p.advance():
            opened.extend(r.opened)
    assert not opened, [(f.target, f.detector, f.metric, f.classification) for f in opened]


def test_rack_wander_is_learnt_and_a_real_rack_fault_still_pages() -> None:
    """Each rack's temperature wanders with its room (AR(1) 0.999, a few tenths of a degree): learnt
    as normal between-group spread, it never pages; +4 C on one rack pages within 10 windows."""
    env = {
        "TESSERA_SIM__ZONES": "1",
        "TESSERA_SIM__RACKS_PER_ZONE": "6",
        "TESSERA_SIM__HOSTS_PER_RACK": "2",
        "TESSERA_SIM__COHORTS": "1",
        "TESSERA_WINDOW__LENGTH_S": "5",
    }
    cfg = load_config(None, env)
    sim = ClusterSim(cfg.sim, scenario="clean", seed=9)
    names = sim.metric_names
    racks = sorted({s.rsplit("-", 2)[0] for s in sim.shard_ids})
    rack_of = np.array([racks.index(s.rsplit("-", 2)[0]) for s in sim.shard_ids])
    rng = np.random.default_rng(1)
    wander = np.zeros(len(racks))
    p = Pipeline(cfg, sim.topology)
    opened: list[Firing] = []
    fault_t, fault_rack = 12000, 2
    for t in range(fault_t + 300):
        wander = 0.999 * wander + 0.02 * rng.standard_normal(len(racks))
        tick = sim.step_arrays()
        vals = tick.values.copy()
        vals[:, 3] += wander[rack_of]
        if t >= fault_t:
            vals[rack_of == fault_rack, 3] += 4.0
        p.ingest(_frames(tick.ts, sim.shard_ids, names, vals))
        for r in p.advance():
            opened.extend(r.opened)
    before = [f for f in opened if f.opened_ts < sim.start_ts + fault_t]
    assert not before, [(f.target, f.metric) for f in before]
    assert np.isfinite(p.groups.wander).any()  # the rack kind's normal spread was learnt
    after = [f for f in opened if f.opened_ts >= sim.start_ts + fault_t]
    assert after and after[0].target == racks[fault_rack] and after[0].metric == "temp_c"
    assert (after[0].opened_ts - (sim.start_ts + fault_t)) / p.window_length_s <= 10


def test_sigma_config_is_replaced_not_mutated() -> None:
    cfg = load_config(None, {})
    from tessera_daemon.evaluation.realistic import sigma_config  # noqa: PLC0415

    sc = sigma_config(cfg)
    assert sc.detector.material == ("*=0",) and sc.window.length_s == 5.0
    assert cfg.window.auto and dataclasses.replace(cfg) == cfg
