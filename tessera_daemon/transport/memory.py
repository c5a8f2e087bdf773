"""In-memory transport: a bounded deque between the pollers and the detector in one process.

Bounded by frame count; when full, the *oldest* frames are dropped (the detector wants fresh data)
and every drop is counted. ``ack`` is a no-op: nothing survives the process anyway.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Sequence

from tessera_daemon.model import Frame
from tessera_daemon.transport.base import Delivery, TransportStats


class MemoryTransport:
    def __init__(self, capacity: int) -> None:
        if capacity < 1:
            raise ValueError("capacity must be >= 1")
        self.capacity = capacity
        self._queue: deque[Frame] = deque()
        self._ready = asyncio.Event()
        self._stats = TransportStats()
        self._closed = False

    async def publish(self, frames: Sequence[Frame]) -> None:
        if self._closed:
            self._stats.dropped_frames += len(frames)
            return
        self._queue.extend(frames)
        self._stats.published_frames += len(frames)
        overflow = len(self._queue) - self.capacity
        if overflow > 0:
            for _ in range(overflow):
                self._queue.popleft()
            self._stats.dropped_frames += overflow
        if self._queue:
            self._ready.set()

    async def receive(self, max_frames: int, timeout_s: float) -> list[Delivery]:
        if not self._queue:
            self._ready.clear()
            try:
                await asyncio.wait_for(self._ready.wait(), timeout_s)
            except TimeoutError:
                return []
        n = min(max_frames, len(self._queue))
        frames = [self._queue.popleft() for _ in range(n)]
        self._stats.delivered_frames += n
        return [Delivery(frames)] if frames else []

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        return None

    def stats(self) -> TransportStats:
        self._stats.queued_frames = len(self._queue)
        return self._stats

    async def close(self) -> None:
        self._closed = True
        self._ready.set()
