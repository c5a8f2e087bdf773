"""Realistic evaluation: the simulator's fault catalogue through the full pipeline, scored per shard.

A 512-shard fleet (2 cooling zones x 4 racks x 8 hosts x 8 GPUs, 2 training jobs) whose null model
has AR(1) noise (``sim.rho``, 0.8 per tick), Student-t innovations (``sim.tail_df``, 4), a diurnal
cycle (1 sigma, 30-minute period, so runs see whole cycles) and cohort regime steps (one per job
every 10 minutes on average). Each case drives ``engine.pipeline.Pipeline`` directly with the
frames of ``ClusterSim.step()``; announced events (firmware pushes) are added to the pipeline's event
book when the simulation reaches them. Nothing is replayed through JSON.

Cases: every statistical fault kind (sdc_drift, straggler, thermal_rack, psu_cap, nvlink_degrade)
at 1, 2, 3 and 4 sigma, sustained (no end); the benign fleet_regime_change (2 sigma) and announced
firmware_push (3 sigma); the hard faults xid79, ecc_dbe, device_lost; a sparse reporting gap; and
long clean runs. Several seeds each; faults start at tick 800 (window 160 of the run). The warm-up
is adaptive (at least ``warmup_windows``, until n (1 - phi) is large enough, at most
``warmup_max_windows``): on this fleet 65 % of streams are warm at window 80, 99.8 % at 120 and all at
160, so faults begin once every baseline exists, as they would on a daemon that has been running.
Clean shard-windows are counted only from window ``warmup_max_windows`` on (conservative: every firing
counts, but the warm-up tail is not claimed as clean evidence).

Scoring (window = ``window.length_s``; onset window = floor(start_ts / length)):

* A *page* is an opened firing classified shard_fault, common_mode or hard_fault (event_conditional
  and fleet_event firings are not pages and are reported separately). Each member shard of a page
  is flagged at the page's window.
* A flag is *true* when the shard belongs to a non-benign fault of the case and the window lies in
  ``[onset, end + 2]``; every other flag is false (pre-onset, foreign shard, benign change, clean
  run). Shard-level precision = (case, shard) pairs with a true flag / pairs with any flag counted
  per status; recall = fault shards with a true flag / all fault shards.
* Delay = first true flag window - onset window, per fault (its earliest shard) and per shard.
* Clean shard-windows: after warm-up, every window of a shard outside the case's non-benign faults,
  plus the pre-onset windows of fault shards. False firings = pages with no true member.
* Attribution: for rack / PSU / host faults, the first common_mode firing on the fault's shards
  must name the fault's node; per-shard pages must name one of the fault's metrics.
"""

from __future__ import annotations

import dataclasses
import math
import multiprocessing
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

from tessera_daemon.config import Config, SimConfig
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.evaluation.report import Check, MatrixResult, table
from tessera_daemon.evaluation.scoring import median, ratio
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


def _run_all(todo: list[Case], cfg: Config, sim_cfg: SimConfig, workers: int) -> list[dict[str, Any]]:
    if workers <= 1 or len(todo) <= 1:
        return [run_case(c, cfg, sim_cfg) for c in todo]
    ctx = multiprocessing.get_context("spawn")  # numba's threading layer is not fork-safe
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futures = [pool.submit(run_case, c, cfg, sim_cfg) for c in todo]
        return [f.result() for f in futures]


# ------------------------------------------------------------------------------------------ scoring


@dataclass(slots=True)
class Fault:
    kind: str
    scope: str
    target: str
    shards: frozenset[str]
    metrics: tuple[str, ...]
    onset_w: int
    end_w: float  # inclusive last window a flag counts as true (inf: sustained)
    magnitude: float | None
    hard: bool


def _faults(run: dict[str, Any], length_s: float) -> list[Fault]:
    out = []
    for lab in run["labels"]:
        if lab["benign"] or lab["kind"] == "sparse":
            continue
        onset = math.floor(lab["start_ts"] / length_s)
        end = math.inf if lab["end_ts"] is None else math.floor(lab["end_ts"] / length_s) + GRACE_WINDOWS
        out.append(
            Fault(
                lab["kind"],
                lab["scope"],
                lab["target"],
                frozenset(lab["shards"]),
                tuple(lab["metrics"]),
                onset,
                end,
                lab["magnitude"],
                lab["hard"],
            )
        )
    return out


