"""Firings to MQTT: ``<prefix>/<cluster>/firings/<scope>/<target>``, QoS 1, retained per target.

Each message is the target's state after a window that changed it: ``{"v":1,"cluster","scope",
"target","window","state":"open"|"resolved","firings":[active firings of the target, contract 4]}``.
Retained, so a subscriber that connects later gets every target's current state at once; a target
whose last firing resolved keeps a retained ``resolved`` message. Publication is asynchronous: the
detector offers states without waiting, the publisher keeps only the newest state per topic (bounded
by ``publish_queue`` topics, oldest dropped and counted), and reconnects with backoff and jitter.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import OrderedDict
from typing import Any

import aiomqtt

from tessera_daemon.aio import wait_any
from tessera_daemon.log import get_logger
from tessera_daemon.settings.transport import MqttSettings
from tessera_daemon.transport.mqtt import MqttHealth, client_kwargs, reconnect_backoff, topic_level

log = get_logger(__name__)


class MqttFiringPublisher:
    def __init__(self, settings: MqttSettings, cluster: str) -> None:
        self.settings = settings
        self.cluster = cluster
        self.health = MqttHealth("firings")
        self.pending: OrderedDict[str, bytes] = OrderedDict()
        self._wake = asyncio.Event()

    def topic(self, scope: str, target: str) -> str:
        s = self.settings
        return f"{s.topic_prefix}/{topic_level(self.cluster)}/firings/{topic_level(scope)}/{topic_level(target)}"

    def offer(self, scope: str, target: str, window: int, active: list[dict[str, Any]]) -> None:
        body = {
            "v": 1,
            "cluster": self.cluster,
            "scope": scope,
            "target": target,
            "window": window,
            "state": "open" if active else "resolved",
            "firings": active,
        }
        topic = self.topic(scope, target)
        self.pending[topic] = json.dumps(body, separators=(",", ":"), allow_nan=False).encode()
        self.pending.move_to_end(topic)
        while len(self.pending) > self.settings.publish_queue:
            self.pending.popitem(last=False)
            self.health.messages["dropped"] += 1
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set and the queue is empty (or the broker is gone at shutdown)."""
        backoff = reconnect_backoff(self.settings)
        while not (stop.is_set() and (not self.pending or not self.health.up)):
            try:
                async with aiomqtt.Client(**client_kwargs(self.settings, "detector")) as client:
                    self._connected()
                    backoff.reset()
                    await self._drain(client, stop)
                    return
            except aiomqtt.MqttError as exc:
                self.health.up = False
                self.health.last_error = str(exc)
                if stop.is_set():
                    return
                delay = backoff.next_delay()
                log.warning("mqtt publisher disconnected", error=str(exc), retry_in_s=round(delay, 2))
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), delay)

    def _connected(self) -> None:
        h = self.health
        if h.connects:
            h.reconnects += 1
        h.connects += 1
        h.up = True

    async def _drain(self, client: aiomqtt.Client, stop: asyncio.Event) -> None:
        while True:
            while self.pending:
                topic, payload = next(iter(self.pending.items()))
                await client.publish(topic, payload, qos=self.settings.qos, retain=True)
                if self.pending.get(topic) is payload:  # not superseded while we waited for the PUBACK
                    del self.pending[topic]
                self.health.messages["published"] += 1
            if stop.is_set():
                return
            self._wake.clear()
            await wait_any(self._wake, stop)
