"""Settings of the transport between pollers and detectors: the ``[transport]`` table."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from tessera_daemon.schema import setting


@dataclass(frozen=True, slots=True)
class TransportConfig:
    kind: Literal["memory", "redis"] = setting("memory")
    capacity: int = setting(200_000, lo=1, hi=100_000_000, doc="in-memory queue bound, frames")
    batch_max: int = setting(4096, lo=1, hi=1_000_000, doc="frames taken per receive")
