"""The residual step's warm-up: cohort pooling of AR(1) and scale fits (empirical Bayes)."""

from __future__ import annotations

import numpy as np

from tessera_daemon.config import load_config
from tessera_daemon.detect.residuals import ResidualParams, residual_step
from tessera_daemon.detect.state import DetectorState

FIXED = {"TESSERA_DETECTOR__WARMUP_PERSISTENCE": "0"}  # every stream warm after exactly warmup_windows


def ar1(n: int, windows: int, rho: np.ndarray | float, seed: int) -> np.ndarray:
    """``[n, windows]`` stationary AR(1) paths with unit marginal variance (``rho`` per row or one)."""
    rng = np.random.default_rng(seed)
    r = np.broadcast_to(np.asarray(rho, np.float64), (n,))
    x = np.empty((n, windows))
    x[:, 0] = rng.standard_normal(n)
    for w in range(1, windows):
        x[:, w] = r * x[:, w - 1] + np.sqrt(1.0 - r * r) * rng.standard_normal(n)
    return x


def warm_up(x: np.ndarray, *, lone: bool = False) -> DetectorState:
    """Feed ``x`` [n, windows] (one metric) through the residual step until every stream is warm: as one
    cohort of peers, or (``lone``) as streams compared with their own past only (centre fixed at 0)."""
    d = load_config(None, FIXED).detector
    n = x.shape[0]
    st = DetectorState.empty(n, 1, d.warmup_max_windows, len(d.bets))
    params = ResidualParams.from_config(d)
    for w in range(x.shape[1]):
        residual_step(
            st,
            x[:, w : w + 1],
            np.zeros(n, np.int64),
            [np.arange(n, dtype=np.int64)],
            np.zeros((n, 1), np.bool_),
            params,
            centre=np.zeros((1, 1)) if lone else None,
        )
        if st.warm().all():
            return st
    raise AssertionError("not warm")


def test_alike_members_share_their_ar1_estimate() -> None:
    """Forty peers with one true phi: their own 60-window fits scatter by sampling noise (+-0.12); pooled,
    each moves most of the way to the cohort's, so a member that looked uncorrelated by chance is not
    believed. (Not all the way: the fits scatter a little more than the asymptotic standard error says,
    which the estimator reads as a small true spread.)"""
    offsets = np.linspace(0.0, 40.0, 40)[:, None]  # per-shard offsets are real and never pooled
    st = warm_up(ar1(40, 200, 0.6, seed=1) + offsets)
    own, pooled = st.fit_phi[:, 0], st.phi[:, 0]
    assert np.std(own) > 0.08
    assert np.std(pooled) < 0.5 * np.std(own)
    assert abs(np.median(pooled) - np.median(own)) < 0.02
    worst = int(np.argmin(own))  # the member whose warm-up looked least correlated
    assert pooled[worst] - own[worst] > 0.15
    assert np.allclose(st.offset[:, 0] - st.offset[0, 0], offsets[:, 0] - offsets[0, 0], atol=1.0)


def test_members_that_really_differ_keep_their_own_ar1_estimates() -> None:
    """Half the cohort white, half persistent: the spread is far beyond sampling noise, so each member
    keeps (nearly) its own fit instead of being pulled to the cohort median."""
    rho = np.array([0.0] * 10 + [0.9] * 10)
    st = warm_up(ar1(20, 200, rho, seed=2))
    own, pooled = st.fit_phi[:, 0], st.phi[:, 0]
    assert np.max(np.abs(pooled - own)) < 0.05
    assert np.median(pooled[:10]) < 0.2
    assert np.median(pooled[10:]) > 0.6


def test_a_calm_warmup_is_read_as_chance_when_the_cohort_is_alike() -> None:
    """One member's warm-up is 40 % calmer than its peers (an unrepresentative sample): pooled, its scale
    is the cohort's, not the fluke's. Members whose scales really differ (1 vs 3) keep their own."""
    x = ar1(30, 200, 0.3, seed=3)
    x[0, :70] *= 0.6
    st = warm_up(x)
    own0 = float(np.exp(st.fit_log_scale[0, 0]))
    others = np.median(st.scale[1:, 0])
    assert own0 < 0.75 * others
    assert abs(st.scale[0, 0] / others - 1.0) < 0.1
    scales = np.array([1.0] * 10 + [3.0] * 10)[:, None]
    st = warm_up(ar1(20, 200, 0.3, seed=4) * scales)
    own = np.exp(st.fit_log_scale[:, 0])
    assert np.max(np.abs(st.scale[:, 0] / own - 1.0)) < 0.05


def test_lone_streams_and_small_cohorts_are_not_pooled() -> None:
    """Streams without peers (centre fixed) or in a cohort with fewer than five fits keep their own fit."""
    x = ar1(12, 200, 0.6, seed=5)
    lone = warm_up(x, lone=True)
    assert np.array_equal(lone.phi[:, 0], lone.fit_phi[:, 0])
    assert np.allclose(lone.scale[:, 0], np.exp(lone.fit_log_scale[:, 0]), rtol=1e-12, atol=0.0)
    small = warm_up(x[:4])
    assert np.array_equal(small.phi[:, 0], small.fit_phi[:, 0])


def test_warm_up_fits_in_chunks_give_the_one_piece_result(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Fitting the finishing streams a few at a time (bounded memory at 100k shards) changes no value:
    every estimate is row by row, gaps included (rows with and without missing windows mixed)."""
    from tessera_daemon.detect import residuals  # noqa: PLC0415

    x = ar1(90, 300, np.linspace(0.0, 0.9, 90), seed=4) + np.linspace(0, 5, 90)[:, None]
    x[np.random.default_rng(5).random(x.shape) < 0.05] = np.nan
    whole = warm_up(x)
    monkeypatch.setattr(residuals, "FIT_CHUNK", 7)
    pieces = warm_up(x)
    for name, a in whole.to_arrays().items():
        np.testing.assert_array_equal(getattr(pieces, name), a, err_msg=name)
