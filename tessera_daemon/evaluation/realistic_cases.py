"""The realistic evaluation's cases: the plan (fleet, magnitudes, seeds), one simulated run per case
through the full pipeline, and the pool that runs them."""

from __future__ import annotations

import dataclasses
import multiprocessing
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from tessera_daemon.config import Config, SimConfig
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.model import Firing
from tessera_daemon.sim import ClusterSim, FaultSpec, Scenario

STAT_KINDS = ("sdc_drift", "straggler", "thermal_rack", "psu_cap", "nvlink_degrade")
COMMON_MODE_KINDS = ("thermal_rack", "psu_cap", "nvlink_degrade")
HARD_KINDS = ("xid79", "ecc_dbe", "device_lost")
MAGNITUDES = (1.0, 2.0, 3.0, 4.0)
PAGE_CLASSES = frozenset({"shard_fault", "common_mode", "hard_fault"})
ONSET_TICK = 800
GRACE_WINDOWS = 2


@dataclass(frozen=True, slots=True)
class Plan:
    fleet: dict[str, Any]
    seeds: tuple[int, ...]
    fault_ticks: int
    clean_ticks: int
    clean_seeds: tuple[int, ...]
    stat_kinds: tuple[str, ...]
    magnitudes: tuple[float, ...]
    hard_kinds: tuple[str, ...]
    benign: bool
    sparse: bool


FULL = Plan(
    fleet={"zones": 2, "racks_per_zone": 4, "hosts_per_rack": 8, "shards_per_host": 8, "cohorts": 2},
    seeds=(1, 2, 3),
    fault_ticks=2200,
    clean_ticks=6000,
    clean_seeds=(101, 102),
    stat_kinds=STAT_KINDS,
    magnitudes=MAGNITUDES,
    hard_kinds=HARD_KINDS,
    benign=True,
    sparse=True,
)
FAST = Plan(
    fleet={"zones": 2, "racks_per_zone": 4, "hosts_per_rack": 2, "shards_per_host": 8, "cohorts": 2},
    seeds=(1,),
    fault_ticks=1300,
    clean_ticks=1600,
    clean_seeds=(101,),
    stat_kinds=("straggler", "thermal_rack"),
    magnitudes=(4.0,),
    hard_kinds=("xid79",),
    benign=False,
    sparse=False,
)
NULL_DYNAMICS = {"regime_every_s": 600.0, "diurnal_period_s": 1800.0, "diurnal_amplitude": 1.0}


@dataclass(frozen=True, slots=True)
class Case:
    name: str
    group: str  # statistical | benign | hard | null
    kind: str
    magnitude: float | None
    seed: int
    faults: tuple[FaultSpec, ...]
    ticks: int


def sim_config(base: SimConfig, plan: Plan) -> SimConfig:
    f, d = plan.fleet, NULL_DYNAMICS
    return dataclasses.replace(
        base,
        zones=int(f["zones"]),
        racks_per_zone=int(f["racks_per_zone"]),
        hosts_per_rack=int(f["hosts_per_rack"]),
        shards_per_host=int(f["shards_per_host"]),
        cohorts=int(f["cohorts"]),
        regime_every_s=d["regime_every_s"],
        diurnal_period_s=d["diurnal_period_s"],
        diurnal_amplitude=d["diurnal_amplitude"],
        start_ts=0.0,
        duration_s=0.0,
    )


def cases(plan: Plan) -> list[Case]:
    out: list[Case] = []
    for kind in plan.stat_kinds:
        for m in plan.magnitudes:
            for seed in plan.seeds:
                spec = FaultSpec(kind, start_tick=ONSET_TICK, magnitude=m)
                out.append(Case(f"{kind} m={m:g} s{seed}", "statistical", kind, m, seed, (spec,), plan.fault_ticks))
    if plan.benign:
        for seed in plan.seeds:
            out.append(
                Case(
                    f"fleet_regime_change m=2 s{seed}",
                    "benign",
                    "fleet_regime_change",
                    2.0,
                    seed,
                    (FaultSpec("fleet_regime_change", start_tick=ONSET_TICK, magnitude=2.0),),
                    plan.fault_ticks,
                )
            )
            out.append(
                Case(
                    f"firmware_push m=3 s{seed}",
                    "benign",
                    "firmware_push",
                    3.0,
                    seed,
                    (FaultSpec("firmware_push", start_tick=ONSET_TICK, magnitude=3.0, duration_ticks=60),),
                    plan.fault_ticks,
                )
            )
    for kind in plan.hard_kinds:
        for seed in plan.seeds:
            out.append(
                Case(
                    f"{kind} s{seed}",
                    "hard",
                    kind,
                    None,
                    seed,
                    (FaultSpec(kind, start_tick=ONSET_TICK),),
                    plan.fault_ticks,
                )
            )
    if plan.sparse:
        for seed in plan.seeds:
            out.append(
                Case(
                    f"sparse s{seed}",
                    "null",
                    "sparse",
                    None,
                    seed,
                    (FaultSpec("sparse", start_tick=ONSET_TICK, duration_ticks=200),),
                    plan.fault_ticks,
                )
            )
    for seed in plan.clean_seeds:
        out.append(Case(f"clean s{seed}", "null", "clean", None, seed, (), plan.clean_ticks))
    return out


def _firing_obj(f: Firing) -> dict[str, Any]:
    return {
        "window": f.window,
        "target": f.target,
        "members": list(f.members),
        "scope": f.scope,
        "detector": f.detector,
        "metric": f.metric,
        "classification": f.classification,
        "event_id": f.event_id,
        "log_evidence": round(f.log_evidence, 3),
    }


def run_case(case: Case, cfg: Config, sim_cfg: SimConfig) -> dict[str, Any]:
    """Simulate one case through the pipeline; opened firings (final labels), labels, windows."""
    t0 = time.perf_counter()
    sim = ClusterSim(sim_cfg, scenario=Scenario(case.name, case.name, case.faults), seed=case.seed)
    pipe = Pipeline(cfg, sim.topology)
    events = sorted(sim.events, key=lambda e: (e.ts, e.id))
    opened: list[Firing] = []
    windows: list[int] = []
    ei = 0
    for t in range(case.ticks):
        ts = sim.ts_of(t)
        while ei < len(events) and events[ei].ts <= ts:
            pipe.events.add(events[ei], source="simulator")
            ei += 1
        _, frames = sim.step()
        pipe.ingest(frames)
        for r in pipe.advance():
            opened += r.opened
            windows.append(r.index)
    for r in pipe.flush():
        opened += r.opened
        windows.append(r.index)
    return {
        "case": case.name,
        "group": case.group,
        "kind": case.kind,
        "magnitude": case.magnitude,
        "seed": case.seed,
        "shards": list(sim.shard_ids),
        "first_window": min(windows),
        "last_window": max(windows),
        "labels": sim.labels()["faults"],
        "regime_steps": sim.regime_steps,
        "firings": [_firing_obj(f) for f in opened],
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }


def run_all(todo: list[Case], cfg: Config, sim_cfg: SimConfig, workers: int) -> list[dict[str, Any]]:
    if workers <= 1 or len(todo) <= 1:
        return [run_case(c, cfg, sim_cfg) for c in todo]
    ctx = multiprocessing.get_context("spawn")  # numba's threading layer is not fork-safe
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(run_case, c, cfg, sim_cfg) for c in todo]
        return [f.result() for f in futures]
