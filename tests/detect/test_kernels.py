"""The numba kernel and its NumPy twin agree, on random and adversarial inputs."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from tessera_daemon.detect import kernels, reference
from tessera_daemon.detect.kernels import F64, I64

BETS = np.array([0.1, 0.25, 0.5, 1.0, 1.5])


AState = tuple[F64, I64, F64, I64]  # Family A: (e_state, run_start, log_m, side)


def _state(s: int, m: int, k: int, start: float = 0.0) -> AState:
    return (
        kernels.family_a_state((s, m), k, start),
        np.zeros((s, m), np.int64),
        np.zeros((s, m)),
        np.zeros((s, m), np.int64),
    )


def _run(x_seq: list[np.ndarray], delta: np.ndarray, v: np.ndarray, clip: float = 4.0) -> tuple[AState, AState]:
    s, m = x_seq[0].shape
    a, b = _state(s, m, len(BETS)), _state(s, m, len(BETS))
    for w, x in enumerate(x_seq):
        kernels.family_a_update(x, delta, v, BETS, clip, w, *a)
        reference.family_a_update(x, delta, v, BETS, clip, w, *b)
    return a, b


def _assert_same(a: Sequence[np.ndarray], b: Sequence[np.ndarray]) -> None:
    """Equal state within 1e-12; the side wherever the two sides' strongest components are not tied
    within rounding (the kernel multiplies in linear space, the twin adds in log space: a bet whose
    payoff is below one ulp of 1 is a tie in one and not the other)."""
    for got, want in zip(a[:3], b[:3], strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)
    w = kernels.family_a_log(b[0])
    up, dn = w[..., 0::2].max(axis=-1), w[..., 1::2].max(axis=-1)
    with np.errstate(invalid="ignore"):
        clear = ~(np.abs(up - dn) <= 1e-12 * np.maximum(1.0, np.abs(up)))
    np.testing.assert_array_equal(a[3][clear], b[3][clear])


def test_agree_on_heavy_tailed_noise_with_shifts_and_gaps() -> None:
    rng = np.random.default_rng(0)
    s, m = 257, 5
    xs = []
    for w in range(80):
        x = rng.standard_t(3, (s, m)) + (w > 40) * np.linspace(0, 3, s)[:, None]
        x[rng.random((s, m)) < 0.1] = np.nan
        xs.append(x)
    delta = rng.uniform(0, 0.3, (s, m))
    v = rng.uniform(1.0, 1.6, (s, m))
    _assert_same(*_run(xs, delta, v))


def test_adversarial_values() -> None:
    x = np.array([[np.inf, -np.inf, 1e300, -1e300, 0.0, np.nan]]).T.repeat(2, axis=1)
    xs = [x, x[::-1].copy(), np.zeros_like(x)]
    _assert_same(*_run(xs, np.zeros(x.shape), np.ones(x.shape)))


@settings(max_examples=60, deadline=None)
@given(
    hnp.arrays(np.float64, (6, 3), elements=st.floats(-50, 50) | st.just(float("nan"))),
    st.floats(0.0, 0.5),
    st.floats(1.0, 2.0),
    st.floats(1.0, 8.0),
)
def test_agree_property(x: np.ndarray, d: float, v: float, clip: float) -> None:
    xs = [x, -x, x * 0.5]
    _assert_same(*_run(xs, np.full(x.shape, d), np.full(x.shape, v), clip))


def test_null_increments_are_supermartingale_factors() -> None:
    """E[exp(inc)] <= 1 under the null (mean <= delta, second moment <= v): Monte Carlo check."""
    rng = np.random.default_rng(1)
    x = rng.standard_t(5, 400_000) / np.sqrt(5 / 3)  # unit variance, heavy tails
    for lam in BETS:
        for sgn in (1.0, -1.0):
            y = lam * sgn * np.clip(x, -4, 4)
            phi = np.sign(y) * np.log1p(np.abs(y) + 0.5 * y * y)
            inc = phi - np.log1p(0.0 + 0.5 * lam * lam * 1.0)
            assert np.exp(inc).mean() <= 1.0 + 3 * np.exp(inc).std() / np.sqrt(x.size)


def test_evidence_grows_under_a_shift_and_not_under_null() -> None:
    rng = np.random.default_rng(2)
    s = 2000
    a = _state(s, 1, len(BETS))
    for w in range(200):
        x = rng.standard_normal((s, 1))
        x[: s // 2] += 1.5
        kernels.family_a_update(x, np.full((s, 1), 0.1), np.full((s, 1), 1.2), BETS, 4.0, w, *a)
    log_m = a[2][:, 0]
    assert np.median(log_m[: s // 2]) > 50
    assert np.max(log_m[s // 2 :]) < 10


@pytest.mark.parametrize("fn", [kernels.family_a_update, reference.family_a_update])
def test_nan_carries_state(fn: Callable[..., None]) -> None:
    st_ = _state(1, 1, len(BETS))
    fn(np.array([[2.0]]), np.zeros((1, 1)), np.ones((1, 1)), BETS, 4.0, 0, *st_)
    before = [a.copy() for a in st_]
    fn(np.array([[np.nan]]), np.zeros((1, 1)), np.ones((1, 1)), BETS, 4.0, 1, *st_)
    _assert_same(st_, before)


def test_ville_mode_agrees_and_never_resets() -> None:
    """floor=-inf is the plain mixture test martingale: no reset, kernel == twin."""
    rng = np.random.default_rng(5)
    s, m = 64, 2
    a, b = _state(s, m, len(BETS)), _state(s, m, len(BETS))
    delta, v = np.zeros((s, m)), np.ones((s, m))
    for w in range(50):
        x = rng.standard_normal((s, m)) - 0.5
        kernels.family_a_update(x, delta, v, BETS, 4.0, w, *a, floor=-np.inf)
        reference.family_a_update(x, delta, v, BETS, 4.0, w, *b, floor=-np.inf)
    _assert_same(a, b)
    assert (
        kernels.family_a_log(a[0]) < -1.0
    ).any()  # a negative drift drives components far below 0: nothing reset them


def test_ville_false_alarm_probability_at_most_alpha() -> None:
    """Fixed-horizon: P(sup_t log M_t >= log 1/alpha) <= alpha on i.i.d. N(0, 1) (Ville)."""
    rng = np.random.default_rng(6)
    s, alpha = 4000, 0.05
    st_ = _state(s, 1, len(BETS))
    crossed = np.zeros(s, bool)
    for w in range(200):
        kernels.family_a_update(
            rng.standard_normal((s, 1)), np.zeros((s, 1)), np.ones((s, 1)), BETS, 4.0, w, *st_, floor=-np.inf
        )
        crossed |= st_[2][:, 0] >= np.log(1 / alpha)
    rate = crossed.mean()
    assert rate <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / s)


def test_change_point_mixture_agrees_with_twin() -> None:
    """renew = log(pi): a test started every observed window (state from -inf), kernel == twin."""
    rng = np.random.default_rng(7)
    s, m = 64, 2
    a, b = _state(s, m, len(BETS), -np.inf), _state(s, m, len(BETS), -np.inf)
    delta, v = np.full((s, m), 0.1), np.full((s, m), 1.1)
    for w in range(60):
        x = rng.standard_normal((s, m)) + (w >= 30) * 1.0
        x[rng.random((s, m)) < 0.1] = np.nan
        kernels.family_a_update(x, delta, v, BETS, 4.0, w, *a, floor=-np.inf, renew=np.log(1 / 60))
        reference.family_a_update(x, delta, v, BETS, 4.0, w, *b, floor=-np.inf, renew=np.log(1 / 60))
    _assert_same(a, b)


def test_change_point_mixture_is_a_sum_over_start_times() -> None:
    """exp(logM_t) = sum over starts j <= t of pi * (fixed-start mixture from j), computed directly."""
    rng = np.random.default_rng(8)
    n_w, pi = 12, 1 / 12
    xs = [rng.standard_normal((1, 1)) + 0.5 for _ in range(n_w)]
    delta, v = np.zeros((1, 1)), np.ones((1, 1))
    cp = _state(1, 1, len(BETS), -np.inf)
    fixed = []  # one fixed-start Ville state per start time
    for w, x in enumerate(xs):
        kernels.family_a_update(x, delta, v, BETS, 4.0, w, *cp, floor=-np.inf, renew=np.log(pi))
        fixed.append(_state(1, 1, len(BETS)))
        for f in fixed:
            kernels.family_a_update(x, delta, v, BETS, 4.0, w, *f, floor=-np.inf)
        direct = pi * sum(np.exp(f[2][0, 0]) for f in fixed)
        np.testing.assert_allclose(np.exp(cp[2][0, 0]), direct, rtol=1e-10)


def test_change_point_mixture_false_alarm_probability_at_most_alpha() -> None:
    """Started mass + unstarted mass is a test martingale: P(sup M >= 1/alpha) <= alpha over H windows."""
    rng = np.random.default_rng(9)
    s, alpha, horizon = 4000, 0.05, 150
    st_ = _state(s, 1, len(BETS), -np.inf)
    crossed = np.zeros(s, bool)
    for w in range(horizon):
        kernels.family_a_update(
            rng.standard_normal((s, 1)),
            np.zeros((s, 1)),
            np.ones((s, 1)),
            BETS,
            4.0,
            w,
            *st_,
            floor=-np.inf,
            renew=-np.log(horizon),
        )
        log_total = np.logaddexp(st_[2][:, 0], np.log(max(1.0 - (w + 1) / horizon, 1e-300)))
        crossed |= log_total >= np.log(1 / alpha)
    assert crossed.mean() <= alpha + 3 * np.sqrt(alpha * (1 - alpha) / s)


def test_agree_when_centred_on_a_material_margin() -> None:
    """Half the streams bet on their excess over a material margin (c0 > 0), half plainly: same result."""
    rng = np.random.default_rng(7)
    s, m = 200, 3
    margin = np.where(rng.random((s, m)) < 0.5, rng.uniform(0.5, 6.0, (s, m)), 0.0)
    delta = np.full((s, m), 0.2)
    v = 1.4 + delta * delta
    a, b = _state(s, m, len(BETS)), _state(s, m, len(BETS))
    for w in range(60):
        x = rng.standard_t(4, (s, m)) + margin * rng.choice([-1.0, 1.0], (s, m)) + (w > 30) * 2.0
        x[rng.random((s, m)) < 0.1] = np.nan
        kernels.family_a_update(x, delta, v, BETS, 4.0, w, *a, margin=margin)
        reference.family_a_update(x, delta, v, BETS, 4.0, w, *b, margin=margin)
    _assert_same(a, b)


def test_centred_bets_keep_ville_at_the_margin_and_gain_beyond_it() -> None:
    """A shift exactly at the margin (the composite null's boundary): the plain mixture martingale
    crosses log(1/alpha) in at most alpha of the streams; a shift 1.5 sigma beyond it crosses at once."""
    rng = np.random.default_rng(11)
    s, n_w, c0, alpha = 4000, 200, 3.0, 0.01
    margin = np.full((s, 1), c0)
    delta, v = np.full((s, 1), 0.0), np.full((s, 1), 1.0)
    null, alt = _state(s, 1, len(BETS)), _state(s, 1, len(BETS))
    hit_null = np.zeros(s, np.bool_)
    hit_alt = np.zeros(s, np.bool_)
    for w in range(n_w):
        noise = rng.standard_normal((s, 1))
        kernels.family_a_update(c0 + noise, delta, v, BETS, 4.0, w, *null, floor=-np.inf, margin=margin)
        kernels.family_a_update(c0 + 1.5 + noise, delta, v, BETS, 4.0, w, *alt, floor=-np.inf, margin=margin)
        hit_null |= null[2][:, 0] >= np.log(1 / alpha)
        hit_alt |= alt[2][:, 0] >= np.log(1 / alpha)
    assert hit_null.mean() <= alpha
    assert hit_alt.mean() > 0.99


def _exact_log_cusum(xs: list[np.ndarray], d: float, v: float, clip: float) -> list[np.ndarray]:
    """The plain e-CUSUM mixture computed in log space from scratch (no kernel state): log M per window."""
    lam = BETS[None, None, :]
    w_state = np.zeros((*xs[0].shape, len(BETS), 2))
    out = []
    for x in xs:
        y = lam * np.clip(x, -clip, clip)[..., None]
        phi = np.sign(y) * np.log1p(np.abs(y) + 0.5 * y * y)
        norm = np.log1p(lam * d + 0.5 * lam * lam * v)
        w_state = np.maximum(w_state, 0.0) + np.stack([phi, -phi], axis=-1) - norm[..., None]
        flat = w_state.reshape(*x.shape, -1)
        top = flat.max(axis=-1)
        out.append(top + np.log(np.exp(flat - top[..., None]).sum(axis=-1)) - np.log(flat.shape[-1]))
    return out


def test_evidence_past_709_nats_neither_overflows_nor_drifts_from_the_twin() -> None:
    """A shift held for 1000 windows drives log evidence far past exp's range (709 nats): the
    linear-space kernel rescales its streams and stays on the log-space twin and on the exact log-space
    recursion while the stream's components lie within ~700 nats of each other; when the shift reverses
    the opposite side, held at the floor 1500 nats below, restarts only once the strongest side has
    fallen back within range: evidence is lost there, never gained."""
    rng = np.random.default_rng(12)
    s, m, d, v = 8, 2, 0.1, 1.2
    a, b = _state(s, m, len(BETS)), _state(s, m, len(BETS))
    xs = [rng.standard_normal((s, m)) + (3.0 if w < 1000 else -3.0) for w in range(1500)]
    exact = _exact_log_cusum(xs, d, v, 4.0)
    peak = 0.0
    for w, x in enumerate(xs):
        kernels.family_a_update(x, np.full((s, m), d), np.full((s, m), v), BETS, 4.0, w, *a)
        reference.family_a_update(x, np.full((s, m), d), np.full((s, m), v), BETS, 4.0, w, *b)
        peak = max(peak, float(a[2].min()))
        np.testing.assert_allclose(a[2], b[2], rtol=1e-11)
        if w < 1000:  # one side only: exact at any height
            np.testing.assert_allclose(a[2], exact[w], rtol=1e-11)
        assert (a[2] <= exact[w] + 1e-9).all()
    assert peak > 1500.0  # past exp's range twice over
    assert np.isfinite(a[0]).all() and (a[0][..., -1] > 0).all()  # rescaled, never inf
    assert (a[0][..., :-1] <= kernels.RESCALE_HI).all()
    np.testing.assert_array_equal(a[3], b[3])
    assert (a[2] < exact[-1]).all()  # the opposite side restarted late: less evidence than exact, not more


def test_threads_give_the_serial_result_bit_for_bit() -> None:
    """prange over shards: every stream is updated by exactly the serial arithmetic."""
    rng = np.random.default_rng(13)
    s, m = kernels.PARALLEL_MIN // 4 + 37, 4
    one, two = _state(s, m, len(BETS)), _state(s, m, len(BETS))
    margin = np.where(rng.random((s, m)) < 0.3, 1.0, 0.0)
    delta, v = rng.uniform(0, 0.3, (s, m)), rng.uniform(1.0, 1.6, (s, m))
    for w in range(40):
        x = rng.standard_t(3, (s, m)) + (w > 20) * 1.5
        x[rng.random((s, m)) < 0.1] = np.nan
        kernels.family_a_update(x, delta, v, BETS, 4.0, w, *one, margin=margin, threads=1)
        kernels.family_a_update(x, delta, v, BETS, 4.0, w, *two, margin=margin, threads=2)
    for got, want in zip(two, one, strict=True):
        np.testing.assert_array_equal(got, want)


def test_fresh_rearm_and_log_view() -> None:
    e = kernels.family_a_state((3, 2), len(BETS))
    assert e.shape == (3, 2, 2 * len(BETS) + 1)
    np.testing.assert_array_equal(kernels.family_a_log(e), 0.0)
    e[1, 0, :-1] = 5.0
    e[1, 0, -1] = 800.0
    np.testing.assert_allclose(kernels.family_a_log(e)[1, 0], 800.0 + np.log(5.0))
    kernels.family_a_rearm(e, (np.array([1]), np.array([0])))
    np.testing.assert_array_equal(kernels.family_a_log(e), 0.0)
    empty = kernels.family_a_state((2,), len(BETS), -np.inf)
    assert np.isneginf(kernels.family_a_log(empty)).all()
