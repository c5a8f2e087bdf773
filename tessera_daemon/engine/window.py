"""Window assembler: frames in, one closed window of [shards x metrics] values out, in event time.

A frame belongs to window ``floor(ts / length_s)``. A window closes once the watermark (the latest
frame time seen, or the wall clock in the live daemon) passes its end plus ``grace_s``; frames for a
closed window are late: counted and dropped. Counters become per-second rates (wrap / reset aware)
between consecutive samples of a shard; the uncorrectable-ECC counter becomes increments for the
hard-fault rules. A window's value is the mean of its samples. Shards absent from a window are
counted as missing; the pipeline decides staleness. In the live daemon (``guard_future``), a frame
further ahead of the receiver's wall clock than ``max_future_s`` is quarantined: counted, its skew
remembered, and it never moves the watermark.

Auto length (``length_s=None``): the window follows the observed poll cadence. Until the cadence is
known the assembler holds what it is given (bounded: :data:`PROBE_MAX_FRAMES` frames or
:data:`PROBE_MAX_S` seconds of event time) and closes nothing; once half the shards seen have
``PROBE_INTERVALS`` sample intervals, the length is the median over shards of each shard's median
interval, snapped to a round value no shorter than ``AUTO_MIN_S`` (:func:`snap_length`), and the held
frames go in as if just received. Deterministic: the same input gives the same length.
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tessera_daemon.engine.rates import WRAP_WIDTHS, WRAP_ZONE, counter_delta, counter_rate
from tessera_daemon.model import Frame, FrameBlock

MAX_GAP_WINDOWS = 10_000  # a watermark jump larger than this skips empty windows instead of emitting them
MAX_SKEWED = 256  # shards remembered with their clock skew (the newest), for tessera_clock_skew_seconds
PROBE_INTERVALS = 3  # sample intervals a shard needs before its cadence counts (auto length)
PROBE_MAX_FRAMES = 200_000  # frames held while the cadence is unknown; past this the length is fixed
PROBE_MAX_S = 900.0  # event-time span held while the cadence is unknown
AUTO_FALLBACK_S = 10.0  # auto length when no shard ever sent two samples
AUTO_MIN_S = 5.0  # shortest auto length: faster pollers are averaged over 5-s windows
NICE_LENGTHS = (
    5.0,
    6.0,
    8.0,
    10.0,
    12.0,
    15.0,
    20.0,
    25.0,
    30.0,
    40.0,
    45.0,
    60.0,
    90.0,
    120.0,
    180.0,
    240.0,
    300.0,
    600.0,
)


def snap_length(seconds: float) -> float:
    """The round window length nearest (in ratio) to a measured cadence: 9.7 s -> 10 s, 14 s -> 15 s;
    never below ``AUTO_MIN_S`` (a 1-s poller is averaged over 5-s windows)."""
    if not math.isfinite(seconds) or seconds <= 0:
        return AUTO_FALLBACK_S
    return min(NICE_LENGTHS, key=lambda n: abs(math.log(n / seconds)))


def _deltas(prev: npt.NDArray[np.float64], cur: npt.NDArray[np.float64]) -> npt.NDArray[np.float64]:
    """:func:`counter_delta` elementwise, the same float operations: NaN where it gives None (a reset)."""
    d = cur - prev
    down = cur < prev
    if down.any():
        p, c = prev[down], cur[down]
        got = np.full(p.shape, np.nan)
        for bits in reversed(WRAP_WIDTHS):  # the narrowest width that fits wins, as in counter_delta
            top = float(2**bits)
            fits = (WRAP_ZONE * top < p) & (p < top * (1 + 1e-9)) & (c < top)
            got = np.where(fits, (top - p) + c, got)
        d[down] = got
    return d


class CadenceProbe:
    """Per-shard sample intervals (event time), kept short: the median cadence of the fleet."""

    def __init__(self, keep: int = 8) -> None:
        self.keep = keep
        self.last: dict[str, float] = {}
        self.intervals: dict[str, list[float]] = {}
        self.n_ready = 0  # shards with PROBE_INTERVALS intervals (a list never shrinks below ``keep``)

    def observe(self, shard: str, ts: float) -> None:
        prev = self.last.get(shard)
        if prev is None or ts > prev:
            self.last[shard] = ts
        if prev is not None and ts > prev:
            iv = self.intervals.setdefault(shard, [])
            iv.append(ts - prev)
            if len(iv) == PROBE_INTERVALS:
                self.n_ready += 1
            if len(iv) > self.keep:
                del iv[0]

    def ready(self, min_intervals: int = PROBE_INTERVALS) -> bool:
        """Half the shards seen (at least one) have ``min_intervals`` intervals; O(1) for the default."""
        if not self.last:
            return False
        if min_intervals == PROBE_INTERVALS and self.keep >= PROBE_INTERVALS:
            n_ok = self.n_ready
        else:
            n_ok = sum(1 for v in self.intervals.values() if len(v) >= min_intervals)
        return n_ok >= max(1, len(self.last) // 2)

    def median_s(self) -> float:
        """Median over shards of each shard's median interval (NaN: no intervals yet)."""
        per = [float(np.median(v)) for v in self.intervals.values() if v]
        return float(np.median(per)) if per else math.nan


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
    future: int = 0  # frames too far ahead of the receiver's clock: quarantined, never moved the watermark


