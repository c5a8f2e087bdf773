"""Numba kernels: pure array code, one call per window for all shards. No I/O, no logging.

Each kernel has a NumPy twin in ``detect.reference`` with the same signature; tests assert they agree.
Numba functions are opaque to mypy, so callers use the typed wrappers at the bottom.

Family A (univariate, per shard x metric): a two-sided mixture of e-CUSUM recursions over a grid of
bets lambda_k. For a standardised innovation x (winsorised at +-max(clip, delta + clip / 2), so a wide
material margin never leaves the clip below it) and side s in {+1, -1}:

    y     = lambda_k * s * x
    phi   = sign(y) * log(1 + |y| + y^2 / 2)              (Catoni's influence function)
    inc   = phi - log(1 + lambda_k * delta + lambda_k^2 * v / 2)
    W_ks  = max(W_ks, 0) + inc                              (e-CUSUM in log space)
    logM  = logsumexp_ks(W_ks) - log(2K)                    (uniform mixture of e-detectors)

Because exp(phi(y)) <= 1 + y + y^2/2, under the null E[s x | past] <= delta and E[x^2 | past] <= v
each exp(inc) has conditional mean <= 1, so every exp(W_ks) is an e-CUSUM e-detector and so is the
mixture: alarming at logM >= log c gives average run length >= c (Shin, Ramdas & Rinaldo 2024).

Centred on a material margin ``c0 > 0`` (``margin``): each side bets on its excess over the margin,
``y_s = clip(s x - c0, -clip, clip)`` in place of ``s x``, with ``delta`` and ``v`` the bounds on the
mean and second moment of ``s x - c0`` beyond it. The payoff is increasing in x, so for a location family
(the innovation is noise plus a shift mu) its expectation over the composite null ``s mu <= c0 + delta``
is largest at the boundary: bounding it there is enough, and the margin costs no second-moment slack
(``v`` holds ``delta^2``, not ``(c0 + delta)^2``). ``c0 = 0`` is the plain recursion above, bit for bit.

Three ways to carry W from one window to the next, chosen by ``floor`` and ``renew``:

* ``floor = 0``: the e-CUSUM above (the pipeline's change detector);
* ``floor = -inf``: the plain mixture test martingale started once (W = 0 at the start), for a
  fixed-start test: Ville gives ``P(sup logM >= log(1/alpha)) <= alpha``;
* ``floor = -inf, renew = log(pi)``: a change-point mixture. State starts at -inf (no mass) and each
  observed window a new test starts with mass ``pi``: ``W_ks = logaddexp(W_ks, log pi) + inc``, so
  ``exp(logM) = sum_j pi Prod_{i=j..t} e_i`` (a Shiryaev-Roberts sum with weights). Plus the mass not
  yet started, ``1 - n pi`` after n windows, it is a test supermartingale over all time when
  ``sum pi <= 1`` (e.g. ``pi = 1/H`` for H windows): Ville's inequality holds for a change at any
  window, at a cost of log(1/pi) instead of a fixed start's wait through the pre-change windows.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt
from numba import njit

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@njit(cache=True, nogil=True, fastmath=False)
def _family_a_update(  # noqa: C901 - one loop nest; the centred and plain payoffs share it
    x: np.ndarray,  # float64[S, M] standardised innovations, NaN = no observation this window
    delta: np.ndarray,  # float64[S, M] composite-null margin in innovation units
    v: np.ndarray,  # float64[S, M] null second-moment bound
    bets: np.ndarray,  # float64[K]
    clip: float,
    window: int,
    floor: float,  # 0.0: e-CUSUM (change detection); -inf: mixture test martingale (Ville)
    renew: float,  # -inf: none; else log of the mass of a test started every window (change-point mixture)
    w_state: np.ndarray,  # float64[S, M, 2K] log e-CUSUM values (in/out)
    run_start: np.ndarray,  # int64[S, M] window at which the current run began (in/out)
    log_m: np.ndarray,  # float64[S, M] mixture log evidence (out)
    side: np.ndarray,  # int64[S, M] +1 / -1: side of the strongest component (out)
    margin: np.ndarray,  # float64[S, M] material margin the bets are centred on (0: none)
) -> None:
    n_s, n_m = x.shape
    n_k = bets.shape[0]
    log_norm = math.log(2.0 * n_k)
    for i in range(n_s):
        for m in range(n_m):
            xi = x[i, m]
            if math.isnan(xi):  # no observation: carry state
                continue
            d = delta[i, m]
            c0 = margin[i, m]
            cl = max(clip, d + 0.5 * clip)  # a wide margin widens the clip: evidence past the margin counts
            if c0 <= 0.0:
                if xi > cl:
                    xi = cl
                elif xi < -cl:
                    xi = -cl
            vv = v[i, m]
            prev_max = -math.inf
            for j in range(2 * n_k):
                prev_max = max(prev_max, w_state[i, m, j])
            if prev_max <= floor:
                run_start[i, m] = window
            best = -1e300
            best_j = 0
            ax = abs(xi)
            # centred on the margin: each side bets on its excess y_s = s x - c0 (clipped at +-clip)
            y_up = min(max(xi - c0, -clip), clip)
            y_dn = min(max(-xi - c0, -clip), clip)
            for k in range(n_k):
                lam = bets[k]
                norm = math.log1p(lam * d + 0.5 * lam * lam * vv)
                if c0 <= 0.0:
                    y = lam * ax
                    phi = math.log1p(y + 0.5 * y * y)  # phi is odd: one log serves both sides
                    if xi < 0.0:
                        phi = -phi
                    phi_up = phi
                    phi_dn = -phi
                else:
                    y = lam * abs(y_up)
                    phi_up = math.log1p(y + 0.5 * y * y)
                    if y_up < 0.0:
                        phi_up = -phi_up
                    y = lam * abs(y_dn)
                    phi_dn = math.log1p(y + 0.5 * y * y)
                    if y_dn < 0.0:
                        phi_dn = -phi_dn
                for s in range(2):
                    j = 2 * k + s
                    w = max(w_state[i, m, j], floor)
                    if renew > -math.inf:  # log(exp(w) + exp(renew))
                        hi = max(w, renew)
                        w = hi + math.log1p(math.exp(min(w, renew) - hi))
                    w += (phi_up if s == 0 else phi_dn) - norm
                    w_state[i, m, j] = w
                    if w > best:
                        best = w
                        best_j = j
            acc = 0.0
            for j in range(2 * n_k):
                acc += math.exp(w_state[i, m, j] - best)
            log_m[i, m] = best + math.log(acc) - log_norm
            side[i, m] = 1 if best_j % 2 == 0 else -1


def family_a_update(
    x: F64,
    delta: F64,
    v: F64,
    bets: F64,
    clip: float,
    window: int,
    w_state: F64,
    run_start: I64,
    log_m: F64,
    side: I64,
    floor: float = 0.0,
    renew: float = -math.inf,
    margin: F64 | None = None,
) -> None:
    """Typed wrapper: update Family A state in place for one window (see module docstring).

    ``floor=0`` runs the e-CUSUM change detector (ARL >= c); ``floor=-inf`` runs the plain mixture
    test martingale for fixed-horizon tests (Ville: P(sup log M >= log(1/alpha)) <= alpha);
    ``floor=-inf`` with ``renew=log(pi)`` the change-point mixture (state starting at -inf)."""
    if margin is None:
        margin = np.zeros_like(x)
    _family_a_update(
        x, delta, v, bets, float(clip), int(window), float(floor), float(renew), w_state, run_start, log_m, side, margin
    )


def warm_up() -> None:
    """Compile (or load from cache) every kernel signature used in production."""
    s, m, k = 2, 2, 3
    x = np.zeros((s, m))
    x[0, 0] = np.nan
    family_a_update(
        x,
        np.zeros((s, m)),
        np.ones((s, m)),
        np.array([0.1, 0.5, 1.0]),
        4.0,
        0,
        np.zeros((s, m, 2 * k)),
        np.zeros((s, m), np.int64),
        np.zeros((s, m)),
        np.zeros((s, m), np.int64),
    )
