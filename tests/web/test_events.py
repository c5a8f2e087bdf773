"""POST/GET /v1/events and the DeploySignal v1 consumer route over real HTTP: every status path."""

from __future__ import annotations

import contextlib
import io
import json
from typing import Any

import aiohttp
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera_daemon.engine.events import EventBook, EventRecord
from tessera_daemon.errors import CodecError
from tessera_daemon.model import ClusterEvent
from tessera_daemon.web.deploysignal import DS_EVENTS_PATH, deploysignal_routes, parse_envelope
from tessera_daemon.web.events import PostPolicy, bearer_ok, events_routes
from tests.event_helpers import cfg, topology
from tests.web.servers import serve_daemon_app

MIB = 1024 * 1024
NOW = 1500.0


def ev(eid: str, **kw: Any) -> dict[str, Any]:
    return {"v": 1, "id": eid, "kind": "firmware_push", "ts": 1000.0, "scope": "fleet", **kw}


TOKEN = "t0ken-for-tests"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ev_routes(book: Any, **kw: Any) -> list[Any]:
    """POST/GET /v1/events as the tests serve them: a token (required by default) and the tests' event time."""
    kw.setdefault("token", lambda: TOKEN)
    kw.setdefault("now", lambda: NOW)
    return events_routes(book, **kw)


def ds_routes(book: Any, **kw: Any) -> list[Any]:
    kw.setdefault("now", lambda: NOW)
    return deploysignal_routes(book, **kw)


async def post(
    s: aiohttp.ClientSession, url: str, body: Any, headers: dict[str, str] | None = None, raw: bytes | None = None
) -> tuple[int, dict[str, Any], Any]:
    """POST JSON (``Content-Type: application/json`` unless ``headers`` say otherwise); ``headers`` None:
    with the tests' bearer token."""
    data = io.BytesIO(raw if raw is not None else json.dumps(body).encode())
    sent = {"Content-Type": "application/json", **(AUTH if headers is None else headers)}
    async with s.post(url, data=data, headers=sent) as r:
        return r.status, dict(r.headers), await r.json(content_type=None)


# ------------------------------------------------------------------------------ /v1/events


async def test_post_events_single_list_duplicates_and_get() -> None:
    book = EventBook(topology(), cfg())
    seen: list[EventRecord] = []
    async with (
        serve_daemon_app(ev_routes(book, on_event=seen.append, now=lambda: NOW)) as base,
        aiohttp.ClientSession() as s,
    ):
        status, _, body = await post(s, f"{base}/v1/events", ev("fw1", scope=["r1"]))
        assert status == 202
        assert body["accepted"] == ["fw1"] and body["affected_shards"] == 3
        assert body["events"][0] == {
            "id": "fw1",
            "status": "added",
            "affected_shards": 3,
            "freeze_start_ts": 1000.0,
            "freeze_end_ts": 2800.0,
        }
        batch = [ev("fw1", scope=["r1"]), ev("m1", kind="maintenance", ts=1200.0, end_ts=1300.0, scope=["h3"])]
        status, _, body = await post(s, f"{base}/v1/events", batch)
        assert status == 202 and body["accepted"] == ["fw1", "m1"] and body["affected_shards"] == 4
        assert [e["status"] for e in body["events"]] == ["duplicate", "added"]
        assert body["events"][1]["freeze_end_ts"] == 1300.0 + 120.0
        assert [r.id for r in seen] == ["fw1", "m1"]  # duplicates are not notified

        async with s.get(f"{base}/v1/events") as r:
            assert r.status == 200
            got = await r.json()
        assert got["count"] == 2 and got["kept"] == 2 and got["now_ts"] == NOW
        assert [e["id"] for e in got["events"]] == ["m1", "fw1"]  # newest first
        fw = got["events"][1]
        assert fw["frozen_now"] is True and fw["freeze_end_ts"] == 2800.0 and fw["scope"] == ["r1"]
        assert got["events"][0]["frozen_now"] is False  # maintenance [1200, 1420) is over at 1500
        async with s.get(f"{base}/v1/events?limit=1") as r:
            assert [e["id"] for e in (await r.json())["events"]] == ["m1"]
        async with s.get(f"{base}/v1/events?limit=zero") as r:
            assert r.status == 400


