"""Local state of the all-in-one daemon (``run``): detector checkpoints in ``daemon.state_dir``.

The checkpoint is the split workers' checksummed format (:mod:`tessera_daemon.engine.checkpoint`),
one file, ``run.ckpt``, replaced atomically (write to a temporary file in the same directory, fsync,
rename, fsync the directory): a crash leaves either the old or the new checkpoint, never half of one.
Serialising and writing run in a thread so the event loop keeps serving; the detector loop awaits the
write, so the pipeline is not mutated while it is walked.

At start, :meth:`LocalState.load` returns the checkpointed pipeline when the file validates, was
written under the same detector configuration and is younger than ``daemon.state_max_age_s``;
otherwise it logs why, by name (``stale``, ``corrupt``, ``incompatible``), moves the file aside
(``run.ckpt.refused``) and the daemon starts fresh.

For the built-in simulator, the checkpoint also records the simulator's position (its tick and start
time): a restart with a fixed ``sim.start_ts`` fast-forwards the simulator to it, so a stopped and
restarted simulated run sees exactly the input an uninterrupted one would.
"""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from tessera_daemon.config import Config
from tessera_daemon.engine.checkpoint import CheckpointMeta, restore, snapshot
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.errors import CheckpointError
from tessera_daemon.log import get_logger
from tessera_daemon.model import Topology
from tessera_daemon.sources.base import Source
from tessera_daemon.sources.synthetic import SyntheticSource

log = get_logger(__name__)

FILENAME = "run.ckpt"
PARTITION = "run"


@dataclass(frozen=True, slots=True)
class Resumed:
    pipeline: Pipeline
    meta: CheckpointMeta
    age_s: float


