"""Family C (multivariate per shard): kernel == NumPy twin, null calibration, power."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tessera_daemon.detect import family_c, kernels, reference_cde
from tessera_daemon.detect.kernels import F64, I64

BETS = np.array(family_c.DEFAULT_BETS)
K = BETS.size
LOG_THRESHOLD = 18.9  # the production threshold of docs/statistics.md (128 shards x 7 metrics, 5-s windows)


CState = tuple[F64, F64, I64, F64, I64, F64, I64]  # family_c_state: (theta, cov, n, w, run_start, log_m, side)


def _state(s: int, m: int) -> CState:
    return family_c.family_c_state(s, m, K)


def _run(xs: list[np.ndarray], delta: np.ndarray, v: np.ndarray, clip: float = 4.0) -> tuple[CState, CState]:
    s, m = xs[0].shape
    a, b = _state(s, m), _state(s, m)
    for t, x in enumerate(xs):
        family_c.family_c_update(x, delta, v, BETS, clip, t, *a)
        reference_cde.family_c_update(x, delta, v, BETS, clip, t, *b)
    return a, b


def _assert_same(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> None:
    for got, want in zip(a, b, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _correlated(rng: np.random.Generator, shape: tuple[int, int], rho: float, df: float = 5.0) -> np.ndarray:
    """Unit-variance Student-t innovations, equicorrelated across the metrics of a shard."""
    m = shape[1]
    chol = np.linalg.cholesky(np.full((m, m), rho) + (1.0 - rho) * np.eye(m))
    out: np.ndarray = (rng.standard_t(df, shape) / np.sqrt(df / (df - 2.0))) @ chol.T
    return out


# ------------------------------------------------------------------------------------ agreement


def test_agree_on_heavy_tailed_correlated_noise_with_shifts_and_gaps() -> None:
    rng = np.random.default_rng(0)
    s, m = 211, 6
    xs = []
    for t in range(120):
        x = _correlated(rng, (s, m), 0.5, df=3.0)
        x += (t > 60) * np.linspace(-1.0, 1.0, s)[:, None] * np.array([1, 1, -1, 0, 1, 0.5])
        x[rng.random((s, m)) < 0.1] = np.nan
        x[rng.random(s) < 0.05] = np.nan  # whole shard missing
        xs.append(x)
    delta = rng.uniform(0.0, 0.3, (s, m))
    v = rng.uniform(1.0, 1.6, (s, m))
    a, b = _run(xs, delta, v)
    _assert_same(a, b)
    assert a[5].max() > 10.0  # the shifted shards built evidence: the comparison is not vacuous


def test_adversarial_values() -> None:
    col = np.array([np.inf, -np.inf, 1e300, -1e300, 0.0, np.nan, 5.0])
    x = np.stack([col, col[::-1], np.roll(col, 2)], axis=1)
    all_nan = np.full_like(x, np.nan)
    xs = [x, -x, all_nan, np.zeros_like(x), x]
    a, b = _run(xs, np.zeros(x.shape), np.ones(x.shape))
    _assert_same(a, b)
    for arr in a:
        assert np.isfinite(arr).all()
    z = np.zeros((2, 3))
    a, b = _run([np.ones((2, 3)), z], z, z)  # v = 0: degenerate bound, still finite
    _assert_same(a, b)
    assert np.isfinite(a[5]).all()


@settings(max_examples=50, deadline=None)
@given(
    hnp.arrays(np.float64, (5, 4), elements=st.floats(-50, 50) | st.just(float("nan")) | st.just(float("inf"))),
    st.floats(0.0, 0.5),
    st.floats(1.0, 2.0),
    st.floats(1.0, 8.0),
)
def test_agree_property(x: np.ndarray, d: float, v: float, clip: float) -> None:
    xs = [x, -x, x * 0.5, x[::-1].copy(), x]
    _assert_same(*_run(xs, np.full(x.shape, d), np.full(x.shape, v), clip))


@pytest.mark.parametrize("fn", [family_c.family_c_update, reference_cde.family_c_update])
def test_nan_carries_state(fn: Callable[..., None]) -> None:
    st_ = _state(2, 3)
    one = np.ones((2, 3))
    fn(np.array([[2.0, 1.0, 0.5], [0.1, np.nan, 3.0]]), 0.1 * one, one, BETS, 4.0, 0, *st_)
    before = [a.copy() for a in st_]
    fn(np.full((2, 3), np.nan), 0.1 * one, one, BETS, 4.0, 1, *st_)
    _assert_same(st_, before)


def test_direction_learns_a_mixed_sign_shift() -> None:
    rng = np.random.default_rng(3)
    s, m = 100, 4
    st_ = _state(s, m)
    mu = np.array([0.8, -0.8, 0.8, -0.8])
    for t in range(80):
        family_c.family_c_update(
            rng.standard_normal((s, m)) + mu, np.zeros((s, m)), np.ones((s, m)), BETS, 4.0, t, *st_
        )
    theta = st_[0]
    cos = theta @ mu / (np.linalg.norm(theta, axis=1) * np.linalg.norm(mu))
    assert np.median(cos) > 0.9  # the run's sum points along the shift, signs included
    assert np.median(st_[5]) > LOG_THRESHOLD


# ------------------------------------------------------------------------------------ null calibration


def test_null_factors_have_mean_at_most_one_at_a_learned_state() -> None:
    """exp(increment) of every component has mean <= 1 (Monte Carlo) once directions and cross moments
    have been learned from correlated heavy-tailed null data."""
    rng = np.random.default_rng(1)
    s, m = 12_000, 7
    delta, v = np.full((s, m), 0.0), np.full((s, m), 1.0)
    st_ = _state(s, m)
    for t in range(40):
        family_c.family_c_update(_correlated(rng, (s, m), 0.6), delta, v, BETS, 4.0, t, *st_)
    st_[3][:] = 1e-9  # every component just above 0: no run reset, so the increment is W_new - 1e-9
    family_c.family_c_update(_correlated(rng, (s, m), 0.6), delta, v, BETS, 4.0, 40, *st_)
    f = np.exp(st_[3] - 1e-9)
    se = f.std(axis=0) / np.sqrt(s)
    assert (f.mean(axis=0) <= 1.0 + 3.0 * se).all()


@pytest.mark.parametrize("rho", [0.0, 0.8])
def test_null_false_alarm_rate_is_below_one_over_c(rho: float) -> None:
    """Alarming at logM >= log c and re-arming: the alarm rate per shard-window must be <= 1/c."""
    rng = np.random.default_rng(2)
    s, m, n_win, c = 500, 7, 1500, 100.0
    delta, v = np.full((s, m), 0.1), np.full((s, m), 1.2)
    st_ = _state(s, m)
    alarms = 0
    for t in range(n_win):
        family_c.family_c_update(_correlated(rng, (s, m), rho), delta, v, BETS, 4.0, t, *st_)
        hit = st_[5] >= np.log(c)
        alarms += int(hit.sum())
        st_[3][hit] = 0.0
        st_[5][hit] = 0.0
    assert alarms / (s * n_win) <= 1.0 / c


def test_worst_case_bound_before_learning_is_valid_under_perfect_correlation() -> None:
    """With nothing learned, V is (sum |u| s)^2: even identical metrics (rho = 1) give mean factors <= 1."""
    rng = np.random.default_rng(4)
    s, m = 50_000, 5
    st_ = _state(s, m)
    x = np.repeat(rng.standard_normal((s, 1)), m, axis=1)
    family_c.family_c_update(x, np.zeros((s, m)), np.ones((s, m)), BETS, 4.0, 0, *st_)
    f = np.exp(st_[3])
    assert (f.mean(axis=0) <= 1.0 + 3.0 * f.std(axis=0) / np.sqrt(s)).all()


# ------------------------------------------------------------------------------------ power


def test_small_consistent_shift_is_found_faster_than_by_family_a() -> None:
    """0.4 sigma on all 7 independent metrics: C crosses the production threshold, A does not yet."""
    rng = np.random.default_rng(5)
    s, m = 200, 7
    delta, v = np.full((s, m), 0.1), np.full((s, m), 1.2)
    st_c = _state(s, m)
    st_a: tuple[F64, I64, F64, I64] = (
        kernels.family_a_state((s, m), K),
        np.zeros((s, m), np.int64),
        np.zeros((s, m)),
        np.zeros((s, m), np.int64),
    )
    for t in range(300):  # null: cross moments learned
        x = _correlated(rng, (s, m), 0.0)
        family_c.family_c_update(x, delta, v, BETS, 4.0, t, *st_c)
    st_c[3][:] = 0.0
    st_c[5][:] = 0.0
    for t in range(300, 550):
        x = _correlated(rng, (s, m), 0.0) + 0.4
        family_c.family_c_update(x, delta, v, BETS, 4.0, t, *st_c)
        kernels.family_a_update(x, delta, v, BETS, 4.0, t, *st_a)
    assert np.median(st_c[5]) > LOG_THRESHOLD
    assert np.median(st_a[2].max(axis=1)) < LOG_THRESHOLD
    assert (st_c[6] == 1).mean() > 0.95  # the positive side carries the evidence
