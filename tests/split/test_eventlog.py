"""Cluster events in split mode: posted to a detector worker, logged in Redis, applied to every partition.

The registry (partitions and their topology slices) is published directly, as an agent would, so the
worker leases both partitions of a small two-job cluster without any frames flowing. In it rack
``z0-r00`` holds host ``z0-r00-h00`` (job-0) and host ``z0-r00-h01`` (job-1): a host-scoped event
concerns one partition, a rack-scoped one both, each with its own shards of the rack.
"""

from __future__ import annotations

import json
import time
from typing import Any

import aiohttp
import pytest

from tessera_daemon.config import Config
from tessera_daemon.engine.events import EventBook, EventRecord
from tessera_daemon.model import ClusterEvent, Topology
from tessera_daemon.sim import ClusterSim
from tessera_daemon.split.eventlog import EventLog
from tessera_daemon.split.worker import DetectorRunning
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.link import RedisLink
from tessera_daemon.transport.registry import Router, publish_registry
from tests.transport.conftest import Server
from tests.transport.helpers import START_TS, client_for, detector, make_cfg, wait_for

pytestmark = pytest.mark.redis

TOKENS = ("job-0", "job-1")
HOST = "z0-r00-h00"  # a host of job-0 only
RACK = "z0-r00"  # a rack with one host of each job


TOKEN = "events-t0ken"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def ev_cfg(url: str, **env: str) -> Config:
    """The worker's configuration with tokens on both event routes (required since issue 18) and an age
    bound wide enough for events at simulated times (the worker's event time is the wall clock until
    its first window)."""
    return make_cfg(
        url,
        **{
            "TESSERA_EVENTS__API_TOKEN": TOKEN,
            "TESSERA_EVENTS__DEPLOYSIGNAL__TOKEN": TOKEN,
            "TESSERA_EVENTS__MAX_AGE_S": "3e9",
            **env,
        },
    )


def event(eid: str, scope: list[str] | str, kind: str = "firmware_push", ts: float = START_TS + 600) -> dict[str, Any]:
    return {"v": 1, "id": eid, "kind": kind, "ts": ts, "scope": scope}


def _got(book: EventBook, event_id: str) -> EventRecord:
    """The event's record in ``book``; it must be there."""
    record = book.get(event_id)
    assert record is not None, f"event {event_id} not in the book"
    return record


def members(topo: Topology, node: str) -> set[str]:
    return set(topo.members()[node])


async def publish(cfg: Config) -> Router:
    """Register the simulated cluster's partitions and topology slices, as an agent does."""
    router = Router(ClusterSim(cfg.sim).topology)
    link = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="test")
    try:
        await publish_registry(link, Keys(cfg.transport.redis.prefix), "agent-a", router, cfg.transport.redis.group)
    finally:
        await link.close()
    return router


async def serving(worker: DetectorRunning) -> None:
    """Until the worker holds both partitions and knows the fleet topology (event routes ready)."""
    det = worker.detector
    await wait_for(lambda: sorted(det.parts) == list(TOKENS) and det.fleet.ready, 20, "both partitions")


def shards_with(worker: DetectorRunning, eid: str) -> dict[str, set[str]]:
    """Partition token -> shards the event freezes there, for the partitions whose book holds it."""
    out = {}
    for token, work in worker.detector.parts.items():
        rec = work.pipeline.events.get(eid)
        if rec is not None:
            out[token] = set(rec.shards)
    return out


def has_event(worker: DetectorRunning, token: str, eid: str) -> bool:
    work = worker.detector.parts.get(token)  # None while a partition is being (re-)acquired
    return work is not None and eid in work.pipeline.events


async def gauge(http: aiohttp.ClientSession, base: str, name: str) -> float | None:
    """One unlabelled sample of the worker's /metrics."""
    async with http.get(f"{base}/metrics") as r:
        for line in (await r.text()).splitlines():
            if line.startswith(name + " "):
                return float(line.split()[1])
    return None


async def _is(value: Any, expected: float) -> bool:
    return bool(await value == expected)


async def logged(client: Any, cfg: Config) -> list[dict[str, Any]]:
    rows = await client.xrange(Keys(cfg.transport.redis.prefix).events, "-", "+")
    return [
        {"event": json.loads(f[b"event"]), "source": f[b"source"].decode(), "metadata": json.loads(f[b"metadata"])}
        for _i, f in rows
    ]


