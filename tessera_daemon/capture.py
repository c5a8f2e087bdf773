"""Capture of what the all-in-one daemon saw, and its exact replay.

With ``daemon.capture_path = P``, ``run`` writes gzip-compressed JSON-lines segments ``P.000001.jsonl.gz``,
``P.000002.jsonl.gz``, ... (a new segment once one holds ``daemon.capture_rotate_bytes`` of JSON), one
record per call that changes the detector, in the order the detector made it:

* ``{"k": "topology", "v": <topology contract>}``: at start and whenever the topology is adopted;
* ``{"k": "frames", "v": [<frame contract>, ...]}``: one delivery of frames, exactly as ingested;
* ``{"k": "advance", "w": <watermark or null>}``: windows closed (null: by the frames' own watermark;
  a number: the idle clock closed them at that watermark);
* ``{"k": "event", "v": <event contract>, "source": ...}``: a cluster event accepted.

:func:`replay_capture` makes the same calls on a fresh pipeline, so the firings are the live run's, bit
for bit (``tessera-daemon replay --capture P``). A daemon that resumed from ``daemon.state_dir`` starts
its capture from the checkpoint, which a replay does not have: capture from a fresh start.
"""

from __future__ import annotations

import gzip
import json
import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from tessera_daemon.config import Config
from tessera_daemon.engine.events import EventRecord
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.errors import CodecError
from tessera_daemon.model import ClusterEvent, Firing, Frame, Topology


def _frame_obj(f: Frame) -> dict[str, Any]:
    obj = f.to_obj()
    obj["metrics"] = {k: (None if isinstance(v, float) and math.isnan(v) else v) for k, v in obj["metrics"].items()}
    return obj


class CaptureWriter:
    def __init__(self, path: str, rotate_bytes: int) -> None:
        self.base = Path(path)
        self.base.parent.mkdir(parents=True, exist_ok=True)
        self.rotate_bytes = rotate_bytes
        self.segment = 0
        self.written = 0
        self.records = 0
        self._fh: gzip.GzipFile | None = None
        self._open_next()

    def _open_next(self) -> None:
        if self._fh is not None:
            self._fh.close()
        self.segment += 1
        self.written = 0
        name = self.base.with_name(f"{self.base.name}.{self.segment:06d}.jsonl.gz")
        self._fh = gzip.GzipFile(name, "wb")

    def _put(self, rec: dict[str, Any]) -> None:
        data = (json.dumps(rec, separators=(",", ":"), allow_nan=False) + "\n").encode()
        if self.written and self.written + len(data) > self.rotate_bytes:
            self._open_next()
        assert self._fh is not None
        self._fh.write(data)
        self.written += len(data)
        self.records += 1

    def topology(self, topo: Topology) -> None:
        self._put({"k": "topology", "v": topo.to_obj()})

    def frames(self, frames: Sequence[Frame]) -> None:
        self._put({"k": "frames", "v": [_frame_obj(f) for f in frames]})

    def advance(self, watermark: float | None) -> None:
        self._put({"k": "advance", "w": watermark})

    def event(self, rec: EventRecord) -> None:
        self._put({"k": "event", "v": rec.event.to_obj(), "source": rec.source})

    def close(self) -> None:
        if self._fh is not None:
            self._fh.close()
            self._fh = None


def open_capture(cfg: Config, pipeline: Pipeline) -> CaptureWriter | None:
    if not cfg.daemon.capture_path:
        return None
    w = CaptureWriter(cfg.daemon.capture_path, cfg.daemon.capture_rotate_bytes)
    w.topology(pipeline.topology)
    return w


def segments(path: Path) -> list[Path]:
    found = sorted(path.parent.glob(f"{path.name}.[0-9][0-9][0-9][0-9][0-9][0-9].jsonl.gz"))
    if not found:
        raise CodecError(f"{path}: no capture segments ({path.name}.NNNNNN.jsonl.gz)")
    return found


def records(path: Path) -> Iterator[dict[str, Any]]:
    for seg in segments(path):
        with gzip.open(seg, "rt", encoding="utf-8") as fh:
            for n, line in enumerate(fh, 1):
                try:
                    rec = json.loads(line)
                except ValueError as exc:
                    raise CodecError(f"{seg}:{n}: {exc}") from exc
                if not isinstance(rec, dict) or "k" not in rec:
                    raise CodecError(f"{seg}:{n}: not a capture record")
                yield rec


def replay_capture(cfg: Config, path: Path) -> tuple[list[Firing], Pipeline]:
    """The firing transitions (opened and resolved, in order) of the captured run, recomputed, and the
    pipeline at the end of the capture."""
    pipeline: Pipeline | None = None
    out: list[Firing] = []
    for rec in records(path):
        kind = rec["k"]
        if kind == "topology":
            topo = Topology.from_obj(rec["v"])
            if pipeline is None:
                pipeline = Pipeline(cfg, topo)
            else:
                pipeline.set_topology(topo)
            continue
        if pipeline is None:
            raise CodecError(f"{path}: capture does not start with a topology")
        if kind == "frames":
            pipeline.ingest([Frame.from_obj(o) for o in rec["v"]])
        elif kind == "advance":
            for w in pipeline.assembler.close_ready(rec["w"]):
                r = pipeline.process(w)
                out.extend(r.opened)
                out.extend(r.resolved)
        elif kind == "event":
            pipeline.events.add(ClusterEvent.from_obj(rec["v"]), source=str(rec.get("source", "replay")))
        else:
            raise CodecError(f"{path}: unknown capture record {kind!r}")
    if pipeline is None:
        raise CodecError(f"{path}: empty capture")
    return out, pipeline
