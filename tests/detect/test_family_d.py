"""Family D (oscillation / periodicity): kernel == NumPy twin, null calibration, power, specificity."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tessera_daemon.detect import family_d, reference_cde

BETS = np.array(family_d.DEFAULT_BETS)
K = BETS.size
LAG_MIN = family_d.DEFAULT_LAG_MIN
RING = family_d.DEFAULT_RING
LOG_THRESHOLD = 18.9


def _state(s: int, m: int) -> list[np.ndarray]:
    return list(family_d.family_d_state(s, m, K, RING, LAG_MIN))


def _run(
    xs: list[np.ndarray], delta: np.ndarray, v: np.ndarray, windows: list[int] | None = None, clip: float = 4.0
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    s, m = xs[0].shape
    a, b = _state(s, m), _state(s, m)
    for t, x in enumerate(xs):
        win = t if windows is None else windows[t]
        family_d.family_d_update(x, delta, v, BETS, LAG_MIN, clip, win, *a)
        reference_cde.family_d_update(x, delta, v, BETS, LAG_MIN, clip, win, *b)
    return a, b


def _assert_same(a: list[np.ndarray], b: list[np.ndarray]) -> None:
    for got, want in zip(a, b, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


def _t(rng: np.random.Generator, shape: tuple[int, ...], df: float = 5.0) -> np.ndarray:
    out: np.ndarray = rng.standard_t(df, shape) / np.sqrt(df / (df - 2.0))
    return out


def _stall_innovations(t: int, period: int, height: float, phi: float = 0.8) -> float:
    """AR(1)-whitened innovation (innovation sd units) of a spike of ``height`` marginal sigmas every period."""
    cur = height if t % period == 0 else 0.0
    prev = height if (t - 1) % period == 0 else 0.0
    return float((cur - phi * prev) / np.sqrt(1.0 - phi * phi))


# ------------------------------------------------------------------------------------ agreement


def test_agree_on_heavy_tailed_noise_with_cycles_gaps_and_skipped_windows() -> None:
    rng = np.random.default_rng(0)
    s, m = 157, 2
    xs, windows = [], []
    win = 0
    for t in range(150):
        x = _t(rng, (s, m), 3.0) + (t % 5 == 0) * np.linspace(0.0, 3.0, s)[:, None]
        x[rng.random((s, m)) < 0.1] = np.nan
        xs.append(x)
        windows.append(win)
        win += 1 + int(rng.random() < 0.05) * 3  # now and then the caller skips windows
    delta = rng.uniform(0.0, 0.3, (s, m))
    v = rng.uniform(1.0, 1.6, (s, m))
    a, b = _run(xs, delta, v, windows)
    _assert_same(a, b)
    assert a[4].max() > 10.0  # the cycling shards built evidence: the comparison is not vacuous


def test_adversarial_values() -> None:
    col = np.array([np.inf, -np.inf, 1e300, -1e300, 0.0, np.nan])
    x = np.stack([col, col[::-1]], axis=1)
    xs = [x, -x, np.full_like(x, np.nan), x, np.zeros_like(x), x * 1e-300, x]
    a, b = _run(xs, np.zeros(x.shape), np.ones(x.shape))
    _assert_same(a, b)
    for arr in (a[2], a[4]):
        assert np.isfinite(arr).all()


@settings(max_examples=40, deadline=None)
@given(
    hnp.arrays(np.float64, (4, 2), elements=st.floats(-50, 50) | st.just(float("nan")) | st.just(float("inf"))),
    st.floats(0.0, 0.5),
    st.floats(1.0, 2.0),
    st.floats(1.0, 8.0),
)
def test_agree_property(x: np.ndarray, d: float, v: float, clip: float) -> None:
    xs = [x, -x, x * 0.5, x, x[::-1].copy(), -x, x, x, 0.3 * x, x, x, -x, x]
    _assert_same(*_run(xs, np.full(x.shape, d), np.full(x.shape, v), clip=clip))


@pytest.mark.parametrize("fn", [family_d.family_d_update, reference_cde.family_d_update])
def test_nan_is_a_gap_and_equals_a_skipped_window(fn: Callable[..., None]) -> None:
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((3, 2)) for _ in range(30)]
    d, v = np.zeros((3, 2)), np.ones((3, 2))
    with_nan, skipped = _state(3, 2), _state(3, 2)
    for t, x in enumerate(xs):
        gap = t in (7, 8, 15)
        fn(np.full_like(x, np.nan) if gap else x, d, v, BETS, LAG_MIN, 4.0, t, *with_nan)
        if not gap:
            fn(x, d, v, BETS, LAG_MIN, 4.0, t, *skipped)
    _assert_same(with_nan, skipped)


def test_lag_min_is_checked() -> None:
    st_ = _state(1, 1)
    with pytest.raises(ValueError, match="lag_min"):
        family_d.family_d_update(np.zeros((1, 1)), np.zeros((1, 1)), np.ones((1, 1)), BETS, 0, 4.0, 0, *st_)


# ------------------------------------------------------------------------------------ null calibration


def test_null_factors_have_mean_at_most_one() -> None:
    """exp(increment) of every (lag, bet) component has mean <= 1 under the null (Monte Carlo)."""
    rng = np.random.default_rng(2)
    s = 30_000
    d, v = np.zeros((s, 1)), np.ones((s, 1))
    st_ = _state(s, 1)
    for t in range(RING + 1):
        family_d.family_d_update(_t(rng, (s, 1)), d, v, BETS, LAG_MIN, 4.0, t, *st_)
    st_[2][:] = 1e-9  # every component just above 0: the increment is W_new - 1e-9
    family_d.family_d_update(_t(rng, (s, 1)), d, v, BETS, LAG_MIN, 4.0, RING + 1, *st_)
    f = np.exp(st_[2][:, 0, :] - 1e-9)
    se = f.std(axis=0) / np.sqrt(s)
    assert (f.mean(axis=0) <= 1.0 + 3.0 * se).all()


def test_null_false_alarm_rate_is_below_one_over_c() -> None:
    rng = np.random.default_rng(3)
    s, m, n_win, c = 500, 2, 1000, 100.0
    d, v = np.full((s, m), 0.1), np.full((s, m), 1.2)
    st_ = _state(s, m)
    alarms = 0
    for t in range(n_win):
        family_d.family_d_update(_t(rng, (s, m)), d, v, BETS, LAG_MIN, 4.0, t, *st_)
        hit = st_[4] >= np.log(c)
        alarms += int(hit.sum())
        st_[2][hit] = 0.0
        st_[4][hit] = 0.0
    assert alarms / (s * m * n_win) <= 1.0 / c


# ------------------------------------------------------------------------------------ power and specificity


@pytest.mark.parametrize(("period", "height", "within"), [(3, 2.0, 80), (5, 2.0, 120), (8, 3.0, 150)])
def test_periodic_stall_is_found_and_its_period_named(period: int, height: float, within: int) -> None:
    rng = np.random.default_rng(4)
    s = 200
    d, v = np.full((s, 1), 0.1), np.full((s, 1), 1.2)
    st_ = _state(s, 1)
    for t in range(within):
        family_d.family_d_update(
            _t(rng, (s, 1)) + _stall_innovations(t, period, height), d, v, BETS, LAG_MIN, 4.0, t, *st_
        )
    assert np.median(st_[4]) > LOG_THRESHOLD
    assert (st_[5][:, 0] % period == 0).mean() > 0.9  # the strongest lag is the period or a multiple


def test_sinusoid_is_found() -> None:
    rng = np.random.default_rng(5)
    s = 200
    d, v = np.full((s, 1), 0.1), np.full((s, 1), 1.2)
    st_ = _state(s, 1)
    for t in range(300):
        family_d.family_d_update(
            _t(rng, (s, 1)) + np.sqrt(2.0) * np.sin(2 * np.pi * t / 6), d, v, BETS, LAG_MIN, 4.0, t, *st_
        )
    assert np.median(st_[4]) > LOG_THRESHOLD


def test_mean_shift_does_not_look_like_a_cycle() -> None:
    """A sustained 1.5-sigma shift (Family A's job) moves x_{t-k} and the ring mean alike: no evidence."""
    rng = np.random.default_rng(6)
    s = 500
    d, v = np.full((s, 1), 0.1), np.full((s, 1), 1.2)
    st_ = _state(s, 1)
    peak = np.zeros(s)
    for t in range(600):
        family_d.family_d_update(_t(rng, (s, 1)) + 1.5 * (t >= 100), d, v, BETS, LAG_MIN, 4.0, t, *st_)
        peak = np.maximum(peak, st_[4][:, 0])
    assert peak.max() < 8.0
