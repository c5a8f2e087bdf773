"""A small topology and config for the event tests."""

from __future__ import annotations

from typing import Any

from tessera_daemon.model import ClusterEvent, Firing, Topology, TopoNode
from tessera_daemon.settings.events import EventsConfig

SHARDS = ["h1/g0", "h1/g1", "h2/g0", "h3/g0"]


def topology() -> Topology:
    return Topology(
        [
            TopoNode("fleet", "fleet"),
            TopoNode("r1", "rack", "fleet"),
            TopoNode("r2", "rack", "fleet"),
            TopoNode("psu-a", "psu", "fleet"),
            TopoNode("h1", "host", "r1"),
            TopoNode("h2", "host", "r1"),
            TopoNode("h3", "host", "r2"),
            TopoNode("h1/g0", "shard", "h1", {"cohort": "j", "psu": "psu-a"}),
            TopoNode("h1/g1", "shard", "h1", {"cohort": "j"}),
            TopoNode("h2/g0", "shard", "h2", {"cohort": "j"}),
            TopoNode("h3/g0", "shard", "h3", {"cohort": "j", "psu": "psu-a"}),
        ]
    )


def cfg(**kw: Any) -> EventsConfig:
    return EventsConfig(**kw)


def event(
    eid: str,
    kind: str = "firmware_push",
    ts: float = 1000.0,
    scope: tuple[str, ...] = ("fleet",),
    end_ts: float | None = None,
) -> ClusterEvent:
    return ClusterEvent(eid, kind, ts, scope, end_ts)


def firing(
    target: str,
    opened_ts: float,
    detector: str = "A",
    classification: str = "shard_fault",
    members: list[str] | None = None,
    fid: str = "",
) -> Firing:
    return Firing(
        id=fid or f"{target}-{detector}-{opened_ts}",
        state="open",
        opened_ts=opened_ts,
        window=int(opened_ts / 5),
        scope="shard",
        target=target,
        members=members or [target],
        detector=detector,
        metric="sm_clock_mhz",
        log_evidence=9.0,
        threshold_log=8.0,
        classification=classification,
        receipt={"window_end_ts": opened_ts},
    )
