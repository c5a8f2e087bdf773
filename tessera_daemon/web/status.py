"""What the web layer reads: one mutable holder the daemon updates and handlers only read.

The detector's state is there as an immutable ``PipelineSnapshot`` (``engine/snapshot.py``), replaced
whole after each batch of windows: handlers never read a live pipeline.

Readiness: the detector has finished warm-up for most fresh shards, at least one window has been
processed, no configured source is stale, and windows complete while frames arrive (``StallWatch``).
Liveness: the main loop ticked recently.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from tessera_daemon.config import Config
from tessera_daemon.engine.snapshot import PipelineSnapshot
from tessera_daemon.sources.supervise import SourceHealth
from tessera_daemon.transport.base import Transport

READY_WARM_FRACTION = 0.8
LIVENESS_TIMEOUT_S = 30.0


@dataclass(slots=True)
class StallWatch:
    """Readiness honesty: frames keep arriving, yet no window completes (every frame late after a clock
    jump, a watermark stuck ahead). ``check(frames, windows)`` is fed running totals; it answers a reason
    once windows stood still for ``after_s`` while frames moved within the same span (0: never)."""

    after_s: float
    frames: int = -1
    windows: int = -1
    frames_mono: float = -math.inf
    windows_mono: float = field(default_factory=time.monotonic)

    def check(self, frames: int, windows: int, now: float | None = None) -> str | None:
        now = time.monotonic() if now is None else now
        if frames != self.frames:
            if self.frames >= 0:
                self.frames_mono = now
            self.frames = frames
        if windows != self.windows:
            self.windows, self.windows_mono = windows, now
        if self.after_s <= 0 or now - self.frames_mono >= self.after_s or now - self.windows_mono < self.after_s:
            return None
        return f"stalled: frames arrive but no window completed for {now - self.windows_mono:.0f}s"


@dataclass(slots=True)
class Status:
    cfg: Config
    snapshot: PipelineSnapshot
    transport: Transport
    health: dict[str, SourceHealth] = field(default_factory=dict)
    started_ts: float = field(default_factory=time.time)
    heartbeat_ts: float = field(default_factory=time.time)
    metrics_bytes: bytes = b""
    stopping: bool = False
    extra_ready_checks: list[Any] = field(default_factory=list)  # callables -> str | None (reason)
    feed: Any = None  # outputs.verdict_feed.VerdictFeed when the DeploySignal feed is configured
    console: Any = None  # web.console.Console: the web console's history and live stream (created on first use)
    stall: StallWatch = field(default_factory=lambda: StallWatch(0.0))
    event_requests: Counter[tuple[str, str]] = field(default_factory=Counter)  # (route, code) -> event POSTs

    def __post_init__(self) -> None:
        self.stall = StallWatch(self.cfg.window.stall_windows * self.snapshot.window_length_s)

    def beat(self) -> None:
        self.heartbeat_ts = time.time()

    def alive(self, now: float | None = None) -> bool:
        now = time.time() if now is None else now
        return now - self.heartbeat_ts < LIVENESS_TIMEOUT_S

    def not_ready_reasons(self, now: float | None = None) -> list[str]:
        now = time.time() if now is None else now
        reasons: list[str] = []
        if self.stopping:
            reasons.append("shutting down")
        p = self.snapshot
        if p.windows_processed == 0:
            reasons.append("no window processed yet")
        warm = p.warm_fraction()
        if warm < READY_WARM_FRACTION:
            reasons.append(
                f"warming up: {warm:.0%} of fresh shard-metrics have a baseline "
                f"({self.cfg.detector.warmup_windows}-{self.cfg.detector.warmup_max_windows} windows each)"
            )
        stale_after = self.cfg.sources.stale_after_s
        for name, h in sorted(self.health.items()):
            if h.last_success_ts == 0.0:
                reasons.append(f"source {name}: no successful poll yet")
            elif h.stale(now, stale_after):
                reasons.append(f"source {name}: stale ({now - h.last_success_ts:.0f}s since last success)")
        a = p.stats
        self.stall.after_s = self.cfg.window.stall_windows * p.window_length_s  # an auto window resolves late
        stalled = self.stall.check(a.frames + a.late + a.future + a.unknown_shard, p.windows_processed)
        if stalled:
            reasons.append(f"{stalled} ({a.late} late, {a.future} from the future)")
        for check in self.extra_ready_checks:
            r = check()
            if r:
                reasons.append(r)
        return reasons
