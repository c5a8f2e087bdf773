"""The daemon watching itself: event-loop lag.

:class:`LoopLag` sleeps ``interval_s`` in a task and observes by how much each wake-up came late:
``tessera_event_loop_lag_seconds`` (histogram). A callback that holds the loop (a window processed
on it, a slow JSON render) shows up here before it shows up as late scrapes or missed heartbeats.
Process RSS and open file handles are ``process_resident_memory_bytes`` and ``process_open_fds``
(prometheus_client's process collector, on every /metrics).
"""

from __future__ import annotations

import asyncio
import time

from prometheus_client import CollectorRegistry, Histogram

LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)


class LoopLag:
    def __init__(self, registry: CollectorRegistry, interval_s: float = 0.25) -> None:
        self.interval_s = interval_s
        self.max_s = 0.0
        self.hist = Histogram(
            "tessera_event_loop_lag_seconds",
            "How late the event loop woke a sleeping task (sampled every 0.25 s).",
            buckets=LAG_BUCKETS,
            registry=registry,
        )

    async def run(self) -> None:
        while True:
            t0 = time.perf_counter()
            await asyncio.sleep(self.interval_s)
            late = max(0.0, time.perf_counter() - t0 - self.interval_s)
            self.max_s = max(self.max_s, late)
            self.hist.observe(late)
