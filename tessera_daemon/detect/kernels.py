"""Numba kernels: pure array code, one call per window for all shards. No I/O, no logging.

Each kernel has a NumPy twin in ``detect.reference`` with the same signature; tests assert they agree.
Numba functions are opaque to mypy, so callers use the typed wrappers at the bottom.

Family A (univariate, per shard x metric): a two-sided mixture of e-CUSUM recursions over a grid of
bets lambda_k. For a standardised innovation x (winsorised at +-max(clip, delta + clip / 2), so a wide
material margin never leaves the clip below it) and side s in {+1, -1}:

    y     = lambda_k * s * x
    phi   = sign(y) * log(1 + |y| + y^2 / 2)              (Catoni's influence function)
    inc   = phi - log(1 + lambda_k * delta + lambda_k^2 * v / 2)
    W_ks  = max(W_ks, 0) + inc                              (e-CUSUM in log space)
    logM  = logsumexp_ks(W_ks) - log(2K)                    (uniform mixture of e-detectors)

Because exp(phi(y)) <= 1 + y + y^2/2, under the null E[s x | past] <= delta and E[x^2 | past] <= v
each exp(inc) has conditional mean <= 1, so every exp(W_ks) is an e-CUSUM e-detector and so is the
mixture: alarming at logM >= log c gives average run length >= c (Shin, Ramdas & Rinaldo 2024).

Centred on a material margin ``c0 > 0`` (``margin``): each side bets on its excess over the margin,
``y_s = clip(s x - c0, -clip, clip)`` in place of ``s x``, with ``delta`` and ``v`` the bounds on the
mean and second moment of ``s x - c0`` beyond it. The payoff is increasing in x, so for a location family
(the innovation is noise plus a shift mu) its expectation over the composite null ``s mu <= c0 + delta``
is largest at the boundary: bounding it there is enough, and the margin costs no second-moment slack
(``v`` holds ``delta^2``, not ``(c0 + delta)^2``). ``c0 = 0`` is the plain recursion above, bit for bit.

Three ways to carry W from one window to the next, chosen by ``floor`` and ``renew``:

* ``floor = 0``: the e-CUSUM above (the pipeline's change detector);
* ``floor = -inf``: the plain mixture test martingale started once (W = 0 at the start), for a
  fixed-start test: Ville gives ``P(sup logM >= log(1/alpha)) <= alpha``;
* ``floor = -inf, renew = log(pi)``: a change-point mixture. State starts at -inf (no mass) and each
  observed window a new test starts with mass ``pi``: ``W_ks = logaddexp(W_ks, log pi) + inc``, so
  ``exp(logM) = sum_j pi Prod_{i=j..t} e_i`` (a Shiryaev-Roberts sum with weights). Plus the mass not
  yet started, ``1 - n pi`` after n windows, it is a test supermartingale over all time when
  ``sum pi <= 1`` (e.g. ``pi = 1/H`` for H windows): Ville's inequality holds for a change at any
  window, at a cost of log(1/pi) instead of a fixed start's wait through the pre-change windows.

Carried in linear space. The state of a stream is ``e_state[..., :2K]`` = exp(W_ks - L) and
``e_state[..., 2K]`` = L, a per-stream log scale: each window multiplies every component by its factor
``exp(phi) / (1 + lambda delta + lambda^2 v / 2)``, where ``exp(phi) = 1 + |y| + y^2 / 2`` for a bet
that wins (``y >= 0``) and its reciprocal for one that loses (Catoni's influence function, exactly),
so the update needs no ``exp`` and no ``log`` per component: one ``log`` per stream for ``logM`` and
one more only when the strongest component leaves [1e-200, 1e200] and the stream is rescaled (``L``
absorbs it), so evidence past 709 nats never overflows. A fresh stream is ``[1, .., 1, 0]`` (W = 0;
:func:`family_a_state`, :func:`family_a_rearm`), a change-point mixture starts at ``[0, .., 0, 0]``
(W = -inf). Components more than ~708 nats below the strongest one underflow to 0 and the e-CUSUM
floor applies to them again once the strongest falls back within that range: evidence can only be
lost that way, never gained, so the run-length guarantee stands. The NumPy twin
(``detect.reference``) runs the same recursion in log space; tests hold them to 1e-12.

Threads: :func:`family_a_update` runs the streams on ``threads`` numba threads (``prange`` over
shards, ``detector.threads``) when there are at least ``PARALLEL_MIN`` streams, on the calling thread
otherwise. float64 throughout: float32 state agrees with the twin to only ~1e-6 relative after a few
hundred windows (the product of the factors accumulates rounding), which moves ``logM`` by more than
the firings' 6-decimal rounding, and the kernel is bound by its divisions, not by memory.
"""

from __future__ import annotations

import functools
import math
import os
import threading
from typing import Any

import numba
import numpy as np
import numpy.typing as npt
from numba import njit, prange

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]

