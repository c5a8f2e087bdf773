"""Hypothesis strategies of hostile input: JSON values, numbers at the edges, mutated contract objects."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import strategies as st

EDGE_FLOATS = st.sampled_from(
    [
        0.0,
        -0.0,
        1.0,
        -1.0,
        5e-324,
        -5e-324,
        2.2250738585072014e-308,
        1e154,
        1e155,
        -1e155,
        1e300,
        1e308,
        -1e308,
        1.7976931348623157e308,
        math.inf,
        -math.inf,
        math.nan,
        2.0**53,
        2.0**64,
        -(2.0**63),
    ]
)
NUMBERS = st.one_of(
    EDGE_FLOATS,
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(-(2**70), 2**70),
    st.sampled_from([True, False, 10**400, -(10**400)]),
)
SCALARS = st.one_of(st.none(), st.booleans(), NUMBERS, st.text(max_size=12))
JSON = st.recursive(
    SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=16,
)


@st.composite
def mutated(draw: st.DrawFn, base: dict[str, Any], keys: list[str]) -> Any:
    """``base`` with one to three fields replaced by hostile values or removed, or something else entirely."""
    if draw(st.integers(0, 9)) == 0:
        return draw(JSON)
    obj = dict(base)
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(keys))
        if draw(st.integers(0, 4)) == 0:
            obj.pop(key, None)
        else:
            obj[key] = draw(st.one_of(JSON, NUMBERS))
    return obj


def nested(depth: int) -> bytes:
    return b"[" * depth + b"]" * depth
