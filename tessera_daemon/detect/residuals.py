"""Peer residuals: turn one window of raw values into standardised, pre-whitened innovations.

Per cohort (shards that should behave alike), per metric, per window:

1. ``c_t`` = median over the cohort's warm, fresh members of ``x_i - l_i`` (the offset-adjusted
   cross-section), so fleet-wide benign changes (a new batch size, diurnal load) cancel. Before enough
   members are warm, the median of raw ``x`` is used (bootstrap).
2. ``r_i = x_i - l_i - c_t``: the peer residual. ``l_i`` is the shard's persistent offset learned in
   warm-up as the median of ``x_i - c_t`` over the stream's warm-up windows.
3. ``u_i = r_i - phi_i * r_i(prev)``: AR(1) pre-whitening with ``phi_i`` estimated from the warm-up
   (lag-1 autocorrelation with Kendall's small-sample bias correction), never given by an oracle.

   The warm-up is adaptive: a stream is warm at the first ``n >= warmup`` (the minimum) where
   ``n (1 - phi_up) >= persistence``, or at ``n = warmup_max``. ``phi_up`` is that same estimate
   ``phi_n`` on the stream's first ``n`` windows read ``WARMUP_Z`` standard errors high,
   ``min(ar_max, phi_n + WARMUP_Z sqrt((1 - phi_n^2) / n))``. The offset's estimation error is a
   bias of about ``1/sqrt(n)`` (innovation units) that persists for about ``1/(1 - phi)`` windows,
   so what must be large is ``n (1 - phi)``, the number of effectively independent warm-up
   windows: low-phi streams are warm after the minimum, streams near a unit root take longer. The
   bound is read high because the rule stops on its own estimate, checked every window: with
   ``phi_n`` itself a persistent stream stops exactly when a short sample happens to look
   uncorrelated, which is when its offset and scale are worst (R79 at rho 0.95: 45/2000 null false
   fires with ``phi_n``, 10/2000 with ``phi_up``; docs/statistics.md, "Warm-up length").
4. ``w_i = u_i / s_i`` with ``s_i`` the winsorised RMS innovation scale with a resolution floor.

   When a peer-residual stream finishes its warm-up, its ``phi`` and then its log scale are shrunk
   toward its cohort's fits for the same metric (empirical Bayes, :func:`_pooled`): a short warm-up
   can look uncorrelated, calm and off-level at once by chance, and alike peers say how likely that
   is. Offsets are never pooled.
5. After warm-up, offset, scale and phi follow slow benign motion with half-life
   ``baseline_halflife_windows``, but never for streams that are alarmed or frozen by an event.

The composite null "|shift| <= delta_min" is stated in marginal sigmas; in innovation units the
steady-state margin is ``delta_min * sqrt((1 - phi) / (1 + phi))``, plus ``DELTA_SE / sqrt(n)`` for
the offset's estimation error. The second-moment bound is ``1 + V_SE / sqrt(n) + delta^2`` for a
stream with no autocorrelation, rising linearly in ``phi`` to ``V_AR_CAP`` at ``ar_max``: with
persistent noise an error in ``phi`` leaves a slowly wandering mean in the innovations
(``(phi - phi_hat) r_prev``, lasting ``1/(1 - phi)`` windows) that the slack must cover, while an
uncorrelated stream's innovation is its own residual and needs none.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt

from tessera_daemon.detect.quiet import quiet_runtime_warnings
from tessera_daemon.detect.state import DetectorState

if TYPE_CHECKING:
    from tessera_daemon.config import DetectorConfig

F64 = npt.NDArray[np.float64]
BoolA = npt.NDArray[np.bool_]

MAD_TO_SD = 1.4826
LEARN_Z = 4.0  # windows with a larger |innovation| never teach the baseline
WINSOR = 6.0  # innovations beyond this many robust sigmas are winsorised when learning
WINSOR_RMS = 3.0  # ... but never below this many plain RMS (quantised readings have a near-zero MAD)
MAX_LAGGED = 1e150  # |r_prev| beyond this would overflow the AR(1) moments (rp * rp)
DELTA_SE = 1.0  # margin added for offset estimation error, in standard errors (1/sqrt(n) innovation units)
V_SE = 1.0  # slack added to the second-moment bound for scale estimation error, x 1/sqrt(n)
V_AR_CAP = 1.4  # null second-moment bound of an innovation at phi = ar_max (1 at phi <= 0; linear between)
WARMUP_Z = 3.0  # the warm-up rule reads phi at this many standard errors above its estimate
POOL_MIN = 5  # fewest warm-up fits in a cohort (per metric) to pool a stream's phi and scale with
RESOLUTION = 1e-3  # scale floor relative to the cohort level: quantised counters are not noise-free
FIT_CHUNK = 1 << 15  # warm-up streams fitted at once (bounds the float64 copies: 32k x 240 x 8 B = 63 MB each)


@dataclass(frozen=True, slots=True)
class ResidualParams:
    warmup: int  # fewest warm-up windows
    ar_max: float
    halflife: float  # windows; 0 freezes baselines after warm-up
    min_cohort: int
    delta_min: float  # marginal sigmas
    v_inflation: float  # null second-moment bound of a standardised innovation at phi = ar_max (see v)
    warmup_max: int = 0  # most warm-up windows (the buffer depth); 0: ``warmup`` (a fixed warm-up)
    persistence: float = 0.0  # warm once n (1 - phi_up) reaches this (after ``warmup`` windows); 0: fixed
    # material effect size per metric column (detector.material): absolute units + relative to the level;
    # log-scale columns take both relative to the level (empty: no material margin, sigma margin only)
    material_abs: tuple[float, ...] = ()
    material_rel: tuple[float, ...] = ()
    material_log: tuple[bool, ...] = ()

    @classmethod
    def from_config(cls, d: DetectorConfig, v_inflation: float = V_AR_CAP) -> ResidualParams:
        from tessera_daemon.config import parse_material  # noqa: PLC0415 - config imports nothing from here

        table = parse_material(d.material)
        wild = table.get("*", (0.0, False))
        spec = [table.get(m, wild) for m in d.metrics]
        return cls(
            warmup=d.warmup_windows,
            ar_max=d.ar_max,
            halflife=d.baseline_halflife_windows,
            min_cohort=d.min_cohort,
            delta_min=d.delta_min_sigma,
            v_inflation=v_inflation,
            warmup_max=d.warmup_max_windows,
            persistence=d.warmup_persistence,
            material_abs=tuple(0.0 if rel else v for v, rel in spec),
            material_rel=tuple(v if rel else 0.0 for v, rel in spec),
            material_log=tuple(m in d.log_metrics for m in d.metrics),
        )

    def material_units(self, level: F64) -> F64 | None:
        """Material margin [S, M] in the analysed units at ``level`` [S, M] (None: no margins set)."""
        if not self.material_abs or not (any(self.material_abs) or any(self.material_rel)):
            return None
        if level.shape[-1] != len(self.material_abs):
            return None  # columns that are not the configured metrics (trials of a matrix): sigma margins only
        a, r = np.asarray(self.material_abs), np.asarray(self.material_rel)
        lin = a + r * np.abs(level)
        with np.errstate(over="ignore", invalid="ignore"):
            logm = np.log1p(r + a * np.exp(-np.clip(level, -700.0, 700.0)))
        out: F64 = np.where(np.asarray(self.material_log, np.bool_), logm, lin)
        return out

    @property
    def buffer(self) -> int:
        """Warm-up buffer depth a ``DetectorState`` needs: the longest warm-up."""
        return max(self.warmup, self.warmup_max)


@dataclass(slots=True)
class ResidualOut:
    w: F64  # [S, M] standardised innovations (NaN: no update)
    delta: F64  # [S, M] composite-null margin in innovation units
    delta_min: F64  # [S, M] practical-significance part of delta alone (no estimation margin)
    material: F64  # [S, M] the material-effect part of delta_min (innovation units; 0: none)
    margin: F64  # [S, M] where the material margin dominates: the margin Family A's bets are centred on
    delta_a: F64  # [S, M] Family A's mean bound beyond ``margin`` (delta - margin)
    v_a: F64  # [S, M] Family A's second-moment bound beyond ``margin``
    v: F64  # [S, M] second-moment bound
    centre: F64  # [C, M] cohort centre this window


def _nanmedian(a: F64, axis: int) -> F64:
    with quiet_runtime_warnings():
        return np.asarray(np.nanmedian(a, axis=axis), dtype=np.float64)


def cohort_centres(state: DetectorState, x: F64, cohort_rows: list[npt.NDArray[np.int64]], min_cohort: int) -> F64:
    """Robust cohort location per metric: median of offset-adjusted warm members (or raw, bootstrap)."""
    return _centres(state, x, cohort_rows, min_cohort)[0]


def _centres(
    state: DetectorState,
    x: F64,
    cohort_rows: list[npt.NDArray[np.int64]],
    min_cohort: int,
    suspect: BoolA | None = None,
) -> tuple[F64, BoolA]:
    """(centre [C, M], whether it is the offset-adjusted median of warm members [C, M]).

    With fewer than ``min_cohort`` warm members reporting, the centre is the raw median (bootstrap):
    members still warming keep buffering against it (warm-up ends at different windows for different
    streams, so a cohort passes through this state), while the few warm members wait: their offsets
    are only meaningful against the adjusted median, so they get no innovation until it exists.
    """
    warm = state.warm()
    n_c, m = len(cohort_rows), x.shape[1]
    centre = np.full((n_c, m), np.nan)
    adjusted = np.zeros((n_c, m), np.bool_)
    for c, rows in enumerate(cohort_rows):
        if rows.size == 0:
            continue
        xc = x[rows]
        adj = np.where(warm[rows], xc - state.offset[rows], np.nan)
        if suspect is not None:  # leave suspects out while enough members remain
            trusted = np.where(suspect[rows], np.nan, adj)
            enough = np.sum(~np.isnan(trusted), axis=0) >= min_cohort
            adj = np.where(enough[None, :], trusted, adj)
        n_adj = np.sum(~np.isnan(adj), axis=0)
        n_raw = np.sum(~np.isnan(xc), axis=0)
        med_adj = _nanmedian(adj, 0)
        med_raw = _nanmedian(xc, 0)
        use_adj = n_adj >= min_cohort
        use_raw = ~use_adj & (n_raw >= min_cohort)
        centre[c] = np.where(use_adj, med_adj, np.where(use_raw, med_raw, np.nan))
        adjusted[c] = use_adj
    return centre, adjusted


@dataclass(slots=True)
class _Fit:
    """The warm-up estimates of some streams, from their first ``n`` buffered windows."""

    e: F64  # [k, n] deviations from the offset
    offset: F64  # [k]
    phi: F64  # [k] Kendall-corrected lag-1 coefficient, clipped to [-0.5, ar_max]
    n_pairs: npt.NDArray[np.int64]  # [k]


def _median(a: F64) -> F64:
    """Row medians; the plain (faster) median where nothing is missing. No columns: NaN."""
    if a.shape[1] == 0:
        return np.full(a.shape[0], np.nan)
    if np.isnan(a).any():
        return _nanmedian(a, 1)
    return np.asarray(np.median(a, axis=1), dtype=np.float64)


def _fit(d: F64, ar_max: float) -> _Fit:
    """Offset (median) and AR(1) coefficient of warm-up deviations ``d`` [k, n] (NaN: none)."""
    offset = _median(d)
    e = d - offset[:, None]
    sd0 = np.maximum(MAD_TO_SD * _median(np.abs(e)), 1e-12)
    ew = np.clip(e / sd0[:, None], -4.0, 4.0)  # winsorised for the autocorrelation estimate
    a, b = ew[:, 1:], ew[:, :-1]
    if np.isnan(ew).any():
        pair = ~(np.isnan(a) | np.isnan(b))
        a, b = np.where(pair, a, 0.0), np.where(pair, b, 0.0)
        n_pairs = pair.sum(axis=1)
    else:  # the usual case (a warm-up buffer is filled without gaps): no masks
        n_pairs = np.full(d.shape[0], a.shape[1], np.int64)
    num = np.einsum("ij,ij->i", a, b)
    den = np.einsum("ij,ij->i", b, b)
    phi = np.where(den > 0, num / np.maximum(den, 1e-300), 0.0)
    phi = phi + (1.0 + 3.0 * phi) / np.maximum(n_pairs, 1)  # Kendall's bias correction
    phi = np.clip(phi, -0.5, ar_max)
    return _Fit(e, offset, phi, n_pairs)


def _innovation_scale(e: F64, phi: F64) -> tuple[F64, F64]:
    """(innovation scale, sampling variance of its log) of warm-up deviations ``e`` [k, n] under ``phi``.

    The scale is the root of the winsorised second moment (not a MAD: the bound ``v`` is on the second
    moment); the variance of its log is the delta method's ``var(u^2) / (4 n E[u^2]^2)``, so heavy
    tails make it larger.
    """
    u = e[:, 1:] - phi[:, None] * e[:, :-1]
    u_med = _median(u)
    mad = MAD_TO_SD * _median(np.abs(u - u_med[:, None]))
    # quantised readings (integer degrees, 15 MHz clock bins) make most innovations 0 and the MAD tiny:
    # never winsorise below WINSOR_RMS x the plain RMS, or the scale misses the steps that are the noise
    with quiet_runtime_warnings():
        rms = np.sqrt(np.nan_to_num(np.nanmean(u * u, axis=1), nan=0.0))
    cap = np.maximum(WINSOR * np.maximum(mad, 1e-12), WINSOR_RMS * rms) ** 2
    uw = np.minimum(u * u, cap[:, None])
    with quiet_runtime_warnings():  # a stream with a single window has no pair
        m2 = np.nanmean(uw, axis=1)
        n = np.sum(~np.isnan(uw), axis=1)
        se2 = np.nanvar(uw, axis=1) / (4.0 * np.maximum(n, 1) * np.maximum(m2 * m2, 1e-300))
    return np.sqrt(np.nan_to_num(m2, nan=0.0)), np.nan_to_num(se2, nan=np.inf)


def _pooled(
    est: F64,
    se2: F64,
    cohort_of: npt.NDArray[np.int64],
    rows: npt.NDArray[np.intp],
    cols: npt.NDArray[np.intp],
    min_members: int,
) -> F64:
    """Empirical-Bayes shrinkage of the fits ``est[rows, cols]`` towards their cohort's.

    Per (cohort, metric), over the members with a fit: the prior is their median, and the spread of
    true values ``tau^2`` is their robust variance (MAD) less their median sampling variance. A
    stream's estimate moves to ``prior + tau^2 / (tau^2 + se2) (est - prior)``: all the way when the
    members' estimates differ no more than sampling noise explains (their true values alike), hardly
    at all when they really differ. Fewer than ``min_members`` fits: unchanged.
    """
    out = est[rows, cols].copy()
    groups = cohort_of[rows]
    for g in np.unique(groups):
        members = np.nonzero(cohort_of == g)[0]
        if members.size < min_members:
            continue
        e, v = est[members], se2[members]
        n_fit = np.sum(~np.isnan(e), axis=0)
        prior = _nanmedian(e, 0)
        spread = (MAD_TO_SD * _nanmedian(np.abs(e - prior[None, :]), 0)) ** 2
        tau2 = np.maximum(spread - _nanmedian(np.where(np.isinf(v), np.nan, v), 0), 0.0)
        sel = np.nonzero(groups == g)[0]
        c = cols[sel]
        ok = n_fit[c] >= min_members
        own_se2 = se2[rows[sel], c]
        with np.errstate(invalid="ignore", divide="ignore"):
            w = np.where(tau2[c] > 0, tau2[c] / (tau2[c] + own_se2), 0.0)
        out[sel] = np.where(ok, prior[c] + w * (out[sel] - prior[c]), out[sel])
    return out


def _finish(
    state: DetectorState, rows: npt.NDArray[np.intp], cols: npt.NDArray[np.intp], f: _Fit, scale: F64, level: F64
) -> None:
    """Set offset, phi and innovation scale of streams (rows, cols) from their warm-up fit; mark them warm."""
    phi = f.phi
    floor = np.maximum(RESOLUTION * np.abs(level[rows, cols]), 1e-9)
    scale = np.maximum(scale, floor)
    state.offset[rows, cols] = np.nan_to_num(f.offset)
    state.phi[rows, cols] = phi
    state.scale[rows, cols] = scale
    state.ew_uu[rows, cols] = scale * scale
    marg = scale * scale / np.maximum(1.0 - phi * phi, 1e-3)
    state.ew_xx[rows, cols] = marg
    state.ew_xy[rows, cols] = phi * marg
    state.n_learn[rows, cols] = np.maximum(f.n_pairs, 1)
    state.n_warm[rows, cols] = state.buf.shape[2]  # warm (``DetectorState.warm``)


def _advance_warmup(
    state: DetectorState, learning: BoolA, level: F64, p: ResidualParams, cohort_of: npt.NDArray[np.int64] | None
) -> None:
    """After a warm-up window: finish the streams of ``learning`` whose warm-up is long enough.

    A stream is done at ``n >= warmup`` once ``n (1 - phi_up) >= persistence``, ``phi_up`` its
    estimate from its first ``n`` windows (as it would be learnt) plus ``WARMUP_Z`` standard errors,
    or at the buffer depth / ``warmup_max``. Streams are fitted in groups of equal ``n``, so the
    slices hold no missing values.

    With ``cohort_of`` (peer-residual streams), a finishing stream's phi and then its log scale are
    pooled with its cohort's warm-up fits for the same metric (:func:`_pooled`): one short warm-up
    can look uncorrelated or calm by chance, and its cohort says how likely that is.
    """
    b = state.buf.shape[2]
    limit = min(b, p.warmup_max) if p.warmup_max > 0 else min(b, p.warmup)
    cand = learning & (state.n_warm >= min(p.warmup, limit))
    if not cand.any():
        return
    rows, cols = np.nonzero(cand)
    n_of = state.n_warm[rows, cols]
    done_groups: list[tuple[npt.NDArray[np.intp], npt.NDArray[np.intp], _Fit, int]] = []
    for n in np.unique(n_of):
        same = np.nonzero(n_of == n)[0]
        for lo in range(0, same.size, FIT_CHUNK):  # row by row arithmetic: chunks only bound the temporaries
            k = same[lo : lo + FIT_CHUNK]
            r, c = rows[k], cols[k]
            f = _fit(state.buf[state.buf_row[r], c, :n].astype(np.float64), p.ar_max)
            phi_up = np.minimum(f.phi + WARMUP_Z * np.sqrt(np.maximum(1.0 - f.phi * f.phi, 0.0) / n), p.ar_max)
            done = np.full(r.size, n >= limit) | (n * (1.0 - phi_up) >= p.persistence)
            if done.any():  # deviations are not kept: read again from the buffer for the scale
                d = _Fit(np.zeros((0, 0)), f.offset[done], f.phi[done], f.n_pairs[done])
                done_groups.append((r[done], c[done], d, int(n)))
                state.fit_phi[r[done], c[done]] = d.phi
                state.fit_phi_se2[r[done], c[done]] = (1.0 - d.phi * d.phi) / np.maximum(d.n_pairs, 1)
    min_fits = max(p.min_cohort, POOL_MIN)
    if cohort_of is not None:
        for r, c, d, _n in done_groups:
            d.phi = np.clip(_pooled(state.fit_phi, state.fit_phi_se2, cohort_of, r, c, min_fits), -0.5, p.ar_max)
    scales = []
    for r, c, d, n in done_groups:
        e = state.buf[state.buf_row[r], c, :n].astype(np.float64) - d.offset[:, None]  # as _fit made it
        scale, se2 = _innovation_scale(e, d.phi)
        scales.append(scale)
        state.fit_log_scale[r, c] = np.log(np.where(scale > 0, scale, np.nan))
        state.fit_log_scale_se2[r, c] = se2
    for (r, c, d, _n), own in zip(done_groups, scales, strict=True):
        scale = own
        if cohort_of is not None:
            ls = _pooled(state.fit_log_scale, state.fit_log_scale_se2, cohort_of, r, c, min_fits)
            scale = np.where(np.isfinite(ls), np.exp(ls), own)
        _finish(state, r, c, d, scale, level)


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
    pool = centre is None  # peer-residual streams: pool warm-up fits within the cohort
    if centre is None:
        centre, adjusted = _centres(state, x, cohort_rows, p.min_cohort, frozen)
    else:
        adjusted = np.ones(centre.shape, np.bool_)
    c = centre[cohort_of] if len(cohort_rows) else np.full_like(x, np.nan)
    observed = ~np.isnan(x) & ~np.isnan(c)
    warm = state.warm()
    # warm streams need the adjusted centre (raw, bootstrap: warming streams only)
    ready = adjusted[cohort_of] if len(cohort_rows) else np.zeros_like(observed)

    # warm-up: buffer x - c_t until the stream's warm-up is long enough (adaptive, see the module doc)
    learning = observed & ~warm
    if learning.any():
        rows, cols = np.nonzero(learning)
        slot = state.rows_of(rows)  # first: it may grow the pool
        state.buf[slot, cols, state.n_warm[rows, cols]] = (x - c)[rows, cols]
        state.n_warm[rows, cols] += 1
        _advance_warmup(state, learning, c, p, cohort_of if pool else None)

    # innovations for streams that were warm at the start of this window
    active = observed & warm & ready
    r = np.where(active, x - state.offset - c, np.nan)
    phi = state.phi
    has_prev = ~np.isnan(state.r_prev)
    root = np.sqrt(1.0 - phi * phi)
    u = np.where(has_prev, r - phi * np.nan_to_num(state.r_prev), r * root)
    w = u / state.scale
    inv_sqrt_n = 1.0 / np.sqrt(np.maximum(state.n_learn, 1))
    # a persistent shift mu of the residual moves the innovation by mu (1 - phi) (by mu sqrt(1 - phi^2)
    # on a restart without a previous residual): the null |mu| <= margin in innovation units
    fac = np.where(has_prev, 1.0 - phi, root)
    dmin = p.delta_min * fac / np.maximum(root, 1e-3)  # delta_min marginal sigmas
    mat_units = p.material_units(state.offset + np.nan_to_num(c))
    if mat_units is None:
        material = np.zeros_like(dmin)
    else:
        with np.errstate(invalid="ignore", divide="ignore"):
            material = np.nan_to_num(mat_units * fac / state.scale, nan=0.0, posinf=0.0)
    # where the material margin is the wider one, Family A bets on the excess over it (kernel docs)
    margin = np.where(material > dmin, material, 0.0)
    dmin = np.maximum(dmin, material)
    delta = dmin + DELTA_SE * inv_sqrt_n
    v0 = 1.0 + (p.v_inflation - 1.0) * np.clip(phi, 0.0, p.ar_max) / max(p.ar_max, 1e-9) + V_SE * inv_sqrt_n
    v = v0 + delta * delta
    delta_a = delta - margin

    # baseline learning after warm-up: cumulative at first (rate 1/n), then exponential with the
    # configured half-life; never for streams that are alarmed or frozen, never from outliers
    if p.halflife > 0:
        # outliers never teach the baseline: what lies beyond the material margin by LEARN_Z sigmas (an
        # immaterial persistent deviation, e.g. a warm-up offset a little off, must still be learnt)
        follow = active & ~frozen & (np.abs(w) - material < LEARN_Z)
        if follow.any():
            eta = np.maximum(1.0 / (state.n_learn + 1.0), math.log(2.0) / p.halflife)
            eta = np.where(follow, eta, 0.0)
            rr = np.where(follow, r, 0.0)
            uu = np.where(follow, np.minimum(u * u, (WINSOR * state.scale) ** 2), 0.0)
            rp = np.nan_to_num(state.r_prev)
            both = follow & has_prev & (np.abs(rp) < MAX_LAGGED)  # an absurd lagged residual is not learnt from
            rp = np.where(both, rp, 0.0)  # and never multiplied: rp * rp overflowed, 0 * inf was NaN for good
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

    # a window without a sample is no observation: the AR(1) carries its last residual to the next
    # sample (the pipeline forgets it once the shard is stale)
    state.r_prev = np.where(observed, np.where(active, r, np.nan), state.r_prev)
    state.last_x = np.where(observed, x, np.nan)
    state.last_r = r
    state.last_w = w
    return ResidualOut(
        w=w,
        delta=delta,
        delta_min=dmin,
        v=v,
        centre=centre,
        material=material,
        margin=margin,
        delta_a=delta_a,
        v_a=v0 + delta_a * delta_a,
    )
