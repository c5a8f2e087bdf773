"""NumPy twins of the numba kernels of Families C, D and E: same signatures, same results.

Written for clarity (vectorised over shards; the only Python loops run over metrics, lags or cohort
groups), used by the agreement tests and as the baseline the kernels are benchmarked against.
Sums over metrics and lags are accumulated in the kernels' order so the two agree to rounding.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from tessera_daemon.detect.family_c import (
    COV_HALFLIFE,
    COV_PRIOR_N,
    COV_SE,
    LEARN_BELOW_LOG,
    PRIOR_WEIGHT,
    VAR_FLOOR,
    VP_MIN,
)
from tessera_daemon.detect.family_e import check_kappas
from tessera_daemon.detect.kernels import F64, I64

BoolA = npt.NDArray[np.bool_]
U64 = npt.NDArray[np.uint64]

_ETA_MIN = math.log(2.0) / COV_HALFLIFE
_N_EFF_MAX = 2.0 * COV_HALFLIFE / math.log(2.0)

_MASK64 = 0xFFFFFFFFFFFFFFFF


def _logsumexp_rows(w_state: F64, axis: int) -> tuple[F64, I64]:
    """(max, argmax) and the log of the sum of exp(w - max), summed in index order like the kernels."""
    best_j = np.argmax(w_state, axis=axis)
    best = np.take_along_axis(w_state, np.expand_dims(best_j, axis), axis=axis).squeeze(axis)
    acc = np.zeros_like(best)
    for j in range(w_state.shape[axis]):
        acc = acc + np.exp(np.take(w_state, j, axis=axis) - best)
    return best + np.log(acc), best_j


# ---------------------------------------------------------------------------------------- Family C


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
    obs = ~np.isnan(w)
    n_obs = obs.sum(axis=1)
    rows = n_obs > 0
    if not rows.any():
        return
    n_m = w.shape[1]
    n_k = bets.shape[0]
    cl = np.maximum(clip, delta + 0.5 * clip)
    xc = np.clip(np.where(obs, w, 0.0), -cl, cl)
    reset = rows & (w_state.max(axis=1) <= 0.0)
    run_start[reset] = window
    theta_state[reset] = 0.0

    pw = PRIOR_WEIGHT / np.sqrt(np.maximum(n_obs, 1))
    u = np.where(obs, pw[:, None] + theta_state, 0.0)
    nrm2 = np.zeros(w.shape[0])
    for m in range(n_m):
        nrm2 = nrm2 + u[:, m] * u[:, m]
    bad = ~(nrm2 > 1e-300)
    if bad.any():
        u[bad] = np.where(obs[bad], pw[bad, None], 0.0)
        nrm2_bad = np.zeros(int(bad.sum()))
        for m in range(n_m):
            nrm2_bad = nrm2_bad + u[bad, m] * u[bad, m]
        nrm2[bad] = nrm2_bad
    u = u / np.sqrt(np.where(rows, nrm2, 1.0))[:, None]

    sd = np.sqrt(np.maximum(v, 0.0))
    g = np.zeros(w.shape[0])
    marg = np.zeros(w.shape[0])
    diag = np.zeros(w.shape[0])
    for m in range(n_m):
        o = obs[:, m]
        g = g + np.where(o, u[:, m] * xc[:, m], 0.0)
        marg = marg + np.where(o, np.abs(u[:, m]) * delta[:, m], 0.0)
        diag = diag + np.where(o, u[:, m] * u[:, m] * v[:, m], 0.0)
    off = np.zeros(w.shape[0])
    for a in range(n_m):
        for b in range(a + 1, n_m):
            both = obs[:, a] & obs[:, b]
            uu = u[:, a] * u[:, b]
            worst = np.abs(uu) * sd[:, a] * sd[:, b]
            n = n_state[:, a, b]
            nf = n.astype(np.float64)
            shrink = nf / (nf + COV_PRIOR_N)
            n_eff = np.minimum(nf, _N_EFF_MAX)
            est = np.minimum(uu * cov_state[:, a, b] + COV_SE / np.sqrt(np.maximum(n_eff, 1.0)) * worst, worst)
            term = np.where(n > 0, 2.0 * ((1.0 - shrink) * worst + shrink * est), 2.0 * worst)
            off = off + np.where(both, term, 0.0)
    vp = np.maximum(np.maximum(diag + off, VAR_FLOOR * diag), VP_MIN)
    sp = np.sqrt(np.where(rows, vp, 1.0))
    z = g / sp
    dn = marg / sp

    lam = bets[None, :]
    norm = np.log1p(lam * dn[:, None] + 0.5 * lam * lam)  # [S, K]
    y = lam * np.abs(z)[:, None]
    phi = np.log1p(y + 0.5 * y * y)
    phi = np.where(z[:, None] < 0.0, -phi, phi)
    inc = np.stack([phi - norm, -phi - norm], axis=2).reshape(w.shape[0], 2 * n_k)
    new_w = np.maximum(w_state, 0.0) + inc
    w_state[rows] = new_w[rows]

    learn = rows & (log_m < LEARN_BELOW_LOG)
    pair = obs[:, :, None] & obs[:, None, :] & learn[:, None, None]
    eta = np.maximum(1.0 / (n_state + 1.0), _ETA_MIN)
    prod = xc[:, :, None] * xc[:, None, :]
    cov_state[pair] = (cov_state + eta * (prod - cov_state))[pair]
    n_state[pair] += 1
    theta_state += np.where(obs, xc, 0.0)

    lm, best_j = _logsumexp_rows(w_state, axis=1)
    log_m[rows] = lm[rows] - np.log(2.0 * n_k)
    side[rows] = np.where(best_j[rows] % 2 == 0, 1, -1)


# ---------------------------------------------------------------------------------------- Family D


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
    if not 1 <= lag_min <= ring.shape[2]:
        raise ValueError(f"lag_min must be in 1..{ring.shape[2]}, got {lag_min}")
    obs = ~np.isnan(w)
    if not obs.any():
        return
    n_r = ring.shape[2]
    n_k = bets.shape[0]
    n_lags = n_r - lag_min + 1
    xc = np.clip(np.where(obs, w, 0.0), -clip, clip)

    def lagged(k: int) -> tuple[F64, BoolA]:
        slot = (window - k) % n_r
        val = ring[:, :, slot]
        return val, (ring_win[:, :, slot] == window - k) & ~np.isnan(val)

    total = np.zeros(w.shape)
    cnt = np.zeros(w.shape, np.int64)
    for k in range(1, n_r + 1):
        val, ok = lagged(k)
        total = total + np.where(ok, val, 0.0)
        cnt += ok
    mbar = np.where(cnt > 0, total / np.maximum(cnt, 1), 0.0)
    run_start[obs & (w_state.max(axis=2) <= 0.0)] = window

    lam = bets[None, None, :]
    for li in range(n_lags):
        val, ok = lagged(lag_min + li)
        upd = obs & ok
        a = np.where(upd, val - mbar, 0.0)[..., None]
        norm = np.log1p(lam * np.abs(a) * delta[..., None] + 0.5 * lam * lam * a * a * v[..., None])
        y = lam * a * xc[..., None]
        phi = np.log1p(np.abs(y) + 0.5 * y * y)
        phi = np.where(y < 0.0, -phi, phi)
        sl = slice(li * n_k, (li + 1) * n_k)
        new_w = np.maximum(w_state[:, :, sl], 0.0) + phi - norm
        w_state[:, :, sl] = np.where(upd[..., None], new_w, w_state[:, :, sl])

    lm, best_j = _logsumexp_rows(w_state, axis=2)
    log_m[obs] = lm[obs] - np.log(float(n_lags * n_k))
    lag_out[obs] = lag_min + best_j[obs] // n_k
    slot = window % n_r
    ring[:, :, slot] = np.where(obs, xc, ring[:, :, slot])
    ring_win[:, :, slot] = np.where(obs, window, ring_win[:, :, slot])


# ---------------------------------------------------------------------------------------- Family E


def _splitmix64(x: U64) -> U64:
    z = x + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    out: U64 = z ^ (z >> np.uint64(31))
    return out


def uniforms(seed: int, window: int, rows: I64) -> F64:
    """The kernel's tie-breaking uniforms U in (0, 1) for (seed, window, row), vectorised over rows."""
    s = np.array([seed & _MASK64], np.uint64)
    wv = np.array([window], np.int64).view(np.uint64)
    h = _splitmix64(s + _splitmix64(wv))
    h = _splitmix64(h + rows.astype(np.int64).view(np.uint64))
    out: F64 = ((h >> np.uint64(11)).astype(np.float64) + 0.5) * 2.0**-53
    return out


