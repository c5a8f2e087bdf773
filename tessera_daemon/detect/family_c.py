"""Family C: multivariate e-detector per shard, all metrics jointly. Pure array code, no I/O.

One call per window updates every shard. Numba functions are opaque to mypy, so callers use the
typed wrapper ``family_c_update``; ``detect.reference_cde`` holds the NumPy twin (same signature).

For a shard with standardised innovations w [M] (NaN: metric not observed this window), winsorised
at +-clip to x [M], and only the observed metrics taken into account:

    theta = PRIOR_WEIGHT / sqrt(M_obs) * 1 + (sum of x over the current e-CUSUM run)   (predictable)
    u     = theta / ||theta||                                     (unit direction, observed metrics)
    V     = sum_m u_m^2 v_m + sum_{a != b} B_ab                   (predictable bound on E[<u, x>^2])
    B_ab  = (1 - r) |u_a u_b| s_a s_b + r min(u_a u_b C_ab + eps |u_a u_b| s_a s_b, |u_a u_b| s_a s_b)
    z     = <u, x> / sqrt(V),  d = sum_m |u_m| delta_m / sqrt(V)
    then per bet lambda_k and side s, exactly Family A's Catoni e-CUSUM with second moment 1:
    W_ks  = max(W_ks, 0) + phi(lambda_k s z) - log(1 + lambda_k d + lambda_k^2 / 2)
    logM  = logsumexp_ks(W_ks) - log(2K)

with s_m = sqrt(v_m), C_ab an estimate of E[x_a x_b] (cumulative, then exponentially weighted with
half-life COV_HALFLIFE) learned from past windows while the shard's evidence is low,
r = n / (n + COV_PRIOR_N) (n: windows behind C_ab) and eps = COV_SE / sqrt(n_eff). Before anything is
learned V is the worst case over every correlation, (sum_m |u_m| s_m)^2 (Cauchy-Schwarz), so C is
conservative when it knows nothing.

Everything on the right of z and d depends on the past only, so under the null (per metric
|E[x_m | past]| <= delta_m and E[x_m^2 | past] <= v_m) and whenever V bounds E[<u, x>^2 | past],
each exp(increment) has conditional mean <= 1 (exp(phi(y)) <= 1 + y + y^2 / 2) and the mixture is
an e-detector: alarming at logM >= log c gives average run length >= c. See docs/statistics-cde.md.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tessera_daemon.detect.kernels import F64, I64

DEFAULT_BETS = (0.1, 0.25, 0.5, 1.0, 1.5)
PRIOR_WEIGHT = 1.0  # pseudo-sum (innovation units) of the prior direction 1/sqrt(M_obs) * ones
COV_HALFLIFE = 500.0  # windows: half-life of the cross-moment estimate once past 1/n learning
COV_PRIOR_N = 30.0  # pseudo-windows of the worst-case (perfect) correlation prior
COV_SE = 1.0  # slack on a learned cross moment, x s_a s_b / sqrt(n_eff)
VAR_FLOOR = 0.1  # the projected bound is never below this fraction of its independent-metrics value
VP_MIN = 1e-12  # absolute floor of the projected bound (only reached with a degenerate v = 0)
LEARN_BELOW_LOG = 1.0  # cross moments learn only from windows whose previous evidence is below this

_LN2 = math.log(2.0)
_ETA_MIN = _LN2 / COV_HALFLIFE
_N_EFF_MAX = 2.0 * COV_HALFLIFE / _LN2


@njit(cache=True, nogil=True, fastmath=False)
def _load(w_row: np.ndarray, d_row: np.ndarray, clip: float, xc: np.ndarray, obs: np.ndarray) -> int:
    """Winsorise one shard's innovations into xc (at +-max(clip, delta + clip / 2), as Family A), mark
    the observed ones; return how many."""
    n_obs = 0
    for m in range(w_row.shape[0]):
        xi = w_row[m]
        if math.isnan(xi):
            obs[m] = False
            xc[m] = 0.0
            continue
        obs[m] = True
        cl = max(clip, d_row[m] + 0.5 * clip)
        xc[m] = min(max(xi, -cl), cl)
        n_obs += 1
    return n_obs


@njit(cache=True, nogil=True, fastmath=False)
def _direction(theta_row: np.ndarray, obs: np.ndarray, n_obs: int, u: np.ndarray) -> None:
    """Unit direction: prior ones / sqrt(M_obs) plus the run's sum, restricted to observed metrics."""
    n_m = theta_row.shape[0]
    pw = PRIOR_WEIGHT / math.sqrt(n_obs)
    nrm2 = 0.0
    for m in range(n_m):
        u[m] = pw + theta_row[m] if obs[m] else 0.0
        nrm2 += u[m] * u[m]
    if not nrm2 > 1e-300:
        nrm2 = 0.0
        for m in range(n_m):
            u[m] = pw if obs[m] else 0.0
            nrm2 += u[m] * u[m]
    nrm = math.sqrt(nrm2)
    for m in range(n_m):
        u[m] = u[m] / nrm


