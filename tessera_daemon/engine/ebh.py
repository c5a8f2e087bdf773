"""e-BH (Wang & Ramdas 2022) and its use for multi-stream change detection (e-d-BH).

``e_bh``: given K e-values and a level q, reject the k* largest where
k* = max{k : e_(k) >= K / (q k)}. FDR <= q K0 / K under arbitrary dependence, for valid e-values at a
fixed time. Ties are broken by index (ascending), so the result is deterministic.

``e_d_bh_selected``: Dandapanthula & Ramdas (2025) show plain FDR over time is unattainable for change
detectors with finite ARL; applying e-BH at each time to e-detector values with the level set from the
patience budget controls error over patience (EOP). In log space with c = K / q (the daemon's
Bonferroni threshold log c = log(streams x windows/day / false pages/day)), a stream is selected when
log M_(k) >= log c - log k for the largest such k: exactly the e-d-Bonferroni threshold when one stream
is elevated, and a lower bar when several are elevated at once (a common mode).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import numpy.typing as npt


def e_bh(e_values: Sequence[float] | npt.NDArray[np.float64], q: float) -> npt.NDArray[np.int64]:
    """Indices (ascending) rejected by e-BH at level ``q``."""
    e = np.asarray(e_values, dtype=np.float64)
    if e.ndim != 1 or e.size == 0:
        raise ValueError("e_bh needs a non-empty 1-d array of e-values")
    if not 0 < q <= 1:
        raise ValueError(f"q must be in (0, 1], got {q}")
    if np.any(e < 0) or np.any(np.isnan(e)):
        raise ValueError("e-values must be non-negative numbers")
    k_total = e.size
    order = np.lexsort((np.arange(k_total), -e))  # descending e, ties by index
    ranks = np.arange(1, k_total + 1)
    ok = e[order] * ranks >= k_total / q
    if not ok.any():
        return np.zeros(0, np.int64)
    k_star = int(np.nonzero(ok)[0].max()) + 1
    return np.sort(order[:k_star]).astype(np.int64)


def e_d_bh_selected(log_m: npt.NDArray[np.float64], log_c: float) -> npt.NDArray[np.bool_]:
    """Boolean mask of streams selected by e-d-BH with K / q = c, computed in log space."""
    flat = np.where(np.isfinite(log_m), log_m, -np.inf).ravel()
    out = np.zeros(flat.shape, np.bool_)
    cand = np.nonzero(flat >= log_c - math.log(max(flat.size, 1)))[0]  # only these can ever be selected
    if cand.size:
        vals = flat[cand]
        order = np.lexsort((cand, -vals))
        ranks = np.arange(1, cand.size + 1)
        ok = vals[order] >= log_c - np.log(ranks)
        if ok.any():
            k_star = int(np.nonzero(ok)[0].max()) + 1
            out[cand[order[:k_star]]] = True
    return out.reshape(log_m.shape)
