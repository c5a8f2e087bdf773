"""Family A update cost, ns per stream-update (one shard x metric, one window).

Per fleet size (default 1k, 10k, 100k shards x 8 metrics), in the same run:

* ``ref 1t``: a bare linear-space reference of the same recursion on one thread (plain payoff, floor 0,
  e-values multiplied by ``(1 + y + y^2/2)^(+-1) / (1 + lambda delta + lambda^2 v / 2)``, one ``log`` per
  stream, no NaN test, margin, renewal, rescaling, run start or side): the floor this kernel is held to;
* ``kernel 1t`` / ``kernel 2t``: ``detect.kernels.family_a_update`` with ``threads=1`` and ``threads=2``;
* ``numpy``: its NumPy twin (``detect.reference``), for scale.

Ratios: ``1t / ref`` (target <= 1.25) and the two-thread figure itself (target <= 20 ns at 10k). Every
kernel is compiled and run once before any timed call (numba cache warm). The machine may be shared:
only figures from the same run are compared. Not a test: figures go to docs/performance.md.
Usage: python bench/detector.py [--sizes 1000,10000,100000] [--repeat N]
"""

from __future__ import annotations

import argparse
import math
import platform
import time
from collections.abc import Callable
from typing import Any

import numpy as np
from numba import njit

from tessera_daemon.detect import kernels, reference

BETS = np.array([0.1, 0.25, 0.5, 1.0, 1.5])
METRICS = 8


@njit(cache=True, nogil=True)
def _reference_linear(x: np.ndarray, delta: np.ndarray, v: np.ndarray, bets: np.ndarray, clip: float, e: np.ndarray, log_m: np.ndarray) -> None:  # fmt: skip  # noqa: E501
    n_s, n_m = x.shape
    n_k = bets.shape[0]
    log_norm = math.log(2.0 * n_k)
    for i in range(n_s):
        for m in range(n_m):
            xi = min(max(x[i, m], -clip), clip)
            ax = abs(xi)
            d = delta[i, m]
            vv = v[i, m]
            total = 0.0
            for k in range(n_k):
                lam = bets[k]
                den = 1.0 + lam * d + 0.5 * lam * lam * vv
                y = lam * ax
                a = 1.0 + y + 0.5 * y * y
                win = a / den
                lose = 1.0 / (a * den)
                up = max(e[i, m, 2 * k], 1.0) * (win if xi >= 0.0 else lose)
                dn = max(e[i, m, 2 * k + 1], 1.0) * (lose if xi >= 0.0 else win)
                e[i, m, 2 * k] = up
                e[i, m, 2 * k + 1] = dn
                total += up + dn
            log_m[i, m] = math.log(total) - log_norm


def run_reference(x: Any, delta: Any, v: Any, window: int, state: list[Any]) -> None:
    _reference_linear(x, delta, v, BETS, 4.0, state[0], state[2])


def kernel(threads: int) -> Callable[..., None]:
    def run(x: Any, delta: Any, v: Any, window: int, state: list[Any]) -> None:
        kernels.family_a_update(x, delta, v, BETS, 4.0, window, *state, threads=threads)

    return run


def run_numpy(x: Any, delta: Any, v: Any, window: int, state: list[Any]) -> None:
    reference.family_a_update(x, delta, v, BETS, 4.0, window, *state)


def bench(fn: Callable[..., None], shards: int, repeat: int) -> float:
    """Best of ``repeat`` timed windows (after one untimed), ns per stream-update."""
    rng = np.random.default_rng(0)
    xs = [rng.standard_normal((shards, METRICS)) for _ in range(4)]
    delta = np.full((shards, METRICS), 0.1)
    v = np.full((shards, METRICS), 1.2)
    state = [
        kernels.family_a_state((shards, METRICS), len(BETS)),
        np.zeros((shards, METRICS), np.int64),
        np.zeros((shards, METRICS)),
        np.zeros((shards, METRICS), np.int64),
    ]
    fn(xs[0], delta, v, 0, state)  # compile / load from cache, touch the pages
    best = math.inf
    for r in range(repeat):
        t0 = time.perf_counter()
        fn(xs[r % 4], delta, v, r + 1, state)
        best = min(best, time.perf_counter() - t0)
    return best / (shards * METRICS) * 1e9


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="1000,10000,100000")
    ap.add_argument("--repeat", type=int, default=15)
    args = ap.parse_args()
    kernels.warm_up()
    for fn in (run_reference, kernel(1), kernel(2)):  # every compiled path, before any timing
        bench(fn, kernels.PARALLEL_MIN, 1)
    print(
        f"Family A update, {METRICS} metrics, {len(BETS)} bets x 2 sides; best of {args.repeat} windows; "
        f"kernel threads available {kernels.max_threads()}; python {platform.python_version()}, {platform.machine()}"
    )
    print(
        f"{'shards':>8} {'ref 1t ns':>10} {'kernel 1t':>10} {'kernel 2t':>10} {'numpy ns':>10} "
        f"{'1t/ref':>7} {'2t/ref':>7} {'numpy/1t':>9} {'2t ms/window':>13}"
    )
    for n in (int(s) for s in args.sizes.split(",")):
        # interleaved: the reference and the kernels share the machine's load of the moment
        ref, one, two = math.inf, math.inf, math.inf
        for _ in range(3):
            ref = min(ref, bench(run_reference, n, args.repeat))
            one = min(one, bench(kernel(1), n, args.repeat))
            two = min(two, bench(kernel(2), n, args.repeat))
        npy = bench(run_numpy, n, max(3, args.repeat // 4))
        print(
            f"{n:>8} {ref:>10.1f} {one:>10.1f} {two:>10.1f} {npy:>10.1f} "
            f"{one / ref:>7.2f} {two / ref:>7.2f} {npy / one:>9.1f} {two * n * METRICS / 1e6:>13.2f}"
        )


if __name__ == "__main__":
    main()
