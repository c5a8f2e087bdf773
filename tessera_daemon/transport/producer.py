"""The agent's side of the stream: encode, buffer (bounded), XADD pipelined, drain in order.

``publish`` never waits on Redis: it routes each frame to its partition and host, packs one entry per
(partition, sampling instant, host), and appends it to a bounded FIFO buffer. A flusher task sends the
buffer's head in pipelined XADDs (``MAXLEN ~`` trimmed) and removes entries only once Redis accepted
them, so while Redis is unreachable the buffer holds, and when Redis returns it drains in order. Past
``buffer_frames`` the *oldest* entries not in flight are dropped and counted. A pipeline that fails
part-way is resent whole; the detector drops the duplicates by (source, sequence number).
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass
from itertools import islice
from typing import Any

from tessera_daemon.aio import wait_any
from tessera_daemon.errors import TransportError
from tessera_daemon.log import get_logger
from tessera_daemon.model import Frame
from tessera_daemon.settings.transport import TransportConfig
from tessera_daemon.transport.codec import encode_host
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.link import RedisLink
from tessera_daemon.transport.registry import Router

log = get_logger(__name__)


@dataclass(slots=True)
class PendingEntry:
    stream: str
    fields: dict[bytes, bytes]
    frames: int


@dataclass(slots=True)
class ProducerStats:
    published_frames: int = 0  # accepted by Redis
    published_entries: int = 0
    dropped_frames: int = 0  # buffer overflow
    unrouted_frames: int = 0  # shard unknown to the topology
    buffered_frames: int = 0
    peak_buffered_frames: int = 0
    flushes: int = 0
    failed_flushes: int = 0


def default_agent_id() -> str:
    return socket.gethostname() or "agent"


class StreamProducer:
    def __init__(self, cfg: TransportConfig, link: RedisLink, router: Router, *, agent_id: str) -> None:
        self.cfg = cfg
        self.link = link
        self.keys = Keys(cfg.redis.prefix)
        self.router = router
        self.agent_id = agent_id
        self.src = f"{agent_id}/{os.getpid()}-{time.time_ns()}"
        self.bound = cfg.agent.buffer_frames
        self.buffer: deque[PendingEntry] = deque()
        self.in_flight = 0
        self.seq: dict[str, int] = {}
        self.stats = ProducerStats()
        self._wake = asyncio.Event()
        self._streams = {t: self.keys.stream(t) for t in router.partitions}

    def set_router(self, router: Router) -> None:
        self.router = router
        self._streams = {t: self.keys.stream(t) for t in router.partitions}

    # ------------------------------------------------------------------------------------ publish

    def publish_nowait(self, frames: Sequence[Frame]) -> None:
        route = self.router.route
        groups: dict[tuple[str, float, str], list[Frame]] = {}
        for f in frames:
            r = route.get(f.shard)
            if r is None:
                self.stats.unrouted_frames += 1
                continue
            key = (r[0], f.ts, r[1])
            g = groups.get(key)
            if g is None:
                groups[key] = [f]
            else:
                g.append(f)
        for (token, _ts, host), fs in groups.items():
            seq = self.seq.get(token, 0) + 1
            self.seq[token] = seq
            self.buffer.append(PendingEntry(self._streams[token], encode_host(fs, host, self.src, seq), len(fs)))
            self.stats.buffered_frames += len(fs)
        self._enforce_bound()
        self.stats.peak_buffered_frames = max(self.stats.peak_buffered_frames, self.stats.buffered_frames)
        if self.buffer:
            self._wake.set()

    async def publish(self, frames: Sequence[Frame]) -> None:
        self.publish_nowait(frames)

    def _enforce_bound(self) -> None:
        st = self.stats
        while st.buffered_frames > self.bound and len(self.buffer) > self.in_flight:
            victim = self.buffer[self.in_flight]
            del self.buffer[self.in_flight]
            st.buffered_frames -= victim.frames
            if st.dropped_frames == 0:
                log.warning("agent buffer full: dropping the oldest frames", bound_frames=self.bound)
            st.dropped_frames += victim.frames

    # -------------------------------------------------------------------------------------- flush

    async def run(self, stop: asyncio.Event) -> None:
        """Flush until ``stop`` is set and then once more (bounded by the caller's grace period)."""
        while True:
            if not self.buffer:
                if stop.is_set():
                    return
                self._wake.clear()
                await wait_any(self._wake, stop)
                continue
            if not self.link.breaker.allow():
                await self.link.wait_allowed(None if stop.is_set() else stop)
                if stop.is_set() and not self.link.breaker.allow():
                    return  # shutting down while Redis is away: what is buffered is lost (counted by caller)
                continue
            await self.flush_once()

    async def flush_once(self) -> int:
        """Send up to ``pipeline_entries`` entries from the head; the number Redis accepted."""
        batch = list(islice(self.buffer, self.cfg.agent.pipeline_entries))
        if not batch:
            return 0
        self.in_flight = len(batch)
        maxlen = self.cfg.redis.stream_maxlen

        async def send(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for e in batch:
                pipe.xadd(e.stream, e.fields, maxlen=maxlen, approximate=True)
            await pipe.execute()

        try:
            await self.link.call(send)
        except TransportError:
            self.stats.failed_flushes += 1
            return 0
        finally:
            self.in_flight = 0
        st = self.stats
        for _ in range(len(batch)):
            e = self.buffer.popleft()
            st.buffered_frames -= e.frames
            st.published_frames += e.frames
        st.published_entries += len(batch)
        st.flushes += 1
        self._enforce_bound()
        return len(batch)

    @property
    def buffered_frames(self) -> int:
        return self.stats.buffered_frames
