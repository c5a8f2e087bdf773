"""Window assembler: frames in, one closed window of [shards x metrics] values out, in event time.

A frame belongs to window ``floor(ts / length_s)``. A window closes once the watermark (the latest
frame time seen, or the wall clock in the live daemon) passes its end plus ``grace_s``; frames for a
closed window are late: counted and dropped. Counters become per-second rates (wrap / reset aware)
between consecutive samples of a shard; the uncorrectable-ECC counter becomes increments for the
hard-fault rules. A window's value is the mean of its samples. Shards absent from a window are
counted as missing; the pipeline decides staleness.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tessera_daemon.engine.rates import counter_delta, counter_rate
from tessera_daemon.model import Frame, FrameBlock

MAX_GAP_WINDOWS = 10_000  # a watermark jump larger than this skips empty windows instead of emitting them


@dataclass(slots=True)
class WindowData:
    index: int
    start_ts: float
    end_ts: float
    values: npt.NDArray[np.float64]  # [S, M] mean of samples, NaN where none
    present: npt.NDArray[np.bool_]  # [S] the shard reported (including lost reports)
    xids: dict[str, tuple[int, ...]] = field(default_factory=dict)
    ecc_increments: dict[str, float] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    n_frames: int = 0


@dataclass(slots=True)
class _Acc:
    sums: npt.NDArray[np.float64]
    counts: npt.NDArray[np.int64]
    present: npt.NDArray[np.bool_]
    xids: dict[str, list[int]] = field(default_factory=dict)
    ecc: dict[str, float] = field(default_factory=dict)
    lost: set[str] = field(default_factory=set)
    n_frames: int = 0


@dataclass(slots=True)
class AssemblerStats:
    frames: int = 0
    late: int = 0
    unknown_shard: int = 0
    missing_samples: int = 0
    windows: int = 0


class WindowAssembler:
    def __init__(
        self,
        shards: list[str],
        metrics: list[str],
        length_s: float,
        grace_s: float,
        ecc_counter: str = "ecc_dbe",
    ) -> None:
        self.metrics = list(metrics)
        self._col = {m: j for j, m in enumerate(self.metrics)}
        self.length_s = length_s
        self.grace_s = grace_s
        self.ecc_counter = ecc_counter
        self.stats = AssemblerStats()
        self._open: dict[int, _Acc] = {}
        self._last_counter: dict[tuple[str, str], tuple[float, float]] = {}
        self.last_closed: int | None = None
        self.watermark = -math.inf
        self.set_shards(shards)

    def set_shards(self, shards: list[str]) -> None:
        """Re-index (topology changed). Open windows are re-mapped by shard id."""
        old_rows = getattr(self, "_row", {})
        self.shards = list(shards)
        self._row = {s: i for i, s in enumerate(self.shards)}
        for k, acc in list(self._open.items()):
            fresh = self._new_acc()
            for s, i in old_rows.items():
                j = self._row.get(s)
                if j is not None:
                    fresh.sums[j], fresh.counts[j], fresh.present[j] = acc.sums[i], acc.counts[i], acc.present[i]
            fresh.xids, fresh.ecc, fresh.lost, fresh.n_frames = acc.xids, acc.ecc, acc.lost, acc.n_frames
            self._open[k] = fresh

    def _new_acc(self) -> _Acc:
        s, m = len(self.shards), len(self.metrics)
        return _Acc(np.zeros((s, m)), np.zeros((s, m), np.int64), np.zeros(s, np.bool_))

    def window_of(self, ts: float) -> int:
        return math.floor(ts / self.length_s)

    def add(self, frame: Frame) -> None:
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
            if raw is not None and name in frame.counters:
                value = self._counter(frame.shard, frame.ts, name, raw, acc)
            else:
                value = raw
            if value is None:
                continue
            j = self._col.get(name)
            if j is not None:
                acc.sums[row, j] += value
                acc.counts[row, j] += 1

    def add_block(self, block: FrameBlock) -> None:
        """:meth:`add` for every frame of a decoded host entry, reading its arrays: one vectorised
        update per window for the gauges, a Python step only per counter value. Same result, same
        counts, as adding its frames one by one (tests/unit/test_window.py)."""
        names = block.names
        cols = [self._col.get(n) for n in names]
        tss = block.ts.tolist()
        by_window: dict[int, list[int]] = {}
        for i, sid in enumerate(block.shards):  # the per-frame bookkeeping of ``add``
            row = self._row.get(sid)
            if row is None:
                self.stats.unknown_shard += 1
                continue
            ts = tss[i]
            k = self.window_of(ts)
            if self.last_closed is not None and k <= self.last_closed:
                self.stats.late += 1
                continue
            self.stats.frames += 1
            self.watermark = max(self.watermark, ts)
            acc = self._open.get(k)
            if acc is None:
                acc = self._open[k] = self._new_acc()
            acc.n_frames += 1
            acc.present[row] = True
            xid = block.xids.get(i)
            if xid:
                acc.xids.setdefault(sid, []).extend(xid)
            if i in block.lost:
                acc.lost.add(sid)
                continue
            by_window.setdefault(k, []).append(i)
        for k, idx in by_window.items():
            self._block_values(self._open[k], block, idx, cols, tss)

    def _block_values(self, acc: _Acc, block: FrameBlock, idx: list[int], cols: list[int | None],
                      tss: list[float]) -> None:
        """Add the values of frames ``idx`` of ``block`` (all in ``acc``'s window)."""
        values, names, shards = block.values, block.names, block.shards
        rows = np.asarray([self._row[shards[i]] for i in idx], np.intp)
        known = np.asarray([c is not None for c in cols], np.bool_)
        shared = isinstance(block.counters, frozenset)
        if shared:
            counter_cols = [j for j, n in enumerate(names) if n in block.counters]
            gauge = known.copy()
            gauge[counter_cols] = False
            gauge = np.broadcast_to(gauge, (len(idx), len(names)))
        else:
            gauge = known[None, :].repeat(len(idx), axis=0)
        for r, i in enumerate(idx):  # counters: rate / increment per (shard, counter), in order
            if not shared:
                counter_cols = [j for j, n in enumerate(names) if n in block.counters_of(i)]
                gauge[r, counter_cols] = False
            for j in counter_cols:
                raw = float(values[i, j])
                v = self._counter(shards[i], tss[i], names[j], raw, acc) if math.isfinite(raw) else None
                c = cols[j]
                if v is not None and c is not None:
                    acc.sums[rows[r], c] += v
                    acc.counts[rows[r], c] += 1
        sub = values[np.asarray(idx, np.intp)]
        r_idx, j_idx = np.nonzero(gauge & np.isfinite(sub))
        if r_idx.size:
            c_idx = np.asarray([-1 if c is None else c for c in cols], np.intp)[j_idx]  # gauge: known columns
            np.add.at(acc.sums, (rows[r_idx], c_idx), sub[r_idx, j_idx])
            np.add.at(acc.counts, (rows[r_idx], c_idx), 1)

    def _counter(self, shard: str, ts: float, name: str, value: float, acc: _Acc) -> float | None:
        key = (shard, name)
        prev = self._last_counter.get(key)
        if prev is not None and ts <= prev[1]:
            return None  # out of order or duplicate: the counter only moves forward
        self._last_counter[key] = (value, ts)
        if prev is None:
            return None
        if name == self.ecc_counter:
            inc = counter_delta(prev[0], value)
            if inc:
                acc.ecc[shard] = acc.ecc.get(shard, 0.0) + inc
            return None if name not in self._col else inc
        return counter_rate(prev[0], prev[1], value, ts)

    def close_ready(self, watermark: float | None = None) -> list[WindowData]:
        """Close every window whose end + grace is at or before the watermark."""
        wm = self.watermark if watermark is None else max(watermark, self.watermark)
        if wm == -math.inf:
            return []
        last_ready = math.floor((wm - self.grace_s) / self.length_s) - 1
        return self._close_through(last_ready)

    def flush(self) -> list[WindowData]:
        """Close every open window (end of replay input)."""
        if not self._open:
            return []
        return self._close_through(max(self._open))

    def _close_through(self, last: int) -> list[WindowData]:
        out: list[WindowData] = []
        if self.last_closed is None:
            if not self._open:
                return out
            first = min(self._open)
        else:
            first = self.last_closed + 1
        if last < first:
            return out
        if last - first > MAX_GAP_WINDOWS:
            pending = sorted(k for k in self._open if k >= last - MAX_GAP_WINDOWS)
            first = pending[0] if pending else last
        for k in range(first, last + 1):
            out.append(self._emit(k, self._open.pop(k, None)))
        for k in [k for k in self._open if k <= last]:  # stragglers older than `first` after a skip
            del self._open[k]
        self.last_closed = last
        return out

    def _emit(self, k: int, acc: _Acc | None) -> WindowData:
        if acc is None:
            acc = self._new_acc()
        with np.errstate(invalid="ignore", divide="ignore"):
            values = np.where(acc.counts > 0, acc.sums / np.maximum(acc.counts, 1), np.nan)
        self.stats.windows += 1
        self.stats.missing_samples += int(len(self.shards) - int(acc.present.sum()))
        return WindowData(
            index=k,
            start_ts=k * self.length_s,
            end_ts=(k + 1) * self.length_s,
            values=values,
            present=acc.present,
            xids={s: tuple(sorted(set(c))) for s, c in sorted(acc.xids.items())},
            ecc_increments=dict(sorted(acc.ecc.items())),
            lost=set(acc.lost),
            n_frames=acc.n_frames,
        )
