"""Replay throughput and the per-window cost of the array path, each next to a reference in the same run.

1. Replay of the built-in ``demo`` scenario (128 shards x 8 metrics, 1,800 ticks, 230,400 frames), written
   by the simulator into a temporary directory: the whole ``tessera_daemon.replay.replay`` (parse with
   msgspec into FrameBlocks, windows, detectors, firings), next to the reference the issue names: the
   standard library's ``json`` plus NumPy window means of the same file (every line parsed, each
   metric's mean per shard and 5-s window). Also the split: parsing alone, window ingest, processing.
2. Per-window cost at about 10k simulated shards (4 zones x 10 racks x 32 hosts x 8 GPUs, one sample
   per shard per 5-s window): ingest (the tick's FrameBlock into the window assembler) and process
   (residuals, detectors, groups, firings) for the windows after a short warm-up, median and max;
   and the object path's ingest (the same tick as ``Frame`` objects, converted at the boundary).

Kernels are compiled before anything is timed. Not a test: figures go to docs/performance.md.
Usage: python bench/replay.py [--repeat 3] [--windows 40] [--skip-10k]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tessera_daemon.config import load_config  # noqa: E402
from tessera_daemon.detect.kernels import warm_up  # noqa: E402
from tessera_daemon.engine.families import warm_up as warm_up_families  # noqa: E402
from tessera_daemon.engine.pipeline import Pipeline  # noqa: E402
from tessera_daemon.model import Topology  # noqa: E402
from tessera_daemon.replay import read_blocks, replay  # noqa: E402
from tessera_daemon.sim import ClusterSim  # noqa: E402
from tessera_daemon.sim.writer import write_simulation  # noqa: E402


def json_numpy_means(frames: Path, topology: Path, window_s: float) -> tuple[int, np.ndarray]:
    """The reference: ``json.loads`` per line, then each metric's mean per (window, shard) with NumPy."""
    shards = Topology.from_json(topology.read_bytes()).shards
    row = {s: i for i, s in enumerate(shards)}
    rows: list[int] = []
    tss: list[float] = []
    vals: list[list[float | None]] = []
    names: list[str] | None = None
    with frames.open(encoding="utf-8") as fh:
        for line in fh:
            obj = json.loads(line)
            m = obj["metrics"]
            if names is None:
                names = list(m)
            rows.append(row[obj["shard"]])
            tss.append(obj["ts"])
            vals.append([m.get(k) for k in names])
    v = np.array(vals, np.float64)
    k = np.floor(np.array(tss) / window_s).astype(np.int64)
    k -= k.min()
    r = np.array(rows)
    sums = np.zeros((int(k.max()) + 1, len(shards), v.shape[1]))
    counts = np.zeros(sums.shape)
    ok = np.isfinite(v)
    np.add.at(sums, (k, r), np.where(ok, v, 0.0))
    np.add.at(counts, (k, r), ok)
    with np.errstate(invalid="ignore"):
        return len(rows), sums / counts


def best_of(repeat: int, fn: Any) -> tuple[float, Any]:
    best, out = math.inf, None
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def bench_replay(repeat: int) -> None:
    cfg = load_config(None, {})
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        info = write_simulation(cfg.sim, d, scenario="demo", seed=cfg.sim.seed, duration_s=1800.0)
        frames, topo, out = d / "frames.jsonl", d / "topology.json", d / "firings.jsonl"
        size_mb = frames.stat().st_size / 1e6
        t_ref, (n_ref, _) = best_of(repeat, lambda: json_numpy_means(frames, topo, 5.0))
        t_rep, summary = best_of(repeat, lambda: replay(cfg, frames, topo, out))

        def parse() -> list[Any]:
            with frames.open(encoding="utf-8") as fh:
                return list(read_blocks(fh))

        t_parse, blocks = best_of(repeat, parse)
        pipe = Pipeline(cfg, Topology.from_json(topo.read_bytes()))
        t_ingest = t_process = 0.0
        for b in blocks:
            t0 = time.perf_counter()
            pipe.ingest(b)
            t1 = time.perf_counter()
            for w in pipe.assembler.close_ready():
                pipe.process(w)
            t_process += time.perf_counter() - t1
            t_ingest += t1 - t0
    n = summary.frames
    assert n == n_ref == info["frames"]
    print(
        f"replay of the built-in demo scenario: {info['shards']} shards x 8 metrics, {info['ticks']} ticks, "
        f"{n:,} frames ({size_mb:.1f} MB), {summary.windows} windows of {summary.window_s:g} s, "
        f"{summary.opened} firings opened; best of {repeat}"
    )
    print(f"{'path':<58} {'seconds':>8} {'frames/s':>10} {'/ reference':>11}")
    ref_fps = n / t_ref
    for name, t in (
        ("reference: json.loads per line + NumPy window means", t_ref),
        ("tessera-daemon replay (whole: parse, windows, detectors)", t_rep),
        ("  of which: parse into FrameBlocks (msgspec)", t_parse),
        ("  of which: window ingest (add_block)", t_ingest),
        ("  of which: window processing (Pipeline.process)", t_process),
    ):
        print(f"{name:<58} {t:>8.3f} {n / t:>10,.0f} {n / t / ref_fps:>11.2f}")


