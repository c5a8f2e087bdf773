"""The scenario catalogue the console and ``tessera-daemon demo --list`` show: each built-in scenario,
what it injects, and what the daemon should find."""

from __future__ import annotations

from typing import Any

from tessera_daemon.sim.scenarios import SCENARIOS

# What the daemon should find for each scenario of tessera_daemon/sim/scenarios.py (the console's picker).
EXPECT: dict[str, str] = {
    "clean": "Nothing: no firing at all (the null model; a firing here is a false alarm).",
    "sdc_drift": "A shard_fault (Family A, power_w) on the drifting shard once the ramp exceeds the noise.",
    "straggler": "A shard_fault on step_time_ms for the slow shard within a few windows of the step.",
    "thermal_rack": "A common_mode firing on temp_c localised to the rack (not to its shards one by one).",
    "psu_cap": "A common_mode firing on power_w / sm_clock_mhz localised to the capped PSU.",
    "nvlink_degrade": "A common_mode firing on nvlink_tx_bytes localised to the host (its NVLink domain).",
    "fleet_regime_change": "No page: the whole cohort moved together, which the peer residual cancels.",
    "firmware_push": "The announced firmware push on the events timeline, its rack frozen on the map; firings "
    "inside it, if any, are event_conditional (info), never paged. With --unannounced (the push "
    "not announced): the rack's clocks fire as a common mode (a page).",
    "xid79": "A hard_fault (rule:xid) at once on the shard, then the shard shown stale / lost.",
    "ecc_dbe": "A hard_fault (rule:ecc_dbe) on the shard whose uncorrectable ECC counter moved.",
    "device_lost": "A hard_fault (rule:device_lost): the silent device is shown lost on the map.",
    "sparse": "No firing: the shards that stop reporting turn stale on the map and come back.",
    "demo": "Four incidents in turn: straggler (shard_fault, step_time_ms), SDC ramp (shard_fault, power_w), "
    "rack thermal (common_mode, temp_c, on the rack) and XID 79 (hard_fault).",
    "mixed": "Six concurrent incidents on different shards and racks: two shard faults, a rack, a PSU, a host "
    "and a hard fault.",
}


def catalogue() -> list[dict[str, Any]]:
    """Every scenario: name, what it injects, and what the daemon should find."""
    return [
        {
            "name": s.name,
            "injects": s.description,
            "expect": EXPECT.get(s.name, ""),
            "faults": [f.kind for f in s.faults],
            "command": f"tessera-daemon demo {s.name}",
        }
        for s in sorted(SCENARIOS.values(), key=lambda s: (s.name != "demo", s.name))
    ]


def scenario_info(name: str, simulator: Any = None) -> dict[str, Any]:
    """The running scenario for the console; with the running ``ClusterSim``, its faults' targets and times."""
    s = SCENARIOS.get(name)
    out: dict[str, Any] = {"name": name, "injects": s.description if s else "", "expect": EXPECT.get(name, "")}
    if simulator is not None:
        out["faults"] = [
            {k: f[k] for k in ("kind", "scope", "target", "metric", "start_ts", "end_ts", "event_id")}
            for f in simulator.labels()["faults"]
        ]
    return out