def write_atomic(path: Path, blob: bytes) -> None:
    """Replace ``path`` with ``blob`` so that a crash leaves the old or the new content."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(blob)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


class LocalState:
    """Checkpoints of ``run`` in ``daemon.state_dir``; counters for /metrics."""

    def __init__(self, cfg: Config) -> None:
        self.cfg = cfg
        self.dir = Path(cfg.daemon.state_dir)
        self.path = self.dir / FILENAME
        self.every = cfg.daemon.checkpoint_windows
        self.since = 0  # windows closed since the last checkpoint
        self.written = 0
        self.failed = 0
        self.last_bytes = 0
        self.last_write_s = 0.0
        self.last_success_ts = 0.0
        self.restored = 0
        self._lock = threading.Lock()
        self.refused = ""  # why the checkpoint at start was refused ("" when none was)
        self.resumed_window = -1  # last closed window of the checkpoint resumed from; -1: fresh start
        self.last_frame_ts = float("-inf")  # time stamp of the last frame ingested (the input position)
        self.sim_start_ts: float | None = None  # the simulator's start, when it is the source

    @classmethod
    def of(cls, cfg: Config) -> LocalState | None:
        return cls(cfg) if cfg.daemon.state_dir else None

    def load(self, now: float | None = None) -> Resumed | None:
        """The checkpointed pipeline, or None (no file, or refused: logged by name, moved aside)."""
        self.dir.mkdir(parents=True, exist_ok=True)
        try:
            blob = self.path.read_bytes()
        except FileNotFoundError:
            return None
        now = time.time() if now is None else now
        try:
            pipeline, meta = restore(blob, self.cfg, partition=PARTITION)
        except CheckpointError as exc:
            kind = "incompatible" if "configuration" in str(exc) or "version" in str(exc) else "corrupt"
            self._refuse(kind, str(exc))
            return None
        age = now - meta.created_ts
        if age > self.cfg.daemon.state_max_age_s:
            self._refuse(
                "stale",
                f"written {age:.0f} s ago, more than daemon.state_max_age_s = {self.cfg.daemon.state_max_age_s:g}",
            )
            return None
        self.restored += 1
        return Resumed(pipeline, meta, age)

    def _refuse(self, kind: str, why: str) -> None:
        self.refused = kind
        aside = self.path.with_name(FILENAME + ".refused")
        os.replace(self.path, aside)
        log.warning(
            "local state refused: starting fresh", reason=kind, detail=why, path=str(self.path), moved_to=str(aside)
        )

    def collect(self) -> Iterator[Metric]:
        """``tessera_checkpoints_total{outcome}`` and the last success time, as the split workers export."""
        ck = CounterMetricFamily("tessera_checkpoints", "Checkpoint operations, by outcome.", labels=["outcome"])
        counts = {"written": self.written, "write_failed": self.failed, "restored": self.restored}
        counts["refused"] = 1 if self.refused else 0
        for outcome, n in counts.items():
            ck.add_metric([outcome], n)
        yield ck
        yield GaugeMetricFamily(
            "tessera_checkpoint_last_success_timestamp_seconds",
            "Unix time of the last checkpoint written.",
            value=self.last_success_ts,
        )

    def due(self, windows: int) -> bool:
        """Count ``windows`` more closed windows; True when a checkpoint is due."""
        self.since += windows
        return self.since >= self.every

    def extra(self) -> dict[str, Any]:
        out: dict[str, Any] = {"last_frame_ts": self.last_frame_ts}
        if self.sim_start_ts is not None:
            out["sim_start_ts"] = self.sim_start_ts
        return out

    def save(self, pipeline: Pipeline, extra: dict[str, Any]) -> int:
        """Serialise and write (blocking: call it in a thread); the checkpoint's size in bytes."""
        with self._lock:  # a periodic write cancelled at shutdown may still run in its thread
            return self._save(pipeline, extra)

    def _save(self, pipeline: Pipeline, extra: dict[str, Any]) -> int:
        t0 = time.perf_counter()
        last = pipeline.assembler.last_closed
        blob = snapshot(pipeline, partition=PARTITION, position=str(-1 if last is None else last), extra=extra)
        write_atomic(self.path, blob)
        self.last_write_s = time.perf_counter() - t0
        self.last_bytes = len(blob)
        return len(blob)

    async def checkpoint(
        self,
        pipeline: Pipeline,
        *,
        reason: str,
        run: Callable[..., Awaitable[Any]] | None = None,
    ) -> bool:
        """Write a checkpoint off the event loop (on ``run``, the thread that owns the pipeline, when
        given; else a worker thread); failures are logged and counted, never raised."""
        try:
            if run is not None:  # the input position is read on that thread too, with the pipeline
                await run(lambda: self.save(pipeline, self.extra()))
            else:
                await asyncio.to_thread(self.save, pipeline, self.extra())
        except (OSError, CheckpointError) as exc:
            self.failed += 1
            log.warning("could not write local state", path=str(self.path), error=str(exc), reason=reason)
            return False
        self.written += 1
        self.since = 0
        self.last_success_ts = time.time()
        if reason != "periodic":
            log.info(
                "local state written",
                reason=reason,
                path=str(self.path),
                bytes=self.last_bytes,
                write_s=round(self.last_write_s, 3),
            )
        return True


def resume_pipeline(local: LocalState | None, cfg: Config, topology: Topology, sim: Source | None) -> Pipeline:
    """The daemon's pipeline: resumed from ``local`` when it holds a usable checkpoint, else fresh.

    The current ``topology`` is adopted when it differs from the checkpoint's. With the simulator as
    the source (``sim``) and a checkpoint of the same simulated run (same ``sim.start_ts``), the
    simulator is fast-forwarded past the checkpoint's last frame."""
    got = local.load() if local is not None else None
    if local is None or got is None:
        if local is not None and isinstance(sim, SyntheticSource):
            local.sim_start_ts = sim.start_ts
        return Pipeline(cfg, topology)
    pipeline = got.pipeline
    if pipeline.topology.content_hash() != topology.content_hash() and topology.shards:
        pipeline.set_topology(topology)
    local.resumed_window = got.meta.window
    last_ts = float(got.meta.extra.get("last_frame_ts", float("-inf")))
    local.last_frame_ts = last_ts
    skipped = 0
    if isinstance(sim, SyntheticSource):
        local.sim_start_ts = sim.start_ts
        if got.meta.extra.get("sim_start_ts") == sim.start_ts and last_ts > float("-inf"):
            skipped = sim.skip_to(last_ts)
    log.info(
        "resumed from local state: no warm-up",
        path=str(local.path),
        window=got.meta.window,
        age_s=round(got.age_s, 1),
        bytes=got.meta.size_bytes,
        simulator_ticks_skipped=skipped,
    )
    return pipeline
