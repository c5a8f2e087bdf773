"""A frame-by-frame reference of the window assembler, for tests of the array path (window, replay).

``FrameByFrame`` adds frames one at a time the way the assembler did before the array path: a dict of
counter samples per (shard, counter), plain ``counter_rate`` / ``counter_delta``, and the auto length
resolved after the frame that makes the cadence known. Only the window bookkeeping (closing, emitting)
is the assembler's own.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from tessera_daemon.engine.rates import counter_delta, counter_rate
from tessera_daemon.engine.window import PROBE_MAX_FRAMES, PROBE_MAX_S, WindowAssembler, WindowData, snap_length
from tessera_daemon.model import Frame, FrameBlock


class FrameByFrame(WindowAssembler):
    """Reference: the assembler as it added frames before the array path, one frame at a time with a
    dict of counter samples per (shard, counter) and plain ``counter_rate`` / ``counter_delta``. The
    window bookkeeping (closing, emitting) is the assembler's own; every frame goes through ``add_one``."""

    def __init__(self, *args: Any, **kw: Any) -> None:
        self.ref_counter: dict[tuple[str, str], tuple[float, float]] = {}
        super().__init__(*args, **kw)

    def add_block(self, block: FrameBlock) -> None:
        for f in block.frames():
            self.add_one(f)

    def add_one(self, frame: Frame) -> None:
        if not self.resolved:
            if frame.shard in self._row:
                self.probe.observe(frame.shard, frame.ts)
            self._held.append(FrameBlock.from_frames([frame]))
            self._held_frames += 1
            self._held_first = min(self._held_first, frame.ts)
            if (
                self.probe.ready()
                or self._held_frames >= PROBE_MAX_FRAMES
                or frame.ts - self._held_first >= PROBE_MAX_S
            ):
                self.resolve(snap_length(self.probe.median_s()))
            return
        row = self._row.get(frame.shard)
        if row is None:
            self.stats.unknown_shard += 1
            return
        k = self.window_of(frame.ts)
        if self.last_closed is not None and k <= self.last_closed:
            self.stats.late += 1
            return
        self.stats.frames += 1
        self.watermark = max(self.watermark, frame.ts)
        acc = self._open.get(k)
        if acc is None:
            acc = self._open[k] = self._new_acc()
        acc.n_frames += 1
        acc.present[row] = True
        if frame.xid:
            acc.xids.setdefault(frame.shard, []).extend(frame.xid)
        if frame.lost:
            acc.lost.add(frame.shard)
            return
        for name, raw in frame.metrics.items():
            value = raw
            if raw is not None and not math.isfinite(raw):
                value = None  # a non-finite value is no sample (the array path's rule)
            elif raw is not None and name in frame.counters:
                value = self.counter(frame.shard, frame.ts, name, raw, acc)
            j = self._col.get(name)
            if value is not None and j is not None:
                acc.sums[row, j] += value
                acc.counts[row, j] += 1

    def counter(self, shard: str, ts: float, name: str, value: float, acc: Any) -> float | None:
        prev = self.ref_counter.get((shard, name))
        if prev is not None and ts <= prev[1]:
            return None
        self.ref_counter[(shard, name)] = (value, ts)
        if prev is None:
            return None
        if name == self.ecc_counter:
            inc = counter_delta(prev[0], value)
            if inc:
                acc.ecc[shard] = acc.ecc.get(shard, 0.0) + inc
            return None if name not in self._col else inc
        return counter_rate(prev[0], prev[1], value, ts)


def counter_samples(a: WindowAssembler) -> dict[tuple[str, str], tuple[float, float]]:
    out = {}
    for name, c in a._cnt_col.items():
        for s, r in a._row.items():
            if not math.isnan(a._cnt_t[r, c]):
                out[(s, name)] = (float(a._cnt_v[r, c]), float(a._cnt_t[r, c]))
    return out


def assert_same(ref: FrameByFrame, got: WindowAssembler, wr: list[WindowData], wg: list[WindowData]) -> None:
    assert len(wr) == len(wg)
    for a, b in zip(wr, wg, strict=True):
        assert (a.index, a.n_frames, a.xids, a.ecc_increments, a.lost, a.start_ts) == (
            b.index,
            b.n_frames,
            b.xids,
            b.ecc_increments,
            b.lost,
            b.start_ts,
        )
        assert list(a.xids) == list(b.xids) and list(a.ecc_increments) == list(b.ecc_increments)
        np.testing.assert_array_equal(a.present, b.present)
        np.testing.assert_array_equal(a.values, b.values)  # bit for bit, NaN where NaN
    assert ref.stats == got.stats
    tracked = {k: v for k, v in ref.ref_counter.items() if k[1] in ref._col or k[1] == ref.ecc_counter}
    assert tracked == counter_samples(got)
