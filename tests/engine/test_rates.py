from __future__ import annotations

import pytest

from tessera_daemon.engine.rates import counter_delta, counter_rate


def test_monotone_rate() -> None:
    assert counter_rate(1000, 0.0, 1020, 2.0) == pytest.approx(10.0)


def test_wrap_32_and_64() -> None:
    # Tessera's verified example: 4.2e9 -> 50 in 1 s wraps at 2^32
    assert counter_rate(4.2e9, 0.0, 50.0, 1.0) == pytest.approx(94_967_346.0)
    prev = 2.0**64 - 2.0**20  # float64 counters: 2^64 - 1000 is not representable
    assert counter_delta(prev, 500.0) == pytest.approx(2.0**20 + 500.0)


def test_reset_is_a_gap_not_a_spike() -> None:
    assert counter_delta(5_000.0, 10.0) is None
    assert counter_rate(5_000.0, 0.0, 10.0, 1.0) is None


def test_non_positive_interval() -> None:
    assert counter_rate(1.0, 5.0, 2.0, 5.0) is None
