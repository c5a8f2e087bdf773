"""``run(cfg)``: the all-in-one daemon. One TaskGroup, a stop Event, and a fixed shutdown order.

Start-up: sources and topology, detector kernels compiled (before readiness), HTTP server, then the
TaskGroup of supervised pollers, the detector loop and housekeeping.

Windows run off the event loop: the pipeline is touched by one worker thread only (a single-thread
executor: ingest, windows, topology changes, event hand-over, one job at a time, in submission order),
which publishes an immutable ``PipelineSnapshot`` after each batch; the HTTP layer, the console and
``/metrics`` (rendered in a thread too) read snapshots only, so a scrape, ``/healthz`` or an event POST
is answered while a window is being processed. Event POSTs are checked against a front event book on
the loop (which answers them and ``GET /v1/events``) and handed to the window thread through a queue it
drains before each batch, so an event lands between the same windows it would have on the loop.

Signals, READY / WATCHDOG / STOPPING: :class:`tessera_daemon.runtime.ProcessRuntime` (SIGTERM / SIGINT
only set the stop event; a second one forces exit). Shutdown: mark not ready, stop the pollers, let the detector
drain the transport and finish the windows that can close, render /metrics a last time, stop HTTP,
log one summary line.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import time
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from aiohttp import web

from tessera_daemon.capture import open_capture
from tessera_daemon.config import Config
from tessera_daemon.detect.backend import BackendCollector
from tessera_daemon.detect.backend import select as select_backend
from tessera_daemon.engine.events import AddResult, EventBook, EventRecord
from tessera_daemon.errors import TesseraError
from tessera_daemon.localstate import LocalState, resume_pipeline
from tessera_daemon.log import get_logger
from tessera_daemon.model import ClusterEvent, Topology
from tessera_daemon.outputs.verdict_feed import VerdictFeed
from tessera_daemon.runtime import ProcessRuntime, check_all_in_one, serve_http
from tessera_daemon.selfwatch import LoopLag
from tessera_daemon.sources import build_sources, load_static_topology, merge_topology
from tessera_daemon.sources.base import Source
from tessera_daemon.sources.supervise import SourceHealth, supervise_source
from tessera_daemon.sources.synthetic import SyntheticSource
from tessera_daemon.transport.memory import MemoryTransport
from tessera_daemon.web.app import make_app
from tessera_daemon.web.console import Console
from tessera_daemon.web.event_api import event_routes
from tessera_daemon.web.metrics import MetricsRenderer
from tessera_daemon.web.status import Status
from tessera_daemon.windows import Batch, WindowWorker

log = get_logger(__name__)


@dataclass(slots=True)
class Running:
    """Handles a caller (tests, the drill) gets once the daemon is serving."""

    status: Status
    port: int
    stop: asyncio.Event
    sources: list[Source] = field(default_factory=list)
    announce: Callable[[ClusterEvent, str], AddResult] | None = None  # add an event as a POST would

    def add_event(self, event: ClusterEvent, source: str) -> AddResult:
        """Announce ``event`` to the detector (checked and queued for the window thread, as a POST)."""
        assert self.announce is not None
        return self.announce(event, source)


def _event_routes(
    cfg: Config, status: Status, front: EventBook, worker: WindowWorker, counts: Counter[tuple[str, str]]
) -> list[web.RouteDef]:
    """POST/GET /v1/events and the DeploySignal v1 inbound route, when enabled: checked against and
    answered from ``front`` (on the loop), relayed to the window thread's queue (which captures them
    when ``daemon.capture_path`` is set, in the order the pipeline sees them)."""

    def now() -> float:  # the daemon's event time: the end of the last processed window
        return status.snapshot.event_now(time.time())

    async def relay(events: Sequence[ClusterEvent], source: str, metadata: Mapping[str, str]) -> None:
        for ev in events:
            worker.events.put((ev, source, dict(metadata)))

    def on_event(rec: EventRecord) -> None:
        log.info(
            "cluster event",
            id=rec.id,
            kind=rec.event.kind,
            shards=len(rec.shards),
            freeze_until=rec.freeze_end_ts,
            source=rec.source,
        )

    return event_routes(cfg.events, lambda: front, now=now, on_event=on_event, relay=relay, counts=counts)


def make_sources(cfg: Config) -> tuple[list[Source], bool]:
    if not cfg.sources.enabled:
        return [SyntheticSource(cfg)], True
    return build_sources(cfg), False


async def gather_topology(sources: list[Source], cfg: Config) -> Topology:
    parts = []
    for s in sources:
        try:
            async with asyncio.timeout(cfg.sources.timeout_s * 5):
                parts.append(await s.topology())
        except Exception as exc:
            log.warning("topology unavailable", source=s.name, error=str(exc))
    static = load_static_topology(cfg.sources.static_topology) if cfg.sources.static_topology else None
    if len(parts) == 1 and not parts[0].partial and static is None:
        return Topology(parts[0].nodes, parts[0].edges)
    return merge_topology(parts, static)


async def run(  # noqa: C901 - start-up and shutdown order read best in one place
    cfg: Config,
    *,
    on_running: Callable[[Running], None] | None = None,
    stop: asyncio.Event | None = None,
    install_signals: bool = True,
) -> int:
    """Run until stopped; return the process exit code."""
    stop = stop or asyncio.Event()
    check_all_in_one(cfg)
    sources, simulated = make_sources(cfg)
    if simulated:
        sim = sources[0]
        assert isinstance(sim, SyntheticSource)
        topo_nodes = sim.sim.topology
        log.info(
            "no sources configured: watching the built-in simulated cluster",
            scenario=cfg.sim.scenario,
            shards=len(topo_nodes.shards),
            seed=cfg.sim.seed,
            speedup=cfg.sim.speedup,
        )
    else:
        log.info("starting sources", sources=[s.name for s in sources])
    topology = await gather_topology(sources, cfg)
    transport = MemoryTransport(cfg.transport.capacity)
    local = LocalState.of(cfg)  # daemon.state_dir: checkpoints, resumed from here (localstate.py)
    # group construction is costly at scale: off the loop
    pipeline = await asyncio.to_thread(resume_pipeline, local, cfg, topology, sources[0] if simulated else None)
    capture = open_capture(cfg, pipeline)  # daemon.capture_path (capture.py)
    if not simulated:  # the simulator keeps its own (sped-up) clock; replay never arms the guard
        pipeline.assembler.guard_future(cfg.window.max_future_skew_s)
    t0 = time.perf_counter()
    kernel_backend = await asyncio.to_thread(select_backend, cfg.detector.backend)  # detect/backend.py
    log.info(
        "detector kernels ready",
        compile_s=round(time.perf_counter() - t0, 3),
        backend=kernel_backend.backend,
        shards=len(pipeline.shards),
        metrics=pipeline.metrics,
        threshold_log=round(pipeline.threshold_log, 3),
    )

    # from here on, only the window thread touches the pipeline (and writes the capture)
    worker = WindowWorker(pipeline, capture=capture, local=local)
    gc.freeze()  # start-up objects (topology, pipeline, simulator) leave the collector's full passes
    front = EventBook(topology, cfg.events)  # event POSTs are checked and answered here, on the loop
    status = Status(cfg, worker.snapshot, transport, {s.name: SourceHealth(s.name) for s in sources})
    console = Console.of(status)  # web console: history rings and live stream (web/console.py)
    if simulated and isinstance(sources[0], SyntheticSource):
        console.simulator = sources[0].sim
    renderer = MetricsRenderer(status)
    renderer.registry.register(BackendCollector(kernel_backend))
    loop_lag = LoopLag(renderer.registry)  # tessera_event_loop_lag_seconds (selfwatch.py)
    if local is not None:
        renderer.registry.register(local)  # tessera_checkpoints_total, last success
    renderer.render()

    feed = VerdictFeed.from_settings(cfg.events.deploysignal, cluster=cfg.daemon.cluster)
    status.feed = feed
    app = make_app(status, extra_routes=_event_routes(cfg, status, front, worker, status.event_requests))
    runner, port = await serve_http(app, cfg)
    log.info(
        "serving",
        console=f"http://{cfg.http.host}:{port}/",
        metrics=f"http://{cfg.http.host}:{port}/metrics",
        health=f"http://{cfg.http.host}:{port}/healthz",
        firings=f"http://{cfg.http.host}:{port}/v1/firings",
    )

    runtime = ProcessRuntime("run", stop, install_signals=install_signals, alive=lambda: status.alive(time.time()))
    runtime.start()
    if feed is not None:
        await feed.start()
    runtime.ready()

    def announce(ev: ClusterEvent, source: str) -> AddResult:
        res = front.add(ev, source=source)
        if res.status in ("added", "updated"):
            worker.events.put((ev, source, {}))
        return res

    if on_running:
        on_running(Running(status, port, stop, sources, announce))

    totals = {"windows": 0, "opened": 0, "resolved": 0}
    warned_cadence: list[bool] = []  # the window-shorter-than-cadence warning, logged once
    speed = cfg.sim.speedup if simulated else 1.0

    async def handle(batch: Batch) -> None:
        """On the loop, after the window thread finished a batch: publish its snapshots (the console
        records each window's), log the firings, feed DeploySignal, render /metrics in a thread."""
        status.snapshot = batch.snapshots[-1]
        results = batch.results
        for snap in batch.snapshots if results else ():
            console.record(snap)
        if results:
            console.flush()  # the browsers' diff goes out before /metrics is rendered
        for group in batch.verdicts:
            if feed is not None and group.firing_family_count > 0:
                feed.submit(group)
        for r in results:
            totals["windows"] += 1
            renderer.window_duration.observe(r.duration_s)
            for f in r.opened:
                totals["opened"] += 1
                log.warning(
                    "firing opened",
                    id=f.id,
                    target=f.target,
                    detector=f.detector,
                    metric=f.metric,
                    classification=f.classification,
                    window=f.window,
                    log_evidence=round(f.log_evidence, 2),
                )
            for f in r.resolved:
                totals["resolved"] += 1
                log.info(
                    "firing resolved",
                    id=f.id,
                    target=f.target,
                    detector=f.detector,
                    metric=f.metric,
                    window=r.index,
                    reason=f.receipt.get("resolved_reason"),
                )
        snap = status.snapshot
        if results and not warned_cadence and snap.window_too_short:
            warned_cadence.append(True)
            log.warning(
                "window shorter than the sources' cadence: most windows hold no sample",
                window_s=snap.window_length_s,
                sample_interval_s=round(snap.observed_cadence_s, 3),
                setting="window.length_s",
                hint='set window.length_s = "auto"',
            )
        if results:
            await renderer.render_async()

    async def detector_loop() -> None:
        last_frame_wall = time.monotonic()
        # event time only moves with data; if sources go quiet for longer than a window plus grace
        # (and longer than two poll intervals), close windows on the clock so staleness shows up
        while True:
            snap = status.snapshot
            idle_after = max(snap.window_length_s + cfg.window.grace_s, 2 * cfg.sources.poll_interval_s * speed)
            stopping = stop.is_set()
            deliveries = await transport.receive(cfg.transport.batch_max, 0.0 if stopping else 0.1)
            if deliveries:
                last_frame_wall = time.monotonic()
                frames = [d.frames for d in deliveries]
                batch = await worker.run(worker.batch, frames, None)
                await handle(batch)
                await transport.ack(deliveries)
                if local is not None and local.due(len(batch.results)):
                    await local.checkpoint(pipeline, reason="periodic", run=worker.call)
            else:
                idle = (time.monotonic() - last_frame_wall) * speed
                wm = snap.stats.watermark
                if idle > idle_after and wm > float("-inf"):
                    await handle(await worker.run(worker.batch, (), wm + idle))
                elif not worker.events.empty():  # events posted while no data flows reach the book now
                    await handle(await worker.run(worker.batch, (), None, close=False))
                if stopping:
                    return
            if not stopping:
                await asyncio.sleep(0)

    async def housekeeping() -> None:
        interval = min(1.0, status.snapshot.window_length_s)
        last_render = 0.0
        while True:
            status.beat()
            now = time.monotonic()
            if now - last_render >= status.snapshot.window_length_s:
                await renderer.render_async()
                last_render = now
            if simulated and isinstance(sources[0], SyntheticSource) and sources[0].finished:
                if not stop.is_set():
                    log.info("simulation finished", duration_s=cfg.sim.duration_s)
                stop.set()
            await asyncio.sleep(interval)

    async def topology_refresh() -> None:
        """Sources learn about shards over time (a GPU that comes back, a new Kubernetes node, a Slurm
        job): re-read topology every sources.topology_refresh_s and adopt it when it changed."""
        current = topology.content_hash()
        while True:
            await asyncio.sleep(cfg.sources.topology_refresh_s)
            try:
                fresh = await gather_topology(sources, cfg)
            except TesseraError as exc:  # a bad merge keeps the current topology; the daemon goes on
                log.warning("topology refresh failed", error=str(exc))
                continue
            digest = fresh.content_hash()
            if digest != current and fresh.shards:
                await handle(await worker.run(worker.set_topology, fresh))  # groups rebuilt off the loop
                front.set_topology(fresh)
                current = digest
                log.info("topology changed", shards=len(fresh.shards), hash=digest[:12])

    exit_code = 0
    try:
        async with asyncio.TaskGroup() as tg:
            pollers = [
                tg.create_task(
                    supervise_source(
                        s,
                        status.health[s.name],
                        transport.publish,
                        interval_s=cfg.sources.poll_interval_s,
                        timeout_s=cfg.sources.timeout_s,
                        stop=stop,
                    ),
                    name=f"source:{s.name}",
                )
                for s in sources
            ]
            detector = tg.create_task(detector_loop(), name="detector")
            hk = tg.create_task(housekeeping(), name="housekeeping")
            lag_task = tg.create_task(loop_lag.run(), name="loop-lag")
            topo_task = None if simulated else tg.create_task(topology_refresh(), name="topology")
            await stop.wait()
            status.stopping = True
            runtime.stopping()
            for t in pollers:
                t.cancel()
            hk.cancel()
            lag_task.cancel()
            if topo_task is not None:
                topo_task.cancel()
            try:
                async with asyncio.timeout(cfg.daemon.shutdown_grace_s):
                    await detector
            except TimeoutError:
                detector.cancel(msg="shutdown grace exceeded")
                log.warning("detector did not finish within the grace period", grace_s=cfg.daemon.shutdown_grace_s)
                with contextlib.suppress(asyncio.CancelledError):
                    await detector  # cancelled at an await: the pipeline is between two calls, consistent
            if local is not None:  # with the open (partial) windows, after every window job already queued
                await local.checkpoint(pipeline, reason="shutdown", run=worker.call)
    finally:
        if feed is not None:
            await feed.close(cfg.events.deploysignal.feed_close_deadline_s)
        await asyncio.to_thread(worker.close)  # the window in progress (if any) finishes first
        status.snapshot = worker.snapshot
        renderer.render()
        with contextlib.suppress(Exception):
            await runner.cleanup()
        await transport.close()
        await runtime.close()
        if capture is not None:
            capture.close()
    tstats = transport.stats()
    log.info(
        "shutdown complete",
        windows=totals["windows"],
        firings_opened=totals["opened"],
        firings_resolved=totals["resolved"],
        frames=status.snapshot.stats.frames,
        dropped=tstats.dropped_frames,
        active_firings=len(status.snapshot.active),
    )
    return exit_code
