"""The drill's scenario: the fixed cluster, the three faults, the drill's configuration."""

from __future__ import annotations

import contextlib
import dataclasses
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tessera_daemon.config import (
    Config,
    DaemonConfig,
    HttpConfig,
    SimConfig,
    WindowConfig,
)
from tessera_daemon.settings.sources import SourcesConfig
from tessera_daemon.sim import SCENARIOS, FaultSpec, Scenario

if TYPE_CHECKING:
    from tessera_daemon.drill.observe import FiringSeen

JSON = dict[str, Any]

SCENARIO_NAME = "drill"
ROUTING_KEY = "0123456789abcdef0123456789abcdef"
CLUSTER = "drill"
TICK_S = 1.0
WINDOW_S = 5.0
TOPOLOGY = {"zones": 1, "racks_per_zone": 4, "hosts_per_rack": 2, "shards_per_host": 8, "cohorts": 2}
READY_MARGIN_TICKS = 20  # faults start this long after the last warm-up window
STAGGER_TICKS = 20
DETECT_TICKS = 100  # simulated time the detectors need (straggler ~70 ticks, rack ~100 with the 30-tick ramp)
HOLD_WALL_S = 12.0  # wall time each firing stays open after detection: scrape + eval + for + group_wait + margin
RESOLVE_TICKS = 200  # simulated time to resolve after the fault clears (rules.clear_windows, evidence decay)
SLACK_WALL_S = 45.0  # start-up (kernels, Prometheus discovery ~5 s) and notification slack
POLL_S = 0.1
SETTLE_S = 3.0  # keep watching after the last resolve: late or stray notifications still count

MOMENTS = (
    "injected",
    "firing_opened",
    "alert_firing",
    "page_received",
    "cleared",
    "firing_resolved",
    "alert_resolved",
    "resolve_received",
)
LATENCIES: tuple[tuple[str, str, str], ...] = (
    ("fault_to_firing", "injected", "firing_opened"),
    ("firing_to_alert", "firing_opened", "alert_firing"),
    ("alert_to_page", "alert_firing", "page_received"),
    ("fault_to_page", "injected", "page_received"),
    ("clear_to_firing_resolved", "cleared", "firing_resolved"),
    ("firing_to_alert_resolved", "firing_resolved", "alert_resolved"),
    ("alert_resolved_to_resolve", "alert_resolved", "resolve_received"),
    ("clear_to_resolve", "cleared", "resolve_received"),
)
PD_SUMMARY = re.compile(r"^\[(FIRING|RESOLVED)(?::\d+)?\] (\S+)")


# ------------------------------------------------------------------------------------------ the scenario


@dataclass(frozen=True, slots=True)
class Case:
    """One injected fault and what it must produce."""

    name: str
    spec: FaultSpec
    target: str
    rack: str
    alertname: str
    pd_severity: str
    classification: str

    def opens(self, f: FiringSeen) -> bool:
        """The daemon firing that stands for this fault."""
        if self.name == "rack":
            return f.scope == "rack" and f.target == self.target and f.classification == "common_mode"
        return f.scope == "shard" and f.target == self.target and self.classification in f.classifications

    def alert(self, labels: dict[str, str]) -> bool:
        """The Prometheus alert (labels) that stands for this fault."""
        if labels.get("alertname") != self.alertname:
            return False
        if self.name == "rack":
            return labels.get("scope") == "rack" and labels.get("rack") == self.rack
        return labels.get("target") == self.target


def fault_ticks(speedup: float) -> int:
    """How long each fault lasts, in ticks: detection plus HOLD_WALL_S of wall time."""
    return DETECT_TICKS + math.ceil(HOLD_WALL_S * speedup / TICK_S)


def drill_cases(warmup_windows: int, speedup: float) -> list[Case]:
    """The drill's faults; ``warmup_windows`` is the longest warm-up (``detector.warmup_max_windows``):
    a fault inside a stream's adaptive warm-up would be learnt as its baseline."""
    start = math.ceil(warmup_windows * WINDOW_S / TICK_S) + READY_MARGIN_TICKS
    d = fault_ticks(speedup)
    shard, rack, hard = "z0-r00-h00-g3", "z0-r02", "z0-r03-h01-g5"
    return [
        Case(
            "shard",
            FaultSpec("straggler", start_tick=start, duration_ticks=d, magnitude=5.0, target=shard),
            shard,
            "z0-r00",
            "TesseraShardFault",
            "error",
            "shard_fault",
        ),
        Case(
            "rack",
            FaultSpec("thermal_rack", start_tick=start + STAGGER_TICKS, duration_ticks=d, magnitude=3.0, target=rack),
            rack,
            rack,
            "TesseraCommonModeRack",
            "error",
            "common_mode",
        ),
        Case(
            "hard",
            FaultSpec("xid79", start_tick=start + 2 * STAGGER_TICKS, duration_ticks=d, target=hard),
            hard,
            "z0-r03",
            "TesseraHardFault",
            "critical",
            "hard_fault",
        ),
    ]


def drill_config(cfg: Config, speedup: float, start_ts: float) -> Config:
    """The daemon configuration of the drill: the given detector and rules, the drill's simulator, window,
    sources (the simulator, polled once per window), HTTP (loopback, a free port) and defaults elsewhere."""
    sim = dataclasses.replace(
        SimConfig(),
        seed=cfg.sim.seed,
        scenario=SCENARIO_NAME,
        tick_s=TICK_S,
        speedup=speedup,
        start_ts=start_ts,
        duration_s=0.0,
        **TOPOLOGY,
    )
    return Config(
        daemon=DaemonConfig(cluster=CLUSTER),
        http=HttpConfig(host="127.0.0.1", port=0),
        log=cfg.log,
        window=WindowConfig(length_s=WINDOW_S),
        detector=cfg.detector,
        rules=cfg.rules,
        sim=sim,
        sources=dataclasses.replace(SourcesConfig(), poll_interval_s=max(0.02, WINDOW_S / speedup)),
    )


@contextlib.contextmanager
def registered(scenario: Scenario) -> Iterator[None]:
    """``scenario`` in the simulator's catalogue (``sim.scenario`` takes a name) for the duration."""
    previous = SCENARIOS.get(scenario.name)
    SCENARIOS[scenario.name] = scenario
    try:
        yield
    finally:
        if previous is None:
            SCENARIOS.pop(scenario.name, None)
        else:
            SCENARIOS[scenario.name] = previous


def for_cap(speedup: float) -> str:
    """One minute of simulated time in wall seconds (Prometheus duration), at least 1 s."""
    return f"{max(1, math.ceil(60.0 / speedup))}s"
