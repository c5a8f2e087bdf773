from __future__ import annotations

import asyncio

import numpy as np

from tessera_daemon.model import Frame, FrameBlock
from tessera_daemon.transport.base import Transport
from tessera_daemon.transport.memory import MemoryTransport


def frames(n: int, start: int = 0) -> list[Frame]:
    return [Frame(float(i), f"s{i}", {"x": 1.0}) for i in range(start, start + n)]


async def test_bounded_drops_oldest_and_counts() -> None:
    t = MemoryTransport(capacity=5)
    assert isinstance(t, Transport)
    await t.publish(frames(4))
    await t.publish(frames(3, start=4))
    st = t.stats()
    assert st.published_frames == 7 and st.dropped_frames == 2 and st.queued_frames == 5
    (d,) = await t.receive(100, 0.1)
    assert [f.shard for f in d.frames] == ["s2", "s3", "s4", "s5", "s6"]  # oldest two dropped
    await t.ack([d])
    assert t.stats().delivered_frames == 5


async def test_receive_waits_then_times_out_and_wakes_on_publish() -> None:
    t = MemoryTransport(capacity=10)
    assert await t.receive(10, 0.01) == []
    waiter = asyncio.create_task(t.receive(2, 5.0))
    await asyncio.sleep(0.01)
    await t.publish(frames(3))
    (d,) = await asyncio.wait_for(waiter, 1.0)
    assert len(d.frames) == 2 and t.stats().queued_frames == 1


async def test_closed_transport_counts_publishes_as_dropped() -> None:
    t = MemoryTransport(capacity=10)
    await t.close()
    await t.publish(frames(2))
    assert t.stats().dropped_frames == 2


def block(n: int, start: int = 0, names: tuple[str, ...] = ("x",)) -> FrameBlock:
    shards = [f"s{i}" for i in range(start, start + n)]
    ts = np.arange(start, start + n, dtype=np.float64)
    values = np.arange(start, start + n, dtype=np.float64)[:, None].repeat(len(names), axis=1)
    return FrameBlock(shards, ts, list(names), values, None, frozenset(), {0: (79,)} if n else {}, set())


async def test_blocks_are_handed_over_as_arrays_and_joined() -> None:
    t = MemoryTransport(capacity=100)
    first = block(3)
    await t.publish(first)
    await t.publish(frames(2, start=3))  # a Frame list: converted once, at publish
    await t.publish(block(2, start=5))
    await t.publish(block(2, start=7, names=("y",)))  # other metric names: a delivery of its own
    d1, d2 = await t.receive(100, 0.1)
    assert isinstance(d1.frames, FrameBlock) and isinstance(d2.frames, FrameBlock)
    assert [f.shard for f in d1.frames] == [f"s{i}" for i in range(7)]
    assert d1.frames.xids == {0: (79,), 5: (79,)}  # frame indices follow the join
    assert d2.frames.names == ["y"] and len(d2.frames) == 2
    assert t.stats().delivered_frames == 9 and t.stats().queued_frames == 0
    await t.publish(first)
    (d,) = await t.receive(100, 0.1)
    assert d.frames is first  # a lone block goes through untouched


async def test_receive_and_overflow_cut_blocks_at_frame_granularity() -> None:
    t = MemoryTransport(capacity=5)
    await t.publish(block(4))
    await t.publish(block(3, start=4))  # 7 > 5: the two oldest frames go, inside the first block
    assert t.stats().dropped_frames == 2 and t.stats().queued_frames == 5
    (d,) = await t.receive(3, 0.1)
    assert [f.shard for f in d.frames] == ["s2", "s3", "s4"]
    assert isinstance(d.frames, FrameBlock) and d.frames.xids == {2: (79,)}  # s4 opened the second block
    (d,) = await t.receive(3, 0.1)
    assert [f.shard for f in d.frames] == ["s5", "s6"]
    assert t.stats().queued_frames == 0 and t.stats().delivered_frames == 5
