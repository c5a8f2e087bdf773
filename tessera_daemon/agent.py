"""``run_agent(cfg)``: run the configured sources on a node and publish their frames to Redis Streams.

Sources are built and supervised exactly as in ``run`` (the simulator when none is configured). Each
poll's frames become one packed entry per (partition, sampling instant, host) in a bounded in-memory
buffer; a flusher XADDs the buffer's head in pipelines (``MAXLEN ~`` trimming), so a Redis outage
never blocks polling: the buffer holds ``transport.agent.buffer_frames`` frames (oldest dropped and
counted beyond), and drains in order once the circuit breaker lets a probe through and Redis answers.
The agent registers its partitions and their topology slices, again after every reconnect (a Redis
that lost its data learns them back) and every ``topology_refresh_s``.

HTTP: /metrics (transport, buffer and source series), /healthz, /readyz (Redis up, breaker closed,
buffer below ``ready_buffer_fraction``, every source has polled), /v1/agent.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tessera_daemon.buildinfo import build_info_family
from tessera_daemon.config import Config
from tessera_daemon.daemon import gather_topology, make_sources
from tessera_daemon.errors import TransportError
from tessera_daemon.log import get_logger
from tessera_daemon.runtime import ProcessRuntime, serve_http
from tessera_daemon.sources.base import Source
from tessera_daemon.sources.supervise import POLL_BUCKETS, SourceHealth, supervise_source
from tessera_daemon.sources.synthetic import SyntheticSource
from tessera_daemon.transport.exporter import LinkCollector, MqttCollector
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.link import RedisLink
from tessera_daemon.transport.mqtt import MqttHealth
from tessera_daemon.transport.producer import StreamProducer, default_agent_id
from tessera_daemon.transport.redis import RedisTransport
from tessera_daemon.transport.registry import Router, publish_registry
from tessera_daemon.web.metrics import source_families
from tessera_daemon.web.openapi import openapi_route
from tessera_daemon.web.status import LIVENESS_TIMEOUT_S

log = get_logger(__name__)


@dataclass(slots=True)
class AgentStatus:
    cfg: Config
    agent_id: str
    link: RedisLink
    producer: StreamProducer
    health: dict[str, SourceHealth]
    mqtt: list[MqttHealth] = field(default_factory=list)
    started_ts: float = field(default_factory=time.time)
    heartbeat_ts: float = field(default_factory=time.time)
    registered: bool = False
    stopping: bool = False

    def not_ready_reasons(self) -> list[str]:
        out: list[str] = []
        if self.stopping:
            out.append("shutting down")
        if not self.link.up:
            out.append(f"redis unreachable ({self.link.last_error or 'not connected yet'})")
        if self.link.breaker.is_open:
            out.append("redis circuit breaker open")
        if not self.registered:
            out.append("partitions not registered yet")
        a = self.cfg.transport.agent
        if self.producer.buffered_frames > a.ready_buffer_fraction * a.buffer_frames:
            out.append(
                f"buffer {self.producer.buffered_frames} frames above {a.ready_buffer_fraction:.0%} of "
                f"{a.buffer_frames}"
            )
        out.extend(
            f"source {n}: no successful poll yet" for n, h in sorted(self.health.items()) if h.last_success_ts == 0.0
        )
        out.extend(f"mqtt {h.role} disconnected ({h.last_error or 'connecting'})" for h in self.mqtt if not h.up)
        return out

    def to_obj(self) -> dict[str, object]:
        st = self.producer.stats
        return {
            "v": 1,
            "agent": self.agent_id,
            "src": self.producer.src,
            "redis_up": self.link.up,
            "breaker": self.link.breaker.state,
            "reconnects": self.link.reconnects,
            "buffered_frames": st.buffered_frames,
            "dropped_frames": st.dropped_frames,
            "published_frames": st.published_frames,
            "published_entries": st.published_entries,
            "unrouted_frames": st.unrouted_frames,
            "partitions": sorted(self.producer.router.partitions),
            "ready_reasons": self.not_ready_reasons(),
        }


class _AgentCollector(Collector):
    def __init__(self, status: AgentStatus) -> None:
        self.status = status

    def collect(self) -> Iterator[Metric]:
        st = self.status
        p = st.producer.stats
        yield build_info_family()
        yield GaugeMetricFamily(
            "tessera_ready", "1 when /readyz answers 200.", value=0.0 if st.not_ready_reasons() else 1.0
        )
        yield GaugeMetricFamily(
            "tessera_agent_buffered_frames", "Frames waiting in the agent's buffer for Redis.", value=p.buffered_frames
        )
        yield CounterMetricFamily(
            "tessera_agent_dropped_frames",
            "Frames dropped because the agent's buffer was full (oldest first).",
            value=p.dropped_frames,
        )
        yield CounterMetricFamily(
            "tessera_agent_published_frames", "Frames accepted by Redis.", value=p.published_frames
        )
        yield CounterMetricFamily(
            "tessera_agent_published_entries", "Host entries accepted by Redis.", value=p.published_entries
        )
        yield CounterMetricFamily(
            "tessera_agent_unrouted_frames",
            "Frames of shards missing from the topology (no partition), dropped.",
            value=p.unrouted_frames,
        )
        yield from source_families(st.health)


class AgentMetrics:
    def __init__(self, status: AgentStatus, sources: list[Source]) -> None:
        self.status = status
        self.registry = CollectorRegistry(auto_describe=False)
        self.poll_duration = Histogram(
            "tessera_source_poll_duration_seconds",
            "Wall time of one source poll.",
            ["source"],
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self.registry.register(_AgentCollector(status))
        self.registry.register(LinkCollector(status.link))
        if status.mqtt:
            self.registry.register(MqttCollector(status.mqtt))
        self.data = b""

    def render(self) -> bytes:
        for name, h in self.status.health.items():
            child = self.poll_duration.labels(name)
            for d in h.durations:
                child.observe(d)
            h.durations.clear()
        self.data = generate_latest(self.registry)
        return self.data


def make_agent_app(status: AgentStatus, metrics: AgentMetrics) -> web.Application:
    async def get_metrics(_r: web.Request) -> web.Response:
        return web.Response(body=metrics.data, headers={"Content-Type": CONTENT_TYPE_LATEST})

    async def healthz(_r: web.Request) -> web.Response:
        age = time.time() - status.heartbeat_ts
        ok = age < LIVENESS_TIMEOUT_S
        return web.json_response(
            {"status": "ok" if ok else "stalled", "heartbeat_age_s": round(age, 3)}, status=200 if ok else 503
        )

    async def readyz(_r: web.Request) -> web.Response:
        reasons = status.not_ready_reasons()
        body = {"ready": not reasons, "reasons": reasons, "buffered_frames": status.producer.buffered_frames}
        return web.json_response(body, status=200 if not reasons else 503)

    async def agent(_r: web.Request) -> web.Response:
        return web.json_response(status.to_obj())

    app = web.Application()
    app.router.add_get("/metrics", get_metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/agent", agent)
    app.router.add_routes([openapi_route()])
    return app


@dataclass(slots=True)
class AgentRunning:
    status: AgentStatus
    port: int
    stop: asyncio.Event


async def run_agent(
    cfg: Config,
    *,
    stop: asyncio.Event | None = None,
    install_signals: bool = True,
    on_running: Callable[[AgentRunning], None] | None = None,
) -> int:
    """Run the agent until stopped (or the simulation ends); return the process exit code."""
    stop = stop or asyncio.Event()
    sources, simulated = make_sources(cfg)
    router = Router(await gather_topology(sources, cfg))
    agent_id = cfg.transport.agent.id or default_agent_id()
    link = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="agent")
    producer = StreamProducer(cfg.transport, link, router, agent_id=agent_id)
    transport = RedisTransport(cfg.transport, link, producer=producer)
    status = AgentStatus(
        cfg,
        agent_id,
        link,
        producer,
        {s.name: SourceHealth(s.name) for s in sources},
        [h for h in (getattr(s, "health", None) for s in sources) if isinstance(h, MqttHealth)],
    )
    metrics = AgentMetrics(status, sources)
    metrics.render()
    log.info(
        "agent starting",
        agent=agent_id,
        sources=[s.name for s in sources],
        shards=router.n_shards,
        partitions=sorted(router.partitions),
        redis=cfg.transport.redis.url,
    )

    runner, port = await serve_http(make_agent_app(status, metrics), cfg)

    runtime = ProcessRuntime(
        "agent",
        stop,
        install_signals=install_signals,
        alive=lambda: time.time() - status.heartbeat_ts < LIVENESS_TIMEOUT_S,
    )
    runtime.start()
    runtime.ready()
    if on_running:
        on_running(AgentRunning(status, port, stop))

    async def registrar() -> None:
        nonlocal router
        seen_reconnects = -1
        last_refresh = time.monotonic()
        while not stop.is_set():
            if time.monotonic() - last_refresh >= cfg.transport.agent.topology_refresh_s:
                last_refresh = time.monotonic()
                fresh = Router(await gather_topology(sources, cfg))
                if fresh.topology.content_hash() != router.topology.content_hash():
                    log.info("topology changed", shards=fresh.n_shards, partitions=sorted(fresh.partitions))
                    router = fresh
                    producer.set_router(router)
                seen_reconnects = -1  # re-register: keeps the registration fresh for the workers' fleet count
            if seen_reconnects != link.reconnects and link.breaker.allow():
                try:
                    await publish_registry(
                        link, Keys(cfg.transport.redis.prefix), agent_id, router, cfg.transport.redis.group
                    )
                    seen_reconnects = link.reconnects
                    status.registered = True
                except TransportError:
                    status.registered = False
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 0.2 if seen_reconnects != link.reconnects else 1.0)

    async def housekeeping() -> None:
        while True:
            status.heartbeat_ts = time.time()
            metrics.render()
            if simulated and isinstance(sources[0], SyntheticSource) and sources[0].finished and not stop.is_set():
                log.info("simulation finished", duration_s=cfg.sim.duration_s)
                stop.set()
            await asyncio.sleep(0.2)

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
            flusher = tg.create_task(producer.run(stop), name="flusher")
            reg = tg.create_task(registrar(), name="registrar")
            hk = tg.create_task(housekeeping(), name="housekeeping")
            await stop.wait()
            status.stopping = True
            runtime.stopping()
            for t in pollers:
                t.cancel()
            try:
                async with asyncio.timeout(cfg.daemon.shutdown_grace_s):
                    await flusher
            except TimeoutError:
                flusher.cancel(msg="shutdown grace exceeded")
            reg.cancel()
            hk.cancel()
    finally:
        metrics.render()
        with contextlib.suppress(Exception):
            await runner.cleanup()
        await transport.close()
        await link.close()
        await runtime.close()
    st = producer.stats
    if st.buffered_frames:
        log.warning("stopped with frames still buffered (Redis unreachable)", frames=st.buffered_frames)
    log.info(
        "agent stopped",
        published_frames=st.published_frames,
        published_entries=st.published_entries,
        dropped_frames=st.dropped_frames,
        unbuffered=st.buffered_frames,
        reconnects=link.reconnects,
    )
    return 0
