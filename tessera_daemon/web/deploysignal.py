"""DeploySignal contract v1, consumer side: ``POST /v1/tessera/deploy-events``.

Request: ``{"contract_version":"v1","event":DeployEventPayload,"emitted_at_ts":<unix s>}`` with
headers ``x-ds-instance-id`` (required), ``content-type: application/json`` (415 otherwise) and
``authorization: Bearer <token>`` (compared in constant time; with no ``events.deploysignal.token`` /
``token_file`` set the route refuses every request with 403 unless ``events.allow_unauthenticated``). The event is
mapped by :func:`tessera_daemon.engine.events.from_deploy_event` (scope ``"fleet"`` unless
``metadata.scope`` lists node ids) and added to the event book, which freezes the affected shards.

Answers (JSON, ``contract_version`` always ``"v1"``):

- 202 ``{"status":"accepted","freeze_hook_activated":bool,"freeze_hook_activated_at_ts"?}``:
  activated when the event freezes at least one shard and its freeze has not already ended
  (``now`` is the daemon's event time); ``..._at_ts`` is when the freeze takes effect
  (``max(now, event_ts)``), present only when activated. A re-delivered event gets the same answer.
- 400 ``{"status":"rejected","reason":...}``: bad or deeply nested JSON, bad envelope, unknown scope
  node ids, an event id re-used with different contents, or an event outside ``events.max_age_s`` /
  ``events.max_ahead_s`` of the daemon's event time. 429: over ``events.relearns_per_hour`` for its scope.
- 401: missing ``x-ds-instance-id`` header, or missing / malformed / wrong bearer token. 403: no token
  configured (and not ``events.allow_unauthenticated``). 415: not ``application/json``.
- 413: body over 1 MiB. 503: the event book is not ready yet, or (split mode, ``relay`` given) the
  event log could not take the event: nothing was accepted, DeploySignal retries.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tessera_daemon.engine.events import EventBook, from_deploy_event
from tessera_daemon.errors import CodecError
from tessera_daemon.model import ClusterEvent
from tessera_daemon.web.events import (
    MAX_BODY_BYTES,
    RELAY_UNAVAILABLE,
    RETRY_AFTER_S,
    BodyTooLarge,
    BookGetter,
    OnEvent,
    PostPolicy,
    Relay,
    TokenGetter,
    as_getter,
    load_json,
    read_body,
    relay_failure,
    unauthorized,
)

CONTRACT_VERSION = "v1"
DS_EVENTS_PATH = "/v1/tessera/deploy-events"
INSTANCE_HEADER = "x-ds-instance-id"


@dataclass(frozen=True, slots=True)
class DsEventRequest:
    """A decoded ``DsToTesseraEventRequest``."""

    event: ClusterEvent
    metadata: dict[str, str]
    emitted_at_ts: float


def parse_envelope(obj: Any) -> DsEventRequest:
    """Decode and validate the v1 envelope; raises :class:`CodecError` with the reason."""
    if not isinstance(obj, dict):
        raise CodecError("envelope: expected a JSON object")
    version = obj.get("contract_version")
    if version != CONTRACT_VERSION:
        raise CodecError(f"envelope.contract_version: unsupported {version!r} (this daemon reads 'v1')")
    emitted = obj.get("emitted_at_ts")
    try:
        ok = not isinstance(emitted, bool) and isinstance(emitted, int | float) and math.isfinite(float(emitted))
    except OverflowError:
        ok = False
    if not ok:
        raise CodecError("envelope.emitted_at_ts: expected a finite number")
    assert isinstance(emitted, int | float)
    if "event" not in obj:
        raise CodecError("envelope: missing field 'event'")
    event, metadata = from_deploy_event(obj["event"])
    return DsEventRequest(event, metadata, float(emitted))


def _reply(status: int, body: dict[str, Any], headers: dict[str, str] | None = None) -> web.Response:
    return web.json_response({"contract_version": CONTRACT_VERSION, **body}, status=status, headers=headers)


def _rejected(status: int, reason: str, headers: dict[str, str] | None = None) -> web.Response:
    return _reply(status, {"status": "rejected", "reason": reason}, headers)


def _refusal(status: int, reason: str) -> web.Response:
    if status == 401:
        return unauthorized({"contract_version": CONTRACT_VERSION, "status": "rejected", "reason": reason})
    return _rejected(status, reason)


def deploysignal_routes(
    book: EventBook | BookGetter,
    *,
    token: TokenGetter | None = None,
    on_event: OnEvent | None = None,
    now: Callable[[], float] = time.time,
    max_body: int = MAX_BODY_BYTES,
    relay: Relay | None = None,
    policy: PostPolicy | None = None,
) -> list[web.RouteDef]:
    """The DS contract v1 consumer route over ``book`` (an EventBook or a callable giving one).

    ``token`` gives the bearer token DeploySignal must present (empty string: none required);
    ``on_event`` is called with every added or updated record; ``now`` is the daemon's current
    event time (decides whether a freeze is still ahead). ``relay`` (split mode) is handed the
    validated event with source ``deploysignal`` and its metadata before it is added locally; a
    :class:`TransportError` from it answers 503 and adds nothing. ``policy`` (default: ``token``
    required, the default age bounds, no rate limit) is what the route demands (``web/events.py``).
    """
    get_book = as_getter(book)
    pol = policy if policy is not None else PostPolicy(token=token)

    async def deploy_events(request: web.Request) -> web.Response:
        instance = request.headers.get(INSTANCE_HEADER, "").strip()
        if not instance:
            return unauthorized(
                {
                    "contract_version": CONTRACT_VERSION,
                    "status": "rejected",
                    "reason": f"missing {INSTANCE_HEADER} header",
                }
            )
        refused = pol.refuse(request)
        if refused is not None:
            return _refusal(*refused)
        try:
            raw = await read_body(request, max_body)
        except BodyTooLarge:
            return _rejected(413, f"request body exceeds {max_body} bytes")
        except TimeoutError:
            return _rejected(408, "request body not received in time")
        try:
            req = parse_envelope(load_json(raw))
        except CodecError as exc:
            return _rejected(400, str(exc))
        b = get_book()
        if b is None:
            return _rejected(503, "event handling is not ready")
        metadata = dict(req.metadata)
        metadata.setdefault("ds_instance_id", instance)
        reason = pol.out_of_range([req.event], now()) or b.check(req.event)
        if reason is not None:
            return _rejected(400, reason)
        fresh, limited = pol.budget(b, [req.event])
        if limited is not None:
            return _rejected(429, limited, {"Retry-After": "60"})
        if await relay_failure(relay, [req.event], "deploysignal", metadata) is not None:
            return _rejected(503, RELAY_UNAVAILABLE, {"Retry-After": RETRY_AFTER_S})
        pol.spend(fresh)
        res = b.add(req.event, source="deploysignal", metadata=metadata)
        if not res.ok:
            return _rejected(400, res.reason)
        body: dict[str, Any] = {"status": "accepted", "freeze_hook_activated": False}
        rec = res.record
        if rec is not None:
            if on_event is not None and res.status in ("added", "updated"):
                on_event(rec)
            t = now()
            if rec.shards and rec.freeze_end_ts > t:
                body["freeze_hook_activated"] = True
                body["freeze_hook_activated_at_ts"] = max(t, rec.freeze_start_ts)
        return _reply(202, body)

    return [web.post(DS_EVENTS_PATH, deploy_events)]
