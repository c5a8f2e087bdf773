"""The built-in simulated cluster as a live source: the embedded default when no source is configured.

Simulated time runs ``sim.speedup`` times faster than the wall clock (1 by default), from
``sim.start_ts`` (0: the wall clock at open). Each poll returns every simulated tick due by now, as one
:class:`~tessera_daemon.model.FrameBlock` (arrays, no per-frame objects).

The ticks are generated in a worker thread (at 10k shards one costs 0.1 to 0.2 s), one poll's worth
at a time, so the event loop keeps answering HTTP meanwhile. Generated frames wait in a queue until a
poll takes them: a poll cut short by its timeout loses nothing, the next one returns them.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from collections.abc import Sequence

from tessera_daemon.config import Config
from tessera_daemon.model import ClusterEvent, Frame, FrameBlock
from tessera_daemon.sources.base import TopologyPart

MAX_TICKS_PER_POLL = 100_000


class SyntheticSource:
    name = "synthetic"

    def __init__(self, cfg: Config, *, wall_clock: bool = True) -> None:
        from tessera_daemon.sim import ClusterSim  # noqa: PLC0415 - imported only when the simulator runs

        self.cfg = cfg.sim
        start = self.cfg.start_ts or (time.time() if wall_clock else 0.0) or None
        self.sim = ClusterSim(self.cfg, scenario=self.cfg.scenario, start_ts=start)
        self.start_ts = self.sim_ts = float(self.sim.labels()["start_ts"])
        self._wall_start: float | None = None
        self._anchor_sim = self.start_ts  # simulated time at the last speed change
        self.speedup = self.cfg.speedup
        self._resume: tuple[float, float] | None = None  # (speed, simulated ts) to slow down at
        self.finished = False
        self._lock = threading.Lock()  # one generating thread at a time
        self._ready: deque[FrameBlock] = deque()  # generated, not yet returned by a poll

    @property
    def events(self) -> list[ClusterEvent]:
        return list(self.sim.events)

    async def open(self) -> None:
        if self._wall_start is None:
            self._wall_start = time.time()

    async def poll(self, now: float) -> Sequence[Frame]:
        if self._wall_start is None:
            self._wall_start = now
        await asyncio.shield(asyncio.to_thread(self._generate, now))
        blocks: list[FrameBlock] = []
        while self._ready:
            blocks.append(self._ready.popleft())
        if not blocks:
            return []
        return blocks[0] if len(blocks) == 1 else FrameBlock.concat(blocks)

    def _generate(self, now: float) -> None:
        with self._lock:
            got = self._ticks(now)
            if isinstance(got, FrameBlock):
                self._ready.append(got)

    def _ticks(self, now: float) -> FrameBlock | list[Frame]:
        assert self._wall_start is not None
        target = self._anchor_sim + (now - self._wall_start) * self.speedup
        if self.cfg.duration_s > 0:
            target = min(target, self.start_ts + self.cfg.duration_s)
        if self._resume is not None:
            target = min(target, self._resume[1])
        blocks: list[FrameBlock] = []
        for _ in range(MAX_TICKS_PER_POLL):
            if self.sim_ts + self.sim.tick_s > target + 1e-9:
                break
            ts, block = self.sim.step_block()
            self.sim_ts = ts
            blocks.append(block)
        if self.cfg.duration_s > 0 and self.sim_ts + self.sim.tick_s > self.start_ts + self.cfg.duration_s:
            self.finished = True
        if self._resume is not None and self.sim_ts + self.sim.tick_s > self._resume[1] + 1e-9:
            self.set_speedup(self._resume[0], now)
        if not blocks:
            return []
        return blocks[0] if len(blocks) == 1 else FrameBlock.concat(blocks)

    def skip_to(self, ts: float) -> int:
        """Fast-forward past simulated time ``ts`` without emitting (a restarted daemon resuming from its
        checkpoint); the number of ticks skipped."""
        n = 0
        while self.sim.ts_of(self.sim.tick) <= ts + 1e-9:
            self.sim_ts = self.sim.step_arrays().ts
            n += 1
        self._anchor_sim = self.sim_ts
        return n

    def set_speedup(self, speedup: float, now: float | None = None, *, until_ts: float | None = None) -> None:
        """Run simulated time at ``speedup`` from now on; with ``until_ts``, only up to that simulated
        time, then back at the current speed (``tessera-daemon demo`` fast-forwards the warm-up so)."""
        now = time.time() if now is None else now
        if self._wall_start is not None:
            # from where the simulator actually is (it may trail a fast-forward's target)
            self._anchor_sim = min(self._anchor_sim + (now - self._wall_start) * self.speedup, self.sim_ts)
            self._wall_start = now
        self._resume = (self.speedup, until_ts) if until_ts is not None else None
        self.speedup = speedup

    async def topology(self) -> TopologyPart:
        topo = self.sim.topology
        return TopologyPart(self.name, list(topo.nodes.values()), list(topo.edges))

    async def close(self) -> None:
        return None
