"""The fleet-wide event log: cluster events accepted by any detector worker, for every partition.

In split mode an announced event (``POST /v1/events``, DeploySignal) reaches one worker's HTTP API,
but the shards it concerns may sit in partitions that other workers hold, or that change hands
later. So the accepting worker appends it to one Redis stream, ``<prefix>:events`` (an approximate
``MAXLEN`` of :data:`LOG_FACTOR` x ``events.history``), *before* it answers 202: an accepted event
is durable, and while Redis is unreachable the request answers 503 and nothing is accepted anywhere.

Entry fields: ``event`` (the contract-3 JSON object), ``source`` (``api`` or ``deploysignal``) and
``metadata`` (a JSON object of strings). An entry that does not decode is logged, counted and
skipped; it never stops a worker.

Every worker's coordinator reads the new entries on each heartbeat (:meth:`EventLog.read_new`,
non-blocking) and the consumer loop adds them to the event book of every partition it holds, before
it processes the next batch; a partition that is loaded (fresh, from a checkpoint, or taken over)
replays the whole log (:meth:`EventLog.read_all`) before its first window, so a worker that starts
after the event was posted still freezes it. ``EventBook.add`` is idempotent by event id, so
re-reading entries a book already holds changes nothing.

Latency: an event freezes a partition's shards from the first window that partition processes after
the next heartbeat of its worker (``transport.detector.heartbeat_ms``) following the append. Windows
processed in between are not frozen retroactively, so an event should be posted before (or at) its
``ts``, as with the single-process daemon, where the freeze starts with the next window processed.

Each partition's book sees the event with its scope cut to the node ids the partition's topology
knows (:func:`scope_within`): a scope node outside the partition is not an error there, the event
just does not concern those shards, and a partition with none of the event's shards skips it. A
fleet-wide event concerns every partition.
"""

from __future__ import annotations

import dataclasses
import json
from collections import Counter, OrderedDict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from tessera_daemon.engine.events import AddResult, EventBook
from tessera_daemon.errors import CodecError, TransportError
from tessera_daemon.log import get_logger
from tessera_daemon.model import ClusterEvent, Topology
from tessera_daemon.settings.events import EventsConfig
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.link import RedisLink

log = get_logger(__name__)

# The log keeps LOG_FACTOR x events.history entries: an event book remembers its kept events plus
# 4 x history evicted ids, so replaying the log never re-adds an event a book already forgot.
LOG_FACTOR = 3
READ_COUNT = 500  # entries per XREAD / XRANGE round trip

LogItem = tuple[ClusterEvent, str, Mapping[str, str]]  # (event, source, metadata)


@dataclass(frozen=True, slots=True)
class LoggedEvent:
    """One decoded entry of the event log."""

    entry_id: str
    event: ClusterEvent
    source: str
    metadata: Mapping[str, str]

    @property
    def position(self) -> tuple[int, int]:
        return entry_key(self.entry_id)