RESCALE_HI = 1e200  # a stream whose strongest component leaves [RESCALE_LO, RESCALE_HI] is rescaled
RESCALE_LO = 1e-200
PARALLEL_MIN = 4096  # fewer streams than this run on the calling thread (a launch costs more than it saves)


@njit(cache=True, nogil=True, fastmath=False, error_model="numpy", parallel=True)
def _family_a_update(  # one loop nest; the centred and plain payoffs share it
    x: np.ndarray,  # float64[S, M] standardised innovations, NaN = no observation this window
    delta: np.ndarray,  # float64[S, M] composite-null margin in innovation units
    v: np.ndarray,  # float64[S, M] null second-moment bound
    bets: np.ndarray,  # float64[K]
    clip: float,
    window: int,
    floor: float,  # 0.0: e-CUSUM (change detection); -inf: mixture test martingale (Ville)
    renew: float,  # -inf: none; else log of the mass of a test started every window (change-point mixture)
    e_state: np.ndarray,  # float64[S, M, 2K + 1] e-values exp(W - L) and the log scale L (in/out)
    run_start: np.ndarray,  # int64[S, M] window at which the current run began (in/out)
    log_m: np.ndarray,  # float64[S, M] mixture log evidence (out)
    side: np.ndarray,  # int64[S, M] +1 / -1: side of the strongest component (out)
    margin: np.ndarray,  # float64[S, M] material margin the bets are centred on (0: none)
) -> None:
    # compiled parallel (prange over shards) and run on numba's thread count of the moment (the wrapper
    # sets 1 for small fleets); numba's parallel pipeline also compiles this loop tighter than a plain njit
    n_s, n_m = x.shape
    n_k = bets.shape[0]
    n_j = 2 * n_k
    log_norm = math.log(2.0 * n_k)
    floor_lin = math.exp(floor) if floor > -math.inf else 0.0
    renew_lin = math.exp(renew) if renew > -math.inf else 0.0
    for i in prange(n_s):
        for m in range(n_m):
            xi = x[i, m]
            if math.isnan(xi):  # no observation: carry state
                continue
            scale = e_state[i, m, n_j]
            if floor == -math.inf:
                fl = 0.0
            elif scale == 0.0:
                fl = floor_lin
            else:
                fl = math.exp(floor - scale)
            rl = 0.0
            if renew > -math.inf:
                rl = renew_lin if scale == 0.0 else math.exp(renew - scale)
            d = delta[i, m]
            vv = v[i, m]
            c0 = margin[i, m]
            prev_max = -1.0
            best_up = -1.0
            best_dn = -1.0
            total = 0.0
            if c0 <= 0.0:
                cl = max(clip, d + 0.5 * clip)  # a wide margin widens the clip: evidence past the margin counts
                xi = min(max(xi, -cl), cl)
                ax = abs(xi)
                pos = xi >= 0.0
                for k in range(n_k):
                    lam = bets[k]
                    y = lam * ax
                    a = 1.0 + y + 0.5 * y * y  # exp(phi(y)): phi is odd, one factor serves both sides
                    lose = 1.0 / (a * (1.0 + lam * d + 0.5 * lam * lam * vv))
                    win = a * a * lose  # a / norm with the one division
                    e_up = e_state[i, m, 2 * k]
                    e_dn = e_state[i, m, 2 * k + 1]
                    prev_max = max(prev_max, e_up, e_dn)
                    e_up = (max(e_up, fl) + rl) * (win if pos else lose)
                    e_dn = (max(e_dn, fl) + rl) * (lose if pos else win)
                    e_state[i, m, 2 * k] = e_up
                    e_state[i, m, 2 * k + 1] = e_dn
                    total += e_up + e_dn
                    best_up = max(best_up, e_up)
                    best_dn = max(best_dn, e_dn)
                # a tie (a bet below rounding, a == 1) goes to the side the sign of x favours, as in log
                # space, where such a payoff is still above 0 (bitwise: a short-circuit here costs 30 %)
                up = (best_up > best_dn) | ((best_up == best_dn) & pos)
            else:
                # centred on the margin: each side bets on its excess y_s = s x - c0 (clipped at +-clip)
                y_up = min(max(xi - c0, -clip), clip)
                y_dn = min(max(-xi - c0, -clip), clip)
                for k in range(n_k):
                    lam = bets[k]
                    den = 1.0 + lam * d + 0.5 * lam * lam * vv
                    y = lam * abs(y_up)
                    a = 1.0 + y + 0.5 * y * y
                    f_up = 1.0 / (a * den)
                    if y_up >= 0.0:
                        f_up *= a * a
                    y = lam * abs(y_dn)
                    a = 1.0 + y + 0.5 * y * y
                    f_dn = 1.0 / (a * den)
                    if y_dn >= 0.0:
                        f_dn *= a * a
                    e_up = e_state[i, m, 2 * k]
                    e_dn = e_state[i, m, 2 * k + 1]
                    prev_max = max(prev_max, e_up, e_dn)
                    e_up = (max(e_up, fl) + rl) * f_up
                    e_dn = (max(e_dn, fl) + rl) * f_dn
                    e_state[i, m, 2 * k] = e_up
                    e_state[i, m, 2 * k + 1] = e_dn
                    total += e_up + e_dn
                    best_up = max(best_up, e_up)
                    best_dn = max(best_dn, e_dn)
                up = best_up >= best_dn
            if prev_max <= fl:
                run_start[i, m] = window
            best = max(best_up, best_dn)
            if best > RESCALE_HI or (0.0 < best < RESCALE_LO):
                for j in range(n_j):
                    e_state[i, m, j] /= best
                total /= best
                scale += math.log(best)
                e_state[i, m, n_j] = scale
            log_m[i, m] = scale + math.log(total) - log_norm
            side[i, m] = 1 if up else -1


