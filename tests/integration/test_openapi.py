"""GET /v1/openapi.json of `run`, `agent` and `detector`: the document lists the routes each process's
router serves (it is built from the router), every one of them documented; together they cover every
documented operation; every documented GET answers, and the documented request examples are accepted."""

from __future__ import annotations

import secrets
import time
from typing import Any

import aiohttp
import pytest

from tessera_daemon.web.openapi import SERVED_BY
from tessera_daemon.web.openapi_operations import OPENAPI_PATH, OPERATIONS
from tests.integration.test_daemon import cfg_for, daemon
from tests.transport.helpers import agent, detector, make_cfg


async def _document(port: int) -> dict[str, Any]:
    async with aiohttp.ClientSession() as s, s.get(f"http://127.0.0.1:{port}{OPENAPI_PATH}") as r:
        assert r.status == 200 and r.content_type == "application/json"
        doc: dict[str, Any] = await r.json()
    assert doc["openapi"].startswith("3.1")
    undocumented = [
        f"{m.upper()} {p}" for p, ops in doc["paths"].items() for m, op in ops.items() if op.get("x-undocumented")
    ]
    assert not undocumented, f"routes without an entry in tessera_daemon/web/openapi.py: {undocumented}"
    return doc


def _operations(doc: dict[str, Any]) -> set[tuple[str, str]]:
    return {(m, p) for p, ops in doc["paths"].items() for m in ops}


TOKEN = "openapi-test-token"
TIME_KEYS = frozenset({"ts", "end_ts", "emitted_at_ts", "event_ts"})


def _now(example: Any, now: float) -> Any:
    """The documented example with its times moved to now (events older than events.max_age_s get 400)."""
    if isinstance(example, dict):
        return {k: (now if k in TIME_KEYS and isinstance(v, int | float) else _now(v, now)) for k, v in example.items()}
    return example


async def _probe(port: int, doc: dict[str, Any], shard: str) -> None:
    """Every documented GET answers (not 404/405); every documented request example is accepted."""
    async with aiohttp.ClientSession() as s:
        for path, ops in doc["paths"].items():
            url = f"http://127.0.0.1:{port}{path.replace('{shard_id}', shard).replace('{name}', 'console.js')}"
            for method, op in ops.items():
                if method == "get":
                    async with s.get(url) as r:
                        assert str(r.status) in op["responses"], (path, r.status, await r.text())
                        # a clean run has no firing: /v1/firings/{firing_id}[/evidence] answer their documented 404
                        assert r.status not in (404, 405) or "{shard_id}" in path or "{firing_id}" in path, (
                            path,
                            r.status,
                        )
                    continue
                media = op["requestBody"]["content"]["application/json"]
                headers = {p["name"]: "test" for p in op.get("parameters", []) if p["in"] == "header"}
                headers["Authorization"] = f"Bearer {TOKEN}"  # event routes refuse without a token
                example = _now(media["example"], time.time())
                async with s.post(url, json=example, headers=headers) as r:
                    assert r.status == 202, (path, r.status, await r.text())
                    assert str(r.status) in op["responses"]


async def test_run_serves_a_complete_openapi_document() -> None:
    cfg = cfg_for(
        TESSERA_SIM__SCENARIO="clean",
        TESSERA_SIM__SPEEDUP="50",
        TESSERA_EVENTS__API_TOKEN=TOKEN,
        TESSERA_EVENTS__DEPLOYSIGNAL__TOKEN=TOKEN,
    )
    async with daemon(cfg) as (running, _task):
        doc = await _document(running.port)
        served = _operations(doc)
        assert {("get", "/v1/firings"), ("post", "/v1/events"), ("get", OPENAPI_PATH)} <= served
        await _probe(running.port, doc, running.status.snapshot.shards[0])


@pytest.mark.redis
async def test_split_processes_serve_complete_openapi_documents(redis_url: str) -> None:
    cfg = make_cfg(
        redis_url, TESSERA_TRANSPORT__REDIS__PREFIX=f"openapi-{secrets.token_hex(4)}", TESSERA_SIM__DURATION_S="0"
    )
    served: dict[str, set[tuple[str, str]]] = {}
    async with agent(cfg) as (a, _at):
        served["agent"] = _operations(await _document(a.port))
        async with detector(cfg) as (d, _dt):
            served["detector"] = _operations(await _document(d.port))
    async with daemon(cfg_for()) as (running, _task):
        served["run"] = _operations(await _document(running.port))
    everything = set().union(*served.values())
    assert everything == set(OPERATIONS), f"documented but served by no process: {set(OPERATIONS) - everything}"
    for method, path in OPERATIONS:  # docs/api.md names the processes of the routes not everyone serves
        by = sorted(name for name, ops in served.items() if (method, path) in ops)
        if by != ["agent", "detector", "run"]:
            assert sorted(SERVED_BY[path].split(", ")) == by, path
