"""PartitionReader.probe: the stream lag gauge follows the group after Redis stops reporting its lag."""

from __future__ import annotations

import pytest

from tessera_daemon.transport.consumer import PartitionReader
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.link import RedisLink
from tests.transport.conftest import Server
from tests.transport.helpers import client_for, make_cfg


@pytest.mark.redis
async def test_lag_is_exact_when_redis_reports_none(redis_server: Server) -> None:
    cfg = make_cfg(redis_server.url, TESSERA_TRANSPORT__REDIS__PREFIX="lag")
    keys = Keys("lag")
    client = client_for(redis_server.url)
    link = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="test")
    try:
        stream, group = keys.stream("p"), "g"
        for i in range(50):
            await client.xadd(stream, {"n": str(i)})
        await client.xgroup_create(stream, group, id="0")
        await client.xreadgroup(group, "c1", {stream: ">"}, count=100)
        reader = PartitionReader(link, keys, group, "c2", "p", b"0-0", 500)
        await reader.probe()
        assert reader.lag == 0 and reader.pending == 50
        # a deleted entry (tombstone) past the group's position invalidates its read counter: no lag reported
        new = [await client.xadd(stream, {"n": f"new-{i}"}) for i in range(5)]
        await client.xdel(stream, new[2])
        groups = await client.xinfo_groups(stream)
        assert groups[0]["lag"] is None, "precondition: Redis reports no lag"
        await reader.probe()
        assert reader.lag == 4  # counted; XLEN (54) was reported before
        await client.xreadgroup(group, "c1", {stream: ">"}, count=100)
        await reader.probe()
        assert reader.lag == 0
    finally:
        await link.close()
        await client.aclose()
