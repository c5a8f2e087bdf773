"""Fault specifications and the named scenario catalogue of the simulator.

A :class:`Scenario` is a name, a line of description and a tuple of :class:`FaultSpec`. Ticks are
counted from 0 (the first sample of a run); single-fault scenarios start their fault at tick 400 so a
detector can learn baselines first.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from tessera_daemon.errors import ConfigError
from tessera_daemon.sim.metrics import GAUGE_METRICS

STATISTICAL_KINDS: tuple[str, ...] = (
    "sdc_drift",
    "straggler",
    "thermal_rack",
    "psu_cap",
    "nvlink_degrade",
    "fleet_regime_change",
    "firmware_push",
)
HARD_KINDS: tuple[str, ...] = ("xid79", "ecc_dbe", "device_lost")
FAULT_KINDS: tuple[str, ...] = (*STATISTICAL_KINDS, *HARD_KINDS, "sparse")
BENIGN_KINDS: frozenset[str] = frozenset({"fleet_regime_change", "firmware_push"})

DEFAULT_SDC_METRIC = "power_w"
DEFAULT_START_TICK = 400

_FIELD = "sim.scenario"


@dataclass(frozen=True, slots=True)
class FaultSpec:
    """One injected fault.

    ``magnitude`` is in noise sigmas of the affected channel (signed; ignored for hard faults and
    sparse). ``duration_ticks`` None: until the end of the run. ``target`` None: chosen
    deterministically from the seed. ``metric`` only for sdc_drift (default ``power_w``).
    ``ramp_ticks`` None: the kind's default (sdc_drift 200, thermal_rack 30, others a step).
    ``fraction``: share of shards that stop reporting for an untargeted sparse fault.
    """

    kind: str
    start_tick: int = DEFAULT_START_TICK
    duration_ticks: int | None = None
    magnitude: float = 3.0
    target: str | None = None
    metric: str | None = None
    ramp_ticks: int | None = None
    fraction: float = 0.03

    def __post_init__(self) -> None:
        if self.kind not in FAULT_KINDS:
            raise ConfigError(_FIELD, f"unknown fault kind {self.kind!r} (one of {', '.join(FAULT_KINDS)})")
        if self.start_tick < 0:
            raise ConfigError(_FIELD, f"{self.kind}: start_tick must be >= 0, got {self.start_tick}")
        if self.duration_ticks is not None and self.duration_ticks < 1:
            raise ConfigError(_FIELD, f"{self.kind}: duration_ticks must be >= 1 or None")
        if self.ramp_ticks is not None and self.ramp_ticks < 0:
            raise ConfigError(_FIELD, f"{self.kind}: ramp_ticks must be >= 0 or None")
        if not 0.0 < self.fraction <= 1.0:
            raise ConfigError(_FIELD, f"{self.kind}: fraction must be in (0, 1], got {self.fraction}")
        if self.metric is not None:
            if self.kind != "sdc_drift":
                raise ConfigError(_FIELD, f"{self.kind}: only sdc_drift takes a metric")
            if self.metric not in GAUGE_METRICS:
                raise ConfigError(
                    _FIELD, f"sdc_drift: unknown metric {self.metric!r} (one of {', '.join(GAUGE_METRICS)})"
                )

    @property
    def hard(self) -> bool:
        return self.kind in HARD_KINDS

    @property
    def benign(self) -> bool:
        return self.kind in BENIGN_KINDS

    @property
    def ramp(self) -> int:
        if self.ramp_ticks is not None:
            return self.ramp_ticks
        return {"sdc_drift": 200, "thermal_rack": 30}.get(self.kind, 0)


@dataclass(frozen=True, slots=True)
class Scenario:
    name: str
    description: str
    faults: tuple[FaultSpec, ...] = ()


def _single(kind: str, description: str, **kw: Any) -> Scenario:
    return Scenario(kind, description, (FaultSpec(kind, **kw),))


_CATALOGUE: tuple[Scenario, ...] = (
    Scenario("clean", "no faults: the null model only (false-alarm measurements)"),
    _single("sdc_drift", "one shard's power_w ramps to +8 sigma (+20 %) over 200 ticks from tick 400", magnitude=8.0),
    _single("straggler", "one shard's step_time_ms steps up 8 sigma (log scale, +27 %) at tick 400", magnitude=8.0),
    _single("thermal_rack", "temp_c of one rack rises 5 sigma (+5 C) over 30 ticks from tick 400", magnitude=5.0),
    _single(
        "psu_cap", "power_w and sm_clock_mhz of one PSU's shards drop 8 sigma (-20 %, -6 %) at tick 400", magnitude=8.0
    ),
    _single(
        "nvlink_degrade", "one host's NVLink rate drops 8 sigma (-30 %; step time +4 sigma) at tick 400", magnitude=8.0
    ),
    _single("fleet_regime_change", "benign: every shard of one cohort shifts 2 sigma at tick 400", magnitude=2.0),
    _single(
        "firmware_push",
        "benign, announced: one rack's hosts get +3 sigma sm_clock_mhz, rolled out over ticks 400-460",
        duration_ticks=60,
    ),
    _single("xid79", "one shard reports XID 79 at tick 400, then is lost to the end"),
    _single("ecc_dbe", "one shard's ecc_dbe counter increments (1-3) at tick 400"),
    _single("device_lost", "one shard's frames are lost=True from tick 400 to the end"),
    _single("sparse", "3% of shards stop reporting for ticks 400-600", duration_ticks=200),
    Scenario(
        "demo",
        "live default, all within 1800 ticks and after the warm-up: straggler (900-1100), "
        "sdc_drift (1140-1360, 60-tick ramp), thermal_rack (1400-1600), xid79 (1620, lost for 60 ticks)",
        (
            FaultSpec("straggler", start_tick=900, duration_ticks=200, magnitude=10.0),
            FaultSpec("sdc_drift", start_tick=1140, duration_ticks=220, magnitude=12.0, ramp_ticks=60),
            FaultSpec("thermal_rack", start_tick=1400, duration_ticks=200, magnitude=6.0),
            FaultSpec("xid79", start_tick=1620, duration_ticks=60),
        ),
    ),
    Scenario(
        "mixed",
        "concurrent faults on different shards and racks: sdc_drift, straggler, thermal_rack, "
        "psu_cap, nvlink_degrade, xid79 starting between ticks 400 and 650",
        (
            FaultSpec("sdc_drift", start_tick=400, magnitude=8.0),
            FaultSpec("straggler", start_tick=450, magnitude=8.0),
            FaultSpec("thermal_rack", start_tick=500, magnitude=5.0),
            FaultSpec("psu_cap", start_tick=550, magnitude=8.0),
            FaultSpec("nvlink_degrade", start_tick=600, magnitude=8.0),
            FaultSpec("xid79", start_tick=650, duration_ticks=200),
        ),
    ),
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in _CATALOGUE}
"""Named scenarios; one per fault kind (same name as the kind), plus clean, demo and mixed."""


def get_scenario(name: str) -> Scenario:
    """The named scenario; ConfigError listing the known names when there is none."""
    try:
        return SCENARIOS[name]
    except KeyError:
        raise ConfigError(_FIELD, f"unknown scenario {name!r} (known: {', '.join(sorted(SCENARIOS))})") from None
