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
import os
import time

from tessera_daemon.config import Config
from tessera_daemon.evaluation.realistic_cases import FAST, FULL, cases, run_all, sim_config
from tessera_daemon.evaluation.realistic_report import checks, sections
from tessera_daemon.evaluation.realistic_scoring import score
from tessera_daemon.evaluation.report import MatrixResult

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
    runs = run_all(todo, cfg, sim_cfg, n_workers)
    sc = score(runs, cfg)
    n_shards = len(runs[0]["shards"])
    res = MatrixResult(
        "realistic",
        f"Realistic evaluation: {n_shards}-shard simulated fleet, fault catalogue x magnitudes x seeds, full pipeline",
        fast,
    )
    checks(res, sc, fast, n_shards)
    res.sections += sections(sc, plan, sim_cfg, cfg, n_shards)
    res.data = {
        "plan": dataclasses.asdict(plan),
        "sim": dataclasses.asdict(sim_cfg),
        "window_s": cfg.window.length_s,
        "warmup_windows": cfg.detector.warmup_windows,
        **sc,
    }
    res.elapsed_s = time.perf_counter() - t0
    return res
