"""One Redis connection (standalone or Cluster) behind a circuit breaker, with its health.

Every Redis call of the agent and the detector goes through :meth:`RedisLink.call`, which refuses at
once while the breaker is open, maps connection-level failures (refused, reset, timeout, ``LOADING``
while an AOF is replayed, Cluster down) to :class:`~tessera_daemon.errors.TransportError`, and keeps
``up`` / ``reconnects`` for /metrics and /readyz. redis-py's own retries are switched off: the breaker
owns the backoff, so an outage is seen, counted and ridden out in one place. The client reconnects
by itself on the next call once Redis answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from redis import exceptions as rex
from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff

from tessera_daemon.errors import TransportError
from tessera_daemon.log import get_logger
from tessera_daemon.settings.transport import BreakerSettings, RedisSettings
from tessera_daemon.transport.breaker import CircuitBreaker

log = get_logger(__name__)
T = TypeVar("T")

DOWN_ERRORS: tuple[type[BaseException], ...] = (
    rex.ConnectionError,  # includes BusyLoadingError (LOADING) and refused / reset connections
    rex.TimeoutError,
    rex.ClusterDownError,
    rex.ClusterError,
    rex.TryAgainError,
    rex.ReadOnlyError,
    rex.MasterDownError,
    OSError,
    TimeoutError,
)


def make_client(settings: RedisSettings) -> Redis | RedisCluster:
    common: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout_s,
        "socket_connect_timeout": settings.connect_timeout_s,
        "retry": Retry(NoBackoff(), 0),
    }
    if settings.cluster:
        return RedisCluster.from_url(settings.url, **common)
    return Redis.from_url(settings.url, **common)


class RedisLink:
    def __init__(self, settings: RedisSettings, breaker: BreakerSettings, *, role: str) -> None:
        self.settings = settings
        self.role = role
        self.client = make_client(settings)
        self.breaker = CircuitBreaker(breaker)
        self.up = False
        self.ever_up = False
        self.reconnects = 0
        self.failures = 0
        self.last_error = ""
        self.down_since: float | None = None
        self.scripts: dict[str, Any] = {}

    @property
    def cluster(self) -> bool:
        return self.settings.cluster

    async def call(self, fn: Callable[[Any], Awaitable[T]]) -> T:
        """Run ``fn(client)``; TransportError when the breaker is open or Redis is unreachable."""
        if not self.breaker.allow():
            raise TransportError(f"redis circuit breaker open ({self.last_error})")
        try:
            result = await fn(self.client)
        except DOWN_ERRORS as exc:
            self._failed(exc)
            raise TransportError(f"redis: {type(exc).__name__}: {exc}") from exc
        self._succeeded()
        return result

    def script(self, name: str, source: str) -> Any:
        """A registered Lua script (EVALSHA with EVAL fallback), cached by name."""
        s = self.scripts.get(name)
        if s is None:
            s = self.scripts[name] = self.client.register_script(source)
        return s

    def _failed(self, exc: BaseException) -> None:
        self.failures += 1
        self.last_error = f"{type(exc).__name__}: {exc}"[:300]
        was_up = self.up
        self.up = False
        self.breaker.record_failure()
        if was_up or self.down_since is None:
            self.down_since = time.time()
            log.warning(
                "redis unreachable",
                role=self.role,
                error=self.last_error,
                breaker=self.breaker.state,
                retry_in_s=round(self.breaker.remaining_s(), 2),
            )

    def _succeeded(self) -> None:
        self.breaker.record_success()
        if not self.up:
            if self.ever_up:
                self.reconnects += 1
                outage = time.time() - self.down_since if self.down_since else 0.0
                log.info("redis reconnected", role=self.role, outage_s=round(outage, 3), reconnects=self.reconnects)
            self.up = True
            self.ever_up = True
            self.down_since = None

    async def wait_allowed(self, stop: asyncio.Event | None = None) -> None:
        """Sleep until the breaker lets a probe through (or ``stop`` is set)."""
        delay = self.breaker.remaining_s()
        if delay <= 0:
            return
        if stop is None:
            await asyncio.sleep(delay)
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), delay)

    async def close(self) -> None:
        try:
            await self.client.aclose()
        except Exception as exc:  # closing must never raise
            log.debug("redis close failed", role=self.role, error=str(exc))
