from __future__ import annotations

import math

import numpy as np

from tessera_daemon.engine.window import WindowAssembler
from tessera_daemon.model import Frame


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
