from __future__ import annotations

import math

import numpy as np
import pytest

from tessera_daemon.engine.window import WindowAssembler, WindowData
from tessera_daemon.model import Frame, FrameBlock
from tessera_daemon.transport.codec import decode_entry, encode_host
from tests.window_reference import FrameByFrame, assert_same, counter_samples


def mk(ts: float, shard: str, **metrics: float) -> Frame:
    counters = frozenset(k for k in metrics if k.endswith("_bytes") or k == "ecc_dbe")
    return Frame(ts, shard, metrics, counters)


def test_means_missing_late_and_unknown() -> None:
    a = WindowAssembler(["a", "b"], ["x", "tx_bytes"], length_s=10.0, grace_s=2.0)
    for ts, v in ((1.0, 1.0), (5.0, 3.0)):
        a.add(mk(ts, "a", x=v, tx_bytes=100.0 * ts))
    a.add(mk(3.0, "zz", x=1.0))
    assert a.close_ready() == []  # watermark 5 < 10 + 2
    a.add(mk(12.5, "a", x=5.0, tx_bytes=1250.0))
    (w,) = a.close_ready()
    assert w.index == 0 and w.n_frames == 2
    assert w.values[0, 0] == 2.0
    assert w.values[0, 1] == 100.0  # rate between ts 1 and 5
    assert math.isnan(w.values[1, 0])
    assert list(w.present) == [True, False]
    a.add(mk(9.0, "b", x=1.0))  # window 0 is closed: late
    assert a.stats.late == 1 and a.stats.unknown_shard == 1 and a.stats.missing_samples == 1


def test_gap_windows_emitted_and_flush() -> None:
    a = WindowAssembler(["a"], ["x"], length_s=1.0, grace_s=0.0)
    a.add(mk(0.5, "a", x=1.0))
    a.add(mk(4.5, "a", x=1.0))
    closed = a.close_ready()
    assert [w.index for w in closed] == [0, 1, 2, 3]
    assert np.isnan(closed[2].values).all()
    assert [w.index for w in a.flush()] == [4]


def test_xid_lost_and_ecc_increments() -> None:
    a = WindowAssembler(["a", "b"], ["x"], length_s=10.0, grace_s=0.0)
    a.add(mk(1.0, "a", x=1.0, ecc_dbe=0.0))
    a.add(Frame(2.0, "a", {"x": 1.0, "ecc_dbe": 2.0}, frozenset({"ecc_dbe"}), (79, 13)))
    a.add(Frame(3.0, "b", {"x": None}, lost=True))
    (w,) = a.flush()
    assert w.xids == {"a": (13, 79)}
    assert w.ecc_increments == {"a": 2.0}
    assert w.lost == {"b"}
    assert bool(w.present[1]) and math.isnan(w.values[1, 0])


def test_reindex_keeps_open_window() -> None:
    a = WindowAssembler(["a", "b"], ["x"], length_s=10.0, grace_s=0.0)
    a.add(mk(1.0, "b", x=7.0))
    a.set_shards(["b", "c"])
    (w,) = a.flush()
    assert w.values[0, 0] == 7.0 and math.isnan(w.values[1, 0])


