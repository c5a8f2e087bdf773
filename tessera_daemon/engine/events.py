"""Cluster events, the freeze hook and event-conditional attribution (pure, deterministic).

An announced change (contract 3: firmware push, driver update, redeploy, ...) legitimately moves a
shard's counters. The :class:`EventBook` keeps the recent events and answers, in *event time* (the
timestamps of the data, never the wall clock, so live runs and replays agree):

- which shards an event affects: its scope node ids expanded to their member shards through the
  topology (``"fleet"``: every shard; a shard id: that shard);
- its freeze window ``[ts, freeze_end)``: ``ts`` plus a per-kind window (``[events.windows]``), or,
  for an interval event (``end_ts`` set), ``end_ts`` plus the settle margin ``events.settle_s``;
- :meth:`EventBook.frozen`: the shards inside some event's window at ``ts``, whose baselines must not
  learn (the pipeline's ``frozen`` mask);
- :meth:`EventBook.ended_since` / :meth:`EventBook.take_ended`: the events whose window ended, whose
  shards re-learn their baselines then (a firmware push legitimately moves clocks);
- :meth:`EventBook.event_for` / :meth:`EventBook.attribute`: event-conditional attribution. A
  statistical firing that starts inside an event's window on an affected shard is labelled
  ``event_conditional`` with the ``event_id`` (it is evidence about the change, not a page).

Where several events cover a shard at one instant, the one that started last wins (ties: the
greater id), which is the nearest explanation. The book is bounded (``events.history``): past the
bound the event whose window ends first is forgotten; its id is still remembered, so a retried
delivery of a forgotten event is a duplicate rather than a fresh freeze.

DeploySignal (contract v1) events carry no topology scope: :func:`from_deploy_event` gives them
scope ``"fleet"`` unless ``metadata.scope`` holds comma-separated node ids (or ``"fleet"``).
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from tessera_daemon.errors import CodecError
from tessera_daemon.model import EVENT_KINDS, ClusterEvent, Firing, Topology
from tessera_daemon.settings.events import EventsConfig

FLEET = "fleet"
STATISTICAL_LABELS = frozenset({"shard_fault", "common_mode", "fleet_event"})
SHARDS_SHOWN = 100  # affected shards listed per event by ``EventRecord.to_obj``

AddStatus = Literal["added", "updated", "duplicate", "rejected"]


@dataclass(frozen=True, slots=True)
class EventRecord:
    """One accepted event with what the book derived from it."""

    event: ClusterEvent
    shards: tuple[str, ...]  # affected shard ids, sorted
    freeze_start_ts: float
    freeze_end_ts: float
    source: str = "api"
    metadata: Mapping[str, str] = field(default_factory=dict)
    shard_set: frozenset[str] = field(default=frozenset(), compare=False, repr=False)

    @property
    def id(self) -> str:
        return self.event.id

    def active_at(self, ts: float) -> bool:
        return self.freeze_start_ts <= ts < self.freeze_end_ts

    def covers(self, shard: str, ts: float) -> bool:
        return self.active_at(ts) and shard in self.shard_set

    def to_obj(self, now_ts: float | None = None) -> dict[str, Any]:
        obj = self.event.to_obj()
        obj["source"] = self.source
        if self.metadata:
            obj["metadata"] = {k: self.metadata[k] for k in sorted(self.metadata)}
        obj["freeze_start_ts"] = self.freeze_start_ts
        obj["freeze_end_ts"] = self.freeze_end_ts
        obj["affected_shards"] = len(self.shards)
        obj["shards"] = list(self.shards[:SHARDS_SHOWN])
        if len(self.shards) > SHARDS_SHOWN:
            obj["shards_truncated"] = True
        if now_ts is not None:
            obj["frozen_now"] = self.active_at(now_ts) and bool(self.shards)
        return obj


@dataclass(frozen=True, slots=True)
class AddResult:
    """What :meth:`EventBook.add` did: ``record`` is set unless the event was rejected."""

    status: AddStatus
    record: EventRecord | None = None
    reason: str = ""

    @property
    def ok(self) -> bool:
        return self.status != "rejected"


class EventBook:
    """Recent cluster events, their freeze windows and affected shards, in event time."""

    def __init__(self, topology: Topology, cfg: EventsConfig) -> None:
        self.cfg = cfg
        self._records: dict[str, EventRecord] = {}
        self._forgotten: OrderedDict[str, None] = OrderedDict()  # ids evicted by the history bound
        self._taken: set[str] = set()  # ids already returned by take_ended
        self._version = 0  # bumped on every change; keys the frozen-map cache
        self._frozen_cache: tuple[tuple[int, tuple[str, ...]], dict[str, str]] | None = None
        self.set_topology(topology)

    # ---------------------------------------------------------------------------- topology

    def set_topology(self, topology: Topology) -> None:
        """Adopt a (new) topology: affected shards of every kept event are expanded again."""
        self._version += 1
        self.topology = topology
        self._all_shards: tuple[str, ...] = tuple(topology.shards)
        self._members = topology.members()
        for eid, rec in list(self._records.items()):
            shards = tuple(self.affected_shards(rec.event))
            self._records[eid] = EventRecord(
                rec.event,
                shards,
                rec.freeze_start_ts,
                rec.freeze_end_ts,
                rec.source,
                rec.metadata,
                frozenset(shards),
            )

    def _expand(self, node_id: str) -> list[str] | None:
        node = self.topology.nodes.get(node_id)
        if node is None:
            return None
        if node.kind == "shard":
            return [node_id]
        return self._members.get(node_id, [])

    def affected_shards(self, event: ClusterEvent) -> list[str]:
        """Scope node ids expanded to member shards (sorted); ``"fleet"``: every shard.

        Node ids the topology does not (or no longer) know expand to nothing; :meth:`check` rejects
        them when an event arrives.
        """
        if event.fleet_wide:
            return list(self._all_shards)
        out: set[str] = set()
        for nid in event.scope:
            out.update(self._expand(nid) or ())
        return sorted(out)

    # ---------------------------------------------------------------------------- windows

    def window_s(self, event: ClusterEvent) -> float:
        """The per-kind freeze window of an event without ``end_ts``."""
        return self.cfg.windows.for_kind(event.kind)

    def freeze_bounds(self, event: ClusterEvent) -> tuple[float, float]:
        """``[start, end)`` of the event's freeze: interval events end at ``end_ts + settle_s``."""
        if event.end_ts is not None:
            return event.ts, event.end_ts + self.cfg.settle_s
        return event.ts, event.ts + self.window_s(event)

    # ---------------------------------------------------------------------------- adding

    def check(self, event: ClusterEvent) -> str | None:
        """Why ``event`` would be rejected (None: it would be accepted)."""
        if event.kind not in EVENT_KINDS:
            return f"unknown event kind {event.kind!r}"
        if not math.isfinite(event.ts) or (event.end_ts is not None and not math.isfinite(event.end_ts)):
            return "event times must be finite"
        if not event.fleet_wide:
            unknown = sorted({nid for nid in event.scope if nid not in self.topology.nodes})
            if unknown:
                shown = ", ".join(repr(u) for u in unknown[:5])
                more = f" and {len(unknown) - 5} more" if len(unknown) > 5 else ""
                return f"event {event.id!r}: scope names unknown topology nodes {shown}{more}"
        old = self._records.get(event.id)
        if old is not None and not _same_identity(old.event, event):
            return (
                f"event {event.id!r} already exists with a different kind, ts or scope "
                "(only end_ts may be changed by re-sending an event)"
            )
        return None

    def add(self, event: ClusterEvent, *, source: str = "api", metadata: Mapping[str, str] | None = None) -> AddResult:
        """Add ``event`` (idempotent by id).

        Re-sending an event with the same id is a ``duplicate`` when nothing changed, and an
        ``update`` when only ``end_ts`` changed (an interval announced open, then closed).
        """
        reason = self.check(event)
        if reason is not None:
            return AddResult("rejected", None, reason)
        old = self._records.get(event.id)
        if old is not None and old.event == event:
            return AddResult("duplicate", old)
        if old is None and event.id in self._forgotten:
            return AddResult("duplicate", None, "event is older than the kept history")
        start, end = self.freeze_bounds(event)
        shards = tuple(self.affected_shards(event))
        meta = dict(metadata) if metadata is not None else (dict(old.metadata) if old else {})
        rec = EventRecord(event, shards, start, end, old.source if old else source, meta, frozenset(shards))
        self._records[event.id] = rec
        self._version += 1
        if old is not None:
            self._taken.discard(event.id)  # a moved end re-learns again when the new end passes
            return AddResult("updated", rec)
        self._evict()
        return AddResult("added", rec)

    def _evict(self) -> None:
        excess = len(self._records) - self.cfg.history
        if excess <= 0:
            return
        order = sorted(self._records.values(), key=lambda r: (r.freeze_end_ts, r.event.ts, r.id))
        for rec in order[:excess]:
            del self._records[rec.id]
            self._taken.discard(rec.id)
            self._forgotten[rec.id] = None
        while len(self._forgotten) > 4 * self.cfg.history:
            self._forgotten.popitem(last=False)

    # ---------------------------------------------------------------------------- queries

    @property
    def version(self) -> int:
        """Bumped on every change (events added, updated, evicted; a new topology)."""
        return self._version

    def __len__(self) -> int:
        return len(self._records)

    def __contains__(self, event_id: object) -> bool:
        return event_id in self._records

    def get(self, event_id: str) -> EventRecord | None:
        return self._records.get(event_id)

    def records(self) -> list[EventRecord]:
        """Every kept event, oldest first (by ts, then id)."""
        return sorted(self._records.values(), key=lambda r: (r.event.ts, r.id))

    def recent(self, limit: int | None = None) -> list[EventRecord]:
        """Kept events, newest first (by ts, then id descending)."""
        out = sorted(self._records.values(), key=lambda r: (r.event.ts, r.id), reverse=True)
        return out if limit is None else out[:limit]

    def active(self, ts: float) -> list[EventRecord]:
        """Events whose freeze window contains ``ts``, in precedence order (the winner last)."""
        return sorted((r for r in self._records.values() if r.active_at(ts)), key=lambda r: (r.event.ts, r.id))

    def frozen(self, ts: float) -> dict[str, str]:
        """Shard -> id of the event freezing it at event time ``ts`` (latest-started event wins).

        The map is cached while the set of active events stays the same (a fleet-wide event on a
        large fleet is built once, not every window); the caller gets its own copy.
        """
        active = self.active(ts)
        key = (self._version, tuple(r.id for r in active))
        if self._frozen_cache is None or self._frozen_cache[0] != key:
            out: dict[str, str] = {}
            for rec in active:
                out.update(dict.fromkeys(rec.shards, rec.id))
            self._frozen_cache = (key, out)
        return dict(self._frozen_cache[1])

    def _ended(self, recs: Iterable[EventRecord], ts: float) -> list[tuple[ClusterEvent, list[str]]]:
        still = self.frozen(ts)
        ordered = sorted(recs, key=lambda r: (r.freeze_end_ts, r.event.ts, r.id))
        return [(r.event, [s for s in r.shards if s not in still]) for r in ordered]

    def ended_since(self, prev_ts: float, ts: float) -> list[tuple[ClusterEvent, list[str]]]:
        """Events whose freeze ended in ``(prev_ts, ts]``, with the shards to re-learn now.

        Shards still frozen at ``ts`` by another event are left out: they re-learn when the last
        event covering them ends. Pure: calling it twice with the same arguments gives the same.
        """
        return self._ended((r for r in self._records.values() if prev_ts < r.freeze_end_ts <= ts), ts)

    def take_ended(self, ts: float) -> list[tuple[ClusterEvent, list[str]]]:
        """Like :meth:`ended_since`, but each event is returned once, the first time its freeze
        has ended by ``ts``: also covers events announced late (already over when they arrived),
        the first window after a restart, and an interval event whose ``end_ts`` was moved.
        """
        recs = [r for r in self._records.values() if r.freeze_end_ts <= ts and r.id not in self._taken]
        self._taken.update(r.id for r in recs)
        return self._ended(recs, ts)

    def event_for(self, shard: str, ts: float) -> ClusterEvent | None:
        """The event whose freeze window contains ``ts`` on ``shard`` (latest-started wins), if any."""
        best: EventRecord | None = None
        for rec in self._records.values():
            if rec.covers(shard, ts) and (best is None or (rec.event.ts, rec.id) > (best.event.ts, best.id)):
                best = rec
        return best.event if best is not None else None

    def attribute(self, firing: Firing, start_ts: float | None = None) -> ClusterEvent | None:
        """Event-conditional attribution of a firing that starts at ``start_ts`` (default: opened_ts).

        When the firing's target (or, for a group firing, one of its members, in member order)
        is inside an event's window at its start, the firing gets ``event_id`` and a ``receipt``
        entry ``event``; a statistical firing (shard_fault, common_mode, fleet_event) is
        re-classified ``event_conditional``, a hard fault keeps its class. Returns the event.
        """
        ts = firing.opened_ts if start_ts is None else start_ts
        ev = self.event_for(firing.target, ts)
        if ev is None:
            for m in firing.members:
                ev = self.event_for(m, ts)
                if ev is not None:
                    break
        if ev is None:
            return None
        rec = self._records[ev.id]
        firing.event_id = ev.id
        if firing.classification in STATISTICAL_LABELS:
            firing.classification = "event_conditional"
        firing.receipt = {
            **firing.receipt,
            "event": {
                "id": ev.id,
                "kind": ev.kind,
                "ts": ev.ts,
                "freeze_start_ts": rec.freeze_start_ts,
                "freeze_end_ts": rec.freeze_end_ts,
            },
        }
        return ev


