"""The one small protocol every substrate source implements.

A source is opened once, polled every ``sources.poll_interval_s`` by the supervisor (each poll bounded
by ``sources.timeout_s``), asked for its part of the topology when the supervisor refreshes topology,
and closed on shutdown. Sources know nothing about Redis or the detector: they return frames.

Errors: raise :class:`~tessera_daemon.errors.SubstrateUnavailable` / ``SubstrateTimeout`` for
conditions worth retrying (the supervisor backs off with jitter and counts them), and
``SubstrateFatal`` for input that can never be used. Partial data is returned, not hidden: a poll
that could read 6 of 8 GPUs returns 6 frames (and, for lost devices, frames with ``lost=True``).
Blocking library calls (NVML, subprocess waits) must run off the event loop
(``asyncio.to_thread``) so one slow substrate never stalls the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from tessera_daemon.model import Frame, TopoEdge, TopoNode


@dataclass(frozen=True, slots=True)
class TopologyPart:
    """What one source knows of the topology: nodes and edges, possibly referring to nodes that
    another source contributes (merged by ``sources.merge.merge_topology``)."""

    source: str
    nodes: Sequence[TopoNode] = ()
    edges: Sequence[TopoEdge] = ()
    partial: bool = False
    notes: Sequence[str] = field(default_factory=tuple)


@runtime_checkable
class Source(Protocol):
    """A substrate poller."""

    name: str

    async def open(self) -> None:
        """Connect / initialise. May raise SubstrateUnavailable; the supervisor retries."""

    async def poll(self, now: float) -> Sequence[Frame]:
        """Read one sample of every shard this source sees. ``now`` is the poll's unix time."""
        ...

    async def topology(self) -> TopologyPart:
        """This source's part of the topology (may be empty)."""
        ...

    async def close(self) -> None:
        """Release resources. Must not raise."""
