"""What a detector worker shows: the snapshots of every partition it owns, merged into one.

The worker runs one pipeline per partition (windows close per partition, in that partition's event
time) and takes a ``PipelineSnapshot`` of each after it processed windows. The web layer reads one
snapshot; ``PartitionView.refresh`` merges the partitions' snapshots (``engine.snapshot_merge.merge_snapshots``)
over the union of their topology slices, caching that union and the joined event book while the
partitions' topologies and event books stay the same. Nothing here holds or feeds a pipeline.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping, Sequence
from types import MappingProxyType

from tessera_daemon.config import Config
from tessera_daemon.engine.events import EventBook, EventRecord
from tessera_daemon.engine.snapshot import EventsSnapshot, PipelineSnapshot
from tessera_daemon.engine.snapshot_merge import merge_snapshots
from tessera_daemon.model import Topology
from tessera_daemon.transport.registry import merge_slices


class PartitionView:
    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.topology = Topology([])
        self._members: Mapping[str, list[str]] = MappingProxyType(self.topology.members())
        self._topology_key: tuple[tuple[str, int], ...] = ()
        self._held: list[Topology] = []  # keeps the keyed topologies alive (their ids stay theirs)
        self._events_key: tuple[tuple[str, int], ...] | None = None
        self._events = EventBook(self.topology, cfg.events)

    def refresh(self, parts: Mapping[str, PipelineSnapshot], threshold_log: float | None = None) -> PipelineSnapshot:
        """One snapshot over every partition in ``parts`` (partition token -> its latest snapshot)."""
        ordered = sorted(parts.items())
        key = tuple((t, id(p.topology)) for t, p in ordered)
        if key != self._topology_key:
            self.topology = merge_slices([p.topology.to_json() for _t, p in ordered]) if ordered else Topology([])
            self._members = MappingProxyType(self.topology.members())
            self._topology_key = key
            self._held = [p.topology for _t, p in ordered]
            self._events_key = None
        ev_key = tuple((t, p.events.version) for t, p in ordered)
        if ev_key != self._events_key:
            self._events = _merged_events(self.topology, [p.events.records for _t, p in ordered], self.cfg)
            self._events_key = ev_key
        snaps = [p for _t, p in ordered]
        windows = [p for p in snaps if p.windows_processed]
        end = max(p.end_ts for p in windows) if windows else time.time()
        return merge_snapshots(
            snaps,
            self.topology,
            EventsSnapshot.of(self._events, end),
            cfg=self.cfg,
            threshold_log=threshold_log,
            members=self._members,
        )


def _merged_events(topology: Topology, books: Sequence[Sequence[EventRecord]], cfg: Config) -> EventBook:
    """One event book over the union topology holding every partition's events. A partition's copy of
    an event has its scope cut to that partition's nodes, so copies of one event are joined back: the
    union of their scopes (fleet-wide if any copy is)."""
    copies: dict[str, list[EventRecord]] = {}
    for records in books:
        for rec in records:
            copies.setdefault(rec.id, []).append(rec)
    out = EventBook(topology, cfg.events)
    for recs in copies.values():
        first = recs[0]
        fleet = any(r.event.fleet_wide for r in recs)
        scope = ("fleet",) if fleet else tuple(dict.fromkeys(n for r in recs for n in r.event.scope))
        out.add(dataclasses.replace(first.event, scope=scope), source=first.source, metadata=first.metadata)
    return out
