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
import os
import random
import socket
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiomqtt

from tessera_daemon.log import get_logger
from tessera_daemon.supervise import wait_any
from tessera_daemon.transport.settings import MqttSettings

log = get_logger("tessera.mqtt.firings")


@dataclass(slots=True)
class MqttHealth:
    role: str
    up: bool = False
    reconnects: int = 0
    connects: int = 0
    messages: Counter[str] = field(default_factory=Counter)  # received / published / rejected / dropped
    last_error: str = ""


def topic_level(text: str) -> str:
    """A publishable topic fragment: no wildcards, no empty levels."""
    cleaned = text.replace("+", "_").replace("#", "_")
    return "/".join(p or "_" for p in cleaned.split("/"))


def client_kwargs(s: MqttSettings, role: str) -> dict[str, Any]:
    password = Path(s.password_file).read_text(encoding="utf-8").strip() if s.password_file else None
    ident = s.client_id or f"tessera-{role}-{socket.gethostname()}-{os.getpid()}"
    return {
        "hostname": s.host,
        "port": s.port,
        "username": s.username or None,
        "password": password,
        "identifier": ident,
        "keepalive": s.keepalive_s,
        "timeout": 10.0,
    }


def reconnect_delay(s: MqttSettings, attempt: int) -> float:
    ceiling = min(s.backoff_cap_s, s.backoff_base_s * 2.0 ** min(attempt, 30))
    return ceiling / 2 + random.uniform(0.0, ceiling / 2)


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
        attempt = 0
        while not (stop.is_set() and (not self.pending or not self.health.up)):
            try:
                async with aiomqtt.Client(**client_kwargs(self.settings, "detector")) as client:
                    self._connected()
                    attempt = 0
                    await self._drain(client, stop)
                    return
            except aiomqtt.MqttError as exc:
                self.health.up = False
                self.health.last_error = str(exc)
                if stop.is_set():
                    return
                delay = reconnect_delay(self.settings, attempt)
                attempt += 1
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
