"""The null model: AR(1) autocorrelation, heavy tails, offsets, diurnal cycle, regime steps."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from tessera_daemon.sim import METRICS
from tests.sim.runs import SMALL, Run, run

GAUGES = ("gpu_util", "sm_clock_mhz", "power_w", "temp_c", "mem_bw_util", "step_time_ms", "nvlink_tx_bytes")


def channel(r: Run, metric: str) -> np.ndarray:
    """[ticks, shards] series of a metric's channel: log for step time, rate for the NVLink counter."""
    x = r.values[:, :, r.col(metric)]
    if metric == "step_time_ms":
        logged: np.ndarray = np.log(x)
        return logged
    if metric == "nvlink_tx_bytes":
        d = np.diff(x, axis=0)
        rate: np.ndarray = np.where(d < 0, d + 2.0**64, d)
        return rate
    return x


def detrend(x: np.ndarray) -> np.ndarray:
    t = np.arange(len(x), dtype=float)
    design = np.stack([np.ones_like(t), t], axis=1)
    coef, *_ = np.linalg.lstsq(design, x, rcond=None)
    out: np.ndarray = x - design @ coef
    return out


def lag1(x: np.ndarray) -> float:
    """Mean over shards of the lag-1 autocorrelation of each (detrended) column."""
    x = detrend(x)
    num = (x[1:] * x[:-1]).sum(axis=0)
    den = (x * x).sum(axis=0)
    return float(np.mean(num / den))


def kurtosis(x: np.ndarray) -> float:
    x = (x - x.mean(axis=0)).ravel()
    return float(np.mean(x**4) / np.mean(x**2) ** 2)


@pytest.fixture(scope="module")
def long_run() -> Run:
    return run(SMALL, ticks=2500)


@pytest.mark.parametrize("metric", GAUGES)
def test_lag1_autocorrelation_is_rho(long_run: Run, metric: str) -> None:
    assert lag1(channel(long_run, metric)) == pytest.approx(0.8, abs=0.03)


def test_rho_is_configurable() -> None:
    r = run(replace(SMALL, rho=0.4), ticks=1500)
    assert lag1(channel(r, "temp_c")) == pytest.approx(0.4, abs=0.04)


def test_heavy_tails_with_df4_and_gaussian_with_large_df(long_run: Run) -> None:
    x = detrend(channel(long_run, "sm_clock_mhz"))
    innovations = x[1:] - 0.8 * x[:-1]
    assert kurtosis(x) > 3.3
    assert kurtosis(innovations) > 4.5
    light = run(replace(SMALL, tail_df=1000.0), ticks=1500)
    y = detrend(channel(light, "sm_clock_mhz"))
    assert kurtosis(y[1:] - 0.8 * y[:-1]) == pytest.approx(3.0, abs=0.15)


def test_noise_sigma_and_persistent_offsets(long_run: Run) -> None:
    temp = channel(long_run, "temp_c")
    sd_within = detrend(temp).std(axis=0)
    assert np.median(sd_within) == pytest.approx(1.0, rel=0.15)  # temp sigma 1 C
    cohort = long_run.sim.layout.cohort_of
    means = temp.mean(axis=0)
    spread = np.std(means[cohort == 0])
    assert 1.2 < spread < 3.0  # per-shard offsets, sd 2 sigma, far above the mean's standard error
    util = long_run.values[:, :, long_run.col("gpu_util")]
    assert 0.8 < np.median(util) < 1.0
    assert util.max() <= 1.0
    assert util.min() >= 0.0
    step = long_run.values[:, :, long_run.col("step_time_ms")]
    assert (step > 0).all()
    assert 150 < np.median(step) < 800
    assert np.median(long_run.values[:, :, long_run.col("power_w")]) == pytest.approx(600, abs=60)


def test_power_follows_util(long_run: Run) -> None:
    u = detrend(channel(long_run, "gpu_util"))
    p = detrend(channel(long_run, "power_w"))
    corr = np.mean((u * p).sum(axis=0) / np.sqrt((u * u).sum(axis=0) * (p * p).sum(axis=0)))
    assert 0.4 < corr < 0.8


def test_diurnal_cycle_is_shared_by_every_shard() -> None:
    cfg0 = replace(SMALL, diurnal_amplitude=0.0, diurnal_period_s=400.0)
    cfg2 = replace(cfg0, diurnal_amplitude=2.0)
    a, b = run(cfg0, ticks=400), run(cfg2, ticks=400)
    d = b.values[:, :, b.col("power_w")] - a.values[:, :, a.col("power_w")]
    want = 2.0 * 15.0 * np.sin(2 * math.pi * a.ts / 400.0)
    assert np.allclose(d, want[:, None], atol=0.011)


def test_regime_steps_move_a_whole_cohort_together() -> None:
    base = run(SMALL, ticks=800)
    regime = run(replace(SMALL, regime_every_s=100.0), ticks=800)
    steps = regime.sim.regime_steps
    assert len(steps) >= 4
    assert {c for _, c, _ in steps} == {"job-0", "job-1"}
    assert all(1.0 <= abs(s) <= 2.0 for _, _, s in steps)
    col = METRICS.index("power_w")
    d = regime.values[:, :, col] - base.values[:, :, col]
    cohort = regime.sim.layout.cohort_of
    for c in (0, 1):
        dc = d[:, cohort == c]
        assert np.allclose(dc, dc[:, :1], atol=0.011)  # same shift for every shard of the job
        assert np.abs(dc).max() > 14.0  # at least one step of >= 1 sigma (15 W)
    assert not np.allclose(d[:, cohort == 0][:, 0], d[:, cohort == 1][:, 0])
    temp = METRICS.index("temp_c")
    assert np.array_equal(regime.values[:, :, temp], base.values[:, :, temp])  # temp has no regime weight
