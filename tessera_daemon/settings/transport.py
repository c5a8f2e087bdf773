"""Settings of the transport between pollers and detectors: the ``[transport]`` table.

``kind``, ``capacity`` and ``batch_max`` serve the embedded in-memory transport. The sub-tables serve
the agent / detector split: ``[transport.redis]`` (connection, key namespace, stream bounds),
``[transport.breaker]`` (reconnect backoff and circuit breaker), ``[transport.agent]`` (the bounded
buffer that rides out a Redis outage), ``[transport.detector]`` (consumer group, leases, checkpoints)
and ``[transport.mqtt]`` (broker, frame topics, firing publication).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import urlsplit

from tessera_daemon.errors import ConfigError
from tessera_daemon.settings import setting

MIN_AGENT_BUFFER_DOC = "at least 5 minutes of a 64-shard host at 1 Hz is 19,200 frames"


@dataclass(frozen=True, slots=True)
class RedisSettings:
    url: str = setting("redis://127.0.0.1:6379/0", doc="redis:// or rediss:// URL (any node of a Cluster)")
    cluster: bool = setting(False, doc="talk to a Redis Cluster (keys carry {partition} hash tags)")
    prefix: str = setting("tessera", doc="key namespace: <prefix>:{<partition>}:frames, <prefix>:firings, ...")
    group: str = setting("tessera-detectors", doc="consumer group of the detector workers")
    stream_maxlen: int = setting(
        100_000, lo=100, hi=100_000_000, doc="MAXLEN ~ of each partition stream, entries (one per host per poll)"
    )
    firings_maxlen: int = setting(100_000, lo=100, hi=100_000_000, doc="MAXLEN ~ of the firings stream")
    deadletter_maxlen: int = setting(10_000, lo=10, hi=10_000_000, doc="MAXLEN ~ of the dead-letter stream")
    windows_maxlen: int = setting(
        100_000, lo=10, hi=100_000_000, doc="MAXLEN ~ of each partition's committed-window log"
    )
    socket_timeout_s: float = setting(5.0, lo=0.05, hi=600.0, doc="per-command socket timeout")
    connect_timeout_s: float = setting(2.0, lo=0.05, hi=600.0, doc="connection timeout")

    def __post_init__(self) -> None:
        problem = redis_url_problem(self.url)
        if problem:
            raise ConfigError("transport.redis.url", problem)


def redis_url_problem(url: str) -> str | None:
    """Why redis-py could not connect to ``url`` as written (None when it is well-formed): the scheme,
    the port and the database number are checked; the password is never echoed."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return f"not a valid URL ({exc})"
    shown = parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()
    if parts.scheme not in {"redis", "rediss", "unix"}:
        return f"expected redis://host:port/db, rediss://... or unix:///path, got {shown!r}"
    if parts.scheme == "unix":
        return None if parts.path else f"a unix:// URL needs the socket path, got {shown!r}"
    if not parts.hostname:
        return f"no host in {shown!r}"
    if port == 0:
        return f"port 0 in {shown!r}"
    db = parts.path.strip("/")
    if db and not db.isdigit():
        return f"the database (the path) must be a number, got {db!r} in {shown!r}"
    return None


@dataclass(frozen=True, slots=True)
class BreakerSettings:
    failures: int = setting(3, lo=1, hi=1000, doc="consecutive failures that open the circuit breaker")
    backoff_base_s: float = setting(0.2, lo=0.001, hi=60.0, doc="first reconnect delay (doubles per failure)")
    backoff_cap_s: float = setting(15.0, lo=0.01, hi=3600.0, doc="largest reconnect delay")


@dataclass(frozen=True, slots=True)
class AgentSettings:
    id: str = setting("", doc="agent id in the registry and entry sources; empty: the host name")
    buffer_frames: int = setting(
        200_000,
        lo=1,
        hi=100_000_000,
        doc=f"frames held while Redis is unreachable; oldest dropped (counted) past it; {MIN_AGENT_BUFFER_DOC}",
    )
    pipeline_entries: int = setting(1000, lo=1, hi=100_000, doc="XADDs sent per round trip")
    topology_refresh_s: float = setting(60.0, lo=0.1, hi=86_400.0, doc="re-read and re-publish the topology")
    ready_buffer_fraction: float = setting(
        0.5, lo=0.0, hi=1.0, doc="not ready while the buffer is fuller than this fraction"
    )


