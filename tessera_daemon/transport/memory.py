"""In-memory transport: a bounded queue of frame blocks between the pollers and the detector in one process.

What is handed over are arrays: each publish is kept as one :class:`~tessera_daemon.model.FrameBlock`
(a source that returns a block, as the simulator does, hands it over as it is; a list of
:class:`~tessera_daemon.model.Frame` is converted once, here, at the boundary), and a receive returns
the blocks it took joined (:meth:`FrameBlock.concat`, runs with the same metric names and counters)
so the detector adds a whole batch with one ``add_block``. Bounded by frame count; when full, the
*oldest* frames are dropped (the detector wants fresh data), cutting the oldest block if need be, and
every drop is counted. ``ack`` is a no-op: nothing survives the process anyway.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from tessera_daemon.model import Frame, FrameBlock
from tessera_daemon.transport.base import Delivery, TransportStats


class MemoryTransport:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._queue: deque[FrameBlock] = deque()
        self._queued = 0  # frames in the queue
        self._ready = asyncio.Event()
        self._stats = TransportStats()
        self._closed = False

    async def publish(self, frames: Sequence[Frame]) -> None:
        if self._closed:
            self._stats.dropped_frames += len(frames)
            return
        if not frames:
            return
        block = FrameBlock.from_frames(frames)
        self._queue.append(block)
        self._queued += len(block)
        self._stats.published_frames += len(block)
        overflow = self._queued - self.capacity
        if overflow > 0:
            self._drop_oldest(overflow)
            self._stats.dropped_frames += overflow
        if self._queue:
            self._ready.set()

    def _drop_oldest(self, n: int) -> None:
        queue = self._queue
        while n > 0:
            head = queue[0]
            if len(head) <= n:
                queue.popleft()
                n -= len(head)
                self._queued -= len(head)
            else:
                queue[0] = head.take(n, len(head))
                self._queued -= n
                n = 0

    async def receive(self, max_frames: int, timeout_s: float) -> list[Delivery]:
        if not self._queue:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout_s)
            except TimeoutError:
                return []
        taken: list[FrameBlock] = []
        n = 0
        queue = self._queue
        while queue and n < max_frames:
            head = queue[0]
            room = max_frames - n
            if len(head) <= room:
                taken.append(queue.popleft())
            else:
                taken.append(head.take(0, room))
                queue[0] = head.take(room, len(head))
            n += len(taken[-1])
        self._queued -= n
        self._stats.delivered_frames += n
        return [Delivery(run[0] if len(run) == 1 else FrameBlock.concat(run)) for run in _runs(taken)]

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        return None

    def stats(self) -> TransportStats:
        self._stats.queued_frames = self._queued
        return self._stats

    async def close(self) -> None:
        self._closed = True
        self._ready.set()


def _runs(blocks: list[FrameBlock]) -> list[list[FrameBlock]]:
    """Consecutive blocks that :meth:`FrameBlock.concat` can join, in order."""
    out: list[list[FrameBlock]] = []
    for b in blocks:
        if out and out[-1][0].joinable(b):
            out[-1].append(b)
        else:
            out.append([b])
    return out