async def test_posted_event_freezes_the_shards_of_every_partition_it_concerns(redis_server: Server) -> None:
    cfg = ev_cfg(redis_server.url)
    router = await publish(cfg)
    client = client_for(redis_server.url)
    async with detector(cfg) as (worker, _t), aiohttp.ClientSession(headers=AUTH) as http:
        await serving(worker)
        base = f"http://127.0.0.1:{worker.port}"
        async with http.post(f"{base}/v1/events", json=[event("fw-host", [HOST]), event("fw-rack", [RACK])]) as r:
            assert r.status == 202, await r.text()
            body = await r.json()
        assert body["accepted"] == ["fw-host", "fw-rack"]
        assert [e["status"] for e in body["events"]] == ["added", "added"]
        rows = await logged(client, cfg)
        assert [(r["event"]["id"], r["event"]["scope"], r["source"]) for r in rows] == [
            ("fw-host", [HOST], "api"),
            ("fw-rack", [RACK], "api"),
        ]
        assert ClusterEvent.from_obj(rows[0]["event"]) == ClusterEvent.from_obj(event("fw-host", [HOST]))

        await wait_for(lambda: len(shards_with(worker, "fw-rack")) == 2, 10, "the rack event in both partitions")
        topo = {t: router.partitions[t].topology for t in TOKENS}
        assert shards_with(worker, "fw-host") == {"job-0": members(topo["job-0"], HOST)}
        rack = shards_with(worker, "fw-rack")
        assert rack == {t: members(topo[t], RACK) for t in TOKENS}
        assert rack["job-0"] and rack["job-1"] and not rack["job-0"] & rack["job-1"]
        assert rack["job-0"] | rack["job-1"] == members(ClusterSim(cfg.sim).topology, RACK)
        # the scope seen by each partition is cut to the nodes its slice knows
        assert _got(worker.detector.parts["job-1"].pipeline.events, "fw-rack").event.scope == (RACK,)

        # the worker's view (/metrics, the API) joins the partitions' copies back into one event each
        view = worker.status
        await wait_for(lambda: len(view.snapshot.events) == 2, 10, "the events in the worker's view")
        rec = view.snapshot.events.get("fw-rack")
        assert rec is not None and set(rec.shards) == rack["job-0"] | rack["job-1"]
        await wait_for(lambda: _is(gauge(http, base, "tessera_cluster_events"), 2.0), 10, "the events gauge")

        async with http.get(f"{base}/v1/events") as r:
            listed = await r.json()
        assert r.status == 200
        assert {e["id"]: e["affected_shards"] for e in listed["events"]} == {
            "fw-host": 8,
            "fw-rack": len(rack["job-0"] | rack["job-1"]),
        }
        # re-posting is a duplicate everywhere: nothing changes, the log grows by the retried entry only
        async with http.post(f"{base}/v1/events", json=event("fw-host", [HOST])) as r:
            assert r.status == 202
            assert (await r.json())["events"][0]["status"] == "duplicate"
        counts = worker.detector.counters.events
        await wait_for(lambda: counts["read"] == 3, 10, "the log read back")
        assert counts["relayed"] == 3
        assert counts["applied"] == 3  # host: job-0; rack: job-0 and job-1
        assert counts["undecodable"] == 0
        await wait_for(
            lambda: _metric(http, base, 'tessera_event_log_entries_total{outcome="relayed"} 3.0'),
            10,
            "the event log series",
        )
    await client.aclose()


async def _metric(http: aiohttp.ClientSession, base: str, line: str) -> bool:
    async with http.get(f"{base}/metrics") as r:
        return line in (await r.text()).splitlines()


async def test_unknown_scope_and_bad_token_are_refused_and_not_logged(redis_server: Server) -> None:
    cfg = ev_cfg(redis_server.url, TESSERA_EVENTS__API_TOKEN="s3cret")
    await publish(cfg)
    client = client_for(redis_server.url)
    key = Keys(cfg.transport.redis.prefix).events
    async with detector(cfg) as (worker, _t), aiohttp.ClientSession() as http:
        await serving(worker)
        url = f"http://127.0.0.1:{worker.port}/v1/events"
        good = {"Authorization": "Bearer s3cret"}
        async with http.post(url, json=event("fw-1", [HOST])) as r:
            assert r.status == 401
        async with http.post(url, json=event("fw-1", [HOST]), headers={"Authorization": "Bearer nope"}) as r:
            assert r.status == 401
        async with http.post(url, json=[event("fw-1", [HOST]), event("fw-2", ["no-such-rack"])], headers=good) as r:
            assert r.status == 400
            assert "no-such-rack" in (await r.json())["error"]
        assert await client.xlen(key) == 0
        async with http.get(url) as r:
            assert (await r.json())["events"] == []
        async with http.post(url, json=event("fw-1", [HOST]), headers=good) as r:
            assert r.status == 202
        assert await client.xlen(key) == 1
        await wait_for(lambda: has_event(worker, "job-0", "fw-1"), 10, "the event applied")
    await client.aclose()


