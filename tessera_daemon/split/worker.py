"""``run_detector(cfg)``: a detector worker in the Redis consumer group (``tessera-daemon detector``).

The worker holds leases on partitions (cohorts) and runs one ``Pipeline`` per partition. The consumer
loop reads entries in batches (XREADGROUP COUNT >= 1000), drops re-sent duplicates, closes and
processes windows one at a time, commits each window's results (idempotent by window index, fenced
by the lease), checkpoints every ``checkpoint_windows`` windows and only then acknowledges the entries
the checkpoint covers. A worker that takes a partition over resumes from its checkpoint plus the
stream (the previous owner's pending entries, claimed after an idle timeout), so it produces the same
firings as an uninterrupted run. It serves the same HTTP API as ``run`` for the partitions it owns,
plus ``/v1/partitions``.

Cluster events (``POST/GET /v1/events``, DeploySignal ``POST /v1/tessera/deploy-events``) are fleet-wide:
a worker checks a posted event against the fleet topology (the union of every partition's slice, in
its fleet-wide event book, which also answers GET), appends it to the fleet event log in Redis before
it answers 202 (503 when Redis cannot take it), and every worker adds logged events to the books of
the partitions they concern, within a heartbeat (``split/eventlog.py``).

Windows run off the event loop: each round's ingest, windows and idle closes (and topology changes)
run in a worker thread, which takes a ``PipelineSnapshot`` of each partition it touched; the merged
snapshot (``split/view.py``) is what the HTTP API, the console and ``/metrics`` (rendered in a thread)
read. Logged events are applied between rounds, so they stay ordered relative to windows.

Shutdown (SIGTERM / SIGINT): mark not ready, stop reading, commit and checkpoint every partition,
release the leases (the partitions move at once instead of after a lease timeout), stop HTTP.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from aiohttp import web

from tessera_daemon.config import Config
from tessera_daemon.detect.backend import BackendCollector
from tessera_daemon.detect.backend import select as select_backend
from tessera_daemon.engine.events import EventRecord
from tessera_daemon.engine.snapshot import PipelineSnapshot, empty_snapshot
from tessera_daemon.errors import TransportError
from tessera_daemon.log import get_logger
from tessera_daemon.model import ClusterEvent, Topology
from tessera_daemon.outputs.mqtt import MqttFiringPublisher
from tessera_daemon.runtime import ProcessRuntime, serve_http
from tessera_daemon.split.coordinator import Coordinator
from tessera_daemon.split.eventlog import FleetBook, LoggedEvent, apply_event
from tessera_daemon.split.partition import Committer, PartitionWork, Poison, WindowRecord
from tessera_daemon.split.view import PartitionView
from tessera_daemon.transport.base import Delivery
from tessera_daemon.transport.exporter import (
    LinkCollector,
    MqttCollector,
    StreamLevels,
    WorkerCollector,
    WorkerCounters,
)
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.lease import LeaseKeeper
from tessera_daemon.transport.link import RedisLink
from tessera_daemon.transport.redis import EntryToken, RedisTransport
from tessera_daemon.transport.registry import live_workers, unregister_worker
from tessera_daemon.web.app import make_app
from tessera_daemon.web.console import Console
from tessera_daemon.web.event_api import event_routes
from tessera_daemon.web.metrics import MetricsRenderer
from tessera_daemon.web.status import Status

log = get_logger(__name__)
MAX_UNACKED = 200_000  # entries held pending before a checkpoint is forced (windows may stall on bad clocks)


@dataclass(slots=True)
class DetectorRunning:
    status: Status
    port: int
    stop: asyncio.Event
    worker: str
    detector: Detector


def worker_id(cfg: Config) -> str:
    return cfg.transport.detector.id or f"{socket.gethostname()}-{os.getpid()}-{secrets.token_hex(3)}"


class Detector:
    """The consumer loop's state: partitions, commits, checkpoints, releases."""

    def __init__(self, cfg: Config, worker: str) -> None:
        self.cfg = cfg
        self.worker = worker
        t = cfg.transport
        self.link = RedisLink(t.redis, t.breaker, role="detector")
        self.keys = Keys(t.redis.prefix)
        self.leases = LeaseKeeper(self.link, self.keys, worker, t.detector.lease_ms)
        self.transport = RedisTransport(t, self.link, consumer=worker, readable=self.leases.valid)
        self.committer = Committer(self.link, cfg, worker)
        self.counters = WorkerCounters()
        self.coordinator = Coordinator(
            cfg, self.link, self.leases, self.committer, self.transport, self.counters, worker
        )
        self.parts: dict[str, PartitionWork] = {}
        self.backlog: dict[str, list[WindowRecord]] = {}
        self.view = PartitionView(cfg)
        self.snaps: dict[str, PipelineSnapshot] = {}  # partition -> its latest snapshot
        self.snapshot = empty_snapshot(cfg)  # the merged snapshot the web layer reads
        self.publisher = MqttFiringPublisher(t.mqtt, cfg.daemon.cluster) if t.mqtt.publish_firings else None
        self.changed = True
        self.fleet = FleetBook(cfg.events)  # validates posted events, answers GET /v1/events

    # ------------------------------------------------------------------------------- partitions

    async def adopt(self) -> None:
        inbox, lost, release, topologies = self.coordinator.take()
        for work in inbox:
            work.pipeline.assembler.guard_future(self.cfg.window.max_future_skew_s)
            self.parts[work.token] = work
            self.backlog[work.token] = []
            self.transport.attach(work.token, work.position)
            self.counters.acquisitions += 1
            self.changed = True
        if inbox:
            await asyncio.to_thread(self._snap, [w.token for w in inbox])
        for token in lost:
            self.drop(token, "lost")
        for token in release:
            if token in self.parts:
                self.parts[token].release = "rebalance"
        moved = [(token, topo) for token, topo in topologies if token in self.parts]
        if moved:  # shards kept by id; new shards start warming up; groups rebuilt off the loop
            await asyncio.to_thread(self._set_topologies, moved)
            self.changed = True
        threshold = self.coordinator.threshold_log
        if threshold is not None:
            for w in self.parts.values():
                w.pipeline.threshold_log = threshold
        events, fleet_topology = self.coordinator.take_events()
        if fleet_topology is not None:
            self.fleet.set_topology(fleet_topology)
        if events:
            self.fleet.apply(events)
            touched = self.apply_events(events)
            if touched:
                await asyncio.to_thread(self._snap, touched)

    def apply_events(self, items: list[LoggedEvent]) -> list[str]:
        """Add logged events to every held partition's book (here, between batches: never while a
        checkpoint thread walks a pipeline). Entries a partition replayed when it was loaded are
        skipped, so an older entry of an updated event never goes over the newer one. Returns the
        partitions whose book changed."""
        touched: list[str] = []
        for work in self.parts.values():
            applied = 0
            for item in items:
                if item.position <= work.events_replayed:
                    continue
                res = apply_event(work.pipeline.events, item)
                applied += res is not None and res.status in ("added", "updated")
            if applied:
                self.counters.events["applied"] += applied
                work.changed = True
                self.changed = True
                touched.append(work.token)
        return touched

    async def relay(self, events: Sequence[ClusterEvent], source: str, metadata: Mapping[str, str]) -> None:
        """Make accepted events durable in the fleet event log (the event routes' ``relay``);
        TransportError when Redis cannot take them (the route answers 503)."""
        eventlog = self.coordinator.eventlog
        if eventlog is None:  # events disabled: no routes call this
            raise TransportError("the event log is disabled (events.enabled = false)")
        ids = await eventlog.append([(ev, source, metadata) for ev in events])
        self.fleet.remember(LoggedEvent(i, ev, source, dict(metadata)) for i, ev in zip(ids, events, strict=True))

    def _set_topologies(self, moved: list[tuple[str, Topology]]) -> None:
        for token, topo in moved:
            self.parts[token].pipeline.set_topology(topo)
        self._snap([t for t, _ in moved])

    def _snap(self, tokens: Sequence[str]) -> None:
        """Take a snapshot of each partition in ``tokens`` (on the window thread, after its windows)."""
        for t in tokens:
            work = self.parts.get(t)
            if work is not None:
                self.snaps[t] = work.pipeline.snapshot(self.snaps.get(t))

    def drop(self, token: str, reason: str) -> None:
        self.snaps.pop(token, None)
        if self.parts.pop(token, None) is not None:
            self.counters.releases[reason] += 1
            self.changed = True
        self.backlog.pop(token, None)
        self.transport.detach(token)
        self.leases.held.pop(token, None)

    async def release(self, work: PartitionWork, reason: str) -> bool:
        """Commit, checkpoint and hand the partition back; False when Redis would not take it now."""
        if not await self.flush_commits(work) or not await self.checkpoint(work, force=True):
            return False
        with contextlib.suppress(TransportError):
            await self.leases.release(work.token)
        self.drop(work.token, reason)
        log.info("partition released", partition=work.token, reason=reason, window=work.committed)
        return True

    # ------------------------------------------------------------------------------ processing

    async def step(self, timeout_s: float) -> int:
        """One receive / process / commit / checkpoint round; the number of entries handled."""
        await self.adopt()
        for work in [w for w in self.parts.values() if w.release]:
            await self.release(work, work.release)
        deliveries = await self.transport.receive(self.cfg.transport.batch_max, timeout_s)
        by_part: dict[str, list[Delivery]] = {}
        for d in deliveries:
            tok = d.token
            if isinstance(tok, EntryToken):
                by_part.setdefault(tok.partition, []).append(d)
        poisoned, closed_by = await asyncio.to_thread(self._process, by_part)  # windows off the event loop
        for token, poison in poisoned:
            await self.dead_letter(token, poison)
        for work in list(self.parts.values()):
            closed = closed_by.get(work.token, False)
            await self.flush_commits(work)
            due = (
                work.since_checkpoint >= self.cfg.transport.detector.checkpoint_windows
                or len(work.unacked) >= MAX_UNACKED
            )
            if work.token in self.parts and (closed or due):
                await self.checkpoint(work)
        return len(deliveries)

    def _process(self, by_part: dict[str, list[Delivery]]) -> tuple[list[tuple[str, list[Poison]]], dict[str, bool]]:
        """Ingest, close windows (and idle-close) for every partition, then snapshot the ones that moved:
        on the window thread. Returns the entries to dead-letter and, per partition, whether an idle
        close committed windows."""
        targets = self.publisher is not None
        poisoned: list[tuple[str, list[Poison]]] = []
        moved: set[str] = set()
        for token, ds in by_part.items():
            owner = self.parts.get(token)
            if owner is not None:
                dup = owner.duplicates
                poison = owner.ingest(ds)
                self.counters.duplicates += owner.duplicates - dup
                if poison:
                    poisoned.append((token, poison))
                errs = owner.window_errors
                recs = owner.advance(targets=targets)
                self.counters.window_errors += owner.window_errors - errs
                self.backlog[token].extend(recs)
                self.changed = self.changed or bool(recs)
                moved.add(token)
        idle_s = self.cfg.transport.detector.idle_close_s
        closed_by: dict[str, bool] = {}
        for work in list(self.parts.values()):
            reader = self.transport.readers.get(work.token)
            if reader is not None and reader.mode != "new":  # catching up (a takeover, a failed read): not silent
                work.fed = True
            errs = work.window_errors
            closed = work.idle_close(idle_s, targets=targets)
            self.counters.window_errors += work.window_errors - errs
            self.backlog[work.token].extend(closed)
            self.changed = self.changed or bool(closed)
            closed_by[work.token] = bool(closed)
            if closed:
                moved.add(work.token)
        self._snap(sorted(moved | {t for t in self.parts if t not in self.snaps}))
        return poisoned, closed_by

    async def dead_letter(self, token: str, poison: list[Poison]) -> None:
        """Entries ``PartitionWork.ingest`` handed back (they failed to process and were rolled back, or
        every frame was quarantined as too far ahead): to the dead-letter stream with the reason and error,
        acknowledged, counted; the worker goes on. When Redis cannot take them now they stay pending and
        the next checkpoint acknowledges them (never re-ingested: the cursor is past them)."""
        bad = []
        for d, reason, error in poison:
            tok = d.token
            assert isinstance(tok, EntryToken)
            log.warning(
                "entry dead-lettered", partition=token, entry=tok.id.decode(), src=tok.src, reason=reason, error=error
            )
            bad.append((tok.id, reason, error, tok.fields))
        try:
            await self.transport.dead_letter(token, bad)
        except TransportError:
            for _d, reason, _e in poison:
                self.transport.dead_letters[reason] += 1

    async def flush_commits(self, work: PartitionWork) -> bool:
        queue = self.backlog.get(work.token, [])
        while queue:
            rec = queue[0]
            try:
                outcome = await self.committer.commit(work, rec)
            except TransportError:
                return False
            if outcome == "lost":
                log.warning("lease fenced at commit: dropping the partition", partition=work.token, window=rec.index)
                self.drop(work.token, "lost")
                return False
            queue.pop(0)
            work.since_checkpoint += 1
            self.counters.windows[outcome] += 1
            if outcome == "committed":
                self.counters.firings_published["redis_stream"] += len(rec.firings)
                if self.publisher is not None:
                    for (scope, target), active in sorted(rec.targets.items()):
                        self.publisher.offer(scope, target, rec.index, active)
                        self.counters.firings_published["mqtt"] += 1
        return True

    async def checkpoint(self, work: PartitionWork, *, force: bool = False) -> bool:
        if self.backlog.get(work.token):
            return False
        if not force and not work.changed:
            return True
        # off the event loop (zlib, hashing): heartbeats keep renewing leases meanwhile; nothing else
        # touches this pipeline until the consumer loop, which is waiting here, goes on
        blob = await asyncio.to_thread(work.snapshot)
        try:
            ok = await self.committer.save(work, blob)
        except TransportError:
            self.counters.checkpoints["write_failed"] += 1
            return False
        if not ok:
            self.counters.checkpoints["fenced"] += 1
            self.drop(work.token, "lost")
            return False
        self.counters.checkpoints["written"] += 1
        self.counters.last_checkpoint_ts = time.time()
        work.since_checkpoint = 0
        work.changed = False
        ids, work.unacked = work.unacked, []
        try:
            await self.transport.ack_ids(work.token, ids)
        except TransportError:
            work.unacked = ids + work.unacked
        return True

    async def shutdown(self) -> None:
        for work in list(self.parts.values()):
            try:
                ok = await asyncio.wait_for(self.release(work, "shutdown"), self.cfg.daemon.shutdown_grace_s)
            except TimeoutError:
                ok = False
            if not ok:
                log.warning("could not checkpoint on shutdown: the lease will expire instead", partition=work.token)
        with contextlib.suppress(TransportError):
            await unregister_worker(self.link, self.keys, self.worker)

    # ------------------------------------------------------------------------------- read side

    def refresh_view(self) -> PipelineSnapshot:
        """Merge the owned partitions' latest snapshots into ``self.snapshot`` (and return it)."""
        parts = {t: s for t, s in self.snaps.items() if t in self.parts}
        self.snapshot = self.view.refresh(parts, self.coordinator.threshold_log)
        self.changed = False
        return self.snapshot

    def levels(self) -> list[StreamLevels]:
        return [StreamLevels(r.stream, r.lag, r.pending) for r in self.transport.readers.values()]

    def not_ready(self) -> str | None:
        if not self.link.up:
            return f"redis unreachable ({self.link.last_error or 'not connected yet'})"
        if self.link.breaker.is_open:
            return "redis circuit breaker open"
        if self.publisher is not None and not self.publisher.health.up:
            return f"mqtt broker unreachable for firings ({self.publisher.health.last_error or 'connecting'})"
        if not self.parts:
            return "owns no partition"
        lag = sum(r.lag for r in self.transport.readers.values())
        if lag > self.cfg.transport.detector.max_lag_entries:
            return f"stream lag {lag} entries above {self.cfg.transport.detector.max_lag_entries}"
        return None

    def partitions_json(self) -> list[dict[str, object]]:
        out = []
        for t, w in sorted(self.parts.items()):
            r = self.transport.readers.get(t)
            out.append(
                {
                    "partition": t,
                    "cohort": w.cohort,
                    "epoch": w.lease.epoch,
                    "committed_window": w.committed,
                    "position": w.position.decode(),
                    "shards": len(self.snaps[t].shards) if t in self.snaps else 0,
                    "lag_entries": r.lag if r else None,
                    "pending_entries": r.pending if r else None,
                    "mode": r.mode if r else None,
                    "lease_valid": self.leases.valid(t),
                }
            )
        return out