@pytest.mark.parametrize(
    ("body", "raw", "words"),
    [
        (None, b"{not json", "not valid JSON"),
        ("fleet", None, "expected an event object or a non-empty list"),
        ([], None, "non-empty list"),
        ({"v": 2, "id": "a", "kind": "firmware_push", "ts": 1}, None, "unsupported contract version"),
        ({"v": 1, "id": "a", "kind": "reboot", "ts": 1}, None, "event.kind: unknown kind 'reboot'"),
        ([ev("ok"), {"v": 1, "id": "b", "kind": "firmware_push"}], None, "events[1]: event: missing field 'ts'"),
        (ev("a", scope=["r1", "nope"]), None, "unknown topology nodes 'nope'"),
        ([ev("a"), ev("a", ts=5.0)], None, "appears twice with different contents"),
        (ev("a", end_ts=1.0), None, "end_ts: must not be before ts"),
        (None, b'{"v":1,"id":"a","kind":"firmware_push","ts":NaN}', "finite unix time"),
        (None, b'{"v":1,"id":"a","kind":"firmware_push","ts":1' + b"0" * 400 + b"}", "finite unix time"),
    ],
)
async def test_post_events_400_reasons_and_nothing_added(body: Any, raw: bytes | None, words: str) -> None:
    book = EventBook(topology(), cfg())
    async with serve_daemon_app(ev_routes(book)) as base, aiohttp.ClientSession() as s:
        status, _, got = await post(s, f"{base}/v1/events", body, raw=raw)
    assert status == 400 and words in got["error"]
    assert len(book) == 0  # all or nothing


async def test_post_events_conflicting_reuse_of_an_id_is_400() -> None:
    book = EventBook(topology(), cfg())
    book.add(ClusterEvent("a", "firmware_push", 1000.0, ("fleet",)))
    async with serve_daemon_app(ev_routes(book)) as base, aiohttp.ClientSession() as s:
        status, _, got = await post(s, f"{base}/v1/events", ev("a", kind="driver_update"))
    assert status == 400 and "different kind" in got["error"]


async def test_post_events_413_over_one_mib_and_token_401() -> None:
    book = EventBook(topology(), cfg())
    routes = ev_routes(book, token=lambda: "s3cret")
    async with serve_daemon_app(routes) as base, aiohttp.ClientSession() as s:
        ok = {"Authorization": "Bearer s3cret", "Content-Type": "application/json"}
        big = json.dumps([ev(f"e{i}") for i in range(20_000)]).encode()
        assert len(big) > MIB
        status, _, got = await post(s, f"{base}/v1/events", None, ok, raw=big)
        assert status == 413 and "exceeds" in got["error"]
        # chunked (no Content-Length): still refused past the limit

        async def chunks() -> Any:
            for i in range(0, len(big), 65536):
                yield big[i : i + 65536]

        async with s.post(f"{base}/v1/events", data=chunks(), headers=ok) as r:
            assert r.status == 413
        status, headers, got = await post(s, f"{base}/v1/events", ev("a"), {})
        assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
        status, _, _ = await post(s, f"{base}/v1/events", ev("a"), {"Authorization": "Bearer wrong!"})
        assert status == 401
        status, _, _ = await post(s, f"{base}/v1/events", ev("a"), ok)
        assert status == 202
        assert len(book) == 1


async def test_events_503_before_the_book_exists() -> None:
    async with serve_daemon_app(ev_routes(lambda: None)) as base, aiohttp.ClientSession() as s:
        status, _, _ = await post(s, f"{base}/v1/events", ev("a"))
        assert status == 503
        async with s.get(f"{base}/v1/events") as r:
            assert r.status == 503


# ------------------------------------------------------------------------------ DeploySignal v1


def envelope(event: dict[str, Any] | None = None, **kw: Any) -> dict[str, Any]:
    e = event or {"event_id": "ds-1", "event_class": "firmware_push", "event_ts": 1000.0}
    return {"contract_version": "v1", "event": e, "emitted_at_ts": 1001.0, **kw}