def _same_identity(a: ClusterEvent, b: ClusterEvent) -> bool:
    return a.id == b.id and a.kind == b.kind and a.ts == b.ts and a.scope == b.scope


# ------------------------------------------------------------------------------ DeploySignal v1


def _number(obj: Mapping[str, Any], key: str, where: str, *, required: bool) -> float | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise CodecError(f"{where}: missing field {key!r}")
        return None
    try:
        finite = not isinstance(value, bool) and isinstance(value, int | float) and math.isfinite(float(value))
    except OverflowError:  # an integer too large for a float
        finite = False
    if not finite:
        raise CodecError(f"{where}.{key}: expected a finite number")
    if value < 0:
        raise CodecError(f"{where}.{key}: expected a unix time in seconds (>= 0)")
    return float(value)


def from_deploy_event(payload: Any) -> tuple[ClusterEvent, dict[str, str]]:
    """Map a DeploySignal ``DeployEventPayload`` (contract v1) to a :class:`ClusterEvent`.

    ``{event_id, event_class, event_ts, event_window_end_ts?, metadata?}``: event_class is one of
    our event kinds (DeploySignal's six classes are a subset), ``event_window_end_ts`` becomes
    ``end_ts``, metadata is a string map returned alongside. DeploySignal has no topology scope:
    the scope is ``"fleet"`` unless ``metadata["scope"]`` lists comma-separated node ids.
    Raises :class:`CodecError` with the reason.
    """
    where = "event"
    if not isinstance(payload, dict):
        raise CodecError(f"{where}: expected a JSON object")
    eid = payload.get("event_id")
    if not isinstance(eid, str) or not eid.strip():
        raise CodecError(f"{where}.event_id: expected a non-empty string")
    kind = payload.get("event_class")
    if not isinstance(kind, str) or kind not in EVENT_KINDS:
        raise CodecError(f"{where}.event_class: unknown class {kind!r} (one of {sorted(EVENT_KINDS)})")
    ts = _number(payload, "event_ts", where, required=True)
    assert ts is not None
    end_ts = _number(payload, "event_window_end_ts", where, required=False)
    if end_ts is not None and end_ts < ts:
        raise CodecError(f"{where}.event_window_end_ts: must not be before event_ts")
    raw_meta = payload.get("metadata")
    if raw_meta is None:
        raw_meta = {}
    if not isinstance(raw_meta, dict) or not all(isinstance(v, str) for v in raw_meta.values()):
        raise CodecError(f"{where}.metadata: expected an object of string values")
    metadata = {str(k): v for k, v in raw_meta.items()}
    scope: tuple[str, ...] = (FLEET,)
    raw_scope = metadata.get("scope", "").strip()
    if raw_scope and raw_scope != FLEET:
        ids = tuple(dict.fromkeys(s.strip() for s in raw_scope.split(",") if s.strip()))
        if not ids:
            raise CodecError(f"{where}.metadata.scope: expected comma-separated topology node ids")
        scope = ids
    return ClusterEvent(eid, kind, ts, scope, end_ts), metadata
