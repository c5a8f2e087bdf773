"""HTTP routes for cluster events (contract 3): ``POST /v1/events`` and ``GET /v1/events``.

``POST /v1/events`` takes one event object or a JSON list of them. The request is all or nothing:
every event is decoded and checked (scope node ids known to the topology, no conflicting re-use of
an id) before any is added. Answers: 202 ``{"v":1,"accepted":[ids],"affected_shards":n,
"events":[{id,status,affected_shards,freeze_start_ts,freeze_end_ts}]}`` (status ``added``,
``updated`` or ``duplicate``); 400 ``{"error": reason}`` (the codec's reason, prefixed by the list
index for a list; bad or deeply nested JSON; an event that ended more than ``events.max_age_s`` ago
or starts more than ``events.max_ahead_s`` ahead); 401 when the bearer token is missing or wrong
(compared in constant time); 403 when no token is configured and ``events.allow_unauthenticated`` is
not set; 415 unless ``Content-Type: application/json``; 413 over ``events.max_body_bytes`` (1 MiB);
429 over ``events.relearns_per_hour`` for one scope; 503 while no event book exists yet, or (split
mode) when the event log could not take the events. No CORS headers: browsers cannot post here.
``GET /v1/events?limit=N`` lists the kept events, newest first, with their freeze windows and affected shard counts.

A detector worker (split mode) passes a ``relay``: the validated events are handed to it (it appends
them to the fleet-wide event log in Redis) before they are added to the local book, so an event is
durable before the 202 goes out; when the relay raises :class:`TransportError` the answer is 503
and nothing is added. The single-process daemon passes none.

The handlers run on the daemon's event loop, like the pipeline: the book is never touched by two
threads at once.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tessera_daemon.engine.events import EventBook, EventRecord
from tessera_daemon.errors import CodecError, TransportError
from tessera_daemon.model import ClusterEvent

MAX_BODY_BYTES = 1024 * 1024
READ_TIMEOUT_S = 10.0
DEFAULT_LIMIT = 100

BookGetter = Callable[[], EventBook | None]
OnEvent = Callable[[EventRecord], None]
TokenGetter = Callable[[], str]
Relay = Callable[[Sequence[ClusterEvent], str, Mapping[str, str]], Awaitable[None]]  # (events, source, metadata)
RELAY_UNAVAILABLE = "event log unavailable, retry"
RETRY_AFTER_S = "1"


def as_getter(book: EventBook | BookGetter) -> BookGetter:
    """Accept an EventBook or a callable giving one (None while the daemon is starting)."""
    if isinstance(book, EventBook):
        return lambda: book
    return book


# ------------------------------------------------------------------------- shared helpers


class BodyTooLarge(Exception):
    pass


async def read_body(request: web.Request, limit: int, timeout_s: float = READ_TIMEOUT_S) -> bytes:
    """The request body, refusing more than ``limit`` bytes (Content-Length or streamed) with
    :class:`BodyTooLarge`; independent of the application's ``client_max_size``."""
    if request.content_length is not None and request.content_length > limit:
        raise BodyTooLarge
    chunks: list[bytes] = []
    size = 0
    async with asyncio.timeout(timeout_s):
        while True:
            chunk = await request.content.read(65536)
            if not chunk:
                break
            size += len(chunk)
            if size > limit:
                raise BodyTooLarge
            chunks.append(chunk)
    return b"".join(chunks)


def _digest(value: str) -> bytes:
    return hashlib.sha256(value.encode("utf-8")).digest()


def bearer_ok(header: str | None, expected: str) -> bool:
    """Whether ``header`` is ``Bearer <expected>``; the tokens are compared in constant time
    (``hmac.compare_digest`` of their SHA-256 digests, so not even the length leaks)."""
    if not header or not expected:
        return False
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return False
    return hmac.compare_digest(_digest(value), _digest(expected))


def unauthorized(body: dict[str, Any]) -> web.Response:
    return web.json_response(body, status=401, headers={"WWW-Authenticate": 'Bearer realm="tessera"'})


def load_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"not valid JSON ({exc})") from exc
    except RecursionError as exc:  # a deeply nested body: a client error, not a 500
        raise CodecError("not valid JSON (nested too deeply)") from exc