async def test_a_worker_started_after_the_event_replays_the_log(redis_server: Server) -> None:
    cfg = ev_cfg(redis_server.url)
    router = await publish(cfg)
    keys = Keys(cfg.transport.redis.prefix)
    client = client_for(redis_server.url)
    # logged before any worker runs (by a worker since gone), with an undecodable entry in between
    link = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="test")
    try:
        log = EventLog(link, keys, cfg.events.history)
        await log.append([(ClusterEvent.from_obj(event("fw-early", [RACK])), "api", {})])
        await client.xadd(keys.events, {b"event": b"{not json", b"source": b"api", b"metadata": b"{}"})
        await log.append(
            [
                (
                    ClusterEvent.from_obj(event("redeploy", "fleet", kind="model_redeploy")),
                    "deploysignal",
                    {"ds_instance_id": "ds-1"},
                )
            ]
        )
    finally:
        await link.close()
    async with detector(cfg) as (worker, _t), aiohttp.ClientSession(headers=AUTH) as http:
        await serving(worker)
        for token in TOKENS:  # in the books as soon as the partitions are handed over (replayed on load)
            book = worker.detector.parts[token].pipeline.events
            assert set(_got(book, "fw-early").shards) == members(router.partitions[token].topology, RACK)
            assert set(_got(book, "redeploy").shards) == set(router.partitions[token].topology.shards)
            assert _got(book, "redeploy").source == "deploysignal"
            assert dict(_got(book, "redeploy").metadata) == {"ds_instance_id": "ds-1"}
        counts = worker.detector.counters.events
        await wait_for(lambda: counts["read"] == 2, 10, "the log read by the heartbeat")
        assert counts["undecodable"] == 1
        assert counts["applied"] == 4  # two events in two partitions, at load; the heartbeat's are duplicates
        base = f"http://127.0.0.1:{worker.port}"
        async with http.get(f"{base}/v1/events") as r:
            assert sorted(e["id"] for e in (await r.json())["events"]) == ["fw-early", "redeploy"]
        async with http.post(f"{base}/v1/events", json=event("fw-late", [HOST], ts=START_TS + 900)) as r:
            assert r.status == 202
        await wait_for(lambda: has_event(worker, "job-0", "fw-late"), 10, "fw-late applied")
    # a takeover from a checkpoint older than the event: the next worker still freezes for it
    for token in TOKENS:
        await client.delete(keys.checkpoint(token))
    async with detector(cfg) as (worker, _t), aiohttp.ClientSession(headers=AUTH) as http:
        await serving(worker)
        assert shards_with(worker, "fw-late") == {"job-0": members(router.partitions["job-0"].topology, HOST)}
        assert len(shards_with(worker, "fw-early")) == 2
        async with http.get(f"http://127.0.0.1:{worker.port}/v1/events") as r:
            listed = await r.json()
        assert sorted(e["id"] for e in listed["events"]) == ["fw-early", "fw-late", "redeploy"]
    await client.aclose()


async def test_deploysignal_event_is_logged_and_freezes(redis_server: Server) -> None:
    cfg = ev_cfg(redis_server.url)
    router = await publish(cfg)
    client = client_for(redis_server.url)
    now = time.time()
    envelope = {
        "contract_version": "v1",
        "emitted_at_ts": now,
        "event": {
            "event_id": "ds-42",
            "event_class": "driver_update",
            "event_ts": now,
            "metadata": {"scope": RACK, "change": "driver 570"},
        },
    }
    async with detector(cfg) as (worker, _t), aiohttp.ClientSession(headers=AUTH) as http:
        await serving(worker)
        url = f"http://127.0.0.1:{worker.port}/v1/tessera/deploy-events"
        async with http.post(url, json=envelope, headers={"x-ds-instance-id": "ds-prod"}) as r:
            assert r.status == 202, await r.text()
            body = await r.json()
        assert body["status"] == "accepted"
        assert body["freeze_hook_activated"] is True
        assert body["freeze_hook_activated_at_ts"] == pytest.approx(now, abs=5)
        (row,) = await logged(client, cfg)
        assert row["source"] == "deploysignal"
        assert row["event"]["id"] == "ds-42" and row["event"]["scope"] == [RACK]
        assert row["metadata"] == {"scope": RACK, "change": "driver 570", "ds_instance_id": "ds-prod"}
        await wait_for(lambda: len(shards_with(worker, "ds-42")) == 2, 10, "the event in both partitions")
        assert shards_with(worker, "ds-42") == {t: members(router.partitions[t].topology, RACK) for t in TOKENS}
        # DeploySignal re-delivers: same answer, no second freeze
        async with http.post(url, json=envelope, headers={"x-ds-instance-id": "ds-prod"}) as r:
            assert r.status == 202 and (await r.json())["freeze_hook_activated"] is True
    await client.aclose()


