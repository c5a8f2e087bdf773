"""The simulated per-shard metrics: names, levels, noise scales and how each is rendered.

Every gauge-like metric is driven by one latent *channel* (a float per shard per tick). Five
channels are the metric itself (``gpu_util``, ``sm_clock_mhz``, ``power_w``, ``temp_c``,
``mem_bw_util``); ``nvlink_tx_bytes`` is driven by a *rate* channel in GB/s that is integrated into a
wrapping 64-bit byte counter; ``step_time_ms`` is driven by a *log* channel (rendered as
``exp(channel)``, so step times are lognormal-ish and always positive). ``ecc_dbe`` has no channel:
it is a counter that only the ECC hard fault moves.

Fault magnitudes and null-model amplitudes are expressed in units of the channel's ``sigma`` (the
stationary standard deviation of its AR(1) noise).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MODEL = "H100-SXM5-80GB"
"""Device model label of every simulated shard."""


@dataclass(frozen=True, slots=True)
class ChannelSpec:
    """One latent channel. Units are the channel's (ratio, MHz, W, C, GB/s, log ms)."""

    metric: str
    level: float  # fleet-wide base level
    sigma: float  # stationary sd of the AR(1) noise
    offset_sd: float  # sd of the persistent per-shard offset, in sigmas
    cohort_sd: float  # sd of the per-cohort (per-job) level, in channel units
    diurnal: float  # weight of the shared diurnal cycle (sign = direction under load)
    regime: float  # weight of a cohort regime step (a new batch size)
    lo: float  # rendered value clipped to [lo, hi]
    hi: float
    decimals: int  # rendered value rounded to this many decimals


CHANNELS: tuple[ChannelSpec, ...] = (
    ChannelSpec("gpu_util", 0.90, 0.015, 0.5, 0.02, 1.0, 1.0, 0.0, 1.0, 4),
    ChannelSpec("sm_clock_mhz", 1980.0, 15.0, 1.0, 0.0, -0.5, 0.0, 0.0, math.inf, 1),
    ChannelSpec("power_w", 600.0, 15.0, 1.0, 20.0, 1.0, 1.0, 0.0, math.inf, 2),
    ChannelSpec("temp_c", 65.0, 1.0, 2.0, 1.0, 1.0, 0.0, -math.inf, math.inf, 2),
    ChannelSpec("mem_bw_util", 0.60, 0.02, 0.5, 0.05, 1.0, 0.5, 0.0, 1.0, 4),
    ChannelSpec("nvlink_tx_bytes", 40.0, 1.5, 0.5, 5.0, 1.0, 0.0, 0.0, math.inf, 0),
    ChannelSpec("step_time_ms", math.log(350.0), 0.03, 0.5, 0.3, 0.5, 1.0, 0.0, math.inf, 2),
)
"""Channel table; row order is the column order of the first seven :data:`METRICS`."""

COUNTERS: tuple[str, ...] = ("nvlink_tx_bytes", "ecc_dbe")
"""Metrics that are cumulative counters (the daemon turns them into rates / increments)."""

METRICS: tuple[str, ...] = (*(c.metric for c in CHANNELS), "ecc_dbe")
"""Column order of ``SimTick.values``: every per-shard metric, counters included."""

N_CHANNELS = len(CHANNELS)
UTIL, CLOCK, POWER, TEMP, MEMBW, NVLINK, STEP = range(N_CHANNELS)
ECC = N_CHANNELS  # column of ecc_dbe in the metric table
CHANNEL_OF: dict[str, int] = {c.metric: i for i, c in enumerate(CHANNELS)}

NVLINK_BYTES_PER_GB = 1e9
COUNTER_WRAP = 2**64

# Light physical couplings of the unit noises (row c mixes channel noises 0..c; rows are
# normalised to unit length so every channel keeps unit stationary variance and the AR(1) rho).
_COUPLING = np.array(
    [
        # util  clock power temp  membw nvlink step
        [1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # gpu_util
        [0.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # sm_clock_mhz
        [0.6, 0.0, 0.8, 0.0, 0.0, 0.0, 0.0],  # power_w follows util
        [0.3, 0.0, 0.4, 0.87, 0.0, 0.0, 0.0],  # temp_c follows util and power
        [0.5, 0.0, 0.0, 0.0, 0.87, 0.0, 0.0],  # mem_bw_util follows util
        [0.3, 0.0, 0.0, 0.0, 0.0, 0.95, 0.0],  # nvlink rate follows util
        [-0.2, 0.0, 0.0, 0.0, 0.0, 0.0, 0.98],  # step time slightly anti-correlated with util
    ]
)
COUPLING: np.ndarray = _COUPLING / np.linalg.norm(_COUPLING, axis=1, keepdims=True)
"""Lower-triangular mixing matrix applied to independent unit AR(1) noises."""

SIGMA: np.ndarray = np.array([c.sigma for c in CHANNELS])
LEVEL: np.ndarray = np.array([c.level for c in CHANNELS])
OFFSET_SD: np.ndarray = np.array([c.offset_sd for c in CHANNELS])
COHORT_SD: np.ndarray = np.array([c.cohort_sd for c in CHANNELS])
DIURNAL: np.ndarray = np.array([c.diurnal for c in CHANNELS])
REGIME: np.ndarray = np.array([c.regime for c in CHANNELS])
LO: np.ndarray = np.array([c.lo for c in CHANNELS])
HI: np.ndarray = np.array([c.hi for c in CHANNELS])
ROUND_SCALE: np.ndarray = np.array([10.0**c.decimals for c in CHANNELS])

GAUGE_METRICS: tuple[str, ...] = tuple(c.metric for c in CHANNELS)
"""Metrics a statistical fault may act on (``nvlink_tx_bytes`` through its rate)."""