class ScopeLimiter:
    """At most ``per_hour`` accepted events per scope (the same node set, or the fleet) in any hour: each
    makes its shards re-learn their baselines when it ends, so a flood of them would keep a fleet blind."""

    MAX_SCOPES = 10_000

    def __init__(self, per_hour: int, clock: Callable[[], float] = time.monotonic) -> None:
        self.per_hour = per_hour
        self.clock = clock
        self._seen: OrderedDict[tuple[str, ...], deque[float]] = OrderedDict()

    @staticmethod
    def key(ev: ClusterEvent) -> tuple[str, ...]:
        return ev.scope if ev.fleet_wide else tuple(sorted(set(ev.scope)))

    def _recent(self, key: tuple[str, ...], now: float) -> deque[float]:
        q = self._seen.get(key)
        if q is None:
            return deque()
        while q and q[0] <= now - 3600.0:
            q.popleft()
        return q

    def refuse(self, events: Sequence[ClusterEvent]) -> str | None:
        """The reason the events would exceed a scope's budget, or None."""
        now = self.clock()
        want: dict[tuple[str, ...], int] = {}
        for ev in events:
            k = self.key(ev)
            want[k] = want.get(k, 0) + 1
        for k, n in want.items():
            if len(self._recent(k, now)) + n > self.per_hour:
                return (
                    f"rate limit: more than {self.per_hour} events per hour for scope "
                    f"{'fleet' if k == ('fleet',) else ','.join(k)[:200]} (events.relearns_per_hour)"
                )
        return None

    def record(self, events: Sequence[ClusterEvent]) -> None:
        now = self.clock()
        for ev in events:
            k = self.key(ev)
            q = self._recent(k, now)
            q.append(now)
            self._seen[k] = q
            self._seen.move_to_end(k)
        while len(self._seen) > self.MAX_SCOPES:
            self._seen.popitem(last=False)


@dataclass(frozen=True, slots=True)
class PostPolicy:
    """What both event POST routes demand of a request before reading it, and of its events after.

    No token configured and ``allow_unauthenticated`` false (the default): every POST is refused (403).
    ``Content-Type`` must be ``application/json`` (415): a browser sends a cross-origin ``text/plain``
    POST without asking first, never an ``application/json`` one. No CORS headers are ever sent.
    Events whose window ended more than ``max_age_s`` ago or that start more than ``max_ahead_s`` ahead
    of the daemon's event time are refused (400); ``limiter`` bounds re-learns per scope (429)."""

    token: TokenGetter | None = None
    allow_unauthenticated: bool = False
    max_age_s: float = 86_400.0
    max_ahead_s: float = 7 * 86_400.0
    limiter: ScopeLimiter | None = None

    def refuse(self, request: web.Request) -> tuple[int, str] | None:
        """(status, reason) when the request must be refused before its body is read."""
        expected = self.token() if self.token is not None else ""
        if expected:
            if not bearer_ok(request.headers.get("Authorization"), expected):
                return 401, "missing or invalid bearer token"
        elif not self.allow_unauthenticated:
            return 403, (
                "no token is configured for this endpoint: set events.api_token / "
                "events.deploysignal.token (or events.allow_unauthenticated on a loopback bind)"
            )
        if request.content_type != "application/json":
            return 415, f"Content-Type must be application/json, not {request.content_type!r}"
        return None

    def budget(self, book: EventBook, events: Sequence[ClusterEvent]) -> tuple[list[ClusterEvent], str | None]:
        """The events that would change ``book`` and, when they exceed a scope's re-learn budget, why."""
        fresh = new_events(book, events)
        return fresh, self.limiter.refuse(fresh) if self.limiter is not None else None

    def spend(self, fresh: Sequence[ClusterEvent]) -> None:
        if self.limiter is not None:
            self.limiter.record(fresh)

    def out_of_range(self, events: Sequence[ClusterEvent], now: float) -> str | None:
        """Why an event is too old or too far ahead of ``now`` (event time), or None."""
        for i, ev in enumerate(events):
            where = f"events[{i}]: " if len(events) > 1 else ""
            end = ev.end_ts if ev.end_ts is not None else ev.ts
            if end < now - self.max_age_s:
                return (
                    f"{where}event {ev.id!r} ended {now - end:.0f} s ago, more than events.max_age_s "
                    f"({self.max_age_s:g} s)"
                )
            if ev.ts > now + self.max_ahead_s:
                return (
                    f"{where}event {ev.id!r} starts {ev.ts - now:.0f} s ahead, more than events.max_ahead_s "
                    f"({self.max_ahead_s:g} s)"
                )
        return None


async def relay_failure(
    relay: Relay | None, events: Sequence[ClusterEvent], source: str, metadata: Mapping[str, str]
) -> str | None:
    """Hand validated events to ``relay`` (if any); the transport failure's text, or None when it took them."""
    if relay is None:
        return None
    try:
        await relay(events, source, metadata)
    except TransportError as exc:
        return str(exc)
    return None


def new_events(book: EventBook, events: Sequence[ClusterEvent]) -> list[ClusterEvent]:
    """The events that would change the book (a re-delivery of a kept event does not count)."""
    out = []
    for ev in events:
        rec = book.get(ev.id)
        if rec is None or rec.event != ev:
            out.append(ev)
    return out


def _refusal(status: int, reason: str) -> web.Response:
    return unauthorized({"error": reason}) if status == 401 else web.json_response({"error": reason}, status=status)


# ------------------------------------------------------------------------- routes


