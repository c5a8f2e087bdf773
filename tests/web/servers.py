"""Serve aiohttp routes on a free loopback port for a test (the real daemon app, real sockets)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from aiohttp import web

from tessera_daemon.config import load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.transport.memory import MemoryTransport
from tessera_daemon.web.app import make_app
from tessera_daemon.web.status import Status
from tests.event_helpers import topology
from tests.servers import free_port


@contextlib.asynccontextmanager
async def serve_app(app: web.Application) -> AsyncIterator[str]:
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.5, access_log=None)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


@contextlib.asynccontextmanager
async def serve_daemon_app(routes: list[web.RouteDef]) -> AsyncIterator[str]:
    """The daemon's own application (make_app) with ``routes`` added, as the daemon will mount them."""
    cfg = load_config(None, {})
    status = Status(cfg, Pipeline(cfg, topology()).snapshot(), MemoryTransport(16))
    async with serve_app(make_app(status, extra_routes=routes)) as url:
        yield url
