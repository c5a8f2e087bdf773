"""Secure by default: the event routes as ``run`` and the worker mount them (``event_routes`` from the
``[events]`` settings), over real HTTP. No token configured: refused. A token: ``text/plain`` 415, no
CORS, stale or far-future events 400, deep JSON 400 (not 500), a per-scope re-learn budget (429). The
server closes slow clients and caps connections, so /healthz stays reachable."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from tessera_daemon.config import HttpConfig, load_config
from tessera_daemon.engine.events import EventBook
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.errors import ConfigError
from tessera_daemon.settings.events import DeploySignalSettings
from tessera_daemon.transport.memory import MemoryTransport
from tessera_daemon.web.app import make_app
from tessera_daemon.web.deploysignal import DS_EVENTS_PATH
from tessera_daemon.web.event_api import event_routes
from tessera_daemon.web.server import GuardedRunner
from tessera_daemon.web.status import Status
from tests.event_helpers import cfg, topology
from tests.servers import free_port
from tests.web.servers import serve_daemon_app

NOW = 1_800_000_000.0
TOKEN = "hostile-t0ken"
JSON = {"Content-Type": "application/json"}
AUTH = {"Authorization": f"Bearer {TOKEN}", **JSON}
DS = {**AUTH, "x-ds-instance-id": "ds"}


def ev(eid: str, ts: float = NOW - 60.0, scope: Any = "fleet", **kw: Any) -> dict[str, Any]:
    return {"v": 1, "id": eid, "kind": "firmware_push", "ts": ts, "scope": scope, **kw}


def envelope(eid: str = "ds-1", ts: float = NOW - 60.0) -> dict[str, Any]:
    return {
        "contract_version": "v1",
        "emitted_at_ts": ts,
        "event": {"event_id": eid, "event_class": "firmware_push", "event_ts": ts},
    }


def routes(book: EventBook, **settings: Any) -> list[Any]:
    return event_routes(cfg(**settings), lambda: book, now=lambda: NOW)


def tokens(**kw: Any) -> dict[str, Any]:
    return {"api_token": TOKEN, "deploysignal": DeploySignalSettings(token=TOKEN), **kw}


async def send(
    s: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str], raw: bytes | None = None
) -> tuple[int, dict[str, str], Any]:
    async with s.post(url, data=raw if raw is not None else json.dumps(body).encode(), headers=headers) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


async def test_default_settings_refuse_unauthenticated_posts_on_both_routes() -> None:
    book = EventBook(topology(), cfg())
    async with serve_daemon_app(routes(book)) as base, aiohttp.ClientSession() as s:
        for path, body, headers in (
            ("/v1/events", ev("a"), JSON),
            (DS_EVENTS_PATH, envelope(), {**JSON, "x-ds-instance-id": "ds"}),
        ):
            status, _, got = await send(s, base + path, body, headers)
            assert status == 403, path
            assert "no token is configured" in json.dumps(got)
            status, _, _ = await send(s, base + path, body, {**headers, "Authorization": "Bearer guess"})
            assert status == 403
    assert len(book) == 0


def test_unauthenticated_serving_only_on_a_loopback_bind() -> None:
    ok = load_config(None, {"TESSERA_EVENTS__ALLOW_UNAUTHENTICATED": "true", "TESSERA_HTTP__HOST": "::1"})
    assert ok.events.allow_unauthenticated
    for host in ("0.0.0.0", "10.1.2.3", "::", "tessera.example"):
        with pytest.raises(ConfigError, match=r"events\.allow_unauthenticated"):
            load_config(None, {"TESSERA_EVENTS__ALLOW_UNAUTHENTICATED": "true", "TESSERA_HTTP__HOST": host})


async def test_explicitly_unauthenticated_routes_serve_without_a_token() -> None:
    book = EventBook(topology(), cfg())
    async with serve_daemon_app(routes(book, allow_unauthenticated=True)) as base, aiohttp.ClientSession() as s:
        assert (await send(s, base + "/v1/events", ev("a"), JSON))[0] == 202
        assert (await send(s, base + DS_EVENTS_PATH, envelope(), {**JSON, "x-ds-instance-id": "ds"}))[0] == 202


@pytest.mark.parametrize(
    "ctype",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/octet-stream", None],
)
async def test_with_a_token_only_application_json_is_taken(ctype: str | None) -> None:
    """A browser posts ``text/plain`` (and forms) cross-origin without a preflight: never accepted."""
    book = EventBook(topology(), cfg())
    headers = {"Authorization": f"Bearer {TOKEN}", **({"Content-Type": ctype} if ctype else {})}
    async with serve_daemon_app(routes(book, **tokens())) as base, aiohttp.ClientSession() as s:
        assert (await send(s, base + "/v1/events", ev("a"), headers))[0] == 415
        assert (await send(s, base + DS_EVENTS_PATH, envelope(), {**headers, "x-ds-instance-id": "ds"}))[0] == 415
        assert (await send(s, base + "/v1/events", ev("a"), {**headers, "Content-Type": "application/json"}))[0] == 202
    assert len(book) == 1


async def test_no_cors_headers_and_no_preflight() -> None:
    book = EventBook(topology(), cfg())
    async with serve_daemon_app(routes(book, **tokens())) as base, aiohttp.ClientSession() as s:
        pre = {
            "Origin": "https://evil.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization,content-type",
        }
        for path in ("/v1/events", DS_EVENTS_PATH):
            async with s.options(base + path, headers=pre) as r:
                assert r.status in (403, 405) and not any(h.lower().startswith("access-control-") for h in r.headers)
            _status, headers, _ = await send(s, base + path, ev("x"), {**DS, "Origin": "https://evil.example"})
            assert not any(h.lower().startswith("access-control-") for h in headers)


@pytest.mark.parametrize(
    ("body", "words"),
    [
        (ev("one", ts=1.0), "ended"),  # ts=1: every shard in scope would re-learn
        (ev("neg", ts=-5.0), "unix time"),  # refused by the codec already
        (ev("old", ts=NOW - 3 * 86_400.0, end_ts=NOW - 2 * 86_400.0), "ended"),
        (ev("far", ts=NOW + 30 * 86_400.0), "ahead"),
        ([ev("ok"), ev("bad", ts=1.0)], "events[1]"),
    ],
)
async def test_stale_and_far_future_events_are_400(body: Any, words: str) -> None:
    book = EventBook(topology(), cfg())
    async with serve_daemon_app(routes(book, **tokens())) as base, aiohttp.ClientSession() as s:
        status, _, got = await send(s, base + "/v1/events", body, AUTH)
        assert status == 400 and words in got["error"]
        ds = envelope("ds-old", ts=1.0)
        status, _, got = await send(s, base + DS_EVENTS_PATH, ds, DS)
        assert status == 400 and "ended" in got["reason"]
    assert len(book) == 0


async def test_a_recent_interval_event_and_one_announced_ahead_are_taken() -> None:
    book = EventBook(topology(), cfg())
    async with serve_daemon_app(routes(book, **tokens())) as base, aiohttp.ClientSession() as s:
        body = [ev("maint", ts=NOW - 7200.0, end_ts=NOW - 600.0), ev("planned", ts=NOW + 86_400.0)]
        assert (await send(s, base + "/v1/events", body, AUTH))[0] == 202


@pytest.mark.parametrize("depth", [200, 5_000, 100_000])
async def test_deeply_nested_json_is_400_not_500(depth: int) -> None:
    book = EventBook(topology(), cfg())
    raw = b"[" * depth + b"]" * depth
    obj = b'{"a":' * depth + b"1" + b"}" * depth
    async with serve_daemon_app(routes(book, **tokens())) as base, aiohttp.ClientSession() as s:
        for body in (raw, obj):
            assert (await send(s, base + "/v1/events", None, AUTH, raw=body))[0] == 400
            assert (await send(s, base + DS_EVENTS_PATH, None, DS, raw=body))[0] == 400


async def test_re_learns_are_rate_limited_per_scope() -> None:
    book = EventBook(topology(), cfg())
    async with serve_daemon_app(routes(book, **tokens(relearns_per_hour=3))) as base, aiohttp.ClientSession() as s:
        for i in range(3):
            assert (await send(s, base + "/v1/events", ev(f"r1-{i}", scope=["r1"]), AUTH))[0] == 202
        assert (await send(s, base + "/v1/events", ev("r1-0", scope=["r1"]), AUTH))[0] == 202  # a re-delivery
        status, headers, got = await send(s, base + "/v1/events", ev("r1-3", scope=["r1"]), AUTH)
        assert status == 429 and "rate limit" in got["error"] and headers["Retry-After"]
        assert (await send(s, base + "/v1/events", ev("r2-0", scope=["r2"]), AUTH))[0] == 202  # another scope
        for i in range(3):  # DeploySignal shares the budget (fleet scope)
            assert (await send(s, base + DS_EVENTS_PATH, envelope(f"ds-{i}"), DS))[0] == 202
        assert (await send(s, base + "/v1/events", ev("fleet-x"), AUTH))[0] == 429
        assert (await send(s, base + DS_EVENTS_PATH, envelope("ds-9"), DS))[0] == 429
    assert sorted(r.id for r in book.recent(100)) == sorted(["r1-0", "r1-1", "r1-2", "r2-0", "ds-0", "ds-1", "ds-2"])


# ------------------------------------------------------------------------------ slow clients


@contextlib.asynccontextmanager
async def guarded(http: HttpConfig) -> AsyncIterator[tuple[int, GuardedRunner]]:
    c = load_config(None, {})
    status = Status(c, Pipeline(c, topology()).snapshot(), MemoryTransport(16))
    runner = GuardedRunner(make_app(status), http)
    await runner.setup()
    port = free_port()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    try:
        yield port, runner
    finally:
        await runner.cleanup()


async def trickle(port: int, stop: asyncio.Event) -> bool:
    """A client that sends its request head one byte a while, forever; True when the server closed it."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: " + b"a" * 10_000
    try:
        for b in head:
            if stop.is_set():
                return False
            writer.write(bytes([b]))
            await writer.drain()
            with contextlib.suppress(TimeoutError):
                if await asyncio.wait_for(reader.read(1), 0.05) == b"":
                    return True
        return False
    except (ConnectionError, OSError):
        return True
    finally:
        writer.close()
        with contextlib.suppress(ConnectionError, OSError):
            await writer.wait_closed()


async def test_slow_clients_are_closed_and_cannot_starve_healthz() -> None:
    http = HttpConfig(max_connections=16, header_timeout_s=0.5)
    async with guarded(http) as (port, runner):
        stop = asyncio.Event()
        slow = [asyncio.create_task(trickle(port, stop)) for _ in range(40)]  # more than the cap
        await asyncio.sleep(0.2)
        async with aiohttp.ClientSession() as s:
            for _ in range(5):  # answered while slow clients hold or take the connections
                async with s.get(f"http://127.0.0.1:{port}/healthz") as r:
                    assert r.status == 200
                async with s.get(f"http://127.0.0.1:{port}/metrics") as r:
                    assert r.status == 200
        closed = await asyncio.wait_for(asyncio.gather(*slow), 30)
        stop.set()
        assert all(closed)  # every trickling client was closed by the server (timeout or eviction)
        assert runner.guard is not None and runner.guard.evicted > 0
