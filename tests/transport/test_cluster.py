"""Redis Cluster: partitions (hash-tagged keys) spread over 3 masters and over 2 workers, exactly."""

from __future__ import annotations

import asyncio

import pytest
from redis.asyncio.cluster import RedisCluster

from tessera_daemon.transport.keys import Keys
from tests.transport.conftest import Server
from tests.transport.helpers import (
    agent,
    all_committed,
    assert_exact,
    detector,
    make_cfg,
    read_outputs,
    reference,
    wait_for,
)

pytestmark = pytest.mark.redis


async def test_two_workers_share_partitions_spread_over_a_three_master_cluster(redis_cluster: list[Server]) -> None:
    url = f"redis://127.0.0.1:{redis_cluster[0].port}/0"
    cfg = make_cfg(
        url,
        TESSERA_TRANSPORT__REDIS__CLUSTER="true",
        TESSERA_SIM__COHORTS="3",
        TESSERA_SIM__HOSTS_PER_RACK="3",
        TESSERA_SIM__DURATION_S="600",
    )
    ref = reference(cfg)
    tokens = sorted(ref.windows)
    assert tokens == ["job-0", "job-1", "job-2"]
    keys = Keys(cfg.transport.redis.prefix)
    client = RedisCluster.from_url(url)
    try:
        async with detector(cfg) as (w1, _t1), detector(cfg) as (w2, _t2):
            async with agent(cfg) as (_ag, at):
                # settled: a worker whose lease lapsed (a stalled event loop) may briefly still list a
                # partition its successor holds; it drops it at its next fenced write or renewal
                await wait_for(
                    lambda: (
                        w1.detector.parts
                        and w2.detector.parts
                        and set(w1.detector.parts) | set(w2.detector.parts) == set(tokens)
                        and not set(w1.detector.parts) & set(w2.detector.parts)
                    ),
                    20,
                    "both workers owning partitions, each partition exactly once",
                )
                owned = (set(w1.detector.parts), set(w2.detector.parts))
                await asyncio.wait_for(asyncio.shield(at), 60)
            await wait_for(lambda: all_committed(client, cfg, ref), 60, "every window committed")
        await client.initialize()
        nodes = [client.get_node_from_key(keys.stream(t)) for t in tokens]
        masters = {n.port for n in nodes if n is not None}
        out = await read_outputs(client, cfg, tokens)
    finally:
        await client.aclose()
    assert len(masters) == 3  # {job-0}, {job-1}, {job-2} hash to slots on three different masters
    assert owned[0] and owned[1] and not owned[0] & owned[1]
    assert owned[0] | owned[1] == set(tokens)
    assert_exact(out, ref)
    workers = {by for t in tokens for _w, _n, by in out.windows[t]}
    assert workers == {w1.worker, w2.worker}
