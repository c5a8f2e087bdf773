"""/metrics: self-metrics and detector output rendered once per snapshot into bytes.

A private ``CollectorRegistry`` (never the global one) holds the instrumented histograms and one
custom collector that reads the daemon ``Status``: the detector's immutable ``PipelineSnapshot`` and
a ``LiveView`` of what the event loop owns (source health, transport counters, event requests,
readiness), copied on the loop. ``render_async()`` takes that copy on the loop and renders in a worker
thread, once per (snapshot version, live view): the daemons call it after each batch of windows and
on a timer; a scrape only returns the cached bytes, so its cost does not depend on the fleet, on a
window in progress or on any substrate. ``render()`` does the same synchronously (start-up, shutdown,
tests). Per-shard series exist only for shards with an active firing or in the top-N by evidence;
fleet histograms and per-group series always exist.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from prometheus_client import CollectorRegistry, Histogram, ProcessCollector, disable_created_metrics, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tessera_daemon.buildinfo import build_info_family
from tessera_daemon.engine.bounds import REASONS as VALUE_REASONS
from tessera_daemon.engine.snapshot import PipelineSnapshot
from tessera_daemon.model import CLASSIFICATIONS
from tessera_daemon.sources.supervise import POLL_BUCKETS, SourceHealth
from tessera_daemon.transport.base import TransportStats
from tessera_daemon.web.metrics_evidence import evidence_families, labels_of
from tessera_daemon.web.status import Status

WINDOW_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
MAX_CACHE_S = 5.0  # bytes re-rendered at least this often while a scrape timer asks, even if unchanged
FEED_OUTCOMES = ("sent", "retried", "failed", "dropped")


def source_families(health: Mapping[str, SourceHealth]) -> Iterator[Metric]:
    """Per-source up / polls / last-success series (shared by `run`, `agent` and `detector`)."""
    up = GaugeMetricFamily("tessera_source_up", "1 if the source's last poll succeeded.", labels=["source"])
    polls = CounterMetricFamily("tessera_source_polls", "Source polls, by outcome.", labels=["source", "outcome"])
    last = GaugeMetricFamily(
        "tessera_source_last_success_timestamp_seconds",
        "Unix time of the source's last successful poll.",
        labels=["source"],
    )
    for name, h in sorted(health.items()):
        up.add_metric([name], 1.0 if h.up else 0.0)
        for outcome, n in sorted(h.polls.items()):
            polls.add_metric([name, outcome], n)
        last.add_metric([name], h.last_success_ts)
    yield up
    yield polls
    yield last


SKEW_SERIES = 50  # at most this many (source, host) series: the largest skews
SKEW_HORIZON_WINDOWS = 12  # a host counts as currently skewed for this many window lengths after its last frame


def clock_skew(p: PipelineSnapshot, now: float) -> Metric:
    """``tessera_clock_skew_seconds{source,host}``: how far ahead of this receiver's clock the newest
    quarantined frame of each currently skewed host was (only hosts seen skewed recently, capped)."""
    g = GaugeMetricFamily(
        "tessera_clock_skew_seconds",
        "How far ahead of the receiver's clock a host's frames "
        "were (quarantined: window.max_future_skew_s); only hosts currently skewed.",
        labels=["source", "host"],
    )
    horizon = max(60.0, SKEW_HORIZON_WINDOWS * p.cfg.window.length_s)
    worst: dict[tuple[str, str], float] = {}
    nodes = p.topology.nodes
    for shard, (skew, seen, source) in list(p.stats.skewed.items()):
        if now - seen > horizon:
            continue
        host = shard
        cur = nodes[shard].parent if shard in nodes else None
        while cur is not None and cur in nodes:
            if nodes[cur].kind == "host":
                host = cur
                break
            cur = nodes[cur].parent
        key = (source, host)
        worst[key] = max(worst.get(key, skew), skew)
    for (source, host), skew in sorted(worst.items(), key=lambda kv: -kv[1])[:SKEW_SERIES]:
        g.add_metric([source, host], round(skew, 3))
    return g


@dataclass(frozen=True, slots=True)
class LiveView:
    """What the event loop owns, copied on the loop for one render (the render runs in a thread)."""

    ready: bool
    health: tuple[SourceHealth, ...]
    transport: TransportStats
    event_requests: tuple[tuple[tuple[str, str], int], ...]
    feed: tuple[float, float, float, float] | None  # sent, retried, failed, dropped

    @classmethod
    def of(cls, st: Status, now: float) -> LiveView:
        health = tuple(
            SourceHealth(h.name, h.up, dict(h.polls), h.last_success_ts, h.last_error, [], h.frames)
            for _n, h in sorted(st.health.items())
        )
        feed = st.feed
        counts = None
        if feed is not None:
            sent, retried, failed, dropped = (float(getattr(feed, k, 0)) for k in FEED_OUTCOMES)
            counts = (sent, retried, failed, dropped)
        return cls(
            ready=not st.not_ready_reasons(now),
            health=health,
            transport=st.transport.stats(),
            event_requests=tuple(sorted(st.event_requests.items())),
            feed=counts,
        )


class _StatusCollector(Collector):
    def __init__(self, status: Status) -> None:
        self.status = status
        self.frame: tuple[PipelineSnapshot, LiveView] | None = None  # what the render in progress reads

    def collect(self) -> Iterator[Metric]:
        st = self.status
        now = time.time()
        p, live = self.frame if self.frame is not None else (st.snapshot, LiveView.of(st, now))
        asm = p.stats

        yield build_info_family()
        yield GaugeMetricFamily("tessera_ready", "1 when /readyz answers 200.", value=1.0 if live.ready else 0.0)
        yield CounterMetricFamily("tessera_windows_processed", "Detector windows processed.", value=p.windows_processed)
        yield GaugeMetricFamily(
            "tessera_window_index", "Index of the last processed window.", value=float(p.table.window)
        )
        lag = 0.0
        if p.table.window >= 0 and math.isfinite(asm.watermark):
            lag = max(0.0, asm.watermark - p.table.end_ts - p.cfg.window.grace_s)
        yield GaugeMetricFamily(
            "tessera_window_lag_seconds",
            "Event time between the newest frame and the end of the last processed window, beyond the lateness grace.",
            value=lag,
        )
        yield GaugeMetricFamily(
            "tessera_window_length_seconds",
            "Detector window length in force (measured from the poll cadence when auto).",
            value=p.window_length_s,
        )
        cad = p.observed_cadence_s
        yield GaugeMetricFamily(
            "tessera_sample_interval_seconds",
            "Median over shards of each shard's own sample interval.",
            value=cad if math.isfinite(cad) else 0.0,
        )
        yield GaugeMetricFamily(
            "tessera_window_shorter_than_cadence",
            "1 when the configured window is shorter than the sources' cadence "
            '(most windows hold no sample; set window.length_s = "auto").',
            value=1.0 if p.window_too_short else 0.0,
        )
        yield CounterMetricFamily("tessera_frames_ingested", "Frames accepted into a window.", value=asm.frames)
        yield CounterMetricFamily(
            "tessera_frames_late", "Frames that arrived after their window closed.", value=asm.late
        )
        tstats = live.transport
        dropped = CounterMetricFamily("tessera_frames_dropped", "Frames dropped, by reason.", labels=["reason"])
        dropped.add_metric(["transport_full"], tstats.dropped_frames)
        dropped.add_metric(["unknown_shard"], asm.unknown_shard)
        dropped.add_metric(["malformed"], tstats.dead_lettered)
        dropped.add_metric(["clock_skew"], asm.future)
        yield dropped
        yield clock_skew(p, now)
        requests = CounterMetricFamily(
            "tessera_event_requests",
            "Event POST requests answered, by route and status code (every refusal counted).",
            labels=["route", "code"],
        )
        for (route, code), n in live.event_requests:
            requests.add_metric([route, code], n)
        yield requests
        rejected = CounterMetricFamily(
            "tessera_values_rejected",
            "Window values outside their metric's plausible range (window.plausible), treated as missing, by reason.",
            labels=["reason"],
        )
        for reason in VALUE_REASONS:
            rejected.add_metric([reason], p.stats.rejected.get(reason, 0))
        yield rejected
        yield CounterMetricFamily("tessera_samples_missing", "Shard-windows with no sample.", value=asm.missing_samples)
        yield GaugeMetricFamily(
            "tessera_transport_queued_frames", "Frames waiting in the transport.", value=tstats.queued_frames
        )

        yield from source_families({h.name: h for h in live.health})

        t = p.table
        shards = GaugeMetricFamily("tessera_shards", "Shards by state.", labels=["state"])
        n = len(p.shards)
        if t.window >= 0 and n:
            lost = len(t.lost)
            stale = int(t.stale.sum())
            warming = int((~t.warm.all(axis=1) & ~t.stale).sum())
            shards.add_metric(["reporting"], float(int(t.present.sum()) - lost))
            shards.add_metric(["stale"], float(stale))
            shards.add_metric(["warming"], float(warming))
            shards.add_metric(["lost"], float(lost))
        else:
            for s in ("reporting", "stale", "warming", "lost"):
                shards.add_metric([s], 0.0)
        yield shards
        yield GaugeMetricFamily(
            "tessera_threshold_log", "Log-evidence threshold of the shard detectors.", value=p.threshold_log
        )

        active = p.active
        by_cls = GaugeMetricFamily("tessera_firings_active", "Active firings.", labels=["classification", "scope"])
        counts: dict[tuple[str, str], int] = {}
        for f in active:
            counts[(f.classification, f.scope)] = counts.get((f.classification, f.scope), 0) + 1
        for c in sorted(CLASSIFICATIONS):
            counts.setdefault((c, "shard"), 0)
        for (c, s), k in sorted(counts.items()):
            by_cls.add_metric([c, s], float(k))
        yield by_cls
        one = GaugeMetricFamily(
            "tessera_firing_active",
            "1 per active firing (bounded by the active set).",
            labels=[
                "id",
                "target",
                "scope",
                "classification",
                "detector",
                "metric",
                "host",
                "rack",
                "cooling_zone",
                "cohort",
            ],
        )
        for f in active:
            labels = labels_of(p, f.target)
            one.add_metric(
                [
                    f.id,
                    f.target,
                    f.scope,
                    f.classification,
                    f.detector,
                    f.metric or "",
                    labels.get("host", ""),
                    labels.get("rack", ""),
                    labels.get("cooling_zone", ""),
                    labels.get("cohort", ""),
                ],
                1.0,
            )
        yield one
        opened = CounterMetricFamily("tessera_firings_opened", "Firings opened.", labels=["classification", "detector"])
        for (c, d), k in sorted(p.opened_total.items()):
            opened.add_metric([c, d], k)
        yield opened
        resolved = CounterMetricFamily("tessera_firings_resolved", "Firings resolved.", labels=["classification"])
        for c, k in sorted(p.resolved_total.items()):
            resolved.add_metric([c], k)
        yield resolved
        yield from evidence_families(p)
        yield from _events(p, live, now)


def _events(p: PipelineSnapshot, live: LiveView, now: float) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        "tessera_cluster_events", "Announced cluster events held in the event book.", value=float(len(p.events))
    )
    yield GaugeMetricFamily(
        "tessera_event_frozen_shards",
        "Shards inside an announced event's freeze window (baselines frozen).",
        value=float(len(p.events.frozen_now)),
    )
    out = CounterMetricFamily("tessera_verdict_feed", "DeploySignal verdict-group feed outcomes.", labels=["outcome"])
    for k, outcome in enumerate(FEED_OUTCOMES):
        out.add_metric([outcome], live.feed[k] if live.feed is not None else 0.0)
    yield out


class MetricsRenderer:
    def __init__(self, status: Status) -> None:
        disable_created_metrics()  # type: ignore[no-untyped-call]  # `_created` samples add no operator value
        self.registry = CollectorRegistry(auto_describe=False)
        self.window_duration = Histogram(
            "tessera_window_duration_seconds",
            "Wall time to process one detector window.",
            buckets=WINDOW_BUCKETS,
            registry=self.registry,
        )
        self.poll_duration = Histogram(
            "tessera_source_poll_duration_seconds",
            "Wall time of one source poll.",
            ["source"],
            buckets=POLL_BUCKETS,
            registry=self.registry,
        )
        self._collector = _StatusCollector(status)
        self.registry.register(self._collector)
        self._lock = threading.Lock()
        self._key: tuple[int, LiveView] | None = None
        self._rendered_at = -math.inf
        ProcessCollector(registry=self.registry)  # process_* series: memory, CPU, file descriptors
        self.status = status

    def render(self) -> bytes:
        """Render now, on the calling thread (start-up, shutdown, tests)."""
        self._drain_polls()
        now = time.time()
        return self._render(self.status.snapshot, LiveView.of(self.status, now))

    async def render_async(self) -> bytes:
        """Copy the loop-owned parts on the loop, render in a worker thread; skipped (the cached bytes
        returned) when neither the snapshot nor the live view changed since the last render."""
        self._drain_polls()
        snap, live = self.status.snapshot, LiveView.of(self.status, time.time())
        fresh = time.monotonic() - self._rendered_at < MAX_CACHE_S  # other collectors' counters age too
        if fresh and self._key == (snap.version, live) and self.status.metrics_bytes:
            return self.status.metrics_bytes
        return await asyncio.to_thread(self._render, snap, live)

    def _drain_polls(self) -> None:
        for name, h in self.status.health.items():
            child = self.poll_duration.labels(name)
            for d in h.durations:
                child.observe(d)
            h.durations.clear()

    def _render(self, snap: PipelineSnapshot, live: LiveView) -> bytes:
        with self._lock:  # one render at a time: the collector reads one (snapshot, live view) pair
            self._collector.frame = (snap, live)
            try:
                data = generate_latest(self.registry)
            finally:
                self._collector.frame = None
            self._key = (snap.version, live)
            self._rendered_at = time.monotonic()
            self.status.metrics_bytes = data
        return data
