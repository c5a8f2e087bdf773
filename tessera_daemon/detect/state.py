"""All per-shard x metric detector state as arrays: O(shards x metrics), bounded by construction.

``DetectorState`` owns the arrays; ``detect.residuals`` and ``detect.kernels`` update them. The state
can be re-indexed when the topology changes (rows kept by shard id), and exported to / restored from
a flat dict of arrays for checkpoints.

The warm-up buffer is a pool: ``buf`` [P, M, B] holds the rows of the shards that still need one
(``buf_row`` [S] points into it, -1: none). A shard gets a row when one of its streams starts learning
and gives it back (:meth:`DetectorState.release`) once it is warm and no group still seeds from it
(``engine.groups``): after warm-up the buffer, 66 of 106 MiB of state at 10k shards x 8 metrics, is
gone, and the estimators see exactly the values a dense buffer held.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np
import numpy.typing as npt

from tessera_daemon.detect.kernels import family_a_rearm, family_a_state
from tessera_daemon.errors import CheckpointError

SCHEMA_VERSION = 1
POOLED = frozenset({"buf", "buf_row"})  # not [S, M, ...]: the warm-up buffer pool and its index


@dataclass(slots=True)
class DetectorState:
    # residual model (detect.residuals)
    n_warm: npt.NDArray[np.int64]  # [S, M] warm-up observations so far; B once warm (see ``warm``)
    n_learn: npt.NDArray[np.int64]  # [S, M] windows that informed the baseline (sets learning rate)
    buf: npt.NDArray[np.float32]  # [P, M, B] pool of warm-up deviations from the cohort centre; B: longest warm-up
    buf_row: npt.NDArray[np.int64]  # [S] the shard's row of ``buf`` (-1: none; a shard that learns gets one)
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
            buf=np.full((0, m, warmup), np.nan, np.float32),
            buf_row=np.full(s, -1, np.int64),
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
    def depth(self) -> int:
        """Warm-up buffer depth (the longest warm-up)."""
        return int(self.buf.shape[2])

    def rows_of(self, shards: npt.NDArray[np.int64]) -> npt.NDArray[np.int64]:
        """``buf`` rows of ``shards``, giving a fresh (all-NaN) row to each that has none."""
        need = np.unique(shards[self.buf_row[shards] < 0])
        if need.size:
            used = np.zeros(self.buf.shape[0], np.bool_)
            used[self.buf_row[self.buf_row >= 0]] = True
            free = np.nonzero(~used)[0]
            if free.size < need.size:  # grow by what is missing (at least half the pool: amortised)
                extra = max(need.size - free.size, self.buf.shape[0] // 2)
                grown = np.full((self.buf.shape[0] + extra, *self.buf.shape[1:]), np.nan, np.float32)
                grown[: self.buf.shape[0]] = self.buf
                free = np.concatenate([free, np.arange(self.buf.shape[0], grown.shape[0])])
                self.buf = grown
            take = free[: need.size]
            self.buf[take] = np.nan
            self.buf_row[need] = take
        out: npt.NDArray[np.int64] = self.buf_row[shards]
        return out

    def release(self, shards: npt.NDArray[np.bool_]) -> None:
        """Give back the buffer rows of the ``shards`` [S] marked (their warm-up values are no longer
        needed). The pool shrinks to the rows still held once it is at most a quarter used."""
        self.buf_row[shards] = -1
        held = np.nonzero(self.buf_row >= 0)[0]
        if 4 * held.size <= self.buf.shape[0]:
            self.buf = self.buf[self.buf_row[held]].copy()  # a copy: the old pool is freed
            self.buf_row[held] = np.arange(held.size)

    @property
    def shape(self) -> tuple[int, int]:
        s, m = self.offset.shape
        return int(s), int(m)

    def warm(self) -> npt.NDArray[np.bool_]:
        """Streams past warm-up. The warm-up is adaptive (``detect.residuals``): a stream may finish
        before its buffer is full, and its ``n_warm`` is then set to the buffer depth."""
        warm: npt.NDArray[np.bool_] = self.n_warm >= self.depth
        return warm

    def rearm(self, rows: npt.NDArray[np.int64], cols: npt.NDArray[np.int64]) -> None:
        """Reset the evidence of the given streams (after a firing resolves)."""
        family_a_rearm(self.e_state, (rows, cols))
        self.log_m[rows, cols] = 0.0

    def relearn(self, rows: npt.NDArray[np.int64]) -> None:
        """Forget the baseline of whole shards (after an announced event changed them)."""
        self.n_warm[rows] = 0
        self.n_learn[rows] = 0
        mask = np.zeros(self.shape[0], np.bool_)
        mask[rows] = True
        self.release(mask)  # a fresh row when they learn again
        self.r_prev[rows] = np.nan
        for fit in (self.fit_phi, self.fit_phi_se2, self.fit_log_scale, self.fit_log_scale_se2):
            fit[rows] = np.nan
        family_a_rearm(self.e_state, rows)
        self.log_m[rows] = 0.0

    def take(self, rows: npt.NDArray[np.int64]) -> DetectorState:
        """A new state whose row i is old row ``rows[i]``, or fresh where ``rows[i] < 0``."""
        s, m = len(rows), self.shape[1]
        fresh = DetectorState.empty(s, m, self.depth, (self.e_state.shape[2] - 1) // 2)
        keep = rows >= 0
        for f in fields(self):
            if f.name in POOLED:
                continue
            old = getattr(self, f.name)
            new = getattr(fresh, f.name)
            new[keep] = old[rows[keep]]
        src = np.full(s, -1, np.int64)
        src[keep] = self.buf_row[rows[keep]]
        held = np.nonzero(src >= 0)[0]
        fresh.buf = self.buf[src[held]].copy()
        fresh.buf_row[held] = np.arange(held.size)
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
        state.check_shapes()
        return state

    def check_shapes(self) -> None:
        """Every array fits [S, M, ...] (the pool: [P, M, B] with ``buf_row`` [S] inside it)."""
        s, m = self.shape
        for f in fields(self):
            a = getattr(self, f.name)
            if f.name == "buf_row":
                if a.shape != (s,) or (a >= self.buf.shape[0]).any():
                    raise CheckpointError(f"detector state: buf_row has shape {a.shape} or points past the pool")
            elif f.name == "buf":
                if a.ndim != 3 or a.shape[1] != m:
                    raise CheckpointError(f"detector state: buf has shape {a.shape}, expected (P, {m}, depth)")
            elif a.shape[:2] != (s, m):
                raise CheckpointError(f"detector state: array {f.name} has shape {a.shape}, expected ({s}, {m}, ...)")
