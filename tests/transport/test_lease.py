"""Leases, fencing, breaker and placement: the rules that keep a partition in exactly one place."""

from __future__ import annotations

import asyncio
import random

import pytest

from tessera_daemon.config import load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.errors import ConfigError
from tessera_daemon.settings.transport import BreakerSettings
from tessera_daemon.sim import ClusterSim
from tessera_daemon.split.partition import Committer, PartitionWork, WindowRecord
from tessera_daemon.transport.breaker import CircuitBreaker
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.lease import LeaseKeeper, fair_share
from tessera_daemon.transport.link import RedisLink
from tests.transport.conftest import Server
from tests.transport.helpers import (
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


class Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def test_breaker_opens_after_failures_backs_off_and_closes_on_success() -> None:
    clock = Clock()
    b = CircuitBreaker(BreakerSettings(failures=3, backoff_base_s=1.0, backoff_cap_s=4.0), clock, random.Random(1))
    for _ in range(2):
        b.record_failure()
        assert b.allow() and str(b.state) == "closed"
    b.record_failure()
    assert str(b.state) == "open" and not b.allow()
    first = b.remaining_s()
    assert 0.5 <= first <= 1.0  # equal jitter over the base delay
    clock.t += first
    assert b.allow() and str(b.state) == "half_open"
    b.record_failure()  # the probe failed: open again, longer
    assert str(b.state) == "open" and 1.0 <= b.remaining_s() <= 2.0
    for _ in range(6):
        clock.t += b.remaining_s()
        assert b.allow()
        b.record_failure()
    assert b.remaining_s() <= 4.0  # capped
    clock.t += b.remaining_s()
    assert b.allow()
    assert b.record_success() and str(b.state) == "closed" and b.attempt == 0 and not b.is_open


def test_heartbeat_must_renew_well_within_the_lease() -> None:
    with pytest.raises(ConfigError, match="heartbeat_ms"):
        load_config(
            None, {"TESSERA_TRANSPORT__DETECTOR__LEASE_MS": "1000", "TESSERA_TRANSPORT__DETECTOR__HEARTBEAT_MS": "600"}
        )


def test_fair_share() -> None:
    assert [fair_share(p, w) for p, w in [(0, 3), (2, 2), (3, 2), (5, 1), (1, 4)]] == [0, 1, 2, 5, 1]


@pytest.mark.redis
async def test_lease_is_exclusive_fenced_and_retaken_only_if_nobody_took_it(redis_server: Server) -> None:
    cfg = make_cfg(redis_server.url)
    keys = Keys("tessera")
    a = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="a")
    b = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="b")
    try:
        ka, kb = LeaseKeeper(a, keys, "wa", 300), LeaseKeeper(b, keys, "wb", 300)
        la = await ka.acquire("p")
        assert la is not None and la.epoch == 1 and ka.valid("p")
        assert await kb.acquire("p") is None  # exclusive
        assert await ka.renew("p")
        await a.client.delete(keys.lease("p"))  # expired while Redis was away: nobody took it
        assert await ka.renew("p") and await a.client.get(keys.lease("p")) == b"wa|1"
        await asyncio.sleep(0.35)  # expires for real
        assert not ka.valid("p")  # locally distrusted before Redis gives it away
        lb = await kb.acquire("p")
        assert lb is not None and lb.epoch == 2
        assert not await ka.renew("p") and "p" not in ka.held  # fenced: epoch moved on
        await kb.release("p")
        assert await b.client.get(keys.lease("p")) is None
    finally:
        await a.close()
        await b.close()


@pytest.mark.redis
async def test_a_stalled_worker_commits_if_nobody_took_its_lapsed_lease_and_is_fenced_if_one_did(
    redis_server: Server,
) -> None:
    """A worker that stalled past its lease (a long batch on a loaded machine) while no other worker
    acquired the partition still commits and checkpoints, re-taking the lease; once another worker has
    acquired it (the epoch moved on) every write of the stalled one is refused, even after that lapses too."""
    cfg = make_cfg(redis_server.url)
    keys = Keys(cfg.transport.redis.prefix)
    ttl = cfg.transport.detector.lease_ms
    a = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="a")
    b = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="b")
    try:
        ka, kb = LeaseKeeper(a, keys, "wa", ttl), LeaseKeeper(b, keys, "wb", ttl)
        lease = await ka.acquire("job-0")
        assert lease is not None
        work = PartitionWork("job-0", "job-0", Pipeline(cfg, ClusterSim(cfg.sim).topology), lease, -1)
        committer = Committer(a, cfg, "wa")
        await a.client.delete(keys.lease("job-0"))  # lapsed while the worker was busy; nobody took it
        lease.valid_until = 0.0
        assert await committer.commit(work, WindowRecord(5, 0.0, 8, [], {})) == "committed"
        assert work.committed == 5 and lease.valid()  # trusted again, as after a renewal
        assert await a.client.get(keys.lease("job-0")) == b"wa|1"
        assert 0 < await a.client.pttl(keys.lease("job-0")) <= ttl
        assert await committer.commit(work, WindowRecord(5, 0.0, 8, [], {})) == "skipped"  # idempotent
        await a.client.delete(keys.lease("job-0"))
        assert await committer.save(work, b"checkpoint-1")  # a checkpoint re-takes it the same way
        assert await a.client.get(keys.checkpoint("job-0")) == b"checkpoint-1"
        await a.client.delete(keys.lease("job-0"))
        assert (lb := await kb.acquire("job-0")) is not None and lb.epoch == 2  # a successor
        assert await committer.commit(work, WindowRecord(6, 0.0, 8, [], {})) == "lost"
        assert not await committer.save(work, b"stale")
        await b.client.delete(keys.lease("job-0"))  # the successor's lease lapses too: still fenced
        assert await committer.commit(work, WindowRecord(6, 0.0, 8, [], {})) == "lost"
        assert not await committer.save(work, b"stale")
        assert await a.client.get(keys.lease("job-0")) is None  # not re-taken under a newer epoch
        assert await a.client.get(keys.checkpoint("job-0")) == b"checkpoint-1"
        rows = await a.client.xrange(keys.windows("job-0"))
        assert [int(f[b"window"]) for _i, f in rows or [] if f is not None] == [5]
        assert await a.client.get(keys.committed("job-0")) == b"5"
    finally:
        await a.close()
        await b.close()


@pytest.mark.redis
async def test_a_joining_worker_gets_a_partition_by_graceful_handover_exactly(redis_server: Server) -> None:
    cfg = make_cfg(redis_server.url, TESSERA_SIM__SPEEDUP="150")
    ref = reference(cfg)
    client = client_for(redis_server.url)
    try:
        async with detector(cfg) as (first, _t1), agent(cfg) as (_ag, at):
            await wait_for(lambda: len(first.detector.parts) == 2, 10, "the first worker owning both")
            await wait_for(lambda: first.detector.counters.windows["committed"] > 40, 20, "progress")
            async with detector(cfg) as (second, _t2):
                await wait_for(lambda: len(second.detector.parts) == 1, 10, "the handover")
                assert first.detector.counters.releases["rebalance"] == 1
                assert second.detector.counters.checkpoints["restored"] == 1  # resumed from the checkpoint
                await asyncio.wait_for(asyncio.shield(at), 60)
                await wait_for(lambda: all_committed(client, cfg, ref), 30, "every window committed")
                assert second.detector.counters.windows["committed"] > 0
                assert second.detector.counters.windows["skipped"] == 0  # a handover recomputes nothing
        out = await read_outputs(client, cfg, sorted(ref.windows))
    finally:
        await client.aclose()
    assert_exact(out, ref)
