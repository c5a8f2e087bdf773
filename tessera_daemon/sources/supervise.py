"""Run each source forever, containing its failures: a failing source never stops the others.

``supervise_source`` polls on a drift-compensated ticker (missed ticks are skipped, not burst), bounds
each poll with the source's timeout, retries transient errors with the one capped exponential
backoff (``tessera_daemon.backoff``), records success / duration / last-success per source, and lets
cancellation and bugs through (a bug in our code should crash loudly, not spin).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field

from tessera_daemon.aio import ticker
from tessera_daemon.backoff import Backoff
from tessera_daemon.errors import SubstrateFatal, TransientError
from tessera_daemon.log import get_logger
from tessera_daemon.model import Frame
from tessera_daemon.sources.base import Source

log = get_logger(__name__)

POLL_BUCKETS = (0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


@dataclass(slots=True)
class SourceHealth:
    name: str
    up: bool = False
    polls: dict[str, int] = field(default_factory=lambda: {"success": 0, "error": 0, "timeout": 0})
    last_success_ts: float = 0.0
    last_error: str = ""
    durations: list[float] = field(default_factory=list)  # drained by the metrics renderer
    frames: int = 0

    def stale(self, now: float, stale_after_s: float) -> bool:
        return now - self.last_success_ts > stale_after_s


async def supervise_source(
    source: Source,
    health: SourceHealth,
    sink: Callable[[Sequence[Frame]], Awaitable[None]],
    *,
    interval_s: float,
    timeout_s: float,
    stop: asyncio.Event,
    clock: Callable[[], float] = time.time,
) -> None:
    backoff = Backoff()
    opened = False
    try:
        async for _ in ticker(interval_s):
            if stop.is_set():
                return
            t0 = time.perf_counter()
            outcome = "success"
            try:
                async with asyncio.timeout(timeout_s):
                    if not opened:
                        await source.open()
                        opened = True
                    frames = await source.poll(clock())
                await sink(frames)
                health.frames += len(frames)
                health.up = True
                health.last_success_ts = clock()
                backoff.reset()
            except TimeoutError:
                outcome = "timeout"
                health.last_error = f"poll exceeded {timeout_s}s"
            except (TransientError, SubstrateFatal) as exc:
                outcome = "error"
                health.last_error = str(exc)
            health.polls[outcome] += 1
            health.durations.append(time.perf_counter() - t0)
            if outcome != "success":
                health.up = False
                delay = backoff.next_delay()
                log.warning(
                    "source poll failed",
                    source=source.name,
                    outcome=outcome,
                    error=health.last_error,
                    retry_in_s=round(delay, 2),
                )
                try:
                    await asyncio.wait_for(stop.wait(), delay)
                    return
                except TimeoutError:
                    pass
    finally:
        await source.close()