@dataclass(slots=True)
class Scored:
    tp_pairs: int = 0
    fp_pairs: int = 0
    positives: int = 0
    detected_pos: int = 0
    false_firings: int = 0
    clean_shard_windows: int = 0
    metric_ok: int = 0
    metric_total: int = 0
    event_conditional: int = 0
    fleet_events: int = 0
    fleet_explained: int = 0
    expected_silence: int = 0  # rule:device_missing on the shards of a sparse reporting gap


def _score_run(run: dict[str, Any], length_s: float, warm: int, out: dict[str, Any]) -> Scored:
    """Score one case; per-fault, attribution and false-firing records are appended to ``out``."""
    faults = _faults(run, length_s)
    eval_start = run["first_window"] + warm
    n_windows = run["last_window"] - eval_start + 1
    fault_shards = set().union(*(f.shards for f in faults)) if faults else set()
    true_first: dict[tuple[int, str], int] = {}  # (fault index, shard) -> first true window
    silent = {sh for lab in run["labels"] if lab["kind"] == "sparse" for sh in lab["shards"]}
    flagged_true: set[str] = set()
    flagged_false: set[str] = set()
    c = Scored()
    for fr in run["firings"]:
        cls = fr["classification"]
        if cls == "event_conditional":
            c.event_conditional += 1
            continue
        if cls == "fleet_event":
            c.fleet_events += 1
            c.fleet_explained += _fleet_explained(fr, run, length_s)
            continue
        if cls not in PAGE_CLASSES:
            continue
        if fr["detector"] == "rule:device_missing" and set(fr["members"] or [fr["target"]]) <= silent:
            c.expected_silence += 1  # a GPU silent while its host reports is a missing device (issue 14)
            continue
        w = fr["window"]
        any_true = False
        for s in fr["members"] or [fr["target"]]:
            hits = [i for i, f in enumerate(faults) if s in f.shards and f.onset_w <= w <= f.end_w]
            if not hits:
                flagged_false.add(s)
                continue
            any_true = True
            flagged_true.add(s)
            for i in hits:
                true_first[(i, s)] = min(true_first.get((i, s), w), w)
                if fr["scope"] == "shard" and not faults[i].hard and fr["metric"] is not None:
                    c.metric_total += 1
                    c.metric_ok += fr["metric"] in faults[i].metrics
        if not any_true:
            c.false_firings += 1
            if len(out["false_examples"]) < 25:
                out["false_examples"].append({"case": run["case"], **fr})
    c.tp_pairs = len(flagged_true)
    c.fp_pairs = len(flagged_false)
    c.positives = sum(len(f.shards) for f in faults)
    c.detected_pos = len({s for (_i, s) in true_first})
    c.clean_shard_windows = sum(1 for s in run["shards"] if s not in fault_shards) * max(0, n_windows)
    c.clean_shard_windows += sum(len(f.shards) * max(0, f.onset_w - eval_start) for f in faults)
    for i, f in enumerate(faults):
        delays = [true_first[(i, s)] - f.onset_w for s in sorted(f.shards) if (i, s) in true_first]
        out["per_fault"].append(
            {
                "case": run["case"],
                "kind": f.kind,
                "magnitude": f.magnitude,
                "hard": f.hard,
                "scope": f.scope,
                "target": f.target,
                "shards": len(f.shards),
                "detected_shards": len(delays),
                "delay": min(delays) if delays else None,
                "shard_delays_median": median(delays),
            }
        )
        if f.kind in COMMON_MODE_KINDS:
            out["attribution"].append(_attribution(run, f))
    return c


