"""Family E: conformal novelty e-detector per shard, against its cohort. Pure array code, no I/O.

One call per window updates every shard. Numba functions are opaque to mypy, so callers use the
typed wrapper ``family_e_update``; ``detect.reference_cde`` holds the NumPy twin (same signature).

Per window, for each shard i with a cohort (``cohort[i]`` in 0..n_cohorts-1) and at least one
observed metric:

    s_i  = sum over observed metrics of clip(w_im, -clip, clip)^2      (nonconformity score)
    G_i  = shards with the same cohort and the same number of observed metrics as i  (n = |G_i|)
    p_i  = (#{j in G_i: s_j > s_i} + U_i * #{j in G_i: s_j == s_i}) / n     (i counts in its own tie)
    W_k  = max(W_k, 0) + log(kappa_k) + (kappa_k - 1) log p_i              (e-CUSUM on kappa p^(kappa-1))
    logM = logsumexp_k(W_k) - log(K)

U_i in (0, 1) is a counter-based hash (splitmix64) of (seed, window, row): deterministic, identical in
the numba kernel and the NumPy twin, and independent of the data. If the scores of G_i are
exchangeable given the past (no shard's innovations are distinguishable from its peers'), p_i is
exactly uniform on (0, 1) given the past, kappa p^(kappa - 1) has conditional mean 1 for every kappa
in (0, 1), and every W_k (and the mixture) is an e-detector: alarm at logM >= log c gives average run
length >= c. Dependence between the shards of a window does not matter for one shard's guarantee.
See docs/statistics-cde.md.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from tessera_daemon.detect.kernels import F64, I64

DEFAULT_KAPPAS = (0.1, 0.2, 0.35, 0.5)

_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_MIX1 = np.uint64(0xBF58476D1CE4E5B9)
_MIX2 = np.uint64(0x94D049BB133111EB)
_S30 = np.uint64(30)
_S27 = np.uint64(27)
_S31 = np.uint64(31)
_S11 = np.uint64(11)
_TWO_M53 = 2.0**-53


@njit(cache=True, nogil=True, fastmath=False)
def _splitmix64(x: np.uint64) -> np.uint64:
    z = x + _GOLDEN
    z = (z ^ (z >> _S30)) * _MIX1
    z = (z ^ (z >> _S27)) * _MIX2
    return z ^ (z >> _S31)


@njit(cache=True, nogil=True, fastmath=False)
def _uniform(seed: np.uint64, window: int, row: int) -> float:
    """U in (0, 1) from (seed, window, row): splitmix64 twice, top 53 bits, centred in its cell."""
    h = _splitmix64(seed + _splitmix64(np.uint64(window)))
    h = _splitmix64(h + np.uint64(row))
    return (float(h >> _S11) + 0.5) * _TWO_M53


@njit(cache=True, nogil=True, fastmath=False)
def _scores(w: np.ndarray, cohort: np.ndarray, n_cohorts: int, clip: float, score: np.ndarray, grp: np.ndarray) -> None:
    """Score (sum of winsorised squares) and group (cohort x number observed, -1: none) per shard."""
    n_s, n_m = w.shape
    for i in range(n_s):
        grp[i] = -1
        c = cohort[i]
        if c < 0 or c >= n_cohorts:
            continue
        acc = 0.0
        cnt = 0
        for m in range(n_m):
            xi = w[i, m]
            if math.isnan(xi):
                continue
            xi = min(max(xi, -clip), clip)
            acc += xi * xi
            cnt += 1
        if cnt > 0:
            score[i] = acc
            grp[i] = c * (n_m + 1) + cnt


@njit(cache=True, nogil=True, fastmath=False)
def _group_order(grp: np.ndarray, n_g: int) -> tuple[np.ndarray, np.ndarray]:
    """Counting sort of the rows by group: (start offsets [n_g + 1], rows in group order)."""
    starts = np.zeros(n_g + 1, np.int64)
    for i in range(grp.shape[0]):
        if grp[i] >= 0:
            starts[grp[i] + 1] += 1
    for g in range(n_g):
        starts[g + 1] += starts[g]
    order = np.empty(starts[n_g], np.int64)
    fill = starts[:n_g].copy()
    for i in range(grp.shape[0]):
        g = grp[i]
        if g >= 0:
            order[fill[g]] = i
            fill[g] += 1
    return starts, order


@njit(cache=True, nogil=True, fastmath=False)
def _group_pvalues(rows: np.ndarray, score: np.ndarray, seed: np.uint64, window: int, p_out: np.ndarray) -> None:
    """Smoothed conformal p-values of one group: ties share (greater + U * ties) / n."""
    n = rows.shape[0]
    sc = score[rows]
    idx = np.argsort(sc)
    a = 0
    while a < n:
        b = a
        while b + 1 < n and sc[idx[b + 1]] == sc[idx[a]]:
            b += 1
        greater = n - b - 1
        ties = b - a + 1
        for r in range(a, b + 1):
            i = rows[idx[r]]
            p_out[i] = (greater + _uniform(seed, window, i) * ties) / n
        a = b + 1


@njit(cache=True, nogil=True, fastmath=False)
def _family_e_update(
    w: np.ndarray,  # float64[S, M] standardised innovations, NaN = no observation this window
    cohort: np.ndarray,  # int64[S] cohort index, -1 = none
    n_cohorts: int,
    kappas: np.ndarray,  # float64[K], each in (0, 1)
    clip: float,
    window: int,
    seed: np.uint64,
    w_state: np.ndarray,  # float64[S, K] log e-CUSUM values (in/out)
    run_start: np.ndarray,  # int64[S] window at which the current run began (in/out)
    log_m: np.ndarray,  # float64[S] mixture log evidence (in/out)
    p_out: np.ndarray,  # float64[S] conformal p-value this window, NaN = none (out)
) -> None:
    n_s, n_m = w.shape
    n_k = kappas.shape[0]
    log_norm = math.log(float(n_k))
    n_g = n_cohorts * (n_m + 1)
    score = np.zeros(n_s)
    grp = np.empty(n_s, np.int64)
    _scores(w, cohort, n_cohorts, clip, score, grp)
    starts, order = _group_order(grp, n_g)
    p_out[:] = np.nan
    for g in range(n_g):
        if starts[g + 1] > starts[g]:
            _group_pvalues(order[starts[g] : starts[g + 1]], score, seed, window, p_out)
    for i in range(n_s):
        p = p_out[i]
        if math.isnan(p):  # no cohort or no observation: carry state
            continue
        prev_max = -1e300
        for k in range(n_k):
            prev_max = max(prev_max, w_state[i, k])
        if prev_max <= 0.0:
            run_start[i] = window
        lp = math.log(p)
        best = -1e300
        for k in range(n_k):
            kap = kappas[k]
            ww = max(w_state[i, k], 0.0) + math.log(kap) + (kap - 1.0) * lp
            w_state[i, k] = ww
            best = max(best, ww)
        acc = 0.0
        for k in range(n_k):
            acc += math.exp(w_state[i, k] - best)
        log_m[i] = best + math.log(acc) - log_norm


def check_kappas(kappas: F64) -> None:
    """Every calibrator exponent must lie in (0, 1): kappa p^(kappa - 1) then has mean 1 under U(0, 1)."""
    if kappas.size == 0 or not bool(np.all((kappas > 0.0) & (kappas < 1.0))):
        raise ValueError(f"kappas must be a non-empty grid in (0, 1), got {kappas.tolist()}")


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
    """Typed wrapper: update Family E state in place for one window (see module docstring).

    ``seed`` is any integer (taken modulo 2^64); ``kappas`` must lie in (0, 1).
    """
    check_kappas(kappas)
    _family_e_update(
        w,
        cohort,
        int(n_cohorts),
        kappas,
        float(clip),
        int(window),
        np.uint64(int(seed) & 0xFFFFFFFFFFFFFFFF),
        w_state,
        run_start,
        log_m,
        p_out,
    )


def family_e_state(n_shards: int, n_kappas: int) -> tuple[F64, I64, F64, F64]:
    """Fresh state: (w_state, run_start, log_m, p_out)."""
    s = n_shards
    return np.zeros((s, n_kappas)), np.zeros(s, np.int64), np.zeros(s), np.full(s, np.nan)


def warm_up() -> None:
    """Compile (or load from cache) every kernel signature used in production."""
    s, m = 4, 2
    kappas = np.array(DEFAULT_KAPPAS)
    w = np.zeros((s, m))
    w[0, 0] = np.nan
    cohort = np.array([0, 0, 1, -1], np.int64)
    family_e_update(w, cohort, 2, kappas, 4.0, 0, 0, *family_e_state(s, kappas.size))
