"""All per-shard x metric detector state as arrays: O(shards x metrics), bounded by construction.

``DetectorState`` owns the arrays; ``detect.residuals`` and ``detect.kernels`` update them. The state
can be re-indexed when the topology changes (rows kept by shard id), and exported to / restored from
a flat dict of arrays for checkpoints.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from tessera_daemon.detect.kernels import family_a_rearm, family_a_state
from tessera_daemon.errors import CheckpointError

SCHEMA_VERSION = 1


@dataclass(slots=True)
class DetectorState:
    # residual model (detect.residuals)
    n_warm: npt.NDArray[np.int64]  # [S, M] warm-up observations so far; B once warm (see ``warm``)
    n_learn: npt.NDArray[np.int64]  # [S, M] windows that informed the baseline (sets learning rate)
    buf: npt.NDArray[np.float32]  # [S, M, B] warm-up deviations from the cohort centre; B: longest warm-up
    offset: npt.NDArray[np.float64]  # [S, M] persistent shard offset l_i
    scale: npt.NDArray[np.float64]  # [S, M] innovation scale
    phi: npt.NDArray[np.float64]  # [S, M] AR(1) coefficient (estimated)
    r_prev: npt.NDArray[np.float64]  # [S, M] previous peer residual (NaN: none)
    ew_xx: npt.NDArray[np.float64]  # [S, M] EW E[r_{t-1}^2]
    ew_xy: npt.NDArray[np.float64]  # [S, M] EW E[r_t r_{t-1}]
    ew_uu: npt.NDArray[np.float64]  # [S, M] EW E[u^2] (innovation second moment)
    fit_phi: npt.NDArray[np.float64]  # [S, M] the warm-up's own AR(1) estimate (NaN: none yet); pooling
    fit_phi_se2: npt.NDArray[np.float64]  # [S, M] its sampling variance
    fit_log_scale: npt.NDArray[np.float64]  # [S, M] the warm-up's own log innovation scale (NaN: none yet)
    fit_log_scale_se2: npt.NDArray[np.float64]  # [S, M] its sampling variance
    # family A (detect.kernels)
    e_state: npt.NDArray[np.float64]  # [S, M, 2K + 1] e-CUSUM values exp(W - L) and log scale L (kernels)
    run_start: npt.NDArray[np.int64]  # [S, M]
    log_m: npt.NDArray[np.float64]  # [S, M] mixture log evidence
    side: npt.NDArray[np.int64]  # [S, M]
    # last window, for receipts and /v1/shards
    last_x: npt.NDArray[np.float64]  # [S, M] window value (transformed)
    last_r: npt.NDArray[np.float64]  # [S, M] peer residual
    last_w: npt.NDArray[np.float64]  # [S, M] standardised innovation

    @classmethod
    def empty(cls, n_shards: int, n_metrics: int, warmup: int, n_bets: int) -> DetectorState:
        s, m = n_shards, n_metrics
        nan = np.full((s, m), np.nan)
        return cls(
            n_warm=np.zeros((s, m), np.int64),
            n_learn=np.zeros((s, m), np.int64),
            buf=np.full((s, m, warmup), np.nan, np.float32),
            offset=np.zeros((s, m)),
            scale=np.ones((s, m)),
            phi=np.zeros((s, m)),
            r_prev=nan.copy(),
            ew_xx=np.zeros((s, m)),
            ew_xy=np.zeros((s, m)),
            ew_uu=np.zeros((s, m)),
            fit_phi=nan.copy(),
            fit_phi_se2=nan.copy(),
            fit_log_scale=nan.copy(),
            fit_log_scale_se2=nan.copy(),
            e_state=family_a_state((s, m), n_bets),
            run_start=np.zeros((s, m), np.int64),
            log_m=np.zeros((s, m)),
            side=np.zeros((s, m), np.int64),
            last_x=nan.copy(),
            last_r=nan.copy(),
            last_w=nan.copy(),
        )

    @property
    def shape(self) -> tuple[int, int]:
        s, m = self.offset.shape
        return int(s), int(m)

    def warm(self) -> npt.NDArray[np.bool_]:
        """Streams past warm-up. The warm-up is adaptive (``detect.residuals``): a stream may finish
        before its buffer is full, and its ``n_warm`` is then set to the buffer depth."""
        warm: npt.NDArray[np.bool_] = self.n_warm >= self.buf.shape[2]
        return warm

    def rearm(self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]) -> None:
        """Reset the evidence of the given streams (after a firing resolves)."""
        family_a_rearm(self.e_state, (rows, cols))
        self.log_m[rows, cols] = 0.0

    def relearn(self, rows: npt.NDArray[np.int64]) -> None:
        """Forget the baseline of whole shards (after an announced event changed them)."""
        self.n_warm[rows] = 0
        self.n_learn[rows] = 0
        self.buf[rows] = np.nan
        self.r_prev[rows] = np.nan
        for fit in (self.fit_phi, self.fit_phi_se2, self.fit_log_scale, self.fit_log_scale_se2):
            fit[rows] = np.nan
        family_a_rearm(self.e_state, rows)
        self.log_m[rows] = 0.0

    def take(self, rows: npt.NDArray[np.int64]) -> DetectorState:
        """A new state whose row i is old row ``rows[i]``, or fresh where ``rows[i] < 0``."""
        s, m = len(rows), self.shape[1]
        fresh = DetectorState.empty(s, m, self.buf.shape[2], (self.e_state.shape[2] - 1) // 2)
        keep = rows >= 0
        for f in fields(self):
            old = getattr(self, f.name)
            new = getattr(fresh, f.name)
            new[keep] = old[rows[keep]]
        return fresh

    def to_arrays(self) -> dict[str, npt.NDArray[np.generic]]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_arrays(cls, arrays: dict[str, npt.NDArray[np.generic]]) -> DetectorState:
        names = [f.name for f in fields(cls)]
        missing = sorted(set(names) - set(arrays))
        if missing:
            raise CheckpointError(f"detector state: missing arrays {missing}")
        state = cls(**{n: np.array(arrays[n], copy=True) for n in names})
        s, m = state.shape
        for n in names:
            a = getattr(state, n)
            if a.shape[:2] != (s, m):
                raise CheckpointError(f"detector state: array {n} has shape {a.shape}, expected ({s}, {m}, ...)")
        return state
