"""HTTP routes for cluster events (contract 3): ``POST /v1/events`` and ``GET /v1/events``.

``POST /v1/events`` takes one event object or a JSON list of them. The request is all or nothing:
every event is decoded and checked (scope node ids known to the topology, no conflicting re-use of
an id) before any is added. Answers: 202 ``{"v":1,"accepted":[ids],"affected_shards":n,
"events":[{id,status,affected_shards,freeze_start_ts,freeze_end_ts}]}`` (status ``added``,
``updated`` or ``duplicate``); 400 ``{"error": reason}`` (the codec's reason, prefixed by the list
index for a list); 401 when ``events.api_token`` is set and the bearer token is missing or wrong
(compared in constant time); 413 over ``events.max_body_bytes`` (1 MiB); 503 while no event book
exists yet, or (split mode) when the event log could not take the events. ``GET /v1/events?limit=N``
lists the kept events, newest first, with their freeze windows and affected shard counts.

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
from collections.abc import Awaitable, Callable, Mapping, Sequence
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
            row.update(affected_shards=len(rec.shards), freeze_start_ts=rec.freeze_start_ts,
                       freeze_end_ts=rec.freeze_end_ts)
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
) -> list[web.RouteDef]:
    """``POST /v1/events`` and ``GET /v1/events`` over ``book``.

    ``on_event`` is called with every added or updated record (the daemon logs and counts them).
    ``token`` gives the bearer token POST requires (empty string: none). ``now`` gives the current
    *event* time for GET's ``frozen_now`` (the daemon passes the last window's end). ``relay``
    (split mode) makes the validated events durable before they are added (see the module doc).
    """
    get_book = as_getter(book)

    async def post_events(request: web.Request) -> web.Response:
        expected = token() if token is not None else ""
        if expected and not bearer_ok(request.headers.get("Authorization"), expected):
            return unauthorized({"error": "missing or invalid bearer token"})
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
        reason = _check(b, events)
        if reason is not None:
            return web.json_response({"error": reason}, status=400)
        failure = await relay_failure(relay, events, "api", {})
        if failure is not None:
            return web.json_response({"error": RELAY_UNAVAILABLE, "detail": failure}, status=503,
                                     headers={"Retry-After": RETRY_AFTER_S})
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
        body = {"v": 1, "now_ts": at, "kept": len(b), "count": len(recs),
                "events": [r.to_obj(at) for r in recs]}
        return web.json_response(body)

    return [web.post("/v1/events", post_events), web.get("/v1/events", get_events)]