async def run_detector(
    cfg: Config,
    *,
    stop: asyncio.Event | None = None,
    install_signals: bool = True,
    on_running: Callable[[DetectorRunning], None] | None = None,
) -> int:
    """Run a detector worker until stopped; return the process exit code."""
    stop = stop or asyncio.Event()
    wid = worker_id(cfg)
    det = Detector(cfg, wid)
    t0 = time.perf_counter()
    kernel_backend = await asyncio.to_thread(select_backend, cfg.detector.backend)
    log.info(
        "detector worker starting",
        worker=wid,
        redis=cfg.transport.redis.url,
        cluster=cfg.transport.redis.cluster,
        group=cfg.transport.redis.group,
        compile_s=round(time.perf_counter() - t0, 3),
    )

    det.refresh_view()
    status = Status(cfg, det.snapshot, det.transport, {})
    status.extra_ready_checks.append(det.not_ready)
    renderer = MetricsRenderer(status)
    renderer.registry.register(LinkCollector(det.link))
    renderer.registry.register(BackendCollector(kernel_backend))
    renderer.registry.register(
        WorkerCollector(
            det.counters,
            det.levels,
            lambda: (
                det.transport.dead_letters,
                det.transport.delivered_entries,
                int(det.transport.stats().extra.get("trimmed_entries", 0)),
            ),
            lambda: len(det.parts),
        )
    )
    if det.publisher is not None:
        renderer.registry.register(MqttCollector([det.publisher.health]))
    renderer.render()

    async def partitions(_request: web.Request) -> web.Response:
        return web.json_response({"v": 1, "worker": wid, "partitions": det.partitions_json()})

    def event_now() -> float:  # the worker's event time: the end of the newest window processed
        return status.snapshot.event_now(time.time())

    def on_event(rec: EventRecord) -> None:
        log.info(
            "cluster event",
            id=rec.id,
            kind=rec.event.kind,
            shards=len(rec.shards),
            freeze_until=rec.freeze_end_ts,
            source=rec.source,
            worker=wid,
        )

    peers: list[str] = []
    console = Console.of(status)  # the web console shows the partitions held here and the live peers
    console.split = lambda: {
        "worker": wid,
        "partitions": det.partitions_json(),
        "peers": [{"worker": w, "url": None} for w in peers if w != wid],
    }

    routes = [
        web.get("/v1/partitions", partitions),
        *event_routes(
            cfg.events, det.fleet.get, now=event_now, on_event=on_event, relay=det.relay, counts=status.event_requests
        ),
    ]
    app = make_app(status, extra_routes=routes)
    runner, port = await serve_http(app, cfg)
    log.info("serving", metrics=f"http://{cfg.http.host}:{port}/metrics", worker=wid)

    runtime = ProcessRuntime("detector", stop, install_signals=install_signals, alive=lambda: status.alive(time.time()))
    runtime.start()
    runtime.ready()
    if on_running:
        on_running(DetectorRunning(status, port, stop, wid, det))

    async def consume() -> None:
        last_render = 0.0
        while not stop.is_set():
            await det.step(cfg.transport.detector.block_ms / 1000.0)
            now = time.monotonic()
            if det.changed or now - last_render >= 1.0:
                status.snapshot = await asyncio.to_thread(det.refresh_view)  # the merge, off the loop
                console.record()  # web console: history, and the browsers' diff before /metrics renders
                console.flush()
                await renderer.render_async()
                last_render = now

    async def housekeeping() -> None:
        beats = 0
        while True:
            status.beat()
            if beats % 5 == 0:  # the worker registry holds ids only (no addresses): the console lists them
                with contextlib.suppress(TransportError):
                    peers[:] = await live_workers(det.link, det.keys)
            beats += 1
            await asyncio.sleep(1.0)

    try:
        async with asyncio.TaskGroup() as tg:
            coord = tg.create_task(det.coordinator.run(stop), name="coordinator")
            consumer = tg.create_task(consume(), name="consumer")
            hk = tg.create_task(housekeeping(), name="housekeeping")
            pub = tg.create_task(det.publisher.run(stop), name="mqtt") if det.publisher else None
            await stop.wait()
            status.stopping = True
            runtime.stopping()
            await consumer
            await coord
            await det.shutdown()
            hk.cancel()
            if pub is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(pub), cfg.daemon.shutdown_grace_s)
                except TimeoutError:
                    pub.cancel()
    finally:
        status.snapshot = det.refresh_view()
        renderer.render()
        with contextlib.suppress(Exception):
            await runner.cleanup()
        await det.transport.close()
        await det.link.close()
        await runtime.close()
    log.info(
        "detector worker stopped",
        worker=wid,
        windows=det.counters.windows["committed"],
        skipped=det.counters.windows["skipped"],
        checkpoints=det.counters.checkpoints["written"],
        dead_letters=sum(det.transport.dead_letters.values()),
    )
    return 0
