"""The HTTP server's guard against slow and greedy clients: a header timeout and a connection cap.

aiohttp keeps a connection that never completes a request head open for its keep-alive timeout (an
hour by default), and accepts connections until the process runs out of file descriptors (then every
accept fails and logs a traceback). :class:`GuardedRunner` is an ``AppRunner`` whose protocol factory:

- closes a connection that has not delivered a complete request head ``http.header_timeout_s`` after
  connecting or after its last response (aiohttp's keep-alive timer, shortened: it closes an idle
  connection, or one still trickling its head);
- holds at most ``http.max_connections`` connections, and never more than half the open-file limit:
  at the cap a new connection evicts the oldest one that has no request in progress (a slow client),
  or is refused when every connection is busy.

So ``/healthz`` and ``/metrics`` stay reachable while slow clients come and go. Request bodies have
their own read timeout where they are read (``web/events.py``).
"""

from __future__ import annotations

import asyncio
import resource
from collections import OrderedDict
from typing import Any

from aiohttp import web

from tessera_daemon.config import HttpConfig


def connection_cap(http: HttpConfig) -> int:
    """``http.max_connections``, kept under half the soft open-file limit (the rest: Redis, sources, logs)."""
    try:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
    except (OSError, ValueError):
        return http.max_connections
    if soft == resource.RLIM_INFINITY or soft <= 0:
        return http.max_connections
    return max(4, min(http.max_connections, soft // 2))


class _Guard:
    """Protocol factory around aiohttp's ``Server`` that tracks, caps and evicts connections."""

    def __init__(self, inner: web.Server, cap: int) -> None:
        self.inner = inner
        self.cap = cap
        self.open: OrderedDict[_Conn, None] = OrderedDict()  # oldest first
        self.refused = 0
        self.evicted = 0

    def __call__(self) -> _Conn:
        return _Conn(self, self.inner())

    def make_room(self) -> bool:
        """Close the oldest connection with no request in progress; False when every one is busy."""
        for conn in self.open:
            if not conn.busy():
                self.evicted += 1
                conn.close()
                return True
        return False


class _Conn(asyncio.Protocol):
    """One connection: aiohttp's request handler behind a thin proxy the guard can count and close."""

    def __init__(self, guard: _Guard, handler: Any) -> None:
        self.guard = guard
        self.handler: Any = handler
        self.transport: asyncio.Transport | None = None

    def busy(self) -> bool:
        return bool(getattr(self.handler, "_request_in_progress", True))

    def close(self) -> None:
        self.guard.open.pop(self, None)
        if self.transport is not None:
            self.transport.abort()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        g = self.guard
        if len(g.open) >= g.cap and not g.make_room():
            g.refused += 1
            self.handler = None
            transport.abort()
            return
        self.transport = transport
        g.open[self] = None
        self.handler.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self.handler is not None:
            self.handler.data_received(data)

    def eof_received(self) -> bool | None:
        return self.handler.eof_received() if self.handler is not None else None

    def connection_lost(self, exc: BaseException | None) -> None:
        self.guard.open.pop(self, None)
        if self.handler is not None:
            self.handler.connection_lost(exc)

    def pause_writing(self) -> None:
        if self.handler is not None:
            self.handler.pause_writing()

    def resume_writing(self) -> None:
        if self.handler is not None:
            self.handler.resume_writing()


class GuardedRunner(web.AppRunner):
    """``web.AppRunner`` with the header timeout and the connection cap of ``http`` (see the module doc)."""

    def __init__(self, app: web.Application, http: HttpConfig, **kwargs: Any) -> None:
        kwargs.setdefault("handle_signals", False)
        kwargs.setdefault("shutdown_timeout", 2.0)
        kwargs.setdefault("access_log", None)
        super().__init__(app, keepalive_timeout=http.header_timeout_s, **kwargs)
        self.cap = connection_cap(http)
        self.guard: _Guard | None = None

    @property
    def server(self) -> Any:  # what the sites hand to ``loop.create_server``: the guarded factory
        inner = super().server
        if inner is None:
            return None
        if self.guard is None or self.guard.inner is not inner:
            self.guard = _Guard(inner, self.cap)
        return self.guard
