"""The web console's routes: the page at ``/``, its static files, and the public JSON behind it.

``GET /`` and ``/static/<file>``: the console (vanilla JS and canvas, shipped in the package: nothing
is fetched from anywhere else). ``GET /v1/topology``, ``/v1/fleet``, ``/v1/summary``,
``/v1/incidents``, ``/v1/firings/<id>``, ``/v1/firings/<id>/evidence`` and ``/v1/scenarios``: JSON
(docs/api.md). ``GET /v1/stream``: Server-Sent Events, one ``window`` event per batch of windows with
a small diff. Read-only: every handler reads ``Status`` and its ``Console``.
"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path
from typing import Any

from aiohttp import web

from tessera_daemon.web.console import Console, sse
from tessera_daemon.web.status import Status

STATIC = Path(__file__).parent / "static"
CONSOLE_STATUS: web.AppKey[Status] = web.AppKey("console_status", Status)
TICKER: web.AppKey[asyncio.Task[None]] = web.AppKey("console_ticker", asyncio.Task)
KEEPALIVE_S = 15.0
NO_STORE = {"Cache-Control": "no-store"}
CSP = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; "
    "font-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'"
)


def _console(request: web.Request) -> Console:
    return Console.of(request.app[CONSOLE_STATUS])


def _json(body: Any, request: web.Request) -> web.Response:
    resp = web.json_response(body, headers=NO_STORE)
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        resp.enable_compression()
    return resp


async def index(_request: web.Request) -> web.FileResponse:
    return web.FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP, **NO_STORE})


ASSETS = {"console.js": "text/javascript", "console.css": "text/css"}


async def static(request: web.Request) -> web.FileResponse:
    name = request.match_info["name"]
    if name not in ASSETS:
        raise web.HTTPNotFound(text=f"no asset {name!r}")
    return web.FileResponse(
        STATIC / name, headers={"Content-Type": f"{ASSETS[name]}; charset=utf-8", "Cache-Control": "no-cache"}
    )


async def topology(request: web.Request) -> web.Response:
    raw, gz = _console(request).topology_bytes()
    headers = {**NO_STORE, "Vary": "Accept-Encoding"}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        return web.Response(body=gz, content_type="application/json", headers={**headers, "Content-Encoding": "gzip"})
    return web.Response(body=raw, content_type="application/json", headers=headers)


async def fleet(request: web.Request) -> web.Response:
    return _json(_console(request).fleet_obj(), request)


async def summary(request: web.Request) -> web.Response:
    return _json(_console(request).summary(), request)


async def incidents(request: web.Request) -> web.Response:
    return _json(_console(request).incidents_obj(), request)


async def firing(request: web.Request) -> web.Response:
    c = _console(request)
    f = c.find(request.match_info["firing_id"])
    if f is None:
        raise web.HTTPNotFound(text=f"no active or recent firing {request.match_info['firing_id']!r}")
    return _json(f.to_obj(), request)


async def firing_evidence(request: web.Request) -> web.Response:
    c = _console(request)
    f = c.find(request.match_info["firing_id"])
    if f is None:
        raise web.HTTPNotFound(text=f"no active or recent firing {request.match_info['firing_id']!r}")
    return _json(c.evidence_obj(f), request)


async def scenarios(request: web.Request) -> web.Response:
    from tessera_daemon.sim.catalogue import catalogue  # noqa: PLC0415 - the simulator's catalogue, on demand

    return _json({"v": 1, "current": _console(request).scenario(), "scenarios": catalogue()}, request)


async def stream(request: web.Request) -> web.StreamResponse:
    c = _console(request)
    resp = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store", "X-Accel-Buffering": "no"}
    )
    await resp.prepare(request)
    q = c.hub.add()
    try:
        await resp.write(
            b"retry: 2000\n\n" + sse("hello", {"window": c.p.table.window, "topology_key": c.layout().key})
        )
        while True:
            try:
                data = await asyncio.wait_for(q.get(), KEEPALIVE_S)
            except TimeoutError:
                data = b": keepalive\n\n"
            if data is None:
                break
            await resp.write(data)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        c.hub.remove(q)
    return resp


async def _start(app: web.Application) -> None:
    app[TICKER] = asyncio.create_task(Console.of(app[CONSOLE_STATUS]).tick_forever(), name="console")


async def _shutdown(app: web.Application) -> None:
    Console.of(app[CONSOLE_STATUS]).hub.close()  # open event streams end now, not at the shutdown timeout


async def _cleanup(app: web.Application) -> None:
    task = app.get(TICKER)
    if task is not None:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


def add_console(app: web.Application, status: Status) -> None:
    """Register the console's page, static files, JSON API and event stream on ``app``."""
    Console.of(status)
    app[CONSOLE_STATUS] = status
    app.router.add_get("/", index)
    app.router.add_get("/static/{name}", static)
    app.router.add_get("/v1/topology", topology)
    app.router.add_get("/v1/fleet", fleet)
    app.router.add_get("/v1/summary", summary)
    app.router.add_get("/v1/incidents", incidents)
    app.router.add_get("/v1/scenarios", scenarios)
    app.router.add_get("/v1/stream", stream)
    app.router.add_get("/v1/firings/{firing_id}/evidence", firing_evidence)
    app.router.add_get("/v1/firings/{firing_id}", firing)
    app.on_startup.append(_start)
    app.on_shutdown.append(_shutdown)
    app.on_cleanup.append(_cleanup)