async def test_post_answers_503_while_redis_is_down_and_succeeds_on_retry(redis_aof: Server) -> None:
    cfg = ev_cfg(redis_aof.url)
    router = await publish(cfg)
    async with detector(cfg) as (worker, _t), aiohttp.ClientSession(headers=AUTH) as http:
        await serving(worker)
        base = f"http://127.0.0.1:{worker.port}"
        ds_url = f"{base}/v1/tessera/deploy-events"
        envelope = {
            "contract_version": "v1",
            "emitted_at_ts": START_TS,
            "event": {"event_id": "ds-1", "event_class": "config_change", "event_ts": START_TS},
        }
        redis_aof.stop()
        async with http.post(f"{base}/v1/events", json=event("fw-1", [HOST])) as r:
            assert r.status == 503
            assert (await r.json())["error"] == "event log unavailable, retry"
            assert r.headers["Retry-After"] == "1"
        async with http.post(ds_url, json=envelope, headers={"x-ds-instance-id": "ds"}) as r:
            assert r.status == 503
            assert (await r.json())["reason"] == "event log unavailable, retry"
        async with http.get(f"{base}/v1/events") as r:  # not accepted anywhere, not even locally
            assert (await r.json())["events"] == []
        assert "fw-1" not in worker.detector.parts["job-0"].pipeline.events
        redis_aof.start()

        async def retried() -> bool:
            async with http.post(f"{base}/v1/events", json=event("fw-1", [HOST])) as r:
                return r.status == 202

        await wait_for(retried, 20, "a retry accepted once Redis is back", step_s=0.2)
        async with http.post(ds_url, json=envelope, headers={"x-ds-instance-id": "ds"}) as r:
            assert r.status == 202
        await wait_for(lambda: has_event(worker, "job-0", "fw-1"), 20, "the retried event applied")
        assert shards_with(worker, "fw-1") == {"job-0": members(router.partitions["job-0"].topology, HOST)}
        client = client_for(redis_aof.url)
        assert [r["event"]["id"] for r in await logged(client, cfg)] == ["fw-1", "ds-1"]
        await client.aclose()


async def test_a_partition_acquired_after_the_event_was_read_replays_the_log(redis_server: Server) -> None:
    refresh = {"TESSERA_TRANSPORT__AGENT__TOPOLOGY_REFRESH_S": "0.2"}
    cfg = ev_cfg(redis_server.url, **refresh)
    await publish(cfg)
    async with detector(cfg) as (worker, _t), aiohttp.ClientSession(headers=AUTH) as http:
        await serving(worker)
        async with http.post(f"http://127.0.0.1:{worker.port}/v1/events", json=event("fw-r01", ["z0-r01"])) as r:
            assert r.status == 202
        counts = worker.detector.counters.events
        await wait_for(lambda: counts["read"] == 1 and len(shards_with(worker, "fw-r01")) == 2, 10, "fw-r01 read")
        # a third job appears: its partition is acquired long after the heartbeat read the event
        router = await publish(make_cfg(redis_server.url, TESSERA_SIM__COHORTS="3", **refresh))
        await wait_for(lambda: "job-2" in worker.detector.parts, 10, "the new partition")
        assert counts["read"] == 1
        assert shards_with(worker, "fw-r01")["job-2"] == members(router.partitions["job-2"].topology, "z0-r01")
        # the partitions already held re-expand the event over their new slices
        await wait_for(
            lambda: shards_with(worker, "fw-r01")["job-0"] == members(router.partitions["job-0"].topology, "z0-r01"),
            10,
            "job-0's new slice",
        )