@njit(cache=True, nogil=True, fastmath=False)
def _off_diagonal(u: np.ndarray, obs: np.ndarray, sd: np.ndarray, cov_row: np.ndarray, n_row: np.ndarray) -> float:
    """sum_{a != b} B_ab: learned cross moments, shrunk toward the worst case, never above it."""
    n_m = u.shape[0]
    off = 0.0
    for a in range(n_m):
        if not obs[a]:
            continue
        for b in range(a + 1, n_m):
            if not obs[b]:
                continue
            uu = u[a] * u[b]
            worst = abs(uu) * sd[a] * sd[b]
            n = n_row[a, b]
            if n > 0:
                shrink = n / (n + COV_PRIOR_N)
                n_eff = min(float(n), _N_EFF_MAX)
                est = min(uu * cov_row[a, b] + COV_SE / math.sqrt(n_eff) * worst, worst)
                off += 2.0 * ((1.0 - shrink) * worst + shrink * est)
            else:
                off += 2.0 * worst
    return off


@njit(cache=True, nogil=True, fastmath=False)
def _learn(xc: np.ndarray, obs: np.ndarray, cov_row: np.ndarray, n_row: np.ndarray) -> None:
    """Cumulative (1/n), then exponential update of the cross second moments of observed pairs."""
    n_m = xc.shape[0]
    for a in range(n_m):
        if not obs[a]:
            continue
        for b in range(a, n_m):
            if not obs[b]:
                continue
            n = n_row[a, b]
            eta = max(1.0 / (n + 1.0), _ETA_MIN)
            c = cov_row[a, b] + eta * (xc[a] * xc[b] - cov_row[a, b])
            cov_row[a, b] = c
            cov_row[b, a] = c
            n_row[a, b] = n + 1
            n_row[b, a] = n + 1


@njit(cache=True, nogil=True, fastmath=False)
def _catoni_two_sided(z: float, dn: float, bets: np.ndarray, w_row: np.ndarray) -> int:
    """Family A's two-sided Catoni e-CUSUM step with unit second moment; return the best component."""
    best = -1e300
    best_j = 0
    az = abs(z)
    for k in range(bets.shape[0]):
        lam = bets[k]
        norm = math.log1p(lam * dn + 0.5 * lam * lam)
        y = lam * az
        phi = math.log1p(y + 0.5 * y * y)
        if z < 0.0:
            phi = -phi
        for s in range(2):
            j = 2 * k + s
            ww = max(w_row[j], 0.0)
            ww += (phi if s == 0 else -phi) - norm
            w_row[j] = ww
            if ww > best:
                best = ww
                best_j = j
    return best_j