_LAUNCH = threading.Lock()  # one launch at a time: numba's workqueue layer (no OpenMP / TBB) is not thread-safe


def max_threads() -> int:
    """The most threads a kernel can use in this process (numba's pool: NUMBA_NUM_THREADS, the cores)."""
    return int(numba.config.NUMBA_NUM_THREADS)  # type: ignore[attr-defined]


@functools.cache
def resolve_threads(setting: int) -> int:
    """Threads for a ``detector.threads`` setting: 0 is min(usable cores, 2) (on idle cores two threads
    take a 10k-shard window's kernel from ~2.3 to ~1.3 ms; on cores shared with other work they lose);
    any setting is capped at the cores this process may use and numba's pool."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    want = min(cores, 2) if setting <= 0 else setting
    return max(1, min(want, cores, max_threads()))


def family_a_update(
    x: F64,
    delta: F64,
    v: F64,
    bets: F64,
    clip: float,
    window: int,
    e_state: F64,
    run_start: I64,
    log_m: F64,
    side: I64,
    floor: float = 0.0,
    renew: float = -math.inf,
    margin: F64 | None = None,
    threads: int = 1,
) -> None:
    """Typed wrapper: update Family A state in place for one window (see module docstring).

    ``floor=0`` runs the e-CUSUM change detector (ARL >= c); ``floor=-inf`` runs the plain mixture
    test martingale for fixed-horizon tests (Ville: P(sup log M >= log(1/alpha)) <= alpha);
    ``floor=-inf`` with ``renew=log(pi)`` the change-point mixture (state from
    :func:`family_a_state` with ``start=-inf``). ``threads > 1`` splits the shards over that many
    numba threads (at most :func:`max_threads`) when there are ``PARALLEL_MIN`` streams or more."""
    if e_state.shape != (*x.shape, 2 * bets.shape[0] + 1):
        raise ValueError(f"family A state has shape {e_state.shape}, expected {(*x.shape, 2 * bets.shape[0] + 1)}")
    if margin is None:
        margin = np.zeros_like(x)
    n = max(1, min(int(threads), max_threads())) if x.size >= PARALLEL_MIN and x.shape[0] > 1 else 1
    with _LAUNCH:
        numba.set_num_threads(n)
        _family_a_update(
            x, delta, v, bets, float(clip), int(window), float(floor), float(renew), e_state, run_start, log_m, side,
            margin,
        )  # fmt: skip


def family_a_fresh(n_bets: int, start: float = 0.0) -> F64:
    """One stream's state with every component at log value ``start`` (0: a fresh e-CUSUM / test
    martingale; -inf: a change-point mixture before its first test)."""
    row = np.full(2 * n_bets + 1, 0.0 if start == -math.inf else math.exp(start))
    row[-1] = 0.0
    return row


def family_a_state(shape: tuple[int, ...], n_bets: int, start: float = 0.0) -> F64:
    """Family A state ``shape + (2K + 1,)``, every stream fresh (see :func:`family_a_fresh`)."""
    return np.broadcast_to(family_a_fresh(n_bets, start), (*shape, 2 * n_bets + 1)).copy()


def family_a_rearm(e_state: F64, index: Any = Ellipsis) -> None:
    """Reset the streams ``e_state[index]`` (an index over the leading axes) to a fresh e-CUSUM (W = 0)."""
    e_state[index] = family_a_fresh((e_state.shape[-1] - 1) // 2)


def family_a_log(e_state: F64) -> F64:
    """The log values W [..., 2K] of every component (-inf where a component underflowed or is empty)."""
    with np.errstate(divide="ignore"):
        out: F64 = np.log(e_state[..., :-1]) + e_state[..., -1:]
    return out


def warm_up() -> None:
    """Compile (or load from cache) every kernel signature used in production, both thread modes."""
    for s in (2, PARALLEL_MIN):
        m, k = 2, 3
        x = np.zeros((s, m))
        x[0, 0] = np.nan
        family_a_update(
            x,
            np.zeros((s, m)),
            np.ones((s, m)),
            np.array([0.1, 0.5, 1.0]),
            4.0,
            0,
            family_a_state((s, m), k),
            np.zeros((s, m), np.int64),
            np.zeros((s, m)),
            np.zeros((s, m), np.int64),
            threads=2,
        )
