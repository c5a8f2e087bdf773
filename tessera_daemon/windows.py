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
from typing import TYPE_CHECKING, Any, TypeVar

from tessera_daemon.engine.pipeline import Pipeline, WindowResult
from tessera_daemon.engine.snapshot import PipelineSnapshot, with_stats
from tessera_daemon.model import ClusterEvent, Frame, Topology
from tessera_daemon.outputs.verdict_feed import verdict_group_for_event

if TYPE_CHECKING:
    from tessera_daemon.capture import CaptureWriter
    from tessera_daemon.localstate import LocalState

PendingEvent = tuple[ClusterEvent, str, Mapping[str, str]]
T = TypeVar("T")


class WindowWorker:
    """The one thread that touches the pipeline: every job runs on a single-thread executor, in order.

    ``batch`` hands queued events to the pipeline's book, ingests frames, processes the windows that
    close and returns one snapshot per window (the last one also when no window closed, with fresh
    window statistics); ``set_topology`` rebuilds the pipeline's groups. Events reach the pipeline only
    here, between batches, in the order they were accepted."""

    def __init__(
        self, pipeline: Pipeline, *, capture: CaptureWriter | None = None, local: LocalState | None = None
    ) -> None:
        self.pipeline = pipeline
        self.capture = capture  # daemon.capture_path: written here, in the order the pipeline sees it
        self.local = local  # daemon.state_dir: the input position a checkpoint resumes from
        self.executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="tessera-window")
        self.events: queue.SimpleQueue[PendingEvent] = queue.SimpleQueue()
        self.snapshot = pipeline.snapshot()

    async def run(self, fn: Callable[..., Batch], *args: Any, **kwargs: Any) -> Batch:
        """``fn(*args, **kwargs)`` on the window thread (after the jobs submitted before it)."""
        return await self.call(fn, *args, **kwargs)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Any job on the window thread, in order (a checkpoint sees the pipeline between windows)."""
        return await asyncio.get_running_loop().run_in_executor(self.executor, functools.partial(fn, *args, **kwargs))

    def _drain_events(self) -> bool:
        added = False
        while True:
            try:
                ev, source, metadata = self.events.get_nowait()
            except queue.Empty:
                return added
            res = self.pipeline.events.add(ev, source=source, metadata=metadata)
            ok = res.status in ("added", "updated")
            if ok and self.capture is not None:
                rec = self.pipeline.events.get(ev.id)
                if rec is not None:
                    self.capture.event(rec)
            added = added or ok

    def batch(self, frames: Sequence[Sequence[Frame]], watermark: float | None, *, close: bool = True) -> Batch:
        p = self.pipeline
        changed = self._drain_events()
        for f in frames:
            p.ingest(f)
            if self.capture is not None:
                self.capture.frames(f)
            if self.local is not None and len(f):
                self.local.last_frame_ts = f[-1].ts
        out = Batch()
        if close:
            if self.capture is not None:
                self.capture.advance(watermark)
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
        if self.capture is not None:
            self.capture.topology(topology)
        self.snapshot = self.pipeline.snapshot(self.snapshot)
        return Batch(snapshots=[self.snapshot])

    def close(self) -> None:
        self.executor.shutdown(wait=True)


@dataclass(slots=True)
class Batch:
    results: list[WindowResult] = field(default_factory=list)
    snapshots: list[PipelineSnapshot] = field(default_factory=list)
    verdicts: list[Any] = field(default_factory=list)  # verdict groups of events that ended
