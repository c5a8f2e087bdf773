"""Tessera's own detectors, re-implemented from tessera.md so its published figures can be re-derived.

These are the *baseline* we compare against, never our detectors. Vectorised over independent
streams (one row each); every row follows the scalar rules exactly.

* :class:`TesseraFamilyA`: the engine's Family A betting e-process (section 1.2): bounded
  ``z = clip((x - mu - phi c_prev) / (3 sigma), -1, 1)``, GRAPA bet ``m1/m2`` of past z with an ONS
  fallback clipped at ``1 - 1e-6``, ``M <- max(1e-12, M max(0, 1 + bet z))``, fire at ``M >= 1/alpha``.
* :class:`TesseraOns`: R77's "Family C", the ONS bettor on the same bounded z (section 1.4c).
* :func:`tessera_e_bh`, :func:`tessera_combine_average`, :class:`TesseraFleetTracker`: the fleet
  primitives of section 3 that R72 types 4 and 5 call.
* :func:`tessera_estimate_ar1`: the Kendall-corrected AR(1) fit of ``tools/per-shard-whitening.ts``
  (used by the calibration envelope's whitened rows).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]

BOUND_B = 3.0
BET_CAP = 1.0 - 1e-6
M_FLOOR = 1e-12
ONS_C = 2.0 / (2.0 - math.log(3.0))
ONS_LAMBDA_MAX = 0.5


class TesseraFamilyA:
    """Tessera's Family A betting state for ``n`` independent streams."""

    def __init__(self, n: int) -> None:
        self.m = np.ones(n)
        self.bet = np.zeros(n)
        self.n = 0
        self.m1 = np.zeros(n)
        self.m2 = np.zeros(n)
        self.c_prev = np.zeros(n)
        self.ons_fallbacks = np.zeros(n, np.int64)

    def update(self, x: F64, mu: float = 0.0, var: float = 1.0, phi: float | F64 = 0.0) -> F64:
        """One tick for every stream; returns the wealth ``M`` after the tick."""
        c = x - mu
        w = c - phi * self.c_prev
        self.c_prev = c
        denom = BOUND_B * math.sqrt(var) if var > 0 else 0.0
        z = np.clip(w / denom, -1.0, 1.0) if denom > 0 else np.zeros_like(w)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            g = np.where(self.m2 > 0, self.m1 / self.m2, 0.0)
            use_g = np.isfinite(g) & (np.abs(g) <= BET_CAP)
            d = 1.0 + self.bet * self.m1
            ons_zero = (self.m2 <= 0) | (np.abs(d) < 1e-9)
            ons = np.clip(self.bet + (self.m1 / d) / np.maximum(self.m2, 1e-6), -BET_CAP, BET_CAP)
        self.ons_fallbacks += ~use_g & ~ons_zero
        bet = np.where(use_g, g, np.where(ons_zero, 0.0, ons))
        self.m = np.maximum(M_FLOOR, self.m * np.maximum(0.0, 1.0 + bet * z))
        self.bet = bet
        self.n += 1
        self.m1 = self.m1 + (z - self.m1) / self.n
        self.m2 = self.m2 + (z * z - self.m2) / self.n
        return self.m


class TesseraOns:
    """R77's Family C: ONS bettor on ``F = clip(x / 3, -1, 1)``, log-wealth, lambda_max 0.5."""

    def __init__(self, n: int) -> None:
        self.log_s = np.zeros(n)
        self.lam = np.zeros(n)
        self.a = np.ones(n)

    def update(self, x: F64) -> F64:
        f = np.clip(x / BOUND_B, -1.0, 1.0)
        self.log_s = self.log_s + np.log(np.maximum(1.0 + self.lam * f, M_FLOOR))
        g = -f / (1.0 + self.lam * f)
        self.a = self.a + g * g
        self.lam = np.clip(self.lam - ONS_C * g / self.a, -ONS_LAMBDA_MAX, ONS_LAMBDA_MAX)
        return self.log_s


def tessera_e_bh(e_values: Sequence[float], q: float) -> list[int]:
    """Tessera's e-BH: R = max{k : k e_(k) >= N/q}; the R largest (ties: lower index first), sorted."""
    n = len(e_values)
    if n == 0 or not 0.0 < q <= 1.0:
        raise ValueError("e-BH needs at least one e-value and q in (0, 1]")
    order = sorted(range(n), key=lambda i: (-e_values[i], i))
    r = 0
    for k in range(1, n + 1):
        if k * e_values[order[k - 1]] >= n / q:
            r = k
    return sorted(order[:r])


def tessera_combine_average(log_e: Sequence[float]) -> float:
    """Average of e-values in log space: logsumexp - ln N (max-shift form)."""
    if not log_e:
        raise ValueError("combine_average needs at least one e-value")
    top = max(log_e)
    return top + math.log(sum(math.exp(v - top) for v in log_e)) - math.log(len(log_e))


@dataclass(slots=True)
class TesseraFleetTracker:
    """Sticky first crossing of the running max of the fleet log e-value (0-based tick)."""

    log_threshold: float
    n: int = 0
    log_max: float = -math.inf
    fired: bool = False
    tick_at_first_fire: int | None = None

    def update(self, log_fleet_e: float) -> None:
        self.log_max = max(self.log_max, log_fleet_e)
        if not self.fired and self.log_max >= self.log_threshold:
            self.fired = True
            self.tick_at_first_fire = self.n
        self.n += 1


def tessera_estimate_ar1(samples: F64) -> tuple[float, float]:
    """(phi, innovation variance): lag-1 OLS with Kendall's correction ``+(1 + 3 phi)/n``."""
    x = np.asarray(samples, dtype=np.float64)
    n = x.shape[0]
    if n < 2:
        return 0.0, 0.0 if n == 1 else 1.0
    mean = float(np.sum(x)) / n
    c = x - mean
    num = float(np.dot(c[1:], c[:-1]))
    den = float(np.dot(c, c))
    if not den > 0:
        return 0.0, 1.0
    phi_ols = num / den
    phi = phi_ols + (1.0 + 3.0 * phi_ols) / n
    if phi >= 1.0:
        phi = 0.999
    if phi <= -1.0:
        phi = -0.999
    r = c[1:] - phi * c[:-1]
    sigma2 = float(np.dot(r, r)) / (n - 1)
    return phi, sigma2 if sigma2 > 0 else 1.0
