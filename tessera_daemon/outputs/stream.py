"""Firings on the ``<prefix>:firings`` Redis stream (contract 4 JSON, one entry per state change).

Entry fields: ``partition`` (token), ``window`` (index of the window that produced the change),
``id`` (firing id), ``state`` (``open`` or ``resolved``), ``firing`` (the contract-4 JSON object as
of that window). The detector appends them inside its window commit (see ``split/partition.py``):
exactly once with a standalone Redis, at least once under Redis Cluster (consumers dedupe by
``(id, state)``). :func:`read_firings` is the consumer side used by tools and tests.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tessera_daemon.errors import CodecError


@dataclass(frozen=True, slots=True)
class FiringEvent:
    entry_id: str
    partition: str
    window: int
    id: str
    state: str
    firing: dict[str, Any]


def _text(fields: Mapping[Any, Any], name: str) -> str:
    v = fields.get(name.encode(), fields.get(name))
    if v is None:
        raise CodecError(f"firing entry: missing field {name!r}")
    return v.decode() if isinstance(v, bytes) else str(v)


def decode_event(entry_id: Any, fields: Mapping[Any, Any]) -> FiringEvent:
    try:
        obj = json.loads(_text(fields, "firing"))
    except ValueError as exc:
        raise CodecError(f"firing entry: not valid JSON ({exc})") from exc
    if not isinstance(obj, dict):
        raise CodecError("firing entry: firing is not an object")
    eid = entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)
    return FiringEvent(
        eid, _text(fields, "partition"), int(_text(fields, "window")), _text(fields, "id"), _text(fields, "state"), obj
    )


async def read_firings(client: Any, key: str, *, count: int = 10_000) -> list[FiringEvent]:
    """Every firing event on the stream ``key``, oldest first (XRANGE in pages)."""
    out: list[FiringEvent] = []
    start = "-"
    while True:
        page = await client.xrange(key, start, "+", count=count)
        if not page:
            return out
        for entry_id, fields in page:
            out.append(decode_event(entry_id, fields))
        last = page[-1][0]
        start = "(" + (last.decode() if isinstance(last, bytes) else str(last))
        if len(page) < count:
            return out