DS_HEADERS = {"x-ds-instance-id": "ds-prod-1", "Authorization": "Bearer tok-123"}


async def test_ds_202_activates_freeze_and_is_idempotent() -> None:
    book = EventBook(topology(), cfg())
    seen: list[EventRecord] = []
    routes = ds_routes(book, token=lambda: "tok-123", on_event=seen.append, now=lambda: NOW)
    async with serve_daemon_app(routes) as base, aiohttp.ClientSession() as s:
        url = base + DS_EVENTS_PATH
        status, _, body = await post(s, url, envelope(), DS_HEADERS)
        assert status == 202
        assert body == {
            "contract_version": "v1",
            "status": "accepted",
            "freeze_hook_activated": True,
            "freeze_hook_activated_at_ts": NOW,
        }
        again = await post(s, url, envelope(), DS_HEADERS)
        assert again[0] == 202 and again[2] == body
        # scoped by metadata; a future event activates at its own ts
        e2 = {
            "event_id": "ds-2",
            "event_class": "model_redeploy",
            "event_ts": 1600.0,
            "metadata": {"scope": "h3", "deploy_id": "dep-7"},
        }
        status, _, body = await post(s, url, envelope(e2), DS_HEADERS)
        assert status == 202 and body["freeze_hook_activated_at_ts"] == 1600.0
        # an event whose window is already over freezes nothing
        e3 = {"event_id": "ds-3", "event_class": "config_change", "event_ts": 100.0, "event_window_end_ts": 200.0}
        status, _, body = await post(s, url, envelope(e3), DS_HEADERS)
        assert status == 202 and body["freeze_hook_activated"] is False
        assert "freeze_hook_activated_at_ts" not in body
    assert [r.id for r in seen] == ["ds-1", "ds-2", "ds-3"]
    rec = book.get("ds-2")
    assert rec is not None and rec.shards == ("h3/g0",) and rec.source == "deploysignal"
    assert rec.metadata["deploy_id"] == "dep-7" and rec.metadata["ds_instance_id"] == "ds-prod-1"
    assert book.frozen(1700.0) == {"h1/g0": "ds-1", "h1/g1": "ds-1", "h2/g0": "ds-1", "h3/g0": "ds-2"}


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"Authorization": "Bearer tok-123"}, "missing x-ds-instance-id"),
        ({"x-ds-instance-id": "  ", "Authorization": "Bearer tok-123"}, "missing x-ds-instance-id"),
        ({"x-ds-instance-id": "ds"}, "bearer token"),
        ({"x-ds-instance-id": "ds", "Authorization": "tok-123"}, "bearer token"),
        ({"x-ds-instance-id": "ds", "Authorization": "Basic tok-123"}, "bearer token"),
        ({"x-ds-instance-id": "ds", "Authorization": "Bearer "}, "bearer token"),
        ({"x-ds-instance-id": "ds", "Authorization": "Bearer tok-124"}, "bearer token"),  # same length
        ({"x-ds-instance-id": "ds", "Authorization": "Bearer tok-1234"}, "bearer token"),  # longer
    ],
)
async def test_ds_401(headers: dict[str, str], words: str) -> None:
    book = EventBook(topology(), cfg())
    async with serve_daemon_app(ds_routes(book, token=lambda: "tok-123")) as base, aiohttp.ClientSession() as s:
        status, hdrs, body = await post(s, base + DS_EVENTS_PATH, envelope(), headers)
    assert status == 401 and words in body["reason"] and body["status"] == "rejected"
    assert body["contract_version"] == "v1" and "WWW-Authenticate" in hdrs
    assert len(book) == 0


async def test_ds_without_configured_token_refuses_unless_explicitly_unauthenticated() -> None:
    book = EventBook(topology(), cfg())
    async with serve_daemon_app(ds_routes(book)) as base, aiohttp.ClientSession() as s:
        status, _, body = await post(s, base + DS_EVENTS_PATH, envelope(), {"x-ds-instance-id": "ds"})
        assert status == 403 and "no token is configured" in body["reason"]
    open_policy = PostPolicy(allow_unauthenticated=True)
    async with serve_daemon_app(ds_routes(book, policy=open_policy)) as base, aiohttp.ClientSession() as s:
        assert (await post(s, base + DS_EVENTS_PATH, envelope(), {"x-ds-instance-id": "ds"}))[0] == 202
        assert (await post(s, base + DS_EVENTS_PATH, envelope(), {}))[0] == 401


