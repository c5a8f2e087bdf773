"""Peer residuals: turn one window of raw values into standardised, pre-whitened innovations.

Per cohort (shards that should behave alike), per metric, per window:

1. ``c_t`` = median over the cohort's warm, fresh members of ``x_i - l_i`` (the offset-adjusted
   cross-section), so fleet-wide benign changes (a new batch size, diurnal load) cancel. Before enough
   members are warm, the median of raw ``x`` is used (bootstrap).
2. ``r_i = x_i - l_i - c_t``: the peer residual. ``l_i`` is the shard's persistent offset learned in
   warm-up as the median of ``x_i - c_t`` over ``warmup`` windows.
3. ``u_i = r_i - phi_i * r_i(prev)``: AR(1) pre-whitening with ``phi_i`` estimated from the warm-up
   (lag-1 autocorrelation with Kendall's small-sample bias correction), never given by an oracle.
4. ``w_i = u_i / s_i`` with ``s_i`` a robust (MAD) innovation scale with a resolution floor.
5. After warm-up, offset, scale and phi follow slow benign motion with half-life
   ``baseline_halflife_windows``, but never for streams that are alarmed or frozen by an event.

The composite null "|shift| <= delta_min" is stated in marginal sigmas; in innovation units the
steady-state margin is ``delta_min * sqrt((1 - phi) / (1 + phi))``.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tessera_daemon.detect.state import DetectorState

if TYPE_CHECKING:
    from tessera_daemon.config import DetectorConfig

F64 = npt.NDArray[np.float64]
BoolA = npt.NDArray[np.bool_]

MAD_TO_SD = 1.4826
LEARN_Z = 4.0  # windows with a larger |innovation| never teach the baseline
WINSOR = 6.0  # innovations beyond this many robust sigmas are winsorised when learning
DELTA_SE = 1.0  # margin added for offset estimation error, in standard errors (1/sqrt(n) innovation units)
V_SE = 1.0  # slack added to the second-moment bound for scale estimation error, x 1/sqrt(n)
RESOLUTION = 1e-3  # scale floor relative to the cohort level: quantised counters are not noise-free


@dataclass(frozen=True, slots=True)
class ResidualParams:
    warmup: int
    ar_max: float
    halflife: float  # windows; 0 freezes baselines after warm-up
    min_cohort: int
    delta_min: float  # marginal sigmas
    v_inflation: float  # null second-moment bound of a standardised innovation, before delta^2

    @classmethod
    def from_config(cls, d: DetectorConfig, v_inflation: float) -> ResidualParams:
        return cls(warmup=d.warmup_windows, ar_max=d.ar_max, halflife=d.baseline_halflife_windows,
                   min_cohort=d.min_cohort, delta_min=d.delta_min_sigma, v_inflation=v_inflation)


@dataclass(slots=True)
class ResidualOut:
    w: F64  # [S, M] standardised innovations (NaN: no update)
    delta: F64  # [S, M] composite-null margin in innovation units
    delta_min: F64  # [S, M] practical-significance part of delta alone (no estimation margin)
    v: F64  # [S, M] second-moment bound
    centre: F64  # [C, M] cohort centre this window


def _nanmedian(a: F64, axis: int) -> F64:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return np.asarray(np.nanmedian(a, axis=axis), dtype=np.float64)


def cohort_centres(
    state: DetectorState, x: F64, cohort_rows: list[npt.NDArray[np.int64]], min_cohort: int
) -> F64:
    """Robust cohort location per metric: median of offset-adjusted warm members (or raw, bootstrap)."""
    warm = state.warm()
    n_c, m = len(cohort_rows), x.shape[1]
    centre = np.full((n_c, m), np.nan)
    for c, rows in enumerate(cohort_rows):
        if rows.size == 0:
            continue
        xc = x[rows]
        adj = np.where(warm[rows], xc - state.offset[rows], np.nan)
        n_adj = np.sum(~np.isnan(adj), axis=0)
        n_raw = np.sum(~np.isnan(xc), axis=0)
        med_adj = _nanmedian(adj, 0)
        med_raw = _nanmedian(xc, 0)
        use_adj = n_adj >= min_cohort
        use_raw = ~use_adj & (n_raw >= min_cohort) & (n_adj == 0)
        centre[c] = np.where(use_adj, med_adj, np.where(use_raw, med_raw, np.nan))
    return centre


def _finish_warmup(state: DetectorState, done: BoolA, level: F64, p: ResidualParams) -> None:
    """Estimate offset, AR(1) coefficient and innovation scale for streams completing warm-up."""
    if not done.any():
        return
    d = state.buf[done].astype(np.float64)  # [n, B]
    offset = _nanmedian(d, 1)
    e = d - offset[:, None]
    sd0 = np.maximum(MAD_TO_SD * _nanmedian(np.abs(e), 1), 1e-12)
    ew = np.clip(e / sd0[:, None], -4.0, 4.0)  # winsorised for the autocorrelation estimate
    a, b = ew[:, 1:], ew[:, :-1]
    pair = ~(np.isnan(a) | np.isnan(b))
    num = np.where(pair, a * b, 0.0).sum(axis=1)
    den = np.where(pair, b * b, 0.0).sum(axis=1)
    n_pairs = pair.sum(axis=1)
    phi = np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)
    phi = phi + (1.0 + 3.0 * phi) / np.maximum(n_pairs, 1)  # Kendall's bias correction
    phi = np.clip(phi, -0.5, p.ar_max)
    u = e[:, 1:] - phi[:, None] * e[:, :-1]
    u_med = _nanmedian(u, 1)
    mad = MAD_TO_SD * _nanmedian(np.abs(u - u_med[:, None]), 1)
    cap = (WINSOR * np.maximum(mad, 1e-12)) ** 2
    rms = np.sqrt(np.nanmean(np.minimum(u * u, cap[:, None]), axis=1))  # second moment, not MAD
    floor = np.maximum(RESOLUTION * np.abs(level[done]), 1e-9)
    scale = np.maximum(np.nan_to_num(rms, nan=0.0), floor)
    state.offset[done] = np.nan_to_num(offset)
    state.phi[done] = phi
    state.scale[done] = scale
    state.ew_uu[done] = scale * scale
    marg = scale * scale / np.maximum(1.0 - phi * phi, 1e-3)
    state.ew_xx[done] = marg
    state.ew_xy[done] = phi * marg
    state.n_learn[done] = np.maximum(n_pairs, 1)


def residual_step(
    state: DetectorState,
    x: F64,
    cohort_of: npt.NDArray[np.int64],
    cohort_rows: list[npt.NDArray[np.int64]],
    frozen: BoolA,
    p: ResidualParams,
    centre: F64 | None = None,
) -> ResidualOut:
    """Update the residual model with one window ``x`` [S, M] (NaN: missing) and return innovations.

    ``cohort_rows`` lists the rows of each cohort that are fresh (not stale); ``frozen`` [S, M] marks
    streams whose baseline must not move this window (alarmed, or inside an event's freeze).
    ``centre`` [C, M] overrides the peer centre (e.g. zeros: each row against its own past only).
    """
    if centre is None:
        centre = cohort_centres(state, x, cohort_rows, p.min_cohort)
    c = centre[cohort_of] if len(cohort_rows) else np.full_like(x, np.nan)
    observed = ~np.isnan(x) & ~np.isnan(c)
    warm = state.warm()
    b = state.buf.shape[2]

    # warm-up: buffer x - c_t
    learning = observed & ~warm
    if learning.any():
        rows, cols = np.nonzero(learning)
        state.buf[rows, cols, state.n_warm[rows, cols]] = (x - c)[rows, cols]
        state.n_warm[rows, cols] += 1
        _finish_warmup(state, learning & (state.n_warm >= b), c, p)

    # innovations for streams that were warm at the start of this window
    active = observed & warm
    r = np.where(active, x - state.offset - c, np.nan)
    phi = state.phi
    has_prev = ~np.isnan(state.r_prev)
    u = np.where(has_prev, r - phi * np.nan_to_num(state.r_prev), r * np.sqrt(1.0 - phi * phi))
    w = u / state.scale
    inv_sqrt_n = 1.0 / np.sqrt(np.maximum(state.n_learn, 1))
    delta = p.delta_min * np.sqrt((1.0 - phi) / (1.0 + phi)) + DELTA_SE * inv_sqrt_n
    v = p.v_inflation + V_SE * inv_sqrt_n + delta * delta

    # baseline learning after warm-up: cumulative at first (rate 1/n), then exponential with the
    # configured half-life; never for streams that are alarmed or frozen, never from outliers
    if p.halflife > 0:
        follow = active & ~frozen & (np.abs(w) < LEARN_Z)
        if follow.any():
            eta = np.maximum(1.0 / (state.n_learn + 1.0), math.log(2.0) / p.halflife)
            eta = np.where(follow, eta, 0.0)
            rr = np.where(follow, r, 0.0)
            uu = np.where(follow, np.minimum(u * u, (WINSOR * state.scale) ** 2), 0.0)
            rp = np.nan_to_num(state.r_prev)
            both = follow & has_prev
            eb = np.where(both, eta, 0.0)
            state.offset += eta * rr
            state.ew_uu += eta * (uu - state.ew_uu)
            state.ew_xx += eb * (rp * rp - state.ew_xx)
            state.ew_xy += eb * (rr * rp - state.ew_xy)
            floor = np.maximum(RESOLUTION * np.abs(np.nan_to_num(c)), 1e-9)
            state.scale = np.where(follow, np.maximum(np.sqrt(state.ew_uu), floor), state.scale)
            est = state.ew_xy / np.maximum(state.ew_xx, 1e-300)
            state.phi = np.where(both, np.clip(est, -0.5, p.ar_max), state.phi)
            state.n_learn += follow

    state.r_prev = np.where(observed, np.where(active, r, np.nan), np.nan)
    state.last_x = np.where(observed, x, np.nan)
    state.last_r = r
    state.last_w = w
    return ResidualOut(w=w, delta=delta, delta_min=delta - DELTA_SE * inv_sqrt_n, v=v, centre=centre)
