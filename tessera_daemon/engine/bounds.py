"""Plausible physical ranges of the standard metrics: a window value outside its range is missing.

A broken sensor, a unit bug or a hostile producer can send any finite float; one 1e308 would overflow
the detectors' running moments and blind a stream for good. Every window value [S, M] passes
:meth:`ValueBounds.apply` before it reaches the numeric state: a value outside its metric's range (or
one that became infinite when samples were summed) is replaced by NaN, treated like a missing sample,
and counted by reason (``tessera_values_rejected_total{reason}``).

Ranges are in the units the sources produce (ratios for utilisation, but percentages fit too), wide
enough for every device generation; counters are checked as the rates the window assembler makes of
them (per second). ``window.plausible = {metric = [lo, hi]}`` overrides or adds ranges; a metric with
no range gets :data:`FALLBACK`, far from any overflow.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from typing import Any

import numpy as np
import numpy.typing as npt

REASONS = ("below_range", "above_range", "non_finite")
FALLBACK = (-1e15, 1e15)

_UTIL = (0.0, 100.0)  # ratio 0..1 (nvml, dcgm, the simulator) or a percentage
_CLOCK = (0.0, 100_000.0)  # MHz
_TEMP = (-50.0, 250.0)  # degrees C
_POWER = (0.0, 100_000.0)  # W (an accelerator draws at most a few kW; a node a few tens)
_BYTES_RATE = (0.0, 1e14)  # bytes/s (or the simulator's GB/s)
_BYTES = (0.0, 1e16)  # memory sizes
_EVENTS_RATE = (0.0, 1e12)  # error / retry / remap counts or their rates
_LATENCY_MS = (0.0, 1e9)  # ms (a step or request of up to ~11 days)

DEFAULT_PLAUSIBLE: dict[str, tuple[float, float]] = {
    # utilisation and activity ratios
    "gpu_util": _UTIL,
    "mem_bw_util": _UTIL,
    "sm_active": _UTIL,
    "sm_occupancy": _UTIL,
    "tensor_active": _UTIL,
    "dram_active": _UTIL,
    "gr_engine_active": _UTIL,
    "tensorcore_util": _UTIL,
    "neuroncore_utilization": _UTIL,
    # clocks, temperatures, power, energy (a counter: its rate is W)
    "sm_clock_mhz": _CLOCK,
    "mem_clock_mhz": _CLOCK,
    "temp_c": _TEMP,
    "mem_temp_c": _TEMP,
    "power_w": _POWER,
    "energy_j": _POWER,
    # interconnect and PCIe throughput (counters: bytes/s)
    "nvlink_tx_bytes": _BYTES_RATE,
    "nvlink_rx_bytes": _BYTES_RATE,
    "nvlink_bytes_per_s": _BYTES_RATE,
    "nvlink_tx_bytes_per_s": _BYTES_RATE,
    "nvlink_rx_bytes_per_s": _BYTES_RATE,
    "pcie_tx_bytes_per_s": _BYTES_RATE,
    "pcie_rx_bytes_per_s": _BYTES_RATE,
    # memory
    "mem_used_bytes": _BYTES,
    "mem_free_bytes": _BYTES,
    "mem_total_bytes": _BYTES,
    "mem_reserved_bytes": _BYTES,
    "neuron_runtime_used_bytes": _BYTES,
    # errors, retries, remaps (counts, or increments / rates of counters)
    "ecc_sbe": _EVENTS_RATE,
    "ecc_dbe": _EVENTS_RATE,
    "mem_ecc_corrected": _EVENTS_RATE,
    "mem_ecc_uncorrected": _EVENTS_RATE,
    "sram_ecc_corrected": _EVENTS_RATE,
    "sram_ecc_uncorrected": _EVENTS_RATE,
    "row_remap_correctable": _EVENTS_RATE,
    "row_remap_uncorrectable": _EVENTS_RATE,
    "row_remap_pending": _EVENTS_RATE,
    "row_remap_failure": _EVENTS_RATE,
    "pcie_replay": _EVENTS_RATE,
    "nvlink_crc_errors": _EVENTS_RATE,
    "nvlink_crc_flit": _EVENTS_RATE,
    "nvlink_crc_data": _EVENTS_RATE,
    "xid_total": _EVENTS_RATE,
    "neuroncores_in_use": _EVENTS_RATE,
    "nc_count": _EVENTS_RATE,
    "clock_event_reasons": (0.0, 2.0**64),  # a bit mask
    # application timings
    "step_time_ms": _LATENCY_MS,
    "latency_p50_ms": _LATENCY_MS,
    "latency_p99_ms": _LATENCY_MS,
}


def plausible_range(metric: str, overrides: Mapping[str, tuple[float, ...]]) -> tuple[float, float]:
    got = overrides.get(metric)
    if got is not None:
        return float(got[0]), float(got[1])
    return DEFAULT_PLAUSIBLE.get(metric, FALLBACK)


class ValueBounds:
    """The range check of one pipeline's metric columns, with its rejection counters (checkpointed; the
    ranges are read from the configuration each window, so a changed setting applies after a restore)."""

    def __init__(self, metrics: list[str], cfg: Any) -> None:
        self.metrics = list(metrics)
        self.cfg = cfg  # the WindowConfig (``plausible``)
        self.rejected: Counter[str] = Counter()

    def ranges(self) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        pairs = [plausible_range(m, self.cfg.plausible) for m in self.metrics]
        return np.array([p[0] for p in pairs]), np.array([p[1] for p in pairs])

    def apply(self, x: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
        """A copy of the window values ``x`` [S, M] with implausible values replaced by NaN (counted)."""
        lo, hi = self.ranges()
        inf = np.isinf(x)
        below = (x < lo) & ~inf
        above = (x > hi) & ~inf
        bad = inf | below | above
        if not bad.any():
            return x.copy()
        self.rejected["non_finite"] += int(inf.sum())
        self.rejected["below_range"] += int(below.sum())
        self.rejected["above_range"] += int(above.sum())
        return np.where(bad, np.nan, x)