@pytest.mark.parametrize(
    ("body", "raw", "words"),
    [
        (None, b"]]", "not valid JSON"),
        ([1], None, "envelope: expected a JSON object"),
        ({"contract_version": "v2", "event": {}, "emitted_at_ts": 1}, None, "unsupported 'v2'"),
        ({"contract_version": "v1", "event": {}}, None, "emitted_at_ts"),
        ({"contract_version": "v1", "event": {}, "emitted_at_ts": 10**400}, None, "emitted_at_ts"),
        ({"contract_version": "v1", "emitted_at_ts": 1}, None, "missing field 'event'"),
        (envelope({"event_id": "x", "event_class": "deploy", "event_ts": 1}), None, "unknown class 'deploy'"),
        (envelope({"event_id": "x", "event_class": "env_change", "event_ts": 10**400}), None, "finite number"),
        (
            envelope({"event_id": "x", "event_class": "env_change", "event_ts": 1, "metadata": {"scope": "r9"}}),
            None,
            "unknown topology nodes 'r9'",
        ),
    ],
)
async def test_ds_400(body: Any, raw: bytes | None, words: str) -> None:
    book = EventBook(topology(), cfg())
    async with serve_daemon_app(ds_routes(book, token=lambda: "tok-123")) as base, aiohttp.ClientSession() as s:
        status, _, got = await post(s, base + DS_EVENTS_PATH, body, DS_HEADERS, raw=raw)
    assert status == 400 and words in got["reason"] and got["status"] == "rejected"
    assert len(book) == 0


async def test_ds_413_and_503() -> None:
    book = EventBook(topology(), cfg())
    async with serve_daemon_app(ds_routes(book, token=lambda: "tok-123")) as base, aiohttp.ClientSession() as s:
        pad = "x" * (MIB + 10)
        e = {"event_id": "big", "event_class": "env_change", "event_ts": 1, "metadata": {"pad": pad}}
        status, _, got = await post(s, base + DS_EVENTS_PATH, envelope(e), DS_HEADERS)
        assert status == 413 and got["contract_version"] == "v1" and got["status"] == "rejected"
    async with serve_daemon_app(ds_routes(lambda: None, token=lambda: "tok-123")) as base, aiohttp.ClientSession() as s:
        status, _, _ = await post(s, base + DS_EVENTS_PATH, envelope(), DS_HEADERS)
        assert status == 503


def test_bearer_comparison() -> None:
    assert bearer_ok("Bearer abc", "abc") and bearer_ok("bearer  abc ", "abc")
    assert not bearer_ok("Bearer abd", "abc") and not bearer_ok("Bearer ab", "abc")
    assert not bearer_ok(None, "abc") and not bearer_ok("Bearer abc", "")
    assert not bearer_ok("abc", "abc") and not bearer_ok("Token abc", "abc")


def test_parse_envelope_keeps_metadata() -> None:
    req = parse_envelope(
        envelope({"event_id": "x", "event_class": "capacity_change", "event_ts": 3, "metadata": {"a": "b"}})
    )
    assert req.event.id == "x" and req.metadata == {"a": "b"} and req.emitted_at_ts == 1001.0


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
event_like = st.fixed_dictionaries(
    {},
    optional={
        "event_id": json_values,
        "event_class": st.sampled_from(["env_change", "x"]) | json_values,
        "event_ts": json_values,
        "event_window_end_ts": json_values,
        "metadata": json_values,
    },
)


@settings(max_examples=300, deadline=None)
@given(
    st.fixed_dictionaries(
        {
            "contract_version": st.just("v1") | json_values,
            "event": event_like | json_values,
            "emitted_at_ts": json_values,
        }
    )
)
def test_fuzzed_envelopes_raise_only_codec_errors(obj: dict[str, Any]) -> None:
    with contextlib.suppress(CodecError):
        parse_envelope(obj)
