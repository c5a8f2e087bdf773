"""Values are bounded and the numeric core stays finite under any input.

- The pipeline treats a window value outside its metric's plausible range as missing (counted by reason)
  before it reaches any state.
- Even when a range lets an absurd value through (``window.plausible`` opened wide), the residual model,
  Family A and the families C, D, E keep every state array free of infinities, their evidence finite, and
  the stream's evidence moves again on the next normal window (``rp * rp`` once overflowed at ~1e154 and
  left phi NaN for good).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tessera_daemon.config import Config, load_config
from tessera_daemon.detect.kernels import family_a_update
from tessera_daemon.detect.state import DetectorState
from tessera_daemon.engine.bounds import DEFAULT_PLAUSIBLE, ValueBounds
from tessera_daemon.engine.families import Families
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.errors import ConfigError
from tessera_daemon.sim import ClusterSim
from tessera_daemon.sim.metrics import METRICS as SIM_METRICS

HOSTILE = (np.inf, -np.inf, np.nan, 1e308, -1e308, 5e-324, -5e-324, 0.0)
SMALL = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "1",
    "TESSERA_SIM__HOSTS_PER_RACK": "2",
    "TESSERA_SIM__COHORTS": "1",
    "TESSERA_DETECTOR__WARMUP_WINDOWS": "10",
    "TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "20",
    "TESSERA_DETECTOR__FAMILIES": '["C", "D", "E"]',
}


def arrays(obj: Any, path: str = "", seen: set[int] | None = None) -> Iterator[tuple[str, np.ndarray]]:
    """Every float array reachable from ``obj`` (the pipeline's whole state), with its path."""
    seen = set() if seen is None else seen
    if id(obj) in seen or isinstance(obj, str | bytes | int | float | type(None)):
        return
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        if obj.dtype.kind == "f":
            yield path, obj
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from arrays(v, f"{path}[{k!r}]", seen)
        return
    if isinstance(obj, list | tuple):
        for i, v in enumerate(obj):
            yield from arrays(v, f"{path}[{i}]", seen)
        return
    module = type(obj).__module__
    if module.startswith("tessera_daemon.") and not module.startswith("tessera_daemon.config"):
        names = list(getattr(obj, "__dict__", {}))
        names += [s for c in type(obj).__mro__ for s in getattr(c, "__slots__", ()) if hasattr(obj, s)]
        for n in names:
            if n not in ("cfg", "topology"):
                yield from arrays(getattr(obj, n), f"{path}.{n}", seen)


def no_infinity(obj: Any) -> list[str]:
    return [p for p, a in arrays(obj) if np.isinf(a).any()]


def run(cfg: Config, inject: dict[int, float], ticks: int = 260) -> tuple[Pipeline, list[float]]:
    """The simulator through a pipeline; at the ticks in ``inject`` shard 0's gpu_util is that value.
    Returns the pipeline and shard 0's gpu_util evidence from the first window after the last injection."""
    sim = ClusterSim(cfg.sim, scenario="clean", seed=1)
    p = Pipeline(cfg, sim.topology)
    j = p.metrics.index("gpu_util")
    shard = p.shards[0]
    evidence: dict[int, float] = {}
    after = -1
    for t in range(ticks):
        _ts, frames = sim.step()
        if t in inject:
            frames = [
                dataclasses.replace(f, metrics={**f.metrics, "gpu_util": inject[t]}) if f.shard == shard else f
                for f in frames
            ]
            after = p.assembler.window_of(frames[0].ts) + 1
        p.ingest(frames)
        for r in p.advance():
            evidence[r.index] = float(p.state.log_m[0, j])
    assert p.state.warm()[0, j] and after in evidence
    return p, [e for k, e in sorted(evidence.items()) if k >= after]


def test_default_ranges_cover_every_metric_the_simulator_and_the_detector_watch() -> None:
    cfg = load_config(None, {})
    assert set(cfg.detector.metrics) <= set(DEFAULT_PLAUSIBLE)
    assert set(SIM_METRICS) <= set(DEFAULT_PLAUSIBLE)
    assert all(lo < hi and np.isfinite(lo) and np.isfinite(hi) for lo, hi in DEFAULT_PLAUSIBLE.values())


def test_implausible_values_are_missing_and_counted_by_reason() -> None:
    cfg = load_config(None, {"TESSERA_WINDOW__PLAUSIBLE__POWER_W": "[10, 2000]"})
    b = ValueBounds(["gpu_util", "power_w", "app_loss"], cfg.window)
    x = np.array([[0.5, 500.0, 1.0], [1e308, 5.0, 2e15], [-1.0, np.inf, np.nan], [np.nan, 2500.0, -1e20]])
    got = b.apply(x)
    assert np.isnan(got[1:]).sum() == 9 and got[0].tolist() == [0.5, 500.0, 1.0]
    assert dict(b.rejected) == {"above_range": 3, "below_range": 3, "non_finite": 1}
    assert x[1, 0] == 1e308  # the window's own values are left alone


def test_plausible_ranges_are_validated() -> None:
    with pytest.raises(ConfigError, match=r"window\.plausible\.gpu_util"):
        load_config(None, {"TESSERA_WINDOW__PLAUSIBLE__GPU_UTIL": "[2, 1]"})
    with pytest.raises(ConfigError, match=r"window\.plausible\.gpu_util.*finite"):
        load_config(None, {"TESSERA_WINDOW__PLAUSIBLE__GPU_UTIL": "[0, inf]"})


@pytest.mark.filterwarnings("ignore:overflow encountered:RuntimeWarning")  # two in one window sum to inf
def test_a_1e308_value_is_rejected_before_any_state_and_the_stream_goes_on() -> None:
    p, evidence = run(load_config(None, SMALL), {200: 1e308, 201: 1e308})
    assert sum(p.bounds.rejected.values()) >= 1  # above_range, or non_finite when two summed to inf
    assert no_infinity(p) == []
    assert np.isfinite(evidence).all() and len(set(evidence[:5])) > 1  # evidence moves on


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy says where it overflowed: not a failure here
@pytest.mark.parametrize("value", [1e308, -1e308, 1e200, 1e155, 5e-324])
def test_even_let_through_an_absurd_value_leaves_the_state_finite_and_evidence_moving(value: float) -> None:
    """``window.plausible`` opened to the whole float range: the value reaches the residual model and every
    detector family; afterwards no state array holds an infinity and the evidence moves on."""
    cfg = load_config(None, {**SMALL, "TESSERA_WINDOW__PLAUSIBLE__GPU_UTIL": "[-1.7e308, 1.7e308]"})
    p, evidence = run(cfg, {200: value, 201: value, 205: value})
    j = p.metrics.index("gpu_util")
    assert no_infinity(p) == []
    for name in ("phi", "offset", "scale", "ew_xx", "ew_xy", "ew_uu", "log_m"):
        assert np.isfinite(getattr(p.state, name)[0, j]), name
    assert np.isfinite(p.table.last_w[0, j])
    assert np.isfinite(evidence).all() and len(set(evidence[:5])) > 1


def test_family_a_and_families_c_d_e_stay_finite_under_hostile_standardised_residuals() -> None:
    metrics = ["gpu_util", "sm_clock_mhz", "power_w", "step_time_ms"]
    s, m = 8, len(metrics)
    fam = Families(s, metrics, ("C", "D", "E"), ("sm_clock_mhz", "step_time_ms"), 7)
    bets = np.array([0.1, 0.25, 0.5, 1.0, 1.5])
    st = DetectorState.empty(s, m, 20, len(bets))
    rng = np.random.default_rng(0)
    cohort = np.zeros(s, np.int64)
    trace: list[np.ndarray] = []
    for t in range(300):
        w = rng.standard_normal((s, m))
        w[7] = 1.0  # a constant stream
        w[6] = 0.0  # and one exactly at zero
        if 100 <= t < 116:  # every hostile value, in every position
            w[0] = HOSTILE[t % len(HOSTILE)]
            w[1, t % m] = HOSTILE[(t + 3) % len(HOSTILE)]
        delta, v = np.full((s, m), 0.1), np.full((s, m), 1.2)
        family_a_update(w, delta, v, bets, 4.0, t, st.e_state, st.run_start, st.log_m, st.side)
        fam.update(w, delta, v, cohort, 1, 4.0, t)
        trace.append(np.concatenate([st.log_m[:2].ravel(), fam.c[5][:2], fam.d[4][:2].ravel(), fam.e[2][:2]]))
    assert no_infinity(fam) == [] and no_infinity(st) == []
    for evidence in (st.log_m, fam.c[5], fam.d[4], fam.e[2]):
        assert np.isfinite(evidence).all()
    after = np.array(trace[116:126])
    assert (np.ptp(after, axis=0) > 0).all()  # every evidence stream moves again after the hostile windows