def score(runs: list[dict[str, Any]], cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {"per_fault": [], "per_case": [], "attribution": [], "false_examples": []}
    tot = Scored()
    for run in runs:
        c = _score_run(run, cfg.window.length_s, cfg.detector.warmup_max_windows, out)
        for k, v in dataclasses.asdict(c).items():
            setattr(tot, k, getattr(tot, k) + v)
        out["per_case"].append(
            {
                "case": run["case"],
                "group": run["group"],
                "kind": run["kind"],
                "magnitude": run["magnitude"],
                "tp_pairs": c.tp_pairs,
                "fp_pairs": c.fp_pairs,
                "positives": c.positives,
                "detected": c.detected_pos,
                "false_firings": c.false_firings,
                "event_conditional": c.event_conditional,
                "fleet_events": c.fleet_events,
                "clean_shard_windows": c.clean_shard_windows,
                "elapsed_s": run["elapsed_s"],
            }
        )
    return {"totals": dataclasses.asdict(tot), **out}


def _fleet_explained(fr: dict[str, Any], run: dict[str, Any], length_s: float) -> int:
    """A fleet_event firing is explained by a regime step or fleet_regime_change of its cohort before it."""
    w = fr["window"]
    for ts, cohort, _step in run["regime_steps"]:
        if cohort == fr["target"] and math.floor(ts / length_s) <= w:
            return 1
    for lab in run["labels"]:
        if (
            lab["kind"] == "fleet_regime_change"
            and lab["target"] == fr["target"]
            and math.floor(lab["start_ts"] / length_s) <= w
        ):
            return 1
    return 0


def _attribution(run: dict[str, Any], f: Fault) -> dict[str, Any]:
    """The node the pipeline settles on: of the group (common_mode) firings touching the fault's shards
    after onset, the one covering most of them (ties: the later); correct when it is the fault's node
    and holds no foreign shard. The first group firing is reported too."""
    groups = [
        fr
        for fr in run["firings"]
        if fr["classification"] == "common_mode"
        and fr["scope"] != "shard"
        and fr["window"] >= f.onset_w
        and set(fr["members"]) & f.shards
    ]
    first = min(groups, key=lambda fr: fr["window"]) if groups else None
    best = max(groups, key=lambda fr: (len(set(fr["members"]) & f.shards), fr["window"])) if groups else None
    return {
        "case": run["case"],
        "kind": f.kind,
        "magnitude": f.magnitude,
        "truth": f.target,
        "named": best["target"] if best else None,
        "window": best["window"] if best else None,
        "first_named": first["target"] if first else None,
        "correct": bool(best and best["target"] == f.target and set(best["members"]) <= f.shards),
    }


# ------------------------------------------------------------------------------------------ report


def sigma_config(cfg: Config) -> Config:
    """This matrix's faults are sized in the simulator's noise sigmas (1 to 4) and it ticks every second:
    it measures the statistical engine on sigma margins alone (``detector.material = ["*=0"]``) with the
    5-s window it was built for. The production defaults (material margins, auto window) are measured
    on the messy fleet (``evaluate messy``)."""
    window = cfg.window if not cfg.window.auto else dataclasses.replace(cfg.window, length_s=5.0)
    return dataclasses.replace(cfg, window=window, detector=dataclasses.replace(cfg.detector, material=("*=0",)))


def run(cfg: Config, *, fast: bool = False, workers: int | None = None) -> MatrixResult:
    t0 = time.perf_counter()
    cfg = sigma_config(cfg)
    plan = FAST if fast else FULL
    sim_cfg = sim_config(cfg.sim, plan)
    todo = cases(plan)
    n_workers = 1 if fast else (workers if workers is not None else max(1, min(len(todo), os.cpu_count() or 1)))
    runs = _run_all(todo, cfg, sim_cfg, n_workers)
    sc = score(runs, cfg)
    n_shards = len(runs[0]["shards"])
    res = MatrixResult(
        "realistic",
        f"Realistic evaluation: {n_shards}-shard simulated fleet, fault catalogue x magnitudes x seeds, full pipeline",
        fast,
    )
    _checks(res, sc, fast, n_shards)
    res.sections += _sections(sc, plan, sim_cfg, cfg, n_shards)
    res.data = {
        "plan": dataclasses.asdict(plan),
        "sim": dataclasses.asdict(sim_cfg),
        "window_s": cfg.window.length_s,
        "warmup_windows": cfg.detector.warmup_windows,
        **sc,
    }
    res.elapsed_s = time.perf_counter() - t0
    return res


def _stat(sc: dict[str, Any], pred: Any) -> list[dict[str, Any]]:
    return [f for f in sc["per_fault"] if pred(f)]


def _checks(res: MatrixResult, sc: dict[str, Any], fast: bool, n_shards: int) -> None:
    tot = sc["totals"]
    stat_cases = [c for c in sc["per_case"] if c["group"] == "statistical"]
    pos = sum(c["positives"] for c in stat_cases)
    det = sum(c["detected"] for c in stat_cases)
    tp = sum(c["tp_pairs"] for c in sc["per_case"])
    fp = sum(c["fp_pairs"] for c in sc["per_case"])
    precision, recall = ratio(tp, tp + fp), ratio(det, pos)
    if not fast:
        res.checks.append(Check("fleet size", ">= 512 shards", f"{n_shards} shards", n_shards >= 512))
    res.checks.append(
        Check(
            "shard-level precision (all cases)",
            ">= 0.95",
            f"{precision:.4f} ({tp} true / {fp} false flagged shard pairs)" if precision is not None else "no flags",
            precision is not None and precision >= 0.95,
        )
    )
    res.checks.append(
        Check(
            "shard-level recall, statistical faults >= 1 sigma, sustained",
            ">= 0.95",
            f"{recall:.4f} ({det}/{pos} fault shards)" if recall is not None else "no faults",
            recall is not None and recall >= 0.95,
        )
    )
    two = [f["delay"] for f in _stat(sc, lambda f: not f["hard"] and f["magnitude"] == 2.0)]
    if two:
        d2 = median([float(d) if d is not None else math.inf for d in two])
        res.checks.append(
            Check(
                "median delay at 2 sigma (per fault; misses count as infinite)",
                "<= 10 windows",
                f"{d2:g} windows over {len(two)} faults",
                d2 is not None and d2 <= 10,
            )
        )
    hard = [f["delay"] for f in _stat(sc, lambda f: f["hard"])]
    dh = median([float(d) if d is not None else math.inf for d in hard])
    res.checks.append(
        Check(
            "median delay, hard faults",
            "<= 1 window",
            f"{dh:g} windows over {len(hard)} faults" if dh is not None else "no hard faults",
            dh is not None and dh <= 1,
        )
    )
    csw = tot["clean_shard_windows"]
    need = 1_000_000 if not fast else 0
    res.checks.append(
        Check(
            "false firings in clean shard-windows",
            f"0 in >= {need:,}",
            f"{tot['false_firings']} in {csw:,} ({tot['false_firings'] / csw * 1e6:.2f} per 10^6)",
            tot["false_firings"] == 0 and csw >= need,
        )
    )
    attr = sc["attribution"]
    named = [a for a in attr if a["named"] is not None]
    ok = sum(1 for a in named if a["correct"])
    res.checks.append(
        Check(
            "common modes attributed to the right node (of those the pipeline attributed)",
            ">= 95 % of cases",
            f"{ok}/{len(named)}; {len(attr) - len(named)} of {len(attr)} common-mode faults got no "
            "group firing (missed detections, counted in recall)"
            if attr
            else "no common-mode faults",
            (ok >= 0.95 * len(named)) if named else None,
        )
    )


def _sections(sc: dict[str, Any], plan: Plan, sim_cfg: SimConfig, cfg: Config, n_shards: int) -> list[str]:
    tot = sc["totals"]
    out = []
    desc = (
        f"Fleet: {n_shards} shards ({sim_cfg.zones} zones x {sim_cfg.racks_per_zone} racks x "
        f"{sim_cfg.hosts_per_rack} hosts x {sim_cfg.shards_per_host} GPUs, {sim_cfg.cohorts} jobs); "
        f"AR(1) rho {sim_cfg.rho} per tick, Student-t({sim_cfg.tail_df}) innovations, diurnal "
        f"{sim_cfg.diurnal_amplitude} sigma / {sim_cfg.diurnal_period_s:g} s, regime steps every "
        f"{sim_cfg.regime_every_s:g} s per job; tick {sim_cfg.tick_s:g} s, window {cfg.window.length_s:g} s, "
        f"warm-up {cfg.detector.warmup_windows}-{cfg.detector.warmup_max_windows} windows (adaptive); "
        f"faults start at tick {ONSET_TICK}; clean shard-windows counted from window "
        f"{cfg.detector.warmup_max_windows}; "
        f"seeds {list(plan.seeds)}; {plan.fault_ticks} ticks per fault case, {plan.clean_ticks} per clean case."
    )
    out.append("## Setup\n\n" + desc)
    body = []
    for kind in plan.stat_kinds:
        for m in plan.magnitudes:
            fs = _stat(sc, lambda f, k=kind, mm=m: f["kind"] == k and f["magnitude"] == mm)
            if not fs:
                continue
            shards = sum(f["shards"] for f in fs)
            dshards = sum(f["detected_shards"] for f in fs)
            delays = [float(f["delay"]) for f in fs if f["delay"] is not None]
            body.append(
                [
                    kind,
                    f"{m:g}",
                    f"{sum(f['delay'] is not None for f in fs)}/{len(fs)}",
                    f"{dshards}/{shards}",
                    median(delays),
                    max(delays) if delays else None,
                ]
            )
    out.append(
        "## Statistical faults: detection and delay (windows after onset)\n\n"
        + table(["kind", "sigma", "faults detected", "fault shards detected", "median delay", "max delay"], body)
    )
    hard = []
    for kind in plan.hard_kinds:
        fs = _stat(sc, lambda f, k=kind: f["kind"] == k)
        delays = [float(f["delay"]) for f in fs if f["delay"] is not None]
        hard.append([kind, f"{len(delays)}/{len(fs)}", median(delays), max(delays) if delays else None])
    out.append("## Hard faults\n\n" + table(["kind", "detected", "median delay", "max delay"], hard))
    attr = sc["attribution"]
    if attr:
        ab = [
            [
                a["case"],
                a["truth"],
                a["named"] or "-",
                a["window"],
                a["first_named"] or "-",
                "yes" if a["correct"] else "no",
            ]
            for a in attr
        ]
        out.append(
            "## Common-mode attribution (the group firing covering most of the fault's shards)\n\n"
            + table(["case", "true node", "named", "window", "first group firing", "correct"], ab)
        )
    cases_b = [
        [
            c["case"],
            c["positives"],
            c["detected"],
            c["fp_pairs"],
            c["false_firings"],
            c["event_conditional"],
            c["fleet_events"],
            f"{c['clean_shard_windows']:,}",
            c["elapsed_s"],
        ]
        for c in sc["per_case"]
    ]
    out.append(
        "## Per case\n\n"
        + table(
            [
                "case",
                "fault shards",
                "detected",
                "false shard flags",
                "false firings",
                "event_conditional",
                "fleet_event",
                "clean shard-windows",
                "seconds",
            ],
            cases_b,
        )
    )
    mt = tot["metric_total"]
    out.append(
        "## Other figures\n\n"
        f"- Shard pages naming one of the fault's metrics: {tot['metric_ok']}/{mt}"
        + (f" ({tot['metric_ok'] / mt:.3f})" if mt else "")
        + "\n"
        f"- fleet_event firings (the whole job moved): {tot['fleet_events']}, of which "
        f"{tot['fleet_explained']} follow a simulated regime step or fleet_regime_change of that job\n"
        f"- event_conditional firings (inside an announced firmware push): {tot['event_conditional']}\n"
        f"- rule:device_missing on the shards of a sparse reporting gap (a GPU silent while its host "
        f"reports; expected, not counted as false): {tot.get('expected_silence', 0)}\n"
        f"- clean shard-windows: {tot['clean_shard_windows']:,}; false firings: {tot['false_firings']}"
    )
    if sc["false_examples"]:
        fe = [
            [e["case"], e["window"], e["target"], e["metric"], e["classification"], e["log_evidence"]]
            for e in sc["false_examples"]
        ]
        out.append(
            "## False firings (first 25)\n\n"
            + table(["case", "window", "target", "metric", "class", "log evidence"], fe)
        )
    return out
