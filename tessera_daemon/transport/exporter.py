"""Prometheus collectors of the Redis / MQTT transport (agent and detector worker).

They read live objects (the link, the transport, the worker's counters) at render time and are
registered on the private registry of each process's renderer; nothing here touches the network.
Series (docs/metrics.md, mode ``redis``): see each ``collect``.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from tessera_daemon.transport.codec import REASONS
from tessera_daemon.transport.link import RedisLink
from tessera_daemon.transport.mqtt import MqttHealth

CHECKPOINT_OUTCOMES = ("written", "write_failed", "restored", "refused", "fenced")
RELEASE_REASONS = ("rebalance", "lost", "shutdown")
EVENT_LOG_OUTCOMES = ("relayed", "read", "undecodable")


class LinkCollector(Collector):
    def __init__(self, link: RedisLink) -> None:
        self.link = link

    def collect(self) -> Iterator[Metric]:
        yield GaugeMetricFamily(
            "tessera_redis_up", "1 when the last Redis command succeeded.", value=1.0 if self.link.up else 0.0
        )
        yield CounterMetricFamily(
            "tessera_redis_reconnects", "Times Redis answered again after failing.", value=self.link.reconnects
        )
        yield GaugeMetricFamily(
            "tessera_breaker_open",
            "1 while the Redis circuit breaker is open or half-open.",
            value=1.0 if self.link.breaker.is_open else 0.0,
        )


@dataclass(slots=True)
class WorkerCounters:
    checkpoints: Counter[str] = field(default_factory=Counter)
    last_checkpoint_ts: float = 0.0
    acquisitions: int = 0
    releases: Counter[str] = field(default_factory=Counter)
    windows: Counter[str] = field(default_factory=Counter)  # committed / skipped (already committed)
    firings_published: Counter[str] = field(default_factory=Counter)  # redis_stream / mqtt
    duplicates: int = 0
    events: Counter[str] = field(default_factory=Counter)  # event log: relayed / read / undecodable / applied
    window_errors: int = 0  # windows whose processing raised (committed without results)


@dataclass(frozen=True, slots=True)
class StreamLevels:
    stream: str
    lag: int
    pending: int


class WorkerCollector(Collector):
    def __init__(
        self,
        counters: WorkerCounters,
        levels: Callable[[], list[StreamLevels]],
        transport_extra: Callable[[], tuple[Counter[str], int, int]],
        owned: Callable[[], int],
    ) -> None:
        self.counters = counters
        self.levels = levels
        self.transport_extra = transport_extra
        self.owned = owned

    def collect(self) -> Iterator[Metric]:
        c = self.counters
        lag = GaugeMetricFamily(
            "tessera_stream_lag_entries",
            "Entries of a partition stream not yet delivered to the consumer group.",
            labels=["stream"],
        )
        pending = GaugeMetricFamily(
            "tessera_stream_pending_entries",
            "Entries delivered to this worker and not yet acknowledged (awaiting a checkpoint).",
            labels=["stream"],
        )
        for lv in self.levels():
            lag.add_metric([lv.stream], float(lv.lag))
            pending.add_metric([lv.stream], float(lv.pending))
        yield lag
        yield pending
        ck = CounterMetricFamily("tessera_checkpoints", "Checkpoint operations, by outcome.", labels=["outcome"])
        for o in CHECKPOINT_OUTCOMES:
            ck.add_metric([o], c.checkpoints.get(o, 0))
        yield ck
        yield GaugeMetricFamily(
            "tessera_checkpoint_last_success_timestamp_seconds",
            "Unix time of the last checkpoint written.",
            value=c.last_checkpoint_ts,
        )
        dead, entries, trimmed = self.transport_extra()
        dl = CounterMetricFamily(
            "tessera_dead_letters",
            "Malformed stream entries sent to the dead-letter stream, by reason.",
            labels=["reason"],
        )
        for r in REASONS:
            dl.add_metric([r], dead.get(r, 0))
        yield dl
        yield CounterMetricFamily(
            "tessera_window_errors",
            "Windows whose processing raised an error (committed without results; the worker goes on).",
            value=c.window_errors,
        )
        yield CounterMetricFamily(
            "tessera_stream_entries", "Host entries decoded from the partition streams.", value=entries
        )
        yield CounterMetricFamily(
            "tessera_stream_duplicate_entries", "Entries dropped as re-sent duplicates.", value=c.duplicates
        )
        yield CounterMetricFamily(
            "tessera_stream_trimmed_entries",
            "Pending entries whose data was trimmed (MAXLEN) before they could be read.",
            value=trimmed,
        )
        yield GaugeMetricFamily(
            "tessera_partitions_owned", "Partitions this worker holds a lease for.", value=float(self.owned())
        )
        yield CounterMetricFamily("tessera_partition_acquisitions", "Partition leases acquired.", value=c.acquisitions)
        rel = CounterMetricFamily("tessera_partition_releases", "Partitions given up, by reason.", labels=["reason"])
        for r in RELEASE_REASONS:
            rel.add_metric([r], c.releases.get(r, 0))
        yield rel
        win = CounterMetricFamily(
            "tessera_windows_committed",
            "Window commits, by outcome (skipped: already committed before a takeover).",
            labels=["outcome"],
        )
        for o in ("committed", "skipped"):
            win.add_metric([o], c.windows.get(o, 0))
        yield win
        pub = CounterMetricFamily(
            "tessera_firings_published", "Firing state changes published, by output.", labels=["output"]
        )
        for o in ("redis_stream", "mqtt"):
            pub.add_metric([o], c.firings_published.get(o, 0))
        yield pub
        log = CounterMetricFamily(
            "tessera_event_log_entries",
            "Fleet event log entries: relayed (appended by this worker's API), read, undecodable (skipped).",
            labels=["outcome"],
        )
        for o in EVENT_LOG_OUTCOMES:
            log.add_metric([o], c.events.get(o, 0))
        yield log
        yield CounterMetricFamily(
            "tessera_events_applied",
            "Logged cluster events added to (or updated in) a held partition's event book.",
            value=c.events.get("applied", 0),
        )


class MqttCollector(Collector):
    def __init__(self, health: list[MqttHealth]) -> None:
        self.health = health

    def collect(self) -> Iterator[Metric]:
        up = GaugeMetricFamily("tessera_mqtt_up", "1 while connected to the MQTT broker.", labels=["role"])
        rc = CounterMetricFamily("tessera_mqtt_reconnects", "Reconnections to the MQTT broker.", labels=["role"])
        msgs = CounterMetricFamily("tessera_mqtt_messages", "MQTT messages, by outcome.", labels=["role", "outcome"])
        for h in self.health:
            up.add_metric([h.role], 1.0 if h.up else 0.0)
            rc.add_metric([h.role], h.reconnects)
            for outcome, n in sorted(h.messages.items()):
                msgs.add_metric([h.role, outcome], n)
        yield up
        yield rc
        yield msgs
