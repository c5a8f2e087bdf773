"""Hostile entries against a running split deployment (agent > real redis-server > two detector workers):
no entry stops a worker. Entries the codec refuses (an XID or lost-device index ``true``) and entries
from a clock a day ahead are dead-lettered with their reason and acknowledged, the skewed host is on
/metrics; a 1e308 value is taken as missing and counted. Both workers keep committing windows and the
outputs are exactly those of the same input run in-process. (Entries that decode but then fail in the
window assembler: tests/split/test_partition.py.)"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import aiohttp
import msgpack
import pytest

from tessera_daemon.model import Frame
from tessera_daemon.sim import ClusterSim
from tessera_daemon.transport.codec import encode_host
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.registry import Router
from tests.transport.conftest import Server
from tests.transport.helpers import (
    START_TS,
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


def _entry(shards: list[str], ts: float, seq: int, **payload: Any) -> dict[bytes, bytes]:
    fields = encode_host([Frame(ts, s, {"gpu_util": 50.0}) for s in shards], "evil-host", "evil/1", seq)
    obj = msgpack.unpackb(fields[b"d"])
    obj.update(payload)
    return {**fields, b"d": msgpack.packb(obj, use_bin_type=True)}


def poison(shards: list[str], ts: float) -> list[tuple[dict[bytes, bytes], str]]:
    """(entry, the reason it is dead-lettered with)."""
    return [
        (_entry(shards, ts, 1, e=[[True, [79]]]), "invalid"),  # an XID whose shard index is msgpack true
        (_entry(shards, ts, 2, l=[True]), "invalid"),  # a lost-device index true
        (_entry(shards, time.time() + 86_400.0, 3), "clock_skew"),  # a host whose clock jumped a day ahead
    ]


def huge(shards: list[str], ts: float) -> list[Frame]:
    """Not poison: well-formed frames, one with an absurd value (missing after the range check, counted)."""
    return [Frame(ts, s, {"gpu_util": 1e308 if i == 0 else 0.5}) for i, s in enumerate(shards)]


async def test_poison_entries_are_dead_lettered_and_both_workers_go_on(redis_server: Server) -> None:
    cfg = make_cfg(redis_server.url)
    slices = Router(ClusterSim(cfg.sim).topology).partitions
    before = {t: huge(p.topology.shards[:3], START_TS) for t, p in slices.items()}
    ref = reference(cfg, before)  # the same input, in-process: the 1e308 is missing there too
    keys = Keys(cfg.transport.redis.prefix)
    client = client_for(redis_server.url)
    try:
        for token, frames in before.items():  # ahead of the agent's first entry, deterministically
            await client.xadd(keys.stream(token), encode_host(frames, "evil-host", "huge/1", 1))
        async with detector(cfg) as (w1, _t1), detector(cfg) as (w2, _t2):
            async with agent(cfg) as (_ag, at):
                await wait_for(lambda: w1.detector.parts and w2.detector.parts, 20, "both workers owning partitions")
                sent: list[str] = []
                hosts: set[str | None] = set()
                for token, work in [*w1.detector.parts.items(), *w2.detector.parts.items()]:
                    shards = work.pipeline.shards[:3]
                    hosts.add(work.pipeline.topology.nodes[shards[0]].parent)
                    for fields, reason in poison(shards, START_TS + 30.0):
                        await client.xadd(keys.stream(token), fields)
                        sent.append(reason)
                mid = [w.detector.counters.windows["committed"] for w in (w1, w2)]

                async def skew_exported() -> bool:
                    found = set()
                    async with aiohttp.ClientSession() as http:
                        for w in (w1, w2):
                            async with http.get(f"http://127.0.0.1:{w.port}/metrics") as r:
                                text = await r.text()
                            found |= {
                                h for h in hosts if f'tessera_clock_skew_seconds{{host="{h}",source="evil"}}' in text
                            }
                    return found == hosts

                await wait_for(skew_exported, 20, "the skewed host on /metrics", step_s=0.3)
                await asyncio.wait_for(asyncio.shield(at), 60)
            await wait_for(lambda: all_committed(client, cfg, ref), 60, "every window committed")
            rejected = sum(w.detector.snapshot.stats.rejected.get("above_range", 0) for w in (w1, w2))
            async with aiohttp.ClientSession() as http:
                for w in (w1, w2):  # readiness stays honest: windows kept completing, nothing stalled
                    async with http.get(f"http://127.0.0.1:{w.port}/readyz") as r:
                        assert not [x for x in (await r.json())["reasons"] if "stalled" in x]
            assert not _t1.done() and not _t2.done()  # both still running, and committing after the poison
            assert all(w.detector.counters.windows["committed"] > n for w, n in zip((w1, w2), mid, strict=True))
        out = await read_outputs(client, cfg, sorted(ref.windows))
        dead = await client.xrange(keys.deadletter, "-", "+")
        pending = {
            t: (await client.xpending(keys.stream(t), cfg.transport.redis.group))["pending"] for t in ref.windows
        }
    finally:
        await client.aclose()
    assert_exact(out, ref)
    assert rejected >= 2  # the 1e308 of each partition: tessera_values_rejected_total{reason="above_range"}
    assert sorted(f[b"reason"].decode() for _i, f in dead) == sorted(sent)
    assert all(f[b"error"] and f[b"f:d"] for _i, f in dead)  # the error and the entry itself, for inspection
    assert pending == dict.fromkeys(ref.windows, 0)