def _random_entries(rng: np.random.Generator, n: int) -> list[dict[bytes, bytes]]:
    """Host entries with everything the codec can carry: nulls, absent metrics, per-frame counter sets,
    counters going backwards and wrapping, XIDs, lost devices, unknown shards, late and early frames."""
    out = []
    hosts = {"h0": ["a", "b", "c"], "h1": ["d", "e", "zz"]}  # zz is not in the topology
    ts = 1000.0
    for seq in range(n):
        ts += float(rng.uniform(0.0, 3.0))
        host = "h0" if rng.random() < 0.5 else "h1"
        frames = []
        for sid in hosts[host]:
            if rng.random() < 0.15:
                continue
            t = ts - (25.0 if rng.random() < 0.05 else 0.0)  # now and then a late frame
            if rng.random() < 0.05:
                t = ts - float(rng.uniform(0.0, 2.0))  # out of order within the open window
            metrics: dict[str, float | None] = {
                "util": float(rng.normal()),
                "tx_bytes": float(seq * 1000 + rng.integers(0, 500)),
                "ecc_dbe": float(seq // 7),
                "extra": 1.0,
                "wrap32_bytes": float((4_000_000_000 + seq * 60_000_000) % 2**32),  # wraps every ~70 entries
                "wrap64_bytes": float((2**64 - 2**60 + seq * 2**56) % 2**64),
            }
            if rng.random() < 0.1:
                metrics["util"] = None
            if rng.random() < 0.1:
                del metrics["extra"]
            if rng.random() < 0.05:
                metrics["tx_bytes"] = 3.0  # a reset
            if rng.random() < 0.03:
                metrics["ecc_dbe"] = 0.0  # an ECC counter reset
            every = {"tx_bytes", "ecc_dbe", "wrap32_bytes", "wrap64_bytes"}
            counters = frozenset(every if rng.random() < 0.9 else {"ecc_dbe"})
            xid = (79,) if rng.random() < 0.05 else ()
            frames.append(Frame(t, sid, metrics, counters, xid, lost=bool(rng.random() < 0.03)))
        if frames:
            out.append(encode_host(frames, host, "agent/boot", seq))
    return out


def test_block_ingest_equals_frame_ingest() -> None:
    """add_block on decoded entries gives exactly what adding their frames one by one gives."""
    rng = np.random.default_rng(3)
    shards, metrics = ["a", "b", "c", "d", "e"], ["util", "tx_bytes", "ecc_dbe", "extra"]
    by_frame = WindowAssembler(shards, metrics, length_s=5.0, grace_s=1.0)
    by_block = WindowAssembler(shards, metrics, length_s=5.0, grace_s=1.0)
    got_f, got_b = [], []
    for fields in _random_entries(rng, 400):
        for f in decode_entry(fields).frames:  # the Frame path (as MQTT and file sources deliver)
            by_frame.add(f)
        by_block.add_block(decode_entry(fields).frames)
        got_f += by_frame.close_ready()
        got_b += by_block.close_ready()
    got_f += by_frame.flush()
    got_b += by_block.flush()
    assert len(got_f) == len(got_b) > 50
    for wf, wb in zip(got_f, got_b, strict=True):
        assert (wf.index, wf.n_frames, wf.xids, wf.ecc_increments, wf.lost) == (
            wb.index,
            wb.n_frames,
            wb.xids,
            wb.ecc_increments,
            wb.lost,
        )
        np.testing.assert_array_equal(wf.present, wb.present)
        np.testing.assert_array_equal(wf.values, wb.values)  # bit for bit, NaN where NaN
    assert by_frame.stats == by_block.stats
    assert by_frame.stats.late > 0 and by_frame.stats.unknown_shard > 0
    assert counter_samples(by_frame) == counter_samples(by_block)


@pytest.mark.parametrize("seed", [3, 4, 5])
@pytest.mark.parametrize("length_s", [5.0, None])
def test_array_path_equals_frame_by_frame_reference(seed: int, length_s: float | None) -> None:
    """Blocks (decoded entries, joined runs of them, and Frame lists converted at the boundary) give
    exactly what the frame-by-frame reference gives: disorder, resets, 32- and 64-bit wraps, ECC
    increments, lost devices, unknown shards, late frames, and the auto length resolving mid-block."""
    rng = np.random.default_rng(seed)
    shards, metrics = (
        ["a", "b", "c", "d", "e"],
        ["util", "tx_bytes", "ecc_dbe", "extra", "wrap32_bytes", "wrap64_bytes"],
    )
    ref = FrameByFrame(shards, metrics, length_s=length_s, grace_s=1.0)
    blocks = WindowAssembler(shards, metrics, length_s=length_s, grace_s=1.0)
    lists = WindowAssembler(shards, metrics, length_s=length_s, grace_s=1.0)
    entries = [decode_entry(f).frames for f in _random_entries(rng, 600)]
    got_r: list[WindowData] = []
    got_b: list[WindowData] = []
    got_l: list[WindowData] = []
    i = 0
    while i < len(entries):
        n = int(rng.integers(1, 6))
        run = entries[i : i + n]
        i += n
        for e in run:
            ref.add_block(e)
        if all(run[0].joinable(e) for e in run):
            blocks.add_block(FrameBlock.concat(run))
        else:
            for e in run:
                blocks.add_block(e)
        lists.add_frames([f for e in run for f in e])
        got_r += ref.close_ready()
        got_b += blocks.close_ready()
        got_l += lists.close_ready()
        if rng.random() < 0.05:  # a topology change: counter samples follow their shard
            order = list(rng.permutation(shards))
            for a in (ref, blocks, lists):
                a.set_shards(order)
    got_r += ref.flush()
    got_b += blocks.flush()
    got_l += lists.flush()
    assert len(got_r) > 50 and ref.stats.late > 0 and ref.stats.unknown_shard > 0
    assert any(w.ecc_increments for w in got_r)
    assert_same(ref, blocks, got_r, got_b)
    assert_same(ref, lists, got_r, got_l)