def entry_key(entry_id: str) -> tuple[int, int]:
    """A stream entry id (``<ms>-<seq>``) as a comparable pair."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


# ------------------------------------------------------------------------------------ codec


def encode(event: ClusterEvent, source: str, metadata: Mapping[str, str]) -> dict[bytes, bytes]:
    meta = {str(k): str(v) for k, v in sorted(metadata.items())}
    return {
        b"event": event.to_json().encode(),
        b"source": source.encode(),
        b"metadata": json.dumps(meta, separators=(",", ":")).encode(),
    }


def _field(fields: Mapping[Any, Any], name: str) -> str:
    v = fields.get(name.encode(), fields.get(name))
    if v is None:
        raise CodecError(f"event log entry: missing field {name!r}")
    try:
        return v.decode() if isinstance(v, bytes) else str(v)
    except UnicodeDecodeError as exc:
        raise CodecError(f"event log entry: field {name!r} is not UTF-8") from exc


def decode(entry_id: Any, fields: Mapping[Any, Any]) -> LoggedEvent:
    """Decode one stream entry; :class:`CodecError` with the reason when it cannot be used."""
    try:
        event = ClusterEvent.from_json(_field(fields, "event"))
    except OverflowError as exc:  # an integer time too large for a float
        raise CodecError("event log entry: a time is out of range") from exc
    source = _field(fields, "source")
    if not source or len(source) > 64:
        raise CodecError("event log entry: source must be a short non-empty string")
    try:
        meta = json.loads(_field(fields, "metadata"))
    except ValueError as exc:
        raise CodecError(f"event log entry: metadata is not valid JSON ({exc})") from exc
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        raise CodecError("event log entry: metadata must be an object of string values")
    return LoggedEvent(_text(entry_id), event, source, meta)


def _text(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)


# ------------------------------------------------------------------------------------ the log


class EventLog:
    """Append to and read the ``<prefix>:events`` stream through the worker's :class:`RedisLink`.

    ``counts`` (shared with the worker's exporter) gets ``relayed`` (appended here), ``read``
    (decoded by :meth:`read_new`) and ``undecodable`` (skipped).
    """

    def __init__(self, link: RedisLink, keys: Keys, history: int, counts: Counter[str] | None = None) -> None:
        self.link = link
        self.key = keys.events
        self.maxlen = LOG_FACTOR * history
        self.last_id = "0-0"  # the first read_new reads the whole log (the fleet book starts from it)
        self.counts: Counter[str] = counts if counts is not None else Counter()

    async def append(self, items: Sequence[LogItem]) -> list[str]:
        """Append the events in one MULTI (all or none); their entry ids. TransportError when Redis
        is unreachable or the breaker is open: then nothing was appended."""
        if not items:
            return []
        records = [encode(ev, source, meta) for ev, source, meta in items]

        async def write(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=True)  # one key, so one slot under Redis Cluster too
            for rec in records:
                pipe.xadd(self.key, rec, maxlen=self.maxlen, approximate=True)
            result: list[Any] = await pipe.execute()
            return result

        ids = await self.link.call(write)
        self.counts["relayed"] += len(items)
        return [_text(i) for i in ids]

    async def read_new(self) -> list[LoggedEvent]:
        """Entries after the last one seen, oldest first (XREAD without BLOCK, batches until empty).

        When Redis fails part-way, what was read so far is returned (the next call goes on from
        there); TransportError only when nothing could be read.
        """
        out: list[LoggedEvent] = []
        while True:
            try:
                reply = await self.link.call(lambda c: c.xread({self.key: self.last_id}, count=READ_COUNT))
            except TransportError:
                if not out:
                    raise
                break
            entries = _entries(reply)
            for entry_id, fields in entries:
                self.last_id = _text(entry_id)
                item = self._decode(entry_id, fields)
                if item is not None:
                    out.append(item)
            if len(entries) < READ_COUNT:
                break
        self.counts["read"] += len(out)
        return out

    async def read_all(self) -> list[LoggedEvent]:
        """Every entry still in the log, oldest first (XRANGE - + in pages); undecodable ones skipped."""
        out: list[LoggedEvent] = []
        start = "-"
        while True:
            page = await self._page(start)
            for entry_id, fields in page:
                item = self._decode(entry_id, fields, count=False)
                if item is not None:
                    out.append(item)
            if len(page) < READ_COUNT:
                return out
            start = "(" + _text(page[-1][0])

    async def _page(self, start: str) -> list[Any]:
        page: list[Any] = await self.link.call(lambda c: c.xrange(self.key, start, "+", count=READ_COUNT))
        return page

    def _decode(self, entry_id: Any, fields: Mapping[Any, Any], *, count: bool = True) -> LoggedEvent | None:
        try:
            return decode(entry_id, fields)
        except CodecError as exc:
            if count:  # each bad entry is counted once, when read_new first meets it
                self.counts["undecodable"] += 1
                log.warning("skipping an undecodable event log entry", entry=_text(entry_id), error=str(exc))
            return None


def _entries(reply: Any) -> list[Any]:
    """The entries of a one-stream XREAD reply (RESP2: [[key, entries]], RESP3: {key: entries})."""
    if not reply:
        return []
    if isinstance(reply, dict):
        return [e for entries in reply.values() for e in entries]
    return [e for _key, entries in reply for e in entries]


# ------------------------------------------------------------------------------------ books


def scope_within(event: ClusterEvent, topology: Topology) -> ClusterEvent | None:
    """``event`` with its scope cut to the node ids ``topology`` knows; None when none is left.

    A fleet-wide event is returned as it is.
    """
    if event.fleet_wide:
        return event
    known = tuple(nid for nid in event.scope if nid in topology.nodes)
    if not known:
        return None
    return event if known == event.scope else dataclasses.replace(event, scope=known)


def apply_event(book: EventBook, item: LoggedEvent) -> AddResult | None:
    """Add a logged event to one partition's ``book``, scope cut to what the book's topology knows.

    None when the event concerns none of the book's shards. A rejection (an id re-used with another
    identity, which the accepting worker's checks make rare) is logged, never raised.
    """
    event = scope_within(item.event, book.topology)
    if event is None or not book.affected_shards(event):
        return None
    res = book.add(event, source=item.source, metadata=item.metadata)
    if not res.ok:
        log.warning("logged event not applied", id=item.event.id, entry=item.entry_id, reason=res.reason)
    return res


class FleetBook:
    """A worker's fleet-wide event book over the union of every partition's topology.

    It validates posted events (unknown scope node ids are rejected, as by the single daemon) and
    answers ``GET /v1/events``; it never freezes anything itself. It has no topology until the first
    fleet topology is read (:attr:`ready` false: the event routes answer 503). Logged events are
    remembered (the latest entry per id, as many as the log keeps) so that events whose scope the
    fleet topology did not know yet are added once it does, and an entry older than one already
    seen for the same id (an ``end_ts`` update) is not applied over it.
    """

    def __init__(self, cfg: EventsConfig) -> None:
        self.book = EventBook(Topology([]), cfg)
        self.ready = False
        self._limit = LOG_FACTOR * cfg.history
        self._logged: OrderedDict[str, LoggedEvent] = OrderedDict()

    def set_topology(self, topology: Topology) -> None:
        self.book.set_topology(topology)
        self.ready = True
        for item in list(self._logged.values()):
            apply_event(self.book, item)

    def remember(self, items: Iterable[LoggedEvent]) -> None:
        """Note entries this worker appended (the API adds them to the book itself)."""
        for item in items:
            self._note(item)

    def apply(self, items: Iterable[LoggedEvent]) -> None:
        for item in items:
            if self._note(item) and self.ready:
                apply_event(self.book, item)

    def _note(self, item: LoggedEvent) -> bool:
        """Remember ``item`` as the latest entry of its event id; False when a newer one is known."""
        old = self._logged.get(item.event.id)
        if old is not None and old.position > item.position:
            return False
        self._logged[item.event.id] = item
        self._logged.move_to_end(item.event.id)
        while len(self._logged) > self._limit:
            self._logged.popitem(last=False)
        return True

    def get(self) -> EventBook | None:
        """The book, or None while no fleet topology is known."""
        return self.book if self.ready else None
