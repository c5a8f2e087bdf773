"""Agent > Redis > one detector worker, in-process, against a real redis-server."""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tessera_daemon.config import Config
from tessera_daemon.sim import ClusterSim
from tessera_daemon.transport.base import Transport
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.link import RedisLink
from tessera_daemon.transport.redis import RedisTransport
from tessera_daemon.transport.registry import Router, publish_registry
from tests.transport.conftest import Server
from tests.transport.helpers import (
    Reference,
    agent,
    all_committed,
    assert_exact,
    client_for,
    detector,
    make_cfg,
    read_outputs,
    reference,
    wait_for,
)

pytestmark = pytest.mark.redis

GARBAGE = [
    {b"v": b"1", b"src": b"x/1", b"seq": b"1", b"d": b"\xc1not msgpack"},
    {b"v": b"9", b"src": b"x/1", b"seq": b"2", b"d": b"\x80"},
    {b"junk": b"no version at all"},
    {b"v": b"1", b"src": b"x/1", b"seq": b"3", b"d": b"\x81\xa1h\xa1h"},  # a map without shards
]


async def test_redis_transport_implements_the_transport_protocol() -> None:
    cfg = make_cfg("redis://127.0.0.1:1/0")
    link = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="test")
    try:
        assert isinstance(RedisTransport(cfg.transport, link), Transport)
    finally:
        await link.close()


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_single_worker_matches_reference_and_dead_letters_garbage(redis_server: Server) -> None:
    cfg = make_cfg(redis_server.url)
    ref = reference(cfg)
    keys = Keys(cfg.transport.redis.prefix)
    client = client_for(redis_server.url)
    try:
        await _single_worker(cfg, ref, keys, client)
    finally:
        await client.aclose()


async def _single_worker(cfg: Config, ref: Reference, keys: Keys, client: Any) -> None:
    committed = sum(len(w) for w in ref.windows.values())
    async with detector(cfg) as (worker, _wt), aiohttp.ClientSession() as http:
        base = f"http://127.0.0.1:{worker.port}"
        async with agent(cfg) as (_ag, at):
            await wait_for(lambda: client.exists(keys.stream("job-0")), 10, "the agent's first entries")
            for token in ("job-0", "job-1"):  # malformed entries in the middle of live streams
                for fields in GARBAGE:
                    await client.xadd(keys.stream(token), fields)
            async with http.get(f"{base}/readyz") as r:
                assert r.status == 503  # warming up
            await asyncio.wait_for(asyncio.shield(at), 60)
        await wait_for(lambda: all_committed(client, cfg, ref), 30, "every window committed")
        async with http.get(f"{base}/v1/partitions") as r:
            parts = (await r.json())["partitions"]
        assert sorted(p["partition"] for p in parts) == ["job-0", "job-1"]
        async with http.get(f"{base}/v1/firings") as r:
            api = await r.json()
        async with http.get(f"{base}/readyz") as r:
            ready = await r.json()
        async with http.get(f"{base}/v1/summary") as r:  # the web console's view of a worker
            console = await r.json()
        async with http.get(f"{base}/v1/fleet") as r:
            fleet = await r.json()
        metrics: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}

        async def rendered() -> bool:  # /metrics is rendered after windows, not per request: the last one
            async with http.get(f"{base}/metrics") as r:
                metrics.clear()
                metrics.update(samples(await r.text()))
            return metrics.get(("tessera_windows_committed_total", (("outcome", "committed"),))) == committed

        await wait_for(rendered, 30, "a /metrics render after the last window")
    out = await read_outputs(client, cfg, ["job-0", "job-1"])
    assert_exact(out, ref)
    assert ready["ready"], ready["reasons"]
    assert console["mode"] == "detector" and console["split"]["worker"] == worker.worker
    assert sorted(p["partition"] for p in console["split"]["partitions"]) == ["job-0", "job-1"]
    assert console["split"]["peers"] == [] and console["dead_letters"] == 8
    assert fleet["count"] == console["shards"] > 0 and all(len(c) == fleet["count"] for c in fleet["codes"].values())
    assert set(fleet["codes"]["any"]) <= set("0123456")
    assert {f["id"] for f in api["firings"]} == {fid for _w, fid, _s, _j in ref.firings}
    # every garbage entry went to the dead-letter stream once, with its reason
    dead = await client.xrange(keys.deadletter, "-", "+")
    reasons = sorted(f[b"reason"].decode() for _i, f in dead)
    assert reasons == sorted(["undecodable", "version", "undecodable", "invalid"] * 2)
    assert metrics[("tessera_dead_letters_total", (("reason", "undecodable"),))] == 4
    assert metrics[("tessera_dead_letters_total", (("reason", "invalid"),))] == 2
    assert metrics[("tessera_dead_letters_total", (("reason", "version"),))] == 2
    assert metrics[("tessera_redis_up", ())] == 1
    assert metrics[("tessera_partitions_owned", ())] == 2
    assert metrics[("tessera_checkpoints_total", (("outcome", "written"),))] >= 2
    assert metrics[("tessera_windows_committed_total", (("outcome", "committed"),))] == committed
    assert ("tessera_stream_lag_entries", (("stream", keys.stream("job-0")),)) in metrics
    # acknowledged only what the final checkpoint covers: nothing left pending after shutdown
    for token in ("job-0", "job-1"):
        pending = await client.xpending(keys.stream(token), cfg.transport.redis.group)
        assert pending["pending"] == 0


async def test_worker_follows_a_partition_topology_change(redis_server: Server) -> None:
    cfg = make_cfg(redis_server.url, TESSERA_SIM__COHORTS="1", TESSERA_TRANSPORT__AGENT__TOPOLOGY_REFRESH_S="0.2")
    bigger = make_cfg(redis_server.url, TESSERA_SIM__COHORTS="1", TESSERA_SIM__HOSTS_PER_RACK="3")
    keys = Keys(cfg.transport.redis.prefix)
    link = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="test")
    try:
        first = Router(ClusterSim(cfg.sim).topology)
        await publish_registry(link, keys, "agent-a", first, cfg.transport.redis.group)
        async with detector(cfg) as (worker, _t):
            await wait_for(lambda: worker.detector.parts, 10, "the partition")
            (work,) = worker.detector.parts.values()
            assert len(work.pipeline.shards) == 32
            await publish_registry(
                link, keys, "agent-a", Router(ClusterSim(bigger.sim).topology), cfg.transport.redis.group
            )
            await wait_for(lambda: len(work.pipeline.shards) == 48, 10, "the new topology")
            assert work.pipeline.threshold_log == worker.detector.coordinator.threshold_log
    finally:
        await link.close()
