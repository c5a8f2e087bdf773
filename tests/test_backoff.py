"""The one backoff: doubling from the base to the cap, equal jitter, reset after a success."""

from __future__ import annotations

import random

from tessera_daemon.backoff import Backoff, backoff_ceiling


def test_delays_double_within_equal_jitter_up_to_the_cap() -> None:
    b = Backoff(0.5, 4.0, rng=random.Random(3))
    for ceiling in (0.5, 1.0, 2.0, 4.0, 4.0, 4.0):
        delay = b.next_delay()
        assert ceiling / 2 <= delay <= ceiling
    assert b.attempt == 6
    b.reset()
    assert b.attempt == 0 and 0.25 <= b.next_delay() <= 0.5


def test_jitter_spreads_a_fleet() -> None:
    delays = {Backoff(1.0, 30.0, rng=random.Random(seed)).next_delay() for seed in range(50)}
    assert len(delays) == 50 and min(delays) < 0.6 and max(delays) > 0.9


def test_ceiling_stays_finite_for_any_attempt() -> None:
    assert backoff_ceiling(0.5, 30.0, 10**6) == 30.0
