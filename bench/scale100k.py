"""One detector process at 10k and 100k shards: construction, window cost, worst window after warm-up, RSS.

Each size runs in a fresh process (RSS is the process's own): the simulated cluster (``sim.topology``
layout, 8 GPUs a host, 50 hosts a rack, 25 racks a zone, one cohort per 1000 shards) is built, a
``Pipeline`` constructed from its topology (timed), then the simulator's values are handed to
``Pipeline.process`` one window per simulator tick (the window assembler and transport are not part of
this figure: bench/scale.py measures ingest). Warm-up runs to the end (every stream warm, every group
seeded), then ``--steady`` more windows are timed. Printed per size: construction seconds, median
window during warm-up, first window after it, median (steady) and worst window after it with their
ratio (target <= 1.5), RSS after construction, at its peak and at the end (VmRSS / VmHWM).

Usage: python bench/scale100k.py [--sizes 10000,100000] [--steady 40] [--threads 1] [--warmup MIN,MAX]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import subprocess
import sys
import time
from typing import Any

import numpy as np

RACK_HOSTS, HOST_GPUS, ZONE_RACKS = 50, 8, 25


def rss_mb() -> tuple[float, float]:
    """(VmRSS, VmHWM) of this process in MB."""
    out = {}
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(("VmRSS:", "VmHWM:")):
                out[line.split(":")[0]] = int(line.split()[1]) / 1024.0
    return out["VmRSS"], out["VmHWM"]


def run_one(shards: int, steady: int, threads: int, warmup: tuple[int, int] | None) -> dict[str, Any]:
    from tessera_daemon.config import Config, DetectorConfig, SimConfig  # noqa: PLC0415 - child process only
    from tessera_daemon.detect import kernels  # noqa: PLC0415
    from tessera_daemon.engine.families import warm_up  # noqa: PLC0415
    from tessera_daemon.engine.pipeline import Pipeline  # noqa: PLC0415
    from tessera_daemon.engine.window import WindowData  # noqa: PLC0415
    from tessera_daemon.sim.cluster import ClusterSim  # noqa: PLC0415
    from tessera_daemon.sim.metrics import METRICS  # noqa: PLC0415

    kernels.warm_up()
    warm_up()  # every numba kernel compiled / loaded before anything is timed
    hosts = max(1, shards // HOST_GPUS)
    racks = max(1, hosts // RACK_HOSTS)
    sim_cfg = SimConfig(
        zones=max(1, racks // ZONE_RACKS),
        racks_per_zone=min(ZONE_RACKS, racks),
        hosts_per_rack=min(RACK_HOSTS, hosts),
        shards_per_host=HOST_GPUS,
        cohorts=max(1, shards // 1000),
        tick_s=10.0,
    )
    cluster = ClusterSim(sim_cfg, "clean")
    d = DetectorConfig(threads=threads)
    if warmup is not None:  # shorter warm-up: the same steady state, reached sooner
        d = dataclasses.replace(d, warmup_windows=warmup[0], warmup_max_windows=warmup[1])
    cfg = dataclasses.replace(Config(), detector=d)
    rss0 = rss_mb()[0]
    t0 = time.perf_counter()
    p = Pipeline(cfg, cluster.topology)
    construct_s = time.perf_counter() - t0
    rss_built = rss_mb()[0]
    cols = [METRICS.index(m) for m in p.metrics]
    nvl = p.metrics.index("nvlink_tx_bytes") if "nvlink_tx_bytes" in p.metrics else -1
    prev = None
    warmup_ms: list[float] = []
    after_ms: list[float] = []
    warm_at = -1
    w = 0
    while True:
        tick = cluster.step_arrays()
        raw = tick.values
        vals = raw[:, cols].copy()
        if nvl >= 0:  # the counter as a rate, as the window assembler hands it over
            cur = raw[:, METRICS.index("nvlink_tx_bytes")]
            vals[:, nvl] = np.nan if prev is None else (cur - prev) / sim_cfg.tick_s
            prev = cur.copy()
        win = WindowData(w, tick.ts - sim_cfg.tick_s, tick.ts, vals, tick.reporting.copy(), n_frames=len(vals))
        t1 = time.perf_counter()
        p.process(win)
        dt = (time.perf_counter() - t1) * 1e3
        if warm_at < 0:
            warmup_ms.append(dt)
            if p.state.warm().all() and (len(p.groups) == 0 or p.groups.ready.all()):
                warm_at = w
        else:
            after_ms.append(dt)
            if len(after_ms) >= steady:
                break
        w += 1
        if w > 2000:
            raise SystemExit("warm-up did not finish in 2000 windows")
    rss_end, hwm = rss_mb()
    med = statistics.median(after_ms)
    return {
        "shards": len(p.shards),
        "groups": len(p.groups),
        "construct_s": construct_s,
        "warm_at": warm_at,
        "warmup_median_ms": statistics.median(warmup_ms),
        "first_after_ms": after_ms[0],
        "steady_ms": med,
        "worst_after_ms": max(after_ms),
        "worst_ratio": max(after_ms) / med,
        "rss_start_mb": rss0,
        "rss_built_mb": rss_built,
        "rss_peak_mb": hwm,
        "rss_end_mb": rss_end,
        "threads": p.kernel_threads,
        "warmup": f"{cfg.detector.warmup_windows},{cfg.detector.warmup_max_windows}",
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="10000,100000")
    ap.add_argument("--steady", type=int, default=40)
    ap.add_argument("--threads", type=int, default=1, help="detector.threads (0: min(cores, 2))")
    ap.add_argument("--warmup", default="", help="MIN,MAX warm-up windows (default: the configuration's 60,240)")
    ap.add_argument("--child", type=int, default=0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        wu = (int(args.warmup.split(",")[0]), int(args.warmup.split(",")[1])) if args.warmup else None
        print(json.dumps(run_one(args.child, args.steady, args.threads, wu)))
        return
    print(
        "Pipeline at scale, one process per size; windows: Pipeline.process only (no assembler / transport); "
        "steady = median after warm-up"
    )
    print(
        f"{'shards':>7} {'groups':>6} {'build s':>8} {'warm at':>7} {'warm-up ms':>10} {'1st after':>9} "
        f"{'steady ms':>9} {'worst ms':>8} {'worst/st':>8} {'RSS built':>9} {'RSS peak':>8} {'RSS end':>8} {'thr':>3} "
        f"{'warm-up':>7}"
    )
    for n in (int(s) for s in args.sizes.split(",")):
        cmd = [
            sys.executable,
            __file__,
            "--child",
            str(n),
            "--steady",
            str(args.steady),
            "--threads",
            str(args.threads),
        ]
        cmd += ["--warmup", args.warmup] if args.warmup else []
        out = subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        print(
            f"{r['shards']:>7} {r['groups']:>6} {r['construct_s']:>8.2f} {r['warm_at']:>7} "
            f"{r['warmup_median_ms']:>10.1f} {r['first_after_ms']:>9.1f} {r['steady_ms']:>9.1f} "
            f"{r['worst_after_ms']:>8.1f} {r['worst_ratio']:>8.2f} {r['rss_built_mb']:>9.0f} "
            f"{r['rss_peak_mb']:>8.0f} {r['rss_end_mb']:>8.0f} {r['threads']:>3} {r['warmup']:>7}",
            flush=True,
        )


if __name__ == "__main__":
    main()
