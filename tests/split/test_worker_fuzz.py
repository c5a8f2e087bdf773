"""Fuzzed stream entries through the worker's real read path: never a crash, every bad one dead-lettered."""

from __future__ import annotations

import uuid
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera_daemon.errors import CodecError
from tessera_daemon.model import Frame
from tessera_daemon.transport.codec import REASONS, decode_entry, encode_host
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.link import RedisLink
from tessera_daemon.transport.redis import EntryToken, RedisTransport
from tessera_daemon.transport.registry import ensure_group
from tests.transport.helpers import make_cfg

pytestmark = pytest.mark.redis

VALID = encode_host([Frame(1.0, "s0", {"m": 1.0}), Frame(1.0, "s1", {"m": 2.0}, frozenset(), (79,))], "h", "a/1", 1)
payload_values = st.one_of(
    st.none(),
    st.integers(-(2**63), 2**64 - 1),
    st.floats(),
    st.text(max_size=6),
    st.binary(max_size=40),
    st.lists(st.text(max_size=3), max_size=3),
    st.lists(st.integers(-3, 3), max_size=3),
)


@st.composite
def entries(draw: st.DrawFn) -> dict[bytes, bytes]:
    kind = draw(st.integers(0, 4))
    if kind == 0:  # arbitrary fields
        return draw(st.dictionaries(st.binary(min_size=1, max_size=6), st.binary(max_size=60), min_size=1, max_size=5))
    fields = dict(VALID)
    if kind == 1:  # one envelope field replaced or removed
        key = draw(st.sampled_from([b"v", b"src", b"seq", b"d"]))
        if draw(st.booleans()):
            fields[key] = draw(st.binary(max_size=20))
        else:
            del fields[key]
        return fields
    if kind == 2:  # payload bytes corrupted
        d = bytearray(fields[b"d"])
        for _ in range(draw(st.integers(1, 4))):
            d[draw(st.integers(0, len(d) - 1))] = draw(st.integers(0, 255))
        fields[b"d"] = bytes(d[: draw(st.integers(0, len(d)))])
        return fields
    if kind == 3:  # a payload field set to something else
        obj = msgpack.unpackb(fields[b"d"])
        obj[draw(st.sampled_from(["h", "s", "t", "m", "x", "a", "c", "cf", "e", "l"]))] = draw(payload_values)
        fields[b"d"] = msgpack.packb(obj, use_bin_type=True)
        return fields
    return fields  # a valid entry among the bad ones


def offline_ok(fields: dict[bytes, bytes]) -> bool:
    try:
        decode_entry(fields)
    except CodecError:
        return False
    return True


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)
@given(batch=st.lists(entries(), min_size=1, max_size=40))
async def test_fuzzed_entries_never_crash_a_worker_and_land_in_dead_letters(
    redis_url: str, batch: list[dict[bytes, bytes]]
) -> None:
    cfg = make_cfg(redis_url)
    keys = Keys(cfg.transport.redis.prefix)
    token = f"fuzz-{uuid.uuid4().hex[:10]}"
    link = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="test")
    try:
        await link.call(lambda c: ensure_group(c, keys.stream(token), cfg.transport.redis.group))
        client: Any = link.client
        ids = [await client.xadd(keys.stream(token), f) for f in batch]
        transport = RedisTransport(cfg.transport, link, consumer="fuzzer")
        reader = transport.attach(token, b"0-0")
        delivered: list[EntryToken] = []
        for _ in range(20):
            got = await transport.receive(10_000, 0.05)
            delivered += [d.token for d in got if isinstance(d.token, EntryToken)]
            if reader.cursor == ids[-1] and reader.mode == "new":
                break
        expected_ok = [i for i, f in zip(ids, batch, strict=True) if offline_ok(f)]
        assert [t.id for t in delivered] == expected_ok
        dead = [
            f for _i, f in await client.xrange(keys.deadletter, "-", "+") if f[b"stream"] == keys.stream(token).encode()
        ]
        assert len(dead) == len(batch) - len(expected_ok)
        assert all(f[b"reason"].decode() in REASONS for f in dead)
        assert sum(transport.dead_letters.values()) == len(dead)
        pending = await client.xpending(keys.stream(token), cfg.transport.redis.group)
        assert pending["pending"] == len(expected_ok)  # dead letters are acknowledged, never retried
    finally:
        await link.client.delete(keys.stream(token))
        await link.close()
