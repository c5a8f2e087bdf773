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
the partitions they concern, within a heartbeat (``transport/eventlog.py``).

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
from tessera_daemon.detect.kernels import warm_up
from tessera_daemon.engine.events import EventRecord
from tessera_daemon.errors import TransportError
from tessera_daemon.log import get_logger
from tessera_daemon.model import ClusterEvent
from tessera_daemon.outputs.mqtt import MqttFiringPublisher
from tessera_daemon.runtime import ProcessRuntime, serve_http
from tessera_daemon.status import Status
from tessera_daemon.transport.base import Delivery
from tessera_daemon.transport.coordinator import Coordinator
from tessera_daemon.transport.eventlog import FleetBook, LoggedEvent, apply_event
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
from tessera_daemon.transport.partition import Committer, PartitionWork, Poison, WindowRecord
from tessera_daemon.transport.redis import EntryToken, RedisTransport
from tessera_daemon.transport.registry import live_workers, unregister_worker
from tessera_daemon.transport.view import PartitionView
from tessera_daemon.web.app import make_app
from tessera_daemon.web.console import Console
from tessera_daemon.web.event_api import event_routes
from tessera_daemon.web.metrics import MetricsRenderer

log = get_logger("tessera.worker")
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
        self.publisher = MqttFiringPublisher(t.mqtt, cfg.daemon.cluster) if t.mqtt.publish_firings else None
        self.changed = True
        self.fleet = FleetBook(cfg.events)  # validates posted events, answers GET /v1/events

    # ------------------------------------------------------------------------------- partitions

    def adopt(self) -> None:
        inbox, lost, release, topologies = self.coordinator.take()
        for work in inbox:
            work.pipeline.assembler.guard_future(self.cfg.window.max_future_skew_s)
            self.parts[work.token] = work
            self.backlog[work.token] = []
            self.transport.attach(work.token, work.position)
            self.counters.acquisitions += 1
            self.changed = True
        for token in lost:
            self.drop(token, "lost")
        for token in release:
            if token in self.parts:
                self.parts[token].release = "rebalance"
        for token, topo in topologies:  # shards kept by id; new shards start warming up
            if token in self.parts:
                self.parts[token].pipeline.set_topology(topo)
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
            self.apply_events(events)

    def apply_events(self, items: list[LoggedEvent]) -> None:
        """Add logged events to every held partition's book (here, between batches: never while a
        checkpoint thread walks a pipeline). Entries a partition replayed when it was loaded are
        skipped, so an older entry of an updated event never goes over the newer one."""
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

    async def relay(self, events: Sequence[ClusterEvent], source: str, metadata: Mapping[str, str]) -> None:
        """Make accepted events durable in the fleet event log (the event routes' ``relay``);
        TransportError when Redis cannot take them (the route answers 503)."""
        eventlog = self.coordinator.eventlog
        if eventlog is None:  # events disabled: no routes call this
            raise TransportError("the event log is disabled (events.enabled = false)")
        ids = await eventlog.append([(ev, source, metadata) for ev in events])
        self.fleet.remember(LoggedEvent(i, ev, source, dict(metadata)) for i, ev in zip(ids, events, strict=True))

    def drop(self, token: str, reason: str) -> None:
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
        self.adopt()
        for work in [w for w in self.parts.values() if w.release]:
            await self.release(work, work.release)
        deliveries = await self.transport.receive(self.cfg.transport.batch_max, timeout_s)
        targets = self.publisher is not None
        by_part: dict[str, list[Delivery]] = {}
        for d in deliveries:
            tok = d.token
            if isinstance(tok, EntryToken):
                by_part.setdefault(tok.partition, []).append(d)
        for token, ds in by_part.items():
            owner = self.parts.get(token)
            if owner is not None:
                dup = owner.duplicates
                poison = owner.ingest(ds)
                self.counters.duplicates += owner.duplicates - dup
                if poison:
                    await self.dead_letter(token, poison)
                errs = owner.window_errors
                recs = owner.advance(targets=targets)
                self.counters.window_errors += owner.window_errors - errs
                self.backlog[token].extend(recs)
                self.changed = self.changed or bool(recs)
        idle_s = self.cfg.transport.detector.idle_close_s
        for work in list(self.parts.values()):
            reader = self.transport.readers.get(work.token)
            if reader is not None and reader.mode != "new":  # catching up (a takeover, a failed read): not silent
                work.fed = True
            errs = work.window_errors
            closed = work.idle_close(idle_s, targets=targets)
            self.counters.window_errors += work.window_errors - errs
            self.backlog[work.token].extend(closed)
            self.changed = self.changed or bool(closed)
            await self.flush_commits(work)
            due = (
                work.since_checkpoint >= self.cfg.transport.detector.checkpoint_windows
                or len(work.unacked) >= MAX_UNACKED
            )
            if work.token in self.parts and (closed or due):
                await self.checkpoint(work)
        return len(deliveries)

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

    def refresh_view(self) -> None:
        self.view.refresh({t: w.pipeline for t, w in self.parts.items()}, self.coordinator.threshold_log)
        self.changed = False

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
                    "shards": len(w.pipeline.shards),
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
    await asyncio.to_thread(warm_up)
    log.info(
        "detector worker starting",
        worker=wid,
        redis=cfg.transport.redis.url,
        cluster=cfg.transport.redis.cluster,
        group=cfg.transport.redis.group,
        compile_s=round(time.perf_counter() - t0, 3),
    )

    det.refresh_view()
    status = Status(cfg, det.view.pipeline, det.transport, {})
    status.extra_ready_checks.append(det.not_ready)
    renderer = MetricsRenderer(status)
    renderer.registry.register(LinkCollector(det.link))
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
        p = det.view.pipeline
        return p.table.end_ts if p.windows_processed else time.time()

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
                det.refresh_view()
                status.pipeline = det.view.pipeline
                console.record()  # web console: history, and the browsers' diff before /metrics renders
                console.flush()
                renderer.render()
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
        det.refresh_view()
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