class WindowAssembler:
    def __init__(
        self,
        shards: list[str],
        metrics: list[str],
        length_s: float | None,
        grace_s: float,
        ecc_counter: str = "ecc_dbe",
    ) -> None:
        self.metrics = list(metrics)
        self._col = {m: j for j, m in enumerate(self.metrics)}
        self.auto = length_s is None or length_s <= 0
        self.length_s = AUTO_FALLBACK_S if self.auto else float(length_s)  # type: ignore[arg-type]
        self.resolved = not self.auto
        self.probe = CadenceProbe()
        self._held: list[FrameBlock] = []
        self._held_frames = 0
        self._held_first = math.inf
        self.grace_s = grace_s
        self.ecc_counter = ecc_counter
        self.stats = AssemblerStats()
        self._open: dict[int, _Acc] = {}
        # counter samples for rates: the last value and time per [row, counter] (NaN time: none yet),
        # counters numbered in order of first use; a shard leaving the topology parks its row
        self._cnt_col: dict[str, int] = {}
        self._cnt_v: npt.NDArray[np.float64] = np.empty((0, 0))
        self._cnt_t: npt.NDArray[np.float64] = np.empty((0, 0))
        self._cnt_parked: dict[str, tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]] = {}
        self.last_closed: int | None = None
        self.watermark = -math.inf
        # future-skew guard (live modes only: replay leaves it at inf): a frame more than ``max_future_s``
        # ahead of the wall clock is quarantined (counted, its shard's skew remembered)
        self.max_future_s = math.inf
        self._now = 0.0
        self.skewed: dict[str, tuple[float, float, str]] = {}  # shard -> (skew s, clock when seen, source)
        self.source = "local"  # the source label of skews seen here (split mode relabels them with the agent)
        self.set_shards(shards)

    def set_shards(self, shards: list[str]) -> None:
        """Re-index (topology changed). Open windows and counter samples are re-mapped by shard id; a
        shard that leaves keeps its counter samples (parked) in case it comes back."""
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
        self._remap_counters(old_rows)

    def _remap_counters(self, old_rows: dict[str, int]) -> None:
        c = len(self._cnt_col)
        old_v, old_t = self._cnt_v, self._cnt_t
        v = np.full((len(self.shards), c), np.nan)
        t = np.full((len(self.shards), c), np.nan)
        parked = self._cnt_parked
        for s, i in old_rows.items():
            j = self._row.get(s)
            if j is not None:
                v[j], t[j] = old_v[i], old_t[i]
            elif not np.isnan(old_t[i]).all():
                parked[s] = (old_v[i].copy(), old_t[i].copy())
        if parked:
            for s in [s for s in parked if s in self._row]:
                pv, pt = parked.pop(s)
                j = self._row[s]
                v[j, : pv.size], t[j, : pt.size] = pv, pt
        self._cnt_v, self._cnt_t = v, t

    def _counter_id(self, name: str) -> int:
        """The counter-state column of ``name`` (a new column of "no sample yet" on first use)."""
        c = self._cnt_col.get(name)
        if c is None:
            c = self._cnt_col[name] = len(self._cnt_col)
            pad = np.full((len(self.shards), 1), np.nan)
            self._cnt_v = np.hstack([self._cnt_v.reshape(len(self.shards), -1), pad])
            self._cnt_t = np.hstack([self._cnt_t.reshape(len(self.shards), -1), pad])
        return c

    def _new_acc(self) -> _Acc:
        s, m = len(self.shards), len(self.metrics)
        return _Acc(np.zeros((s, m)), np.zeros((s, m), np.int64), np.zeros(s, np.bool_))

    def window_of(self, ts: float) -> int:
        return math.floor(ts / self.length_s)

    def _drop_future(self, block: FrameBlock, valid: npt.NDArray[np.bool_], n_known: int) -> int:
        """Quarantine the frames of ``block`` too far ahead of the receiver's clock (``valid`` updated in
        place); return the known frames left."""
        ahead = valid & (block.ts > self._future_limit())
        if not ahead.any():
            return n_known
        for i in np.flatnonzero(ahead).tolist():
            self._quarantine(block.shards[i], float(block.ts[i]))
        valid &= ~ahead
        return int(np.count_nonzero(valid))

    def _hold_block(self, block: FrameBlock) -> None:
        """While the auto length is unknown: hold the frames of ``block`` up to the one after which the
        length is known (frame by frame, exactly where adding its frames one at a time would resolve
        it: the cadence probe, :data:`PROBE_MAX_FRAMES`, :data:`PROBE_MAX_S`); then add what was held
        and the rest of the block."""
        shards, tss = block.shards, block.ts.tolist()
        known, probe = self._row, self.probe
        n = len(shards)
        for i in range(n):
            t = tss[i]
            if shards[i] in known:
                probe.observe(shards[i], t)
            self._held_frames += 1
            self._held_first = min(self._held_first, t)
            if probe.ready() or self._held_frames >= PROBE_MAX_FRAMES or t - self._held_first >= PROBE_MAX_S:
                self._held.append(block if i == n - 1 else block.take(0, i + 1))
                self.resolve(snap_length(probe.median_s()))
                if i + 1 < n:
                    self.add_block(block.take(i + 1, n))
                return
        self._held.append(block)

    def resolve(self, length_s: float) -> None:
        """Fix the window length (auto) and add what was held while it was unknown."""
        if self.resolved:
            return
        self.length_s = float(length_s)
        self.resolved = True
        held, self._held, self._held_frames = self._held, [], 0
        for block in held:
            self.add_block(block)

    def add(self, frame: Frame) -> None:
        """One frame (the object path): a block of one; :meth:`add_frames` for many."""
        self.add_block(FrameBlock.from_frames([frame]))

    def add_frames(self, frames: Sequence[Frame]) -> None:
        """Frames as a source or a file delivers them: a :class:`FrameBlock` goes in as it is, a list of
        :class:`Frame` is converted at this boundary (:meth:`FrameBlock.from_frames`) and goes in as
        one block. Bit for bit the result of adding the frames one by one."""
        if isinstance(frames, FrameBlock):
            self.add_block(frames)
        elif frames:
            self.add_block(FrameBlock.from_frames(frames))

    def add_block(self, block: FrameBlock) -> None:
        """Every frame of a block (a decoded host entry, a simulator tick, a replay batch, several
        concatenated with :meth:`FrameBlock.concat`), reading its arrays: the per-frame bookkeeping is
        vectorised, the values go in with one in-order ``np.add.at`` per window, and counters become
        rates / increments per [shard, counter] on arrays (:meth:`_block_counters`). Bit for bit the
        result of adding its frames one by one in order: same sums (each cell receives its values in
        frame order), counts, stats, counter samples and dict orders (tests/engine/test_window.py
        checks it against a frame-by-frame reference)."""
        n = len(block.shards)
        if n == 0:
            return
        shards = block.shards
        row_get = self._row.get
        if not self.resolved:
            self._hold_block(block)
            return
        rows = np.fromiter((row_get(s, -1) for s in shards), np.intp, n)
        ks = np.floor(block.ts / self.length_s).astype(np.int64)  # window_of, for every frame
        valid = rows >= 0
        n_known = int(np.count_nonzero(valid))
        self.stats.unknown_shard += n - n_known
        if self.max_future_s != math.inf:
            n_known = self._drop_future(block, valid, n_known)
        if self.last_closed is not None:
            valid &= ks > self.last_closed
        n_valid = int(np.count_nonzero(valid))
        self.stats.late += n_known - n_valid
        if n_valid == 0:
            return
        self.stats.frames += n_valid
        self.watermark = max(self.watermark, float(block.ts[valid].max()))
        uniq, first = np.unique(ks[valid], return_index=True)
        accs: dict[int, _Acc] = {}
        for k in uniq[np.argsort(first, kind="stable")].tolist():  # first appearance: the order ``add`` opens them
            acc = self._open.get(k)
            if acc is None:
                acc = self._open[k] = self._new_acc()
            accs[k] = acc
        for k, acc in accs.items():
            sel = valid & (ks == k)
            acc.n_frames += int(np.count_nonzero(sel))
            acc.present[rows[sel]] = True
        for i in sorted(block.xids):  # frame order, as ``add`` meets them
            xid = block.xids[i]
            if xid and 0 <= i < n and valid[i]:
                accs[int(ks[i])].xids.setdefault(shards[i], []).extend(xid)
        use = valid
        if block.lost:
            lost_i = [i for i in sorted(block.lost) if 0 <= i < n and valid[i]]
            for i in lost_i:
                accs[int(ks[i])].lost.add(shards[i])
            if lost_i:
                use = valid.copy()
                use[lost_i] = False
        self._block_values(block, use, rows, ks, accs)

    def guard_future(self, max_future_s: float) -> None:
        """Live modes: quarantine frames more than ``max_future_s`` ahead of the wall clock (0: no guard)."""
        self.max_future_s = max_future_s if max_future_s > 0 else math.inf

    def _future_limit(self) -> float:
        if self.max_future_s == math.inf:
            return math.inf
        self._now = time.time()
        return self._now + self.max_future_s

    def _quarantine(self, shard: str, ts: float) -> None:
        """A frame from the future (a host clock jumped ahead): it must not move the watermark, or every
        open window would close and every later frame be late."""
        self.stats.future += 1
        self.skewed.pop(shard, None)
        self.skewed[shard] = (ts - self._now, self._now, self.source)
        while len(self.skewed) > MAX_SKEWED:
            del self.skewed[next(iter(self.skewed))]

    def _block_values(
        self,
        block: FrameBlock,
        use: npt.NDArray[np.bool_],
        rows: npt.NDArray[np.intp],
        ks: npt.NDArray[np.int64],
        accs: dict[int, _Acc],
    ) -> None:
        """Add the metric values of the frames ``use`` of ``block`` to their windows' accumulators."""
        names, values = block.names, block.values
        all_used = bool(use.all())
        idx = None if all_used else np.flatnonzero(use)
        sub = values if idx is None else values[idx]  # [F, N] the used frames
        if sub.shape[0] == 0:
            return
        take = np.isfinite(sub)
        counters = block.counters
        if isinstance(counters, frozenset):
            if counters:
                counter_cols = [j for j, nm in enumerate(names) if nm in counters]
                if counter_cols:
                    cmask = np.zeros(len(names), np.bool_)
                    cmask[counter_cols] = True
                    cm_all = np.broadcast_to(cmask, sub.shape)
                    sub, take = self._block_counters(block, sub, take, idx, rows, ks, accs, cm_all)
        else:
            masks: dict[frozenset[str], npt.NDArray[np.bool_]] = {}
            frame_ids = range(len(block.shards)) if idx is None else idx.tolist()
            cm = np.zeros(sub.shape, np.bool_)
            for r, i in enumerate(frame_ids):
                cs = counters[i]
                row = masks.get(cs)
                if row is None:
                    row = masks[cs] = np.asarray([nm in cs for nm in names], np.bool_)
                cm[r] = row
            if cm.any():
                sub, take = self._block_counters(block, sub, take, idx, rows, ks, accs, cm)
        cols = [self._col.get(nm) for nm in names]
        known = [j for j, c in enumerate(cols) if c is not None]
        if not known:
            return
        c_idx = np.asarray([cols[j] for j in known], np.intp)
        if len(known) != len(names):
            sub, take = sub[:, known], take[:, known]
        m = len(self.metrics)
        frame_rows = rows if idx is None else rows[idx]
        frame_ks = ks if idx is None else ks[idx]
        one_window = len(accs) == 1
        for k, acc in accs.items():
            if one_window:
                w_rows, w_sub, w_take = frame_rows, sub, take
            else:
                sel = frame_ks == k
                w_rows, w_sub, w_take = frame_rows[sel], sub[sel], take[sel]
            if w_rows.size == 0:
                continue
            # every (frame, column) in frame order; a value not taken adds +0.0, which leaves any sum as
            # it is (sums start at +0.0 and so never become -0.0): each cell gets ``add``'s sequence
            flat = (w_rows[:, None] * m + c_idx[None, :]).ravel()
            if not (acc.sums.flags.c_contiguous and acc.counts.flags.c_contiguous):  # flat views below
                acc.sums, acc.counts = np.ascontiguousarray(acc.sums), np.ascontiguousarray(acc.counts)
            np.add.at(acc.sums.reshape(-1), flat, np.where(w_take, w_sub, 0.0).ravel())
            np.add.at(acc.counts.reshape(-1), flat, w_take.ravel().astype(np.int64))

    def _block_counters(
        self,
        block: FrameBlock,
        sub: npt.NDArray[np.float64],
        take: npt.NDArray[np.bool_],
        idx: npt.NDArray[np.intp] | None,
        rows: npt.NDArray[np.intp],
        ks: npt.NDArray[np.int64],
        accs: dict[int, _Acc],
        cmask: npt.NDArray[np.bool_],
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.bool_]]:
        """Counter cells (``cmask``) of the used frames ``sub``: the rate (or, for the ECC counter, the
        increment) since the shard's previous sample of that counter, written back as the value to add,
        or not taken. A sample not later than the previous one is ignored (the counter only moves
        forward); the first sample of a [shard, counter] only sets it. Vectorised per [shard, counter]
        sequence (cells sorted by key, stable: frame order within each); a sequence with a sample out
        of order takes the step-by-step path. Counters that are not metrics, ECC aside, are not tracked
        (their rates would be dropped)."""
        names, shards = block.names, block.shards
        out, took = sub.copy(), take & ~cmask
        col, ecc = self._col, self.ecc_counter
        tracked = [j for j, nm in enumerate(names) if nm in col or nm == ecc]
        if not tracked:
            return out, took
        want = np.zeros(len(names), np.bool_)
        want[tracked] = True
        r_idx, j_idx = np.nonzero(cmask & take & want[None, :])  # row-major: frame order, then metric order
        n = r_idx.size
        if n == 0:
            return out, took
        cid = np.full(len(names), -1, np.int64)
        for j in np.unique(j_idx).tolist():
            cid[j] = self._counter_id(names[j])
        c_n = len(self._cnt_col)
        frame_ids = r_idx if idx is None else idx[r_idx]
        cell_c = cid[j_idx]
        key = rows[frame_ids].astype(np.int64) * c_n + cell_c
        order = np.argsort(key, kind="stable")
        sk = key[order]
        st = block.ts[frame_ids][order]
        sv = sub[r_idx, j_idx][order]
        start = np.empty(n, np.bool_)
        start[0] = True
        np.not_equal(sk[1:], sk[:-1], out=start[1:])
        g_r, g_c = np.divmod(sk[start], c_n)
        last_v, last_t = self._cnt_v, self._cnt_t
        prev_t = np.empty(n)
        prev_v = np.empty(n)
        prev_t[1:], prev_v[1:] = st[:-1], sv[:-1]
        prev_t[start], prev_v[start] = last_t[g_r, g_c], last_v[g_r, g_c]
        has = ~np.isnan(prev_t)
        disordered = has & ~(st > prev_t)
        ecc_c = self._cnt_col.get(ecc, -1)
        is_ecc = (cell_c == ecc_c)[order]
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
            delta = _deltas(prev_v, sv)
            res = np.where(is_ecc, delta, delta / (st - prev_t))
        ok = has & ~np.isnan(res)
        end = np.empty(n, np.bool_)
        end[-1] = True
        end[:-1] = start[1:]
        slow: npt.NDArray[np.bool_] | None = None
        if disordered.any():  # whole sequences with a sample out of order go step by step
            gid = np.cumsum(start) - 1
            bad = np.zeros(int(gid[-1]) + 1, np.bool_)
            bad[gid[disordered]] = True
            slow = bad[gid]
            end &= ~slow
        e_r, e_c = np.divmod(sk[end], c_n)
        last_v[e_r, e_c], last_t[e_r, e_c] = sv[end], st[end]
        if slow is not None:
            ecc_col = ecc_c
            for q in np.flatnonzero(slow).tolist():
                r, c = divmod(int(sk[q]), c_n)
                t, v = float(st[q]), float(sv[q])
                pt = float(last_t[r, c])
                ok[q] = False
                if not math.isnan(pt) and t <= pt:  # a sample not after the previous one: ignored
                    continue
                pv = float(last_v[r, c])
                last_v[r, c], last_t[r, c] = v, t
                if math.isnan(pt):  # the first sample
                    continue
                got = counter_delta(pv, v) if c == ecc_col else counter_rate(pv, pt, v, t)
                if got is not None:
                    res[q], ok[q] = got, True
        res_f = np.empty(n)
        ok_f = np.empty(n, np.bool_)
        res_f[order], ok_f[order] = res, ok
        if ecc_c >= 0:
            inc_cells = np.flatnonzero(ok_f & (cell_c == ecc_c) & (res_f != 0.0))
            for q in inc_cells.tolist():  # frame order: each shard's increments add up as ``add`` adds them
                i, inc = int(frame_ids[q]), float(res_f[q])
                acc = accs[int(ks[i])]
                acc.ecc[shards[i]] = acc.ecc.get(shards[i], 0.0) + inc
        keep = ok_f & np.array([nm in col for nm in names], np.bool_)[j_idx]
        out[r_idx[keep], j_idx[keep]] = res_f[keep]
        took[r_idx[keep], j_idx[keep]] = True
        return out, took

    def close_ready(self, watermark: float | None = None) -> list[WindowData]:
        """Close every window whose end + grace is at or before the watermark."""
        if not self.resolved:
            return []
        wm = self.watermark if watermark is None else max(watermark, self.watermark)
        if wm == -math.inf:
            return []
        last_ready = math.floor((wm - self.grace_s) / self.length_s) - 1
        return self._close_through(last_ready)

    def flush(self) -> list[WindowData]:
        """Close every open window (end of replay input)."""
        if not self.resolved:
            self.resolve(snap_length(self.probe.median_s()))
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
