"""Family D: oscillation / periodicity e-detector per (shard, watched metric). Pure array code, no I/O.

One call per window updates every stream. Numba functions are opaque to mypy, so callers use the
typed wrapper ``family_d_update``; ``detect.reference_cde`` holds the NumPy twin (same signature).

Each stream keeps a ring of its last R winsorised innovations, stamped with their window index, so a
missing window is a gap and never shifts the lags. For the innovation x_t (winsorised at +-clip), a
lag k in lag_min..R whose window t-k was observed, and ``mbar`` the mean of the ring (the observed
windows among t-1..t-R):

    a     = x_{t-k} - mbar                                   (known before x_t: a predictable bet size)
    y     = lambda * a * x_t
    W_jk  = max(W_jk, 0) + phi(y) - log(1 + lambda |a| delta + lambda^2 a^2 v / 2)
    logM  = logsumexp_jk(W_jk) - log(#lags * K)

phi is Catoni's influence function, as in Family A. The payoff a x_t is a bet on the lag-k product
x_t x_{t-k}, one-sided toward positive autocorrelation (a stall or throttling cycle of period k puts
a positive correlation at lag k). Centring on mbar makes a sustained mean shift (Family A's target)
cancel: it moves x_{t-k} and mbar alike.

Because a is known from the past, the null is exactly Family A's: |E[x_t | past]| <= delta and
E[x_t^2 | past] <= v. Then E[a x_t | past] <= |a| delta and E[(a x_t)^2 | past] <= a^2 v, so each
exp(increment) has conditional mean <= 1 and every component, and the mixture, is an e-detector
(alarm at logM >= log c gives average run length >= c). No bound on the fourth moment of w is needed.
See docs/statistics-cde.md.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tessera_daemon.detect.kernels import F64, I64

DEFAULT_BETS = (0.05, 0.1, 0.2, 0.4)
DEFAULT_LAG_MIN = 2
DEFAULT_RING = 10  # R: the longest lag (windows)


@njit(cache=True, nogil=True, fastmath=False)
def _ring_mean(ring_row: np.ndarray, win_row: np.ndarray, window: int) -> float:
    """Mean of the ring's observed windows among window-1 .. window-R (0 if none)."""
    n_r = ring_row.shape[0]
    total = 0.0
    cnt = 0
    for k in range(1, n_r + 1):
        slot = (window - k) % n_r
        val = ring_row[slot]
        if win_row[slot] == window - k and not math.isnan(val):
            total += val
            cnt += 1
    return total / cnt if cnt > 0 else 0.0


@njit(cache=True, nogil=True, fastmath=False)
def _lag_step(
    xi: float,
    d: float,
    vv: float,
    mbar: float,
    bets: np.ndarray,
    lag_min: int,
    window: int,
    ring_row: np.ndarray,
    win_row: np.ndarray,
    w_row: np.ndarray,
) -> None:
    """One Catoni e-CUSUM step for every (lag, bet) component whose lag window was observed."""
    n_r = ring_row.shape[0]
    n_k = bets.shape[0]
    for li in range(n_r - lag_min + 1):
        k = lag_min + li
        slot = (window - k) % n_r
        val = ring_row[slot]
        if win_row[slot] != window - k or math.isnan(val):
            continue  # lag not observed: these components carry
        a = val - mbar
        aa = abs(a)
        for kk in range(n_k):
            lam = bets[kk]
            norm = math.log1p(lam * aa * d + 0.5 * lam * lam * a * a * vv)
            y = lam * a * xi
            phi = math.log1p(abs(y) + 0.5 * y * y)
            if y < 0.0:
                phi = -phi
            j = li * n_k + kk
            w_row[j] = max(w_row[j], 0.0) + phi - norm


