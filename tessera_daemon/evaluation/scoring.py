"""Small scoring helpers shared by the matrices (no detector logic)."""

from __future__ import annotations

import math
from collections.abc import Sequence


def binom_sf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) >= k), exact (log-space sum)."""
    if k <= 0:
        return 1.0
    if k > n or p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    lp, lq = math.log(p), math.log1p(-p)
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * lp + (n - i) * lq
        for i in range(k, n + 1)
    ]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n)) / (1 + z2 / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def median(values: Sequence[float]) -> float | None:
    """Median (mean of the middle two for even counts); None when empty."""
    v = sorted(values)
    if not v:
        return None
    mid = len(v) // 2
    return float(v[mid]) if len(v) % 2 else (v[mid - 1] + v[mid]) / 2.0


def quantile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank quantile (no interpolation); None when empty."""
    v = sorted(values)
    if not v:
        return None
    return float(v[min(len(v) - 1, max(0, math.ceil(q * len(v)) - 1))])


def ratio(num: int, den: int) -> float | None:
    return num / den if den else None