def bench_10k(windows: int, warm: int) -> None:
    env = {
        "TESSERA_SIM__ZONES": "4",
        "TESSERA_SIM__RACKS_PER_ZONE": "10",
        "TESSERA_SIM__HOSTS_PER_RACK": "32",
        "TESSERA_SIM__TICK_S": "5",
        "TESSERA_WINDOW__LENGTH_S": "5",
        "TESSERA_DETECTOR__WARMUP_WINDOWS": str(warm),
        "TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": str(warm),
    }
    cfg = load_config(None, env)
    sim = ClusterSim(cfg.sim, "clean")
    n_shards = len(sim.shard_ids)
    ticks = [sim.step_block()[1] for _ in range(warm + windows + 1)]
    rss0 = rss_mb()
    pipe = Pipeline(cfg, sim.topology)
    ingest: list[float] = []
    process: list[float] = []
    for i, block in enumerate(ticks):
        t0 = time.perf_counter()
        pipe.ingest(block)
        t1 = time.perf_counter()
        closed = pipe.assembler.close_ready()
        for w in closed:
            pipe.process(w)
        t2 = time.perf_counter()
        if i > warm:
            ingest.append(t1 - t0)
            process.append(t2 - t1)
    rss1 = rss_mb()
    obj = Pipeline(cfg, sim.topology)
    as_frames = [list(b) for b in ticks[: min(len(ticks), 8)]]
    obj_ingest = []
    for fr in as_frames:
        t0 = time.perf_counter()
        obj.ingest(fr)
        obj_ingest.append(time.perf_counter() - t0)
        obj.assembler.close_ready()
    med_i, med_p, med_o = statistics.median(ingest), statistics.median(process), statistics.median(obj_ingest)
    print(
        f"\nper window at {n_shards:,} shards x {len(pipe.metrics)} metrics, one sample per shard per 5-s window, "
        f"{len(process)} windows after a warm-up of {warm}:"
    )
    print(f"{'step':<58} {'median ms':>9} {'max ms':>8}")
    print(
        f"{'ingest: the tick as a FrameBlock (simulator, transport)':<58} {med_i * 1e3:>9.1f} {max(ingest) * 1e3:>8.1f}"
    )
    print(f"{'process: residuals, detectors, groups, firings':<58} {med_p * 1e3:>9.1f} {max(process) * 1e3:>8.1f}")
    print(f"{'whole window (ingest + process)':<58} {(med_i + med_p) * 1e3:>9.1f}")
    print(
        f"{'object path ingest: the same tick as Frame objects':<58} {med_o * 1e3:>9.1f} {max(obj_ingest) * 1e3:>8.1f}"
        f"   ({med_o / med_i:.1f}x the block)"
    )
    print(f"pipeline memory at {n_shards:,} shards: {rss1 - rss0:,.0f} MB of RSS (process RSS {rss1:,.0f} MB)")


def rss_mb() -> float:
    """Resident set size now, MB (Linux /proc; NaN elsewhere)."""
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
    except (OSError, ValueError, IndexError):
        return math.nan
    return pages * os.sysconf("SC_PAGE_SIZE") / 1e6


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--windows", type=int, default=40)
    ap.add_argument("--warm", type=int, default=20)
    ap.add_argument("--skip-10k", action="store_true")
    args = ap.parse_args()
    t0 = time.perf_counter()
    warm_up()
    warm_up_families()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"python {platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus, "
        f"1-min load {load:.1f}; kernels compiled / loaded in {time.perf_counter() - t0:.1f} s before timing"
    )
    bench_replay(args.repeat)
    if not args.skip_10k:
        bench_10k(args.windows, args.warm)


if __name__ == "__main__":
    main()
