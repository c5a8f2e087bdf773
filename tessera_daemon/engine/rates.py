"""Monotone counters to rates, with wrap and reset handling (pure functions, no state of their own).

A counter that goes down either wrapped (its previous value was within the top 10% of a 2^32 or 2^64
range) or was reset (driver reload, device re-enumeration): a wrap gives the rate across the wrap,
a reset gives a gap (None), never a spike.
"""

from __future__ import annotations

WRAP_WIDTHS = (32, 64)
WRAP_ZONE = 0.9


def counter_delta(prev: float, cur: float) -> float | None:
    """Increase of a counter from ``prev`` to ``cur``; None when it was reset."""
    if cur >= prev:
        return cur - prev
    for bits in WRAP_WIDTHS:
        top = float(2**bits)
        if WRAP_ZONE * top < prev < top * (1 + 1e-9) and cur < top:
            return (top - prev) + cur
    return None


def counter_rate(prev: float, prev_ts: float, cur: float, cur_ts: float) -> float | None:
    """Per-second rate between two samples; None for a reset or a non-positive interval."""
    elapsed = cur_ts - prev_ts
    if elapsed <= 0:
        return None
    delta = counter_delta(prev, cur)
    return None if delta is None else delta / elapsed
