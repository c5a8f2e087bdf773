from __future__ import annotations

import asyncio

from tessera_daemon.model import Frame
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