@njit(cache=True, nogil=True, fastmath=False)
def _family_c_update(
    w: np.ndarray,  # float64[S, M] standardised innovations, NaN = no observation this window
    delta: np.ndarray,  # float64[S, M] composite-null margin in innovation units
    v: np.ndarray,  # float64[S, M] null second-moment bound
    bets: np.ndarray,  # float64[K]
    clip: float,
    window: int,
    theta_state: np.ndarray,  # float64[S, M] sum of x over the current run (in/out)
    cov_state: np.ndarray,  # float64[S, M, M] learned cross second moments E[x_a x_b] (in/out)
    n_state: np.ndarray,  # int64[S, M, M] windows behind each cross moment (in/out)
    w_state: np.ndarray,  # float64[S, 2K] log e-CUSUM values (in/out)
    run_start: np.ndarray,  # int64[S] window at which the current run began (in/out)
    log_m: np.ndarray,  # float64[S] mixture log evidence (in/out)
    side: np.ndarray,  # int64[S] +1 / -1: side of the strongest component (out)
) -> None:
    n_s, n_m = w.shape
    n_c = 2 * bets.shape[0]
    log_norm = math.log(float(n_c))
    xc = np.zeros(n_m)
    u = np.zeros(n_m)
    sd = np.zeros(n_m)
    obs = np.zeros(n_m, np.bool_)
    for i in range(n_s):
        n_obs = _load(w[i], delta[i], clip, xc, obs)
        if n_obs == 0:  # no observation: carry state
            continue
        prev_max = -1e300
        for j in range(n_c):
            prev_max = max(prev_max, w_state[i, j])
        if prev_max <= 0.0:  # a new run: forget the direction learned in the last one
            run_start[i] = window
            for m in range(n_m):
                theta_state[i, m] = 0.0
        _direction(theta_state[i], obs, n_obs, u)
        g = 0.0
        marg = 0.0
        diag = 0.0
        for m in range(n_m):
            sd[m] = math.sqrt(max(v[i, m], 0.0))
            if obs[m]:
                g += u[m] * xc[m]
                marg += abs(u[m]) * delta[i, m]
                diag += u[m] * u[m] * v[i, m]
        vp = max(diag + _off_diagonal(u, obs, sd, cov_state[i], n_state[i]), VAR_FLOOR * diag, VP_MIN)
        sp = math.sqrt(vp)
        best_j = _catoni_two_sided(g / sp, marg / sp, bets, w_state[i])
        if log_m[i] < LEARN_BELOW_LOG:  # gate on the evidence before this window: predictable
            _learn(xc, obs, cov_state[i], n_state[i])
        for m in range(n_m):
            if obs[m]:
                theta_state[i, m] += xc[m]
        best = w_state[i, best_j]
        acc = 0.0
        for j in range(n_c):
            acc += math.exp(w_state[i, j] - best)
        log_m[i] = best + math.log(acc) - log_norm
        side[i] = 1 if best_j % 2 == 0 else -1


def family_c_update(
    w: F64,
    delta: F64,
    v: F64,
    bets: F64,
    clip: float,
    window: int,
    theta_state: F64,
    cov_state: F64,
    n_state: I64,
    w_state: F64,
    run_start: I64,
    log_m: F64,
    side: I64,
) -> None:
    """Typed wrapper: update Family C state in place for one window (see module docstring)."""
    _family_c_update(
        w,
        delta,
        v,
        bets,
        float(clip),
        int(window),
        theta_state,
        cov_state,
        n_state,
        w_state,
        run_start,
        log_m,
        side,
    )


def family_c_state(n_shards: int, n_metrics: int, n_bets: int) -> tuple[F64, F64, I64, F64, I64, F64, I64]:
    """Fresh state: (theta_state, cov_state, n_state, w_state, run_start, log_m, side)."""
    s, m = n_shards, n_metrics
    return (
        np.zeros((s, m)),
        np.zeros((s, m, m)),
        np.zeros((s, m, m), np.int64),
        np.zeros((s, 2 * n_bets)),
        np.zeros(s, np.int64),
        np.zeros(s),
        np.zeros(s, np.int64),
    )


def warm_up() -> None:
    """Compile (or load from cache) every kernel signature used in production."""
    s, m = 2, 3
    bets = np.array(DEFAULT_BETS)
    w = np.zeros((s, m))
    w[0, 0] = np.nan
    family_c_update(w, np.zeros((s, m)), np.ones((s, m)), bets, 4.0, 0, *family_c_state(s, m, bets.size))