@dataclass(frozen=True, slots=True)
class WorkerSettings:
    id: str = setting("", doc="consumer name; empty: <host>-<pid>-<random>")
    read_count: int = setting(1000, lo=1000, hi=1_000_000, doc="XREADGROUP COUNT per partition read")
    block_ms: int = setting(200, lo=1, hi=60_000, doc="XREADGROUP BLOCK when every partition is drained")
    lease_ms: int = setting(10_000, lo=200, hi=3_600_000, doc="partition lease (SET NX PX) time to live")
    heartbeat_ms: int = setting(2_000, lo=50, hi=600_000, doc="lease renewal / rebalance period (< lease_ms / 2)")
    claim_idle_ms: int = setting(
        5_000, lo=0, hi=3_600_000, doc="XAUTOCLAIM min idle time of a dead worker's pending entries"
    )
    checkpoint_windows: int = setting(12, lo=1, hi=1_000_000, doc="checkpoint every N committed windows")
    idle_close_s: float = setting(
        30.0, lo=0.0, hi=86_400.0, doc="wall seconds without entries before a partition's open windows close; 0: never"
    )
    fleet_shards: int = setting(0, lo=0, hi=100_000_000, doc="shards in the fleet for the threshold; 0: registry")
    max_lag_entries: int = setting(100_000, lo=1, hi=1_000_000_000, doc="not ready above this stream lag")
    max_dedupe_sources: int = setting(4096, lo=1, hi=10_000_000, doc="agent instances remembered per partition")

    def __post_init__(self) -> None:
        # a lease is trusted locally for 0.8 x lease_ms after each renewal: renew well before that
        if 2 * self.heartbeat_ms > self.lease_ms:
            raise ConfigError(
                "transport.detector.heartbeat_ms",
                f"must be at most half of lease_ms ({self.lease_ms}), got {self.heartbeat_ms}",
            )


@dataclass(frozen=True, slots=True)
class MqttSettings:
    host: str = setting("127.0.0.1", doc="MQTT broker host")
    port: int = setting(1883, lo=1, hi=65535, doc="MQTT broker port")
    username: str = setting("", doc="empty: anonymous")
    password_file: str = setting("", doc="file holding the password; empty: none")
    client_id: str = setting("", doc="empty: tessera-<role>-<host>-<pid>")
    keepalive_s: int = setting(30, lo=1, hi=65535, doc="MQTT keepalive interval")
    topic_prefix: str = setting(
        "tessera", doc="topics: <prefix>/<cluster>/frames/<shard>, <prefix>/<cluster>/firings/<scope>/<target>"
    )
    publish_firings: bool = setting(False, doc="the detector publishes firings (QoS 1, retained per target)")
    qos: int = setting(1, lo=0, hi=2, doc="QoS of firing publications and frame subscriptions")
    buffer_frames: int = setting(100_000, lo=1, hi=100_000_000, doc="frames the MQTT source holds between polls")
    publish_queue: int = setting(10_000, lo=1, hi=10_000_000, doc="firing states queued while the broker is down")
    backoff_base_s: float = setting(0.2, lo=0.001, hi=60.0, doc="first reconnect delay")
    backoff_cap_s: float = setting(15.0, lo=0.01, hi=3600.0, doc="largest reconnect delay")


@dataclass(frozen=True, slots=True)
class TransportConfig:
    kind: Literal["memory", "redis"] = setting(
        "memory", doc="memory: the all-in-one `run`; redis: the agent / detector split over Redis Streams"
    )
    capacity: int = setting(200_000, lo=1, hi=100_000_000, doc="in-memory queue bound, frames")
    batch_max: int = setting(4096, lo=1, hi=1_000_000, doc="frames taken per receive")
    redis: RedisSettings = field(default_factory=RedisSettings)
    breaker: BreakerSettings = field(default_factory=BreakerSettings)
    agent: AgentSettings = field(default_factory=AgentSettings)
    detector: WorkerSettings = field(default_factory=WorkerSettings)
    mqtt: MqttSettings = field(default_factory=MqttSettings)