@njit(cache=True, nogil=True, fastmath=False)
def _family_d_update(
    w: np.ndarray,  # float64[S, L] standardised innovations of the watched metrics, NaN = none
    delta: np.ndarray,  # float64[S, L] composite-null margin in innovation units
    v: np.ndarray,  # float64[S, L] null second-moment bound
    bets: np.ndarray,  # float64[K]
    lag_min: int,
    clip: float,
    window: int,
    ring: np.ndarray,  # float64[S, L, R] last R winsorised innovations, slot = window % R (in/out)
    ring_win: np.ndarray,  # int64[S, L, R] window index of each ring slot (in/out)
    w_state: np.ndarray,  # float64[S, L, (R - lag_min + 1) * K] log e-CUSUM values (in/out)
    run_start: np.ndarray,  # int64[S, L] window at which the current run began (in/out)
    log_m: np.ndarray,  # float64[S, L] mixture log evidence (in/out)
    lag_out: np.ndarray,  # int64[S, L] lag of the strongest component (out)
) -> None:
    n_s, n_l = w.shape
    n_r = ring.shape[2]
    n_k = bets.shape[0]
    n_c = (n_r - lag_min + 1) * n_k
    log_norm = math.log(float(n_c))
    slot = window % n_r
    for i in range(n_s):
        for m in range(n_l):
            xi = w[i, m]
            if math.isnan(xi):  # no observation: carry state (the ring stamps record the gap)
                continue
            xi = min(max(xi, -clip), clip)
            mbar = _ring_mean(ring[i, m], ring_win[i, m], window)
            prev_max = -1e300
            for j in range(n_c):
                prev_max = max(prev_max, w_state[i, m, j])
            if prev_max <= 0.0:
                run_start[i, m] = window
            _lag_step(xi, delta[i, m], v[i, m], mbar, bets, lag_min, window, ring[i, m], ring_win[i, m], w_state[i, m])
            best = -1e300
            best_j = 0
            for j in range(n_c):
                if w_state[i, m, j] > best:
                    best = w_state[i, m, j]
                    best_j = j
            acc = 0.0
            for j in range(n_c):
                acc += math.exp(w_state[i, m, j] - best)
            log_m[i, m] = best + math.log(acc) - log_norm
            lag_out[i, m] = lag_min + best_j // n_k
            ring[i, m, slot] = xi
            ring_win[i, m, slot] = window


def family_d_update(
    w: F64,
    delta: F64,
    v: F64,
    bets: F64,
    lag_min: int,
    clip: float,
    window: int,
    ring: F64,
    ring_win: I64,
    w_state: F64,
    run_start: I64,
    log_m: F64,
    lag_out: I64,
) -> None:
    """Typed wrapper: update Family D state in place for one window (see module docstring).

    ``window`` must increase from call to call (gaps allowed); it indexes the ring.
    """
    if not 1 <= lag_min <= ring.shape[2]:
        raise ValueError(f"lag_min must be in 1..{ring.shape[2]}, got {lag_min}")
    _family_d_update(
        w,
        delta,
        v,
        bets,
        int(lag_min),
        float(clip),
        int(window),
        ring,
        ring_win,
        w_state,
        run_start,
        log_m,
        lag_out,
    )


def family_d_state(
    n_shards: int, n_metrics: int, n_bets: int, ring: int = DEFAULT_RING, lag_min: int = DEFAULT_LAG_MIN
) -> tuple[F64, I64, F64, I64, F64, I64]:
    """Fresh state: (ring, ring_win, w_state, run_start, log_m, lag_out)."""
    s, m = n_shards, n_metrics
    return (
        np.full((s, m, ring), np.nan),
        np.full((s, m, ring), -1, np.int64),
        np.zeros((s, m, (ring - lag_min + 1) * n_bets)),
        np.zeros((s, m), np.int64),
        np.zeros((s, m)),
        np.zeros((s, m), np.int64),
    )


def warm_up() -> None:
    """Compile (or load from cache) every kernel signature used in production."""
    s, m = 2, 2
    bets = np.array(DEFAULT_BETS)
    w = np.zeros((s, m))
    w[0, 0] = np.nan
    family_d_update(
        w, np.zeros((s, m)), np.ones((s, m)), bets, DEFAULT_LAG_MIN, 4.0, 0, *family_d_state(s, m, bets.size)
    )
