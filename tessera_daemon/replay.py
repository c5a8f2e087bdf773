"""Offline replay: the very same pipeline over recorded frames, deterministic.

Reads a topology (contract 2) and frames (contract 1, JSON lines, in time order), optionally cluster
events (contract 3), and writes every firing transition as a JSON line (state "open" when it opens,
"resolved" when it resolves). The same input gives byte-identical output. Malformed frame lines are
dead-lettered to ``<out>.dead-letter.jsonl`` with their line number and reason, and counted.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from tessera_daemon.config import Config
from tessera_daemon.engine.pipeline import Pipeline, WindowResult
from tessera_daemon.errors import CodecError
from tessera_daemon.model import ClusterEvent, Frame, Topology

BATCH = 2048


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
        batch: list[Frame] = []
        for n, line in enumerate(src, 1):
            text = line.strip()
            if not text:
                continue
            try:
                batch.append(Frame.from_json(text))
            except CodecError as exc:
                summary.dead_letters += 1
                if dead is None:
                    dead = dead_path.open("w", encoding="utf-8")
                dead.write(json.dumps({"line": n, "reason": str(exc), "payload": text[:4096]}) + "\n")
                continue
            if len(batch) >= BATCH:
                _run(pipeline, batch, out, summary)
                batch = []
        _run(pipeline, batch, out, summary)
        for r in pipeline.flush():
            _write(r, out, summary)
    if dead is not None:
        dead.close()
    summary.late = pipeline.assembler.stats.late
    summary.unknown_shard = pipeline.assembler.stats.unknown_shard
    summary.window_s = pipeline.window_length_s
    return summary


def _run(pipeline: Pipeline, batch: list[Frame], out: IO[str], summary: ReplaySummary) -> None:
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
