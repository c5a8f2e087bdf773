"""Family A update cost: numba kernel vs its NumPy twin, ns per shard-metric update.

Prints one row per fleet size (1k, 10k, 100k shards x 8 metrics) and the ratio. Not a test: figures
go to docs/performance.md. Usage: python bench/detector.py [--sizes 1000,10000,100000] [--repeat N]
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np

from tessera_daemon.detect import kernels, reference

BETS = np.array([0.1, 0.25, 0.5, 1.0, 1.5])
METRICS = 8


def bench(fn, shards: int, repeat: int) -> float:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((shards, METRICS)) for _ in range(4)]
    delta = np.full((shards, METRICS), 0.1)
    v = np.full((shards, METRICS), 1.2)
    state = [
        np.zeros((shards, METRICS, 2 * len(BETS))),
        np.zeros((shards, METRICS), np.int64),
        np.zeros((shards, METRICS)),
        np.zeros((shards, METRICS), np.int64),
    ]
    fn(xs[0], delta, v, BETS, 4.0, 0, *state)  # compile / warm caches
    best = float("inf")
    for r in range(repeat):
        t0 = time.perf_counter()
        fn(xs[r % 4], delta, v, BETS, 4.0, r + 1, *state)
        best = min(best, time.perf_counter() - t0)
    return best / (shards * METRICS) * 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--repeat", type=int, default=7)
    args = ap.parse_args()
    print(
        f"Family A update, {METRICS} metrics, {len(BETS)} bets x 2 sides; best of {args.repeat}; "
        f"python {platform.python_version()}, {platform.machine()}"
    )
    print(f"{'shards':>8} {'numba ns/upd':>13} {'numpy ns/upd':>13} {'numpy/numba':>12} {'numba ms/window':>16}")
    for n in (int(s) for s in args.sizes.split(",")):
        nb = bench(kernels.family_a_update, n, args.repeat)
        npy = bench(reference.family_a_update, n, max(3, args.repeat // 2))
        print(f"{n:>8} {nb:>13.1f} {npy:>13.1f} {npy / nb:>12.1f} {nb * n * METRICS / 1e6:>16.2f}")


if __name__ == "__main__":
    main()