def family_e_update(
    w: F64,
    cohort: I64,
    n_cohorts: int,
    kappas: F64,
    clip: float,
    window: int,
    seed: int,
    w_state: F64,
    run_start: I64,
    log_m: F64,
    p_out: F64,
) -> None:
    check_kappas(kappas)
    n_s, n_m = w.shape
    obs = ~np.isnan(w)
    xc = np.clip(np.where(obs, w, 0.0), -clip, clip)
    score = np.zeros(n_s)
    for m in range(n_m):
        score = score + np.where(obs[:, m], xc[:, m] * xc[:, m], 0.0)
    cnt = obs.sum(axis=1)
    valid = (cohort >= 0) & (cohort < n_cohorts) & (cnt > 0)
    p_out[:] = np.nan
    rows = np.nonzero(valid)[0]
    if rows.size == 0:
        return
    grp = cohort[rows] * (n_m + 1) + cnt[rows]
    sc = score[rows]
    order = np.lexsort((sc, grp))
    g_s, s_s, r_s = grp[order], sc[order], rows[order]
    n_v = rows.size
    pos = np.arange(n_v)
    new_grp = np.r_[True, g_s[1:] != g_s[:-1]]
    new_run = new_grp | np.r_[True, s_s[1:] != s_s[:-1]]
    grp_start = np.maximum.accumulate(np.where(new_grp, pos, 0))
    run_start_pos = np.maximum.accumulate(np.where(new_run, pos, 0))
    end_grp = np.r_[new_grp[1:], True]
    end_run = np.r_[new_run[1:], True]
    grp_end = np.minimum.accumulate(np.where(end_grp, pos, n_v)[::-1])[::-1]  # last index of the group
    run_end = np.minimum.accumulate(np.where(end_run, pos, n_v)[::-1])[::-1]
    n = grp_end - grp_start + 1
    greater = grp_end - run_end
    ties = run_end - run_start_pos + 1
    u = uniforms(seed, window, r_s)
    p_out[r_s] = (greater + u * ties) / n

    p = p_out[rows]
    reset = w_state[rows].max(axis=1) <= 0.0
    run_start[rows[reset]] = window
    lp = np.log(p)
    new_w = np.maximum(w_state[rows], 0.0) + np.log(kappas)[None, :] + (kappas[None, :] - 1.0) * lp[:, None]
    w_state[rows] = new_w
    lm, _ = _logsumexp_rows(new_w, axis=1)
    log_m[rows] = lm - np.log(float(kappas.shape[0]))