def _decode_one(obj: Any) -> ClusterEvent:
    try:
        return ClusterEvent.from_obj(obj)
    except OverflowError as exc:  # an integer time too large for a float
        raise CodecError("event: a time is out of range") from exc


def _decode(obj: Any) -> list[ClusterEvent]:
    if isinstance(obj, dict):
        return [_decode_one(obj)]
    if not isinstance(obj, list) or not obj:
        raise CodecError("expected an event object or a non-empty list of events")
    events = []
    for i, item in enumerate(obj):
        try:
            events.append(_decode_one(item))
        except CodecError as exc:
            raise CodecError(f"events[{i}]: {exc}") from exc
    return events


def _check(book: EventBook, events: list[ClusterEvent]) -> str | None:
    seen: dict[str, ClusterEvent] = {}
    for i, ev in enumerate(events):
        where = f"events[{i}]: " if len(events) > 1 else ""
        reason = book.check(ev)
        if reason is not None:
            return where + reason
        prev = seen.get(ev.id)
        if prev is not None and prev != ev:
            return f"{where}event {ev.id!r} appears twice with different contents"
        seen[ev.id] = ev
    return None


def _add_all(book: EventBook, events: list[ClusterEvent], on_event: OnEvent | None) -> dict[str, Any]:
    """Add checked events to ``book``; the 202 body."""
    rows: list[dict[str, Any]] = []
    shards: set[str] = set()
    for ev in events:
        res = book.add(ev, source="api")
        rec = res.record
        row: dict[str, Any] = {"id": ev.id, "status": res.status}
        if rec is not None:
            shards.update(rec.shards)
            row.update(
                affected_shards=len(rec.shards), freeze_start_ts=rec.freeze_start_ts, freeze_end_ts=rec.freeze_end_ts
            )
            if on_event is not None and res.status in ("added", "updated"):
                on_event(rec)
        rows.append(row)
    return {"v": 1, "accepted": [r["id"] for r in rows], "affected_shards": len(shards), "events": rows}


def events_routes(
    book: EventBook | BookGetter,
    *,
    on_event: OnEvent | None = None,
    token: TokenGetter | None = None,
    now: Callable[[], float] = time.time,
    max_body: int = MAX_BODY_BYTES,
    relay: Relay | None = None,
    policy: PostPolicy | None = None,
) -> list[web.RouteDef]:
    """``POST /v1/events`` and ``GET /v1/events`` over ``book``.

    ``on_event`` is called with every added or updated record (the daemon logs and counts them).
    ``token`` gives the bearer token POST requires (empty string: none). ``now`` gives the current
    *event* time for GET's ``frozen_now`` (the daemon passes the last window's end). ``relay``
    (split mode) makes the validated events durable before they are added (see the module doc).
    ``policy`` (default: ``token`` required, the default age bounds, no rate limit) is what POST demands.
    """
    get_book = as_getter(book)
    pol = policy if policy is not None else PostPolicy(token=token)

    async def post_events(request: web.Request) -> web.Response:
        refused = pol.refuse(request)
        if refused is not None:
            return _refusal(*refused)
        try:
            raw = await read_body(request, max_body)
        except BodyTooLarge:
            return web.json_response({"error": f"request body exceeds {max_body} bytes"}, status=413)
        except TimeoutError:
            return web.json_response({"error": "request body not received in time"}, status=408)
        try:
            events = _decode(load_json(raw))
        except CodecError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        b = get_book()
        if b is None:
            return web.json_response({"error": "event handling is not ready"}, status=503)
        reason = pol.out_of_range(events, now()) or _check(b, events)
        if reason is not None:
            return web.json_response({"error": reason}, status=400)
        fresh, limited = pol.budget(b, events)
        if limited is not None:
            return web.json_response({"error": limited}, status=429, headers={"Retry-After": "60"})
        failure = await relay_failure(relay, events, "api", {})
        if failure is not None:
            return web.json_response(
                {"error": RELAY_UNAVAILABLE, "detail": failure}, status=503, headers={"Retry-After": RETRY_AFTER_S}
            )
        pol.spend(fresh)
        return web.json_response(_add_all(b, events, on_event), status=202)

    async def get_events(request: web.Request) -> web.Response:
        raw_limit = request.query.get("limit", str(DEFAULT_LIMIT))
        try:
            limit = int(raw_limit)
            if limit < 1:
                raise ValueError
        except ValueError:
            return web.json_response({"error": "limit must be a positive integer"}, status=400)
        b = get_book()
        if b is None:
            return web.json_response({"error": "event handling is not ready"}, status=503)
        at = now()
        recs = b.recent(limit)
        body = {"v": 1, "now_ts": at, "kept": len(b), "count": len(recs), "events": [r.to_obj(at) for r in recs]}
        return web.json_response(body)

    return [web.post("/v1/events", post_events), web.get("/v1/events", get_events)]
