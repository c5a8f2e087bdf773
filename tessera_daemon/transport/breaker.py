"""Circuit breaker with exponential backoff and jitter, for the Redis link of agents and workers.

Closed: calls go through; ``failures`` consecutive failures open it. Open: calls are refused without
touching the network until the cool-off ends; the cool-off is the one backoff
(``tessera_daemon.backoff``: doubling with every failed probe from ``backoff_base_s`` up to
``backoff_cap_s``, equal jitter) so a fleet of agents does not reconnect in lock-step after a Redis
restart. Half-open: the next call is a probe;
success closes the breaker (and resets the backoff), failure opens it again for longer.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

from tessera_daemon.backoff import Backoff
from tessera_daemon.settings.transport import BreakerSettings

State = Literal["closed", "open", "half_open"]


@dataclass(slots=True)
class CircuitBreaker:
    settings: BreakerSettings = field(default_factory=BreakerSettings)
    clock: Callable[[], float] = time.monotonic
    rng: random.Random = field(default_factory=random.Random)
    state: State = "closed"
    failures: int = 0
    open_until: float = 0.0
    opened_total: int = 0
    backoff: Backoff = field(init=False)

    def __post_init__(self) -> None:
        self.backoff = Backoff(self.settings.backoff_base_s, self.settings.backoff_cap_s, rng=self.rng)

    @property
    def attempt(self) -> int:
        """Failed probes since the breaker last closed (each one doubles the cool-off, up to the cap)."""
        return self.backoff.attempt

    def allow(self) -> bool:
        """May a call go to the network now? Moves open -> half-open when the cool-off is over."""
        if self.state == "open":
            if self.clock() < self.open_until:
                return False
            self.state = "half_open"
        return True

    def remaining_s(self) -> float:
        if self.state != "open":
            return 0.0
        return max(0.0, self.open_until - self.clock())

    def record_success(self) -> bool:
        """Record a successful call; True when this closed a breaker that was open / half-open."""
        recovered = self.state != "closed"
        self.state = "closed"
        self.failures = 0
        self.backoff.reset()
        return recovered

    def record_failure(self) -> None:
        self.failures += 1
        if self.state == "half_open" or self.failures >= self.settings.failures:
            if self.state != "open":
                self.opened_total += 1
            self.state = "open"
            self.open_until = self.clock() + self.backoff.next_delay()

    @property
    def is_open(self) -> bool:
        """Open or half-open: the link is not trusted yet."""
        return self.state != "closed"
