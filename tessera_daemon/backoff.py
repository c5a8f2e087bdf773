"""The one backoff: capped exponential delays with "equal jitter", for every retry loop.

The n-th delay (n from 0) is drawn from ``[c/2, c]`` with ``c = min(cap_s, base_s * 2**n)``: half
fixed so a retry never hammers, half random so a fleet does not retry in lock-step after an outage.
Used by source supervision, the Redis circuit breaker, the MQTT clients and the verdict feed.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, field

_MAX_DOUBLINGS = 60  # 2**60 times any positive base is past any cap; keeps the float finite


def backoff_ceiling(base_s: float, cap_s: float, attempt: int) -> float:
    """The upper end of the ``attempt``-th delay (``attempt`` from 0)."""
    return min(cap_s, base_s * 2.0 ** min(attempt, _MAX_DOUBLINGS))


@dataclass(slots=True)
class Backoff:
    base_s: float = 0.5
    cap_s: float = 30.0
    attempt: int = 0
    rng: random.Random = field(default_factory=random.Random)

    def next_delay(self) -> float:
        """The delay before the next retry; each call counts one more failed attempt."""
        ceiling = backoff_ceiling(self.base_s, self.cap_s, self.attempt)
        self.attempt += 1
        return ceiling / 2.0 + self.rng.uniform(0.0, ceiling / 2.0)

    def reset(self) -> None:
        """Back to the base delay (after a success)."""
        self.attempt = 0
