"""The transport protocol between pollers and the detector.

Implementations: ``transport.memory`` (embedded default, bounded, one process) and, with the same
interface, Redis Streams (consumer groups) for the agent / detector split. Delivery is at least once:
the detector acknowledges deliveries only after the window that used them is committed, so an
implementation that can redeliver (Redis) does so after a crash; processing is idempotent by window.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

from tessera_daemon.model import Frame


@dataclass(slots=True)
class Delivery:
    """Frames received together, plus the opaque token that acknowledges them."""

    frames: Sequence[Frame]
    token: Any = None


@dataclass(slots=True)
class TransportStats:
    published_frames: int = 0
    delivered_frames: int = 0
    dropped_frames: int = 0
    dead_lettered: int = 0
    queued_frames: int = 0
    extra: dict[str, float] = field(default_factory=dict)


@runtime_checkable
class Transport(Protocol):
    async def publish(self, frames: Sequence[Frame]) -> None:
        """Enqueue one poll's frames (one host, or one source poll). Never blocks indefinitely;
        when the bound is reached the oldest frames are dropped and counted."""

    async def receive(self, max_frames: int, timeout_s: float) -> list[Delivery]:
        """Wait up to ``timeout_s`` for frames; return at most about ``max_frames`` of them."""
        ...

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        """Acknowledge deliveries whose frames have been committed."""

    def stats(self) -> TransportStats: ...

    async def close(self) -> None:
        """Flush and release. Must not raise."""
