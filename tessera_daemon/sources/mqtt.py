"""MQTT frame source: application metrics from training processes (step time, loss, grad norm per rank).

Training processes publish contract-1 JSON frames to ``<prefix>/<cluster>/frames/<shard>`` (the shard
id may contain ``/``; the payload's ``shard`` may be omitted, and must match the topic when given).
A background task keeps a subscription open, reconnecting with backoff and jitter (a persistent
session, so QoS 1 frames published during a short disconnect are delivered afterwards), and holds
received frames in a bounded buffer (oldest dropped, counted) that each poll drains. A message that
is not a valid frame is counted as ``rejected`` and skipped. The topology of these shards comes from
the other sources (NVML, Kubernetes, Slurm); this source contributes none.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import Sequence

import aiomqtt

from tessera_daemon.config import Config
from tessera_daemon.errors import CodecError, SubstrateUnavailable
from tessera_daemon.log import get_logger
from tessera_daemon.model import Frame
from tessera_daemon.sources.base import TopologyPart
from tessera_daemon.transport.codec import frame_from_json
from tessera_daemon.transport.mqtt import MqttHealth, client_kwargs, reconnect_backoff, topic_level

log = get_logger(__name__)


class MqttSource:
    name = "mqtt"

    def __init__(self, cfg: Config) -> None:
        self.settings = cfg.transport.mqtt
        self.prefix = f"{self.settings.topic_prefix}/{topic_level(cfg.daemon.cluster)}/frames/"
        self.buffer: deque[Frame] = deque()
        self.health = MqttHealth("source")
        self.connected = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    async def open(self) -> None:
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="mqtt-source")

    async def poll(self, now: float) -> Sequence[Frame]:
        frames = list(self.buffer)
        self.buffer.clear()
        if not frames and not self.health.up:
            why = self.health.last_error or "connecting"
            raise SubstrateUnavailable(self.name, f"not connected to the broker ({why})")
        return frames

    async def topology(self) -> TopologyPart:
        return TopologyPart(self.name, partial=True, notes=("frames only: topology comes from other sources",))

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._task
            self._task = None
        self.health.up = False

    # ------------------------------------------------------------------------------ subscription

    def handle(self, topic: str, payload: bytes) -> None:
        """Decode one message into the buffer (public for the agent's tests and tools)."""
        shard = topic[len(self.prefix) :] if topic.startswith(self.prefix) else ""
        try:
            if not shard:
                raise CodecError(f"topic {topic!r} does not name a shard under {self.prefix}")
            frame = frame_from_json(payload, shard=shard)
        except CodecError as exc:
            self.health.messages["rejected"] += 1
            self.health.last_error = str(exc)[:300]
            log.debug("rejected an mqtt frame", topic=topic, error=str(exc))
            return
        self.buffer.append(frame)
        self.health.messages["received"] += 1
        while len(self.buffer) > self.settings.buffer_frames:
            self.buffer.popleft()
            self.health.messages["dropped"] += 1

    async def _run(self) -> None:
        backoff = reconnect_backoff(self.settings)
        while True:
            try:
                async with aiomqtt.Client(**client_kwargs(self.settings, "source"), clean_session=False) as client:
                    await client.subscribe(self.prefix + "#", qos=self.settings.qos)
                    h = self.health
                    h.reconnects += 1 if h.connects else 0
                    h.connects += 1
                    h.up = True
                    backoff.reset()
                    self.connected.set()
                    async for message in client.messages:
                        payload = message.payload
                        data = payload if isinstance(payload, bytes) else str(payload).encode()
                        self.handle(message.topic.value, data)
            except aiomqtt.MqttError as exc:
                self.health.up = False
                self.connected.clear()
                self.health.last_error = str(exc)[:300]
                delay = backoff.next_delay()
                log.warning("mqtt source disconnected", error=str(exc), retry_in_s=round(delay, 2))
                await asyncio.sleep(delay)
