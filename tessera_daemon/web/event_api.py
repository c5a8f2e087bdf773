"""The event routes a process serves, from the ``[events]`` settings: one place for ``run`` and the worker.

``POST/GET /v1/events`` (``web/events.py``) and, when ``events.deploysignal.enabled``, the
DeploySignal v1 inbound route (``web/deploysignal.py``), with their bearer tokens (inline or file,
re-read when the file changes) and body limit; nothing when ``events.enabled`` is false. The
single-process daemon serves them over its pipeline's book; a detector worker over its fleet-wide
book, with a ``relay`` that makes each accepted event durable in the fleet event log first.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from aiohttp import web

from tessera_daemon.events_settings import EventsConfig, Secret
from tessera_daemon.web.deploysignal import deploysignal_routes
from tessera_daemon.web.events import BookGetter, OnEvent, Relay, events_routes


def event_routes(
    e: EventsConfig,
    book: BookGetter,
    *,
    now: Callable[[], float] = time.time,
    on_event: OnEvent | None = None,
    relay: Relay | None = None,
) -> list[web.RouteDef]:
    """POST/GET /v1/events and the DeploySignal v1 inbound route, as ``e`` enables them."""
    if not e.enabled:
        return []
    routes = events_routes(book, on_event=on_event, now=now, relay=relay,
                           token=Secret(e.api_token, e.api_token_file, setting_name="events.api_token").get,
                           max_body=e.max_body_bytes)
    ds = e.deploysignal
    if ds.enabled:
        routes += deploysignal_routes(
            book, on_event=on_event, now=now, max_body=e.max_body_bytes, relay=relay,
            token=Secret(ds.token, ds.token_file, setting_name="events.deploysignal.token").get,
        )
    return routes
