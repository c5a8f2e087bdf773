"""Offline replay: the very same pipeline over recorded frames, deterministic.

Reads a topology (contract 2) and frames (contract 1, JSON lines, in time order), optionally cluster
events (contract 3), and writes every firing transition as a JSON line (state "open" when it opens,
"resolved" when it resolves). The same input gives byte-identical output. Malformed frame lines are
dead-lettered to ``<out>.dead-letter.jsonl`` with their line number and reason, and counted.

Frames are parsed with msgspec into a typed struct and gathered straight into one
:class:`~tessera_daemon.model.FrameBlock` per batch of :data:`BATCH` frames (no :class:`Frame`
objects). A line the typed decoder refuses, or that breaks a rule it does not check (version, time,
XID range), is handed to :meth:`Frame.from_json`, the contract's own parser: it either accepts the
line (JSON it allows that the struct does not: ``NaN``, ``1.0`` as the version, an integer beyond
float range) or gives the dead letter its reason. Either way a line means what ``Frame.from_json``
says it means (tests/test_replay_parser.py).
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import msgspec
import numpy as np

from tessera_daemon.config import Config
from tessera_daemon.engine.pipeline import Pipeline, WindowResult
from tessera_daemon.errors import CodecError
from tessera_daemon.model import CONTRACT_VERSION, MAX_XID, MAX_XIDS, ClusterEvent, Frame, FrameBlock, Topology

BATCH = 2048


class _FrameMsg(msgspec.Struct):
    """Contract 1 as a typed struct; unknown fields are ignored, as ``Frame.from_obj`` ignores them."""

    v: int
    ts: float
    shard: str
    metrics: dict[str, float | None] = {}
    counters: list[str] = []
    xid: int | list[int] = []
    lost: bool = False


_DECODER = msgspec.json.Decoder(_FrameMsg)


class BlockBuilder:
    """Frames gathered into arrays for one :class:`FrameBlock` (in arrival order)."""

    def __init__(self) -> None:
        self._reset()

    def _reset(self) -> None:
        self.shards: list[str] = []
        self.ts: list[float] = []
        self.metrics: list[dict[str, float | None]] = []
        self.counters: list[frozenset[str]] = []
        self.xids: dict[int, tuple[int, ...]] = {}
        self.lost: set[int] = set()
        self._layout: tuple[str, ...] | None = None
        self._mixed = False
        self._cset: dict[tuple[str, ...], frozenset[str]] = {}
        self._last_c: list[str] | None = None
        self._last_fc = frozenset[str]()

    def __len__(self) -> int:
        return len(self.shards)

    def add_msg(self, m: _FrameMsg) -> bool:
        """Add a decoded line; False (nothing added) when it breaks a rule of ``Frame.from_obj`` that the
        struct does not check: the caller then asks ``Frame.from_json``."""
        ts, xid = m.ts, m.xid
        if m.v != CONTRACT_VERSION or not (0.0 <= ts < math.inf) or not m.shard:
            return False
        if isinstance(xid, int):
            if not 0 <= xid <= MAX_XID:
                return False
            codes: tuple[int, ...] = (xid,)
        else:
            if len(xid) > MAX_XIDS or not all(0 <= x <= MAX_XID for x in xid):
                return False
            codes = tuple(xid)
        c = m.counters
        if c != self._last_c:
            key = tuple(c)
            fc = self._cset.get(key)
            if fc is None:
                fc = self._cset[key] = frozenset(c)
            self._last_c, self._last_fc = c, fc
        self._append(m.shard, ts, m.metrics, self._last_fc, codes, m.lost)
        return True

    def add_frame(self, f: Frame) -> None:
        self._append(f.shard, f.ts, dict(f.metrics), f.counters, f.xid, f.lost)

    def _append(
        self,
        shard: str,
        ts: float,
        metrics: dict[str, float | None],
        counters: frozenset[str],
        xid: tuple[int, ...],
        lost: bool,
    ) -> None:
        i = len(self.shards)
        self.shards.append(shard)
        self.ts.append(ts)
        self.metrics.append(metrics)
        self.counters.append(counters)
        if xid:
            self.xids[i] = xid
        if lost:
            self.lost.add(i)
        if not self._mixed:
            layout = tuple(metrics)
            if layout != self._layout:
                self._mixed = self._layout is not None
                self._layout = layout

    def block(self) -> FrameBlock:
        """The block of the frames gathered so far (then empty again)."""
        n, mds = len(self.shards), self.metrics
        absent = None
        if not self._mixed:
            names = list(self._layout or ())
            values = np.array([list(md.values()) for md in mds], np.float64).reshape(n, len(names))
        else:
            cols: dict[str, None] = {}
            for md in mds:
                cols.update(dict.fromkeys(md))
            names = list(cols)
            nan = math.nan
            values = np.array([[md.get(k, nan) for k in names] for md in mds], np.float64).reshape(n, len(names))
            absent = np.array([[k not in md for k in names] for md in mds], np.bool_).reshape(n, len(names))
            if not absent.any():
                absent = None
        if not np.isfinite(values).all():
            values[~np.isfinite(values)] = np.nan
        cs = self.counters
        first = cs[0] if cs else frozenset[str]()
        counters: frozenset[str] | list[frozenset[str]] = first
        if any(c is not first and c != first for c in cs):
            counters = cs
        out = FrameBlock(
            self.shards, np.array(self.ts, np.float64), names, values, absent, counters, self.xids, self.lost
        )
        self._reset()  # empty again, for the next batch
        return out


@dataclass(frozen=True, slots=True)
class DeadLine:
    line: int
    reason: str
    payload: str


def read_blocks(lines: Iterable[str], batch: int = BATCH) -> Iterator[FrameBlock | DeadLine]:
    """Frame lines (contract 1) as blocks of ``batch`` frames, and a :class:`DeadLine` for each line
    ``Frame.from_json`` refuses, in input order (a block is yielded once it is full, and at the end)."""
    builder = BlockBuilder()
    decode = _DECODER.decode
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            ok = builder.add_msg(decode(text))
        except (msgspec.ValidationError, msgspec.DecodeError):
            ok = False
        if not ok:
            try:
                builder.add_frame(Frame.from_json(text))
            except CodecError as exc:
                yield DeadLine(n, str(exc), text[:4096])
                continue
        if len(builder) >= batch:
            yield builder.block()
    if len(builder):
        yield builder.block()


@dataclass(slots=True)
class ReplaySummary:
    frames: int = 0
    dead_letters: int = 0
    windows: int = 0
    opened: int = 0
    resolved: int = 0
    events: int = 0
    late: int = 0
    unknown_shard: int = 0
    window_s: float = 0.0  # the window length in force (measured when window.length_s is auto)
    by_classification: dict[str, int] = field(default_factory=dict)

    def to_obj(self) -> dict[str, object]:
        return {k: getattr(self, k) for k in self.__slots__}


def load_events(path: Path | None) -> list[ClusterEvent]:
    if path is None:
        return []
    out = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(ClusterEvent.from_json(line))
            except CodecError as exc:
                raise CodecError(f"{path}:{n}: {exc}") from exc
    return sorted(out, key=lambda e: (e.ts, e.id))


def replay(
    cfg: Config, frames_path: Path, topology_path: Path, out_path: Path, events_path: Path | None = None
) -> ReplaySummary:
    topology = Topology.from_json(topology_path.read_bytes())
    events = load_events(events_path)
    pipeline = Pipeline(cfg, topology)
    for ev in events:
        added = pipeline.events.add(ev, source="replay")
        if not added.ok:
            raise CodecError(f"event {ev.id}: {added.reason}")
    summary = ReplaySummary(events=len(events))
    dead_path = out_path.with_name(out_path.name + ".dead-letter.jsonl")
    dead: IO[str] | None = None
    with frames_path.open(encoding="utf-8") as src, out_path.open("w", encoding="utf-8") as out:
        for item in read_blocks(src):
            if isinstance(item, DeadLine):
                summary.dead_letters += 1
                if dead is None:
                    dead = dead_path.open("w", encoding="utf-8")
                dead.write(json.dumps({"line": item.line, "reason": item.reason, "payload": item.payload}) + "\n")
                continue
            _run(pipeline, item, out, summary)
        for r in pipeline.flush():
            _write(r, out, summary)
    if dead is not None:
        dead.close()
    summary.late = pipeline.assembler.stats.late
    summary.unknown_shard = pipeline.assembler.stats.unknown_shard
    summary.window_s = pipeline.window_length_s
    return summary


def _run(pipeline: Pipeline, batch: FrameBlock, out: IO[str], summary: ReplaySummary) -> None:
    summary.frames += len(batch)
    pipeline.ingest(batch)
    for r in pipeline.advance():
        _write(r, out, summary)


def _write(r: WindowResult, out: IO[str], summary: ReplaySummary) -> None:
    summary.windows += 1
    for f in r.opened:
        out.write(f.to_json() + "\n")
        summary.opened += 1
        summary.by_classification[f.classification] = summary.by_classification.get(f.classification, 0) + 1
    for f in r.resolved:
        out.write(f.to_json() + "\n")
        summary.resolved += 1
