"""Fuzzed HTTP requests against the daemon's real application (make_app plus the event routes as ``run``
mounts them, over real sockets): bodies of every POST route (random bytes, random JSON, mutated events and
envelopes, deep nesting), query strings and path segments of every GET route, odd headers. Never a 500;
every answer is one the route documents (docs/operations.md)."""

from __future__ import annotations

import json
from collections import Counter
from typing import Any
from urllib.parse import quote

import aiohttp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera_daemon.engine.events import EventBook
from tessera_daemon.settings.events import DeploySignalSettings
from tessera_daemon.web.deploysignal import DS_EVENTS_PATH
from tessera_daemon.web.event_api import event_routes
from tests.event_helpers import cfg, topology
from tests.fuzz.strategies import JSON, mutated, nested
from tests.web.servers import serve_daemon_app

NOW = 1_800_000_000.0
TOKEN = "fuzz-t0ken"
EVENT = {"v": 1, "id": "e1", "kind": "firmware_push", "ts": NOW - 60, "scope": ["r1"]}
DS_EVENT = {"event_id": "d1", "event_class": "firmware_push", "event_ts": NOW - 60}
ENVELOPE = {"contract_version": "v1", "emitted_at_ts": NOW, "event": DS_EVENT}
ALLOWED = {
    "/v1/events": {202, 400, 401, 403, 408, 413, 415, 429},
    DS_EVENTS_PATH: {202, 400, 401, 403, 408, 413, 415, 429},
}

bodies = st.one_of(
    st.binary(max_size=300),
    st.builds(lambda o: json.dumps(o).encode(), JSON),
    st.builds(lambda o: json.dumps(o).encode(), mutated(EVENT, list(EVENT))),
    st.builds(lambda o: json.dumps([o]).encode(), mutated(EVENT, list(EVENT))),
    st.builds(lambda o: json.dumps(o).encode(), mutated(ENVELOPE, list(ENVELOPE))),
    st.builds(lambda o: json.dumps({**ENVELOPE, "event": o}).encode(), mutated(DS_EVENT, list(DS_EVENT))),
    st.sampled_from([nested(50_000), b'{"a":' * 5000 + b"1" + b"}" * 5000, b"NaN", b"[]", b"{}", b""]),
)
headers = st.fixed_dictionaries(
    {},
    optional={
        "Content-Type": st.sampled_from(
            [
                "application/json",
                "text/plain",
                "application/json; charset=utf-8",
                "application/x-www-form-urlencoded",
                "",
                "application/JSON",
            ]
        ),
        "Authorization": st.sampled_from([f"Bearer {TOKEN}", "Bearer x", "Basic x", "", f"bearer {TOKEN}"]),
        "x-ds-instance-id": st.sampled_from(["ds", "", " "]),
    },
)
requests = st.lists(st.tuples(st.sampled_from(sorted(ALLOWED)), bodies, headers), min_size=5, max_size=25)
queries = st.lists(
    st.tuples(st.sampled_from(["/v1/firings?state=", "/v1/events?limit=", "/v1/shards/"]), st.text(max_size=20)),
    min_size=3,
    max_size=15,
)

SETTINGS = settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large]
)


def routes(book: EventBook, counts: Counter[tuple[str, str]] | None = None) -> list[Any]:
    e = cfg(api_token=TOKEN, deploysignal=DeploySignalSettings(token=TOKEN), relearns_per_hour=1000)
    return event_routes(e, lambda: book, now=lambda: NOW, counts=counts)


@SETTINGS
@given(reqs=requests)
async def test_fuzzed_posts_never_500(reqs: list[tuple[str, bytes, dict[str, str]]]) -> None:
    book = EventBook(topology(), cfg())
    counts: Counter[tuple[str, str]] = Counter()
    answered: Counter[tuple[str, str]] = Counter()
    async with serve_daemon_app(routes(book, counts)) as base, aiohttp.ClientSession() as s:
        for path, body, hdrs in reqs:
            async with s.post(base + path, data=body, headers=hdrs) as r:
                assert r.status in ALLOWED[path], (path, r.status, body[:200], hdrs, await r.text())
                assert not any(h.lower().startswith("access-control-") for h in r.headers)
                if r.status != 202:
                    await r.json(content_type=None)  # every refusal is a JSON reason
                answered[("events" if path == "/v1/events" else "deploysignal", str(r.status))] += 1
        async with s.get(base + "/healthz") as r:
            assert r.status == 200
    assert counts == answered  # every request counted by its answer (tessera_event_requests_total)


@SETTINGS
@given(qs=queries)
async def test_fuzzed_queries_and_paths_never_500(qs: list[tuple[str, str]]) -> None:
    book = EventBook(topology(), cfg())
    async with serve_daemon_app(routes(book)) as base, aiohttp.ClientSession() as s:
        for prefix, text in qs:
            url = base + prefix + quote(text, safe="")
            async with s.get(url) as r:
                assert r.status in (200, 400, 404), (url, r.status, await r.text())
