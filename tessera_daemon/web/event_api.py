"""The event routes a process serves, from the ``[events]`` settings: one place for ``run`` and the worker.

``POST/GET /v1/events`` (``web/events.py``) and, when ``events.deploysignal.enabled``, the
DeploySignal v1 inbound route (``web/deploysignal.py``), with their bearer tokens (inline or file,
re-read when the file changes; none configured: refused, unless ``events.allow_unauthenticated``),
body limit, age bounds and one per-scope re-learn budget; nothing when ``events.enabled`` is false. The
single-process daemon serves them over its pipeline's book; a detector worker over its fleet-wide
book, with a ``relay`` that makes each accepted event durable in the fleet event log first.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from aiohttp import web

from tessera_daemon.log import get_logger
from tessera_daemon.settings.events import EventsConfig, Secret
from tessera_daemon.web.deploysignal import DS_EVENTS_PATH, deploysignal_routes
from tessera_daemon.web.events import BookGetter, OnEvent, PostPolicy, Relay, ScopeLimiter, events_routes

log = get_logger(__name__)


def event_routes(
    e: EventsConfig,
    book: BookGetter,
    *,
    now: Callable[[], float] = time.time,
    on_event: OnEvent | None = None,
    relay: Relay | None = None,
    counts: Counter[tuple[str, str]] | None = None,
) -> list[web.RouteDef]:
    """POST/GET /v1/events and the DeploySignal v1 inbound route, as ``e`` enables them. ``counts``
    (route, status code) -> requests answered, for ``tessera_event_requests_total``: every refusal counted."""
    if not e.enabled:
        return []
    limiter = ScopeLimiter(e.relearns_per_hour)  # one budget per scope, whichever route an event came by
    api = Secret(e.api_token, e.api_token_file, setting_name="events.api_token")
    routes = events_routes(
        book,
        on_event=on_event,
        now=now,
        relay=relay,
        max_body=e.max_body_bytes,
        policy=_policy(e, api, limiter, "POST /v1/events", "events.api_token"),
    )
    ds = e.deploysignal
    if ds.enabled:
        secret = Secret(ds.token, ds.token_file, setting_name="events.deploysignal.token")
        routes += deploysignal_routes(
            book,
            on_event=on_event,
            now=now,
            max_body=e.max_body_bytes,
            relay=relay,
            policy=_policy(e, secret, limiter, f"POST {DS_EVENTS_PATH}", "events.deploysignal.token"),
        )
    return routes if counts is None else [_counted(r, counts) for r in routes]


ROUTE_LABELS = {"/v1/events": "events", DS_EVENTS_PATH: "deploysignal"}


def _counted(route: web.RouteDef, counts: Counter[tuple[str, str]]) -> web.RouteDef:
    """``route`` with its POST answers counted by status code."""
    if route.method != "POST":
        return route
    label = ROUTE_LABELS.get(route.path, route.path)
    handler = route.handler

    async def counted(request: web.Request) -> web.StreamResponse:
        resp: web.StreamResponse = await handler(request)
        counts[(label, str(resp.status))] += 1
        return resp

    return web.RouteDef(route.method, route.path, counted, route.kwargs)


def _policy(e: EventsConfig, secret: Secret, limiter: ScopeLimiter, route: str, setting: str) -> PostPolicy:
    if not secret.configured:
        if e.allow_unauthenticated:
            log.warning(
                "serving an event route WITHOUT authentication (events.allow_unauthenticated, loopback bind only)",
                route=route,
            )
        else:
            log.info("event route refuses every request: no token configured", route=route, set=setting)
    return PostPolicy(
        token=secret.get,
        allow_unauthenticated=e.allow_unauthenticated,
        max_age_s=e.max_age_s,
        max_ahead_s=e.max_ahead_s,
        limiter=limiter,
    )
