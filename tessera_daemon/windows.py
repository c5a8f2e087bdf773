"""The window thread of ``tessera-daemon run``: the one thread that touches the pipeline.

``WindowWorker`` runs every pipeline job on a single-thread executor, in submission order: a batch
(queued events handed to the pipeline's book, frames ingested, the windows that close processed, one
``PipelineSnapshot`` per window) or a topology change (groups rebuilt). The event loop only awaits the
jobs and publishes their snapshots (``daemon.py``; why a queue and not a lock: docs/architecture.md).
"""

from __future__ import annotations

import asyncio
import functools
import queue
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from tessera_daemon.engine.pipeline import Pipeline, WindowResult
from tessera_daemon.engine.snapshot import PipelineSnapshot, with_stats
from tessera_daemon.model import ClusterEvent, Frame, Topology
from tessera_daemon.outputs.verdict_feed import verdict_group_for_event

PendingEvent = tuple[ClusterEvent, str, Mapping[str, str]]


class WindowWorker:
    """The one thread that touches the pipeline: every job runs on a single-thread executor, in order.

    ``batch`` hands queued events to the pipeline's book, ingests frames, processes the windows that
    close and returns one snapshot per window (the last one also when no window closed, with fresh
    window statistics); ``set_topology`` rebuilds the pipeline's groups. Events reach the pipeline only
    here, between batches, in the order they were accepted."""

    def __init__(self, pipeline: Pipeline) -> None:
        self.pipeline = pipeline
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tessera-window")
        self.events: queue.SimpleQueue[PendingEvent] = queue.SimpleQueue()
        self.snapshot = pipeline.snapshot()

    async def run(self, fn: Callable[..., Batch], *args: Any, **kwargs: Any) -> Batch:
        """``fn(*args, **kwargs)`` on the window thread (after the jobs submitted before it)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def _drain_events(self) -> bool:
        added = False
        while True:
            try:
                ev, source, metadata = self.events.get_nowait()
            except queue.Empty:
                return added
            res = self.pipeline.events.add(ev, source=source, metadata=metadata)
            added = added or res.status in ("added", "updated")

    def batch(self, frames: Sequence[Sequence[Frame]], watermark: float | None, *, close: bool = True) -> Batch:
        p = self.pipeline
        changed = self._drain_events()
        for f in frames:
            p.ingest(f)
        out = Batch()
        if close:
            for w in p.assembler.close_ready(watermark):
                r = p.process(w)
                out.results.append(r)
                for ev, _shards in r.ended_events:
                    rec = p.events.get(ev.id)
                    if rec is not None:
                        out.verdicts.append(verdict_group_for_event(rec, [*p.book.active(), *p.book.recent]))
                self.snapshot = p.snapshot(self.snapshot)
                out.snapshots.append(self.snapshot)
        if not out.snapshots:
            self.snapshot = p.snapshot(self.snapshot) if changed else with_stats(self.snapshot, p)
            out.snapshots.append(self.snapshot)
        return out

    def set_topology(self, topology: Topology) -> Batch:
        self.pipeline.set_topology(topology)
        self.snapshot = self.pipeline.snapshot(self.snapshot)
        return Batch(snapshots=[self.snapshot])

    def close(self) -> None:
        self.executor.shutdown(wait=True)


@dataclass(slots=True)
class Batch:
    results: list[WindowResult] = field(default_factory=list)
    snapshots: list[PipelineSnapshot] = field(default_factory=list)
    verdicts: list[Any] = field(default_factory=list)  # verdict groups of events that ended
