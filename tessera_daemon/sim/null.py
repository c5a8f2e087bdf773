"""The null model: what every shard's channels do when nothing is wrong.

For shard i in cohort c, channel m, tick t (time ts)::

    x[i,m,t] = L[c,m] + o[i,m] + sigma[m] * ( (C e)[i,m,t] + A * w_d[m] * sin(2 pi ts / P)
                                              + R[c,t] * w_r[m] )

- ``L[c,m]``: the cohort's level, the fleet level plus a per-cohort draw (different jobs run
  different models: step time differs by ~30 %, power by ~20 W between jobs).
- ``o[i,m]``: the shard's persistent offset, N(0, (offset_sd[m] sigma[m])^2), fixed for the run.
- ``e[i,:,t]``: independent unit-variance AR(1) noises, ``e_t = rho e_{t-1} + sqrt(1 - rho^2) u_t``
  with ``u_t`` Student-t(tail_df) scaled to unit variance; ``C`` is a lower-triangular coupling
  matrix with unit rows (power follows util, temperature follows both, ...), so each channel keeps
  unit stationary variance and lag-1 autocorrelation rho.
- Diurnal cycle: amplitude ``A = cfg.diurnal_amplitude`` sigmas, period ``P = cfg.diurnal_period_s``,
  phase set by absolute time, shared by every shard; ``w_d`` gives each channel's direction.
- Regime steps ``R[c,t]`` (in sigmas): a Poisson process per cohort with mean interval
  ``cfg.regime_every_s``; each event moves the cohort's regime level by U(1, 2) sigma (random sign,
  pulled back toward 0 once |R| >= 2), weighted by ``w_r`` (util, power, step time 1; mem_bw 0.5):
  a new batch size moves every shard of a job together.

Random streams are separate PCG64 generators seeded from (seed, stream), so the noise of a run does
not depend on the scenario or on regime draws.
"""

from __future__ import annotations

import math

import numpy as np

from tessera_daemon.config import SimConfig
from tessera_daemon.sim.metrics import (
    COHORT_SD,
    COUPLING,
    DIURNAL,
    LEVEL,
    N_CHANNELS,
    OFFSET_SD,
    REGIME,
    SIGMA,
)

STATIC_STREAM = 1
NOISE_STREAM = 2
REGIME_STREAM = 3
TARGET_STREAM = 4


def stream(seed: int, stream_id: int) -> np.random.Generator:
    """An independent PCG64 generator for one purpose of one seeded run."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, stream_id])))


class NullModel:
    """Vectorised null process for ``len(cohort_of)`` shards (channel units, before faults)."""

    def __init__(self, cfg: SimConfig, cohort_of: np.ndarray, n_cohorts: int, seed: int) -> None:
        static = stream(seed, STATIC_STREAM)
        self._noise = stream(seed, NOISE_STREAM)
        self._regime_rng = stream(seed, REGIME_STREAM)
        n = len(cohort_of)
        self._shape = (n, N_CHANNELS)
        self._cohort_of = cohort_of
        self.offset: np.ndarray = static.normal(size=self._shape) * (OFFSET_SD * SIGMA)
        self.cohort_level: np.ndarray = LEVEL + static.normal(size=(n_cohorts, N_CHANNELS)) * COHORT_SD
        self._base = self.cohort_level[cohort_of] + self.offset
        self._rho = cfg.rho
        self._df = cfg.tail_df
        self._innovation_scale = math.sqrt(1.0 - cfg.rho**2) * math.sqrt((cfg.tail_df - 2.0) / cfg.tail_df)
        self._ar = self._noise.standard_normal(self._shape)
        self._coupling_t = np.ascontiguousarray(COUPLING.T)
        self._diurnal = cfg.diurnal_amplitude * DIURNAL * SIGMA
        self._omega = 2.0 * math.pi / cfg.diurnal_period_s
        self._p_regime = 1.0 - math.exp(-cfg.tick_s / cfg.regime_every_s) if cfg.regime_every_s > 0 else 0.0
        self._regime_w = REGIME * SIGMA
        self.regime: np.ndarray = np.zeros(n_cohorts)
        self.regime_steps: list[tuple[int, int, float]] = []  # (tick, cohort index, step in sigmas)
        self._tick = 0

    def advance(self, ts: float) -> np.ndarray:
        """Advance one tick; the channel values ``[n_shards, n_channels]`` at time ``ts``."""
        u = self._noise.standard_t(self._df, size=self._shape)
        self._ar *= self._rho
        self._ar += self._innovation_scale * u
        out: np.ndarray = self._ar @ self._coupling_t
        out *= SIGMA
        out += self._base
        if self._diurnal.any():
            out += math.sin(self._omega * ts) * self._diurnal
        if self._p_regime > 0.0:
            self._step_regime()
        if self.regime.any():
            out += self.regime[self._cohort_of][:, None] * self._regime_w
        self._tick += 1
        return out

    def _step_regime(self) -> None:
        k = len(self.regime)
        hit = self._regime_rng.random(k) < self._p_regime
        size = self._regime_rng.uniform(1.0, 2.0, k)
        sign = np.where(self._regime_rng.random(k) < 0.5, -1.0, 1.0)
        sign = np.where(np.abs(self.regime) >= 2.0, -np.sign(self.regime), sign)
        for c in np.flatnonzero(hit).tolist():
            step = float(sign[c] * size[c])
            self.regime[c] += step
            self.regime_steps.append((self._tick, c, step))
