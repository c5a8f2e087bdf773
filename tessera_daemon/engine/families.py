"""Families C, D and E beside Family A: their state, one kernel call each per window, and re-arming.

- C: multivariate per shard over all metrics jointly (a predictable direction, Catoni bets).
- D: oscillation / periodicity change on the configured metrics (lag-product bets on lags 2..10).
- E: conformal novelty of each shard against its cohort (conformal p-values, calibrated e-CUSUM).
See docs/statistics-cde.md for each family's null and validity argument.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import numpy.typing as npt

from tessera_daemon.detect import family_c, family_d, family_e

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]


@dataclass(slots=True)
class FamilyView:
    """One family's evidence this window: ``log_m`` [S, L]; column l is ``metrics[l]`` (None: all)."""

    name: str
    metrics: list[str | None]
    log_m: F64
    observed: npt.NDArray[np.bool_]
    detail: dict[str, npt.NDArray[np.generic]] = field(default_factory=dict)


class Families:
    def __init__(
        self,
        n_shards: int,
        metrics: list[str],
        families: tuple[str, ...],
        oscillation_metrics: tuple[str, ...],
        seed: int,
    ) -> None:
        self.metrics = metrics
        self.enabled = families
        self.d_cols = np.array([metrics.index(m) for m in oscillation_metrics if m in metrics], np.int64)
        self.seed = seed
        self.c_bets = np.array(family_c.DEFAULT_BETS)
        self.d_bets = np.array(family_d.DEFAULT_BETS)
        self.kappas = np.array(family_e.DEFAULT_KAPPAS)
        self._alloc(n_shards)

    def _alloc(self, s: int) -> None:
        m = len(self.metrics)  # state tuples hold arrays of mixed dtypes: typed loosely, checked by the kernels
        self.c: list[Any] = list(family_c.family_c_state(s, m, len(self.c_bets)))
        self.d: list[Any] = list(family_d.family_d_state(s, len(self.d_cols), len(self.d_bets)))
        self.e: list[Any] = list(family_e.family_e_state(s, len(self.kappas)))

    @property
    def n_streams_per_shard(self) -> int:
        return ("C" in self.enabled) + ("E" in self.enabled) + ("D" in self.enabled) * len(self.d_cols)

    def take(self, rows: I64) -> None:
        """Re-index after a topology change: row i becomes old row rows[i], fresh where rows[i] < 0."""
        old = (self.c, self.d, self.e)
        self._alloc(len(rows))
        keep = rows >= 0
        for new_list, old_list in zip((self.c, self.d, self.e), old, strict=True):
            for new, prev in zip(new_list, old_list, strict=True):
                new[keep] = prev[rows[keep]]

    def update(
        self,
        w: F64,
        delta: F64,
        v: F64,
        cohort_of: I64,
        n_cohorts: int,
        clip: float,
        window: int,
        material: F64 | None = None,
        settled: npt.NDArray[np.bool_] | None = None,
    ) -> list[FamilyView]:
        """One window of C, D and E. ``material`` [S, M] (innovation units): E scores only what lies
        beyond each metric's material margin (a conformal p-value is valid for any score), C and D
        carry it in ``delta``. ``settled`` [S, M]: streams whose baseline has a full warm-up's worth of
        windows behind it; E ranks only those (a shard whose scale is still an early estimate scores
        high or low against its cohort for that reason alone, and the ranks stop being exchangeable)."""
        out: list[FamilyView] = []
        observed_any = ~np.all(np.isnan(w), axis=1)
        if "C" in self.enabled:
            family_c.family_c_update(np.ascontiguousarray(w), delta, v, self.c_bets, clip, window, *self.c)
            out.append(FamilyView("C", [None], self.c[5][:, None], observed_any[:, None], {"side": self.c[6]}))
        if "D" in self.enabled and self.d_cols.size:
            cols = self.d_cols
            family_d.family_d_update(
                np.ascontiguousarray(w[:, cols]),
                np.ascontiguousarray(delta[:, cols]),
                np.ascontiguousarray(v[:, cols]),
                self.d_bets,
                family_d.DEFAULT_LAG_MIN,
                clip,
                window,
                *self.d,
            )
            out.append(
                FamilyView("D", [self.metrics[c] for c in cols], self.d[4], ~np.isnan(w[:, cols]), {"lag": self.d[5]})
            )
        if "E" in self.enabled:
            we = w if material is None else np.sign(w) * np.maximum(np.abs(w) - material, 0.0)
            if settled is not None:  # a conformal rank needs exchangeable scores: settled scales only
                we = np.where(settled, we, np.nan)
            family_e.family_e_update(
                np.ascontiguousarray(we), cohort_of, n_cohorts, self.kappas, clip, window, self.seed, *self.e
            )
            out.append(FamilyView("E", [None], self.e[2][:, None], observed_any[:, None], {"p": self.e[3]}))
        return out

    def rearm(self, name: str, row: int, col: int) -> None:
        if name == "C":
            self.c[3][row] = 0.0
            self.c[5][row] = 0.0
        elif name == "D":
            self.d[2][row, col] = 0.0
            self.d[4][row, col] = 0.0
        elif name == "E":
            self.e[0][row] = 0.0
            self.e[2][row] = 0.0

    def relearn(self, rows: I64) -> None:
        for name in ("C", "E"):
            for r in rows:
                self.rearm(name, int(r), 0)
        self.d[0][rows] = np.nan
        self.d[1][rows] = -1
        self.d[2][rows] = 0.0
        self.d[4][rows] = 0.0


def warm_up() -> None:
    family_c.warm_up()
    family_d.warm_up()
    family_e.warm_up()
