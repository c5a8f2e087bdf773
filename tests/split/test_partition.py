"""PartitionWork.ingest joins runs of host entries into one block: same result as entry by entry; a
poison entry (one the window assembler raises on) is rolled back and handed back, the rest go in."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from tessera_daemon.config import load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.engine.window import WindowAssembler, WindowData
from tessera_daemon.model import Frame, FrameBlock
from tessera_daemon.sim import ClusterSim
from tessera_daemon.split.partition import PartitionWork
from tessera_daemon.transport.base import Delivery
from tessera_daemon.transport.codec import decode_entry, encode_host
from tessera_daemon.transport.redis import EntryToken

SHARDS = ["a", "b", "c", "d", "e", "f"]
METRICS = ["util", "tx_bytes", "ecc_dbe", "extra"]
HOSTS = {"h0": ["a", "b", "c"], "h1": ["d", "e", "zz"], "h2": ["f", "a"]}  # zz is not in the topology


def _assembler() -> WindowAssembler:
    return WindowAssembler(SHARDS, METRICS, length_s=5.0, grace_s=1.0)


class _Pipeline:
    """What PartitionWork needs of a pipeline: ``ingest`` (dispatching as Pipeline.ingest does)."""

    def __init__(self) -> None:
        self.assembler = _assembler()
        self.calls: list[int] = []  # frames per ingest call

    def ingest(self, frames: Sequence[Frame]) -> None:
        self.calls.append(len(frames))
        if isinstance(frames, FrameBlock):
            self.assembler.add_block(frames)
        else:
            for f in frames:
                self.assembler.add(f)


def _entry(rng: np.random.Generator, host: str, ts: float, seq: int) -> dict[bytes, bytes]:
    """One host entry; mostly the common shape (same names, one shared counter set), now and then
    another metric set (a different ``names``), per-frame counters, absent or null metrics, resets,
    XIDs, lost devices, late frames, frames a little back in time (an earlier, still open window)."""
    wide = rng.random() < 0.1  # an extra metric in every frame: names differ from the common entries
    mixed_counters = rng.random() < 0.1
    frames = []
    for sid in HOSTS[host]:
        r = rng.random()
        t = ts - 25.0 if r < 0.04 else ts - 4.0 if r < 0.12 else ts
        metrics: dict[str, float | None] = {
            "util": float(rng.normal()),
            "tx_bytes": float(seq * 1000 + rng.integers(0, 500)),
            "ecc_dbe": float(seq // 7),
            "extra": 1.0,
        }
        if wide:
            metrics["other"] = 2.0
        if rng.random() < 0.1:
            metrics["util"] = None
        if rng.random() < 0.05:
            del metrics["extra"]  # absent in this frame: the entry carries an absent mask
        if rng.random() < 0.05:
            metrics["tx_bytes"] = 3.0  # a reset
        counters = frozenset({"tx_bytes", "ecc_dbe"})
        if mixed_counters and rng.random() < 0.5:
            counters = frozenset({"ecc_dbe"})
        xid = (79, 48) if rng.random() < 0.06 else ()
        frames.append(Frame(t, sid, metrics, counters, xid, lost=bool(rng.random() < 0.04)))
    return encode_host(frames, host, f"agent-{host}/boot", seq)


def _deliveries(rng: np.random.Generator, n: int) -> list[Delivery]:
    """Deliveries in stream order, with redeliveries of earlier entries (duplicates) and now and then
    a plain list of frames (as the MQTT and file sources deliver)."""
    out: list[Delivery] = []
    sent: list[tuple[dict[bytes, bytes], EntryToken]] = []
    seqs = dict.fromkeys(HOSTS, 0)
    ts = 1000.0
    for i in range(n):
        ts += float(rng.uniform(0.0, 1.5))
        if sent and rng.random() < 0.08:  # a redelivery: same src and seq, decoded again
            fields, tok = sent[int(rng.integers(max(0, len(sent) - 30), len(sent)))]
        elif rng.random() < 0.03:
            frames = [
                Frame(ts, s, {"util": float(rng.normal()), "tx_bytes": float(i * 999)}, frozenset({"tx_bytes"}))
                for s in ("b", "e")
            ]
            out.append(Delivery(frames, EntryToken("p", f"{i}-1".encode(), f"list/{i}", 0)))
            continue
        else:
            host = str(rng.choice(list(HOSTS)))
            seqs[host] += 1
            fields = _entry(rng, host, ts, seqs[host])
            tok = EntryToken("p", f"{i}-0".encode(), f"agent-{host}/boot", seqs[host])
            sent.append((fields, tok))
        out.append(Delivery(decode_entry(fields).frames, tok))
    return out


def _work() -> PartitionWork:
    return PartitionWork("p", "cohort", _Pipeline(), lease=None, committed=-1)  # type: ignore[arg-type]


def _assert_same(x: WindowAssembler, y: WindowAssembler, wx: list[WindowData], wy: list[WindowData]) -> None:
    """Exactly the same windows and state, bit for bit (not merely close)."""
    assert len(wx) == len(wy) > 20
    for a, b in zip(wx, wy, strict=True):
        assert (a.index, a.n_frames, a.xids, a.ecc_increments, a.lost) == (
            b.index,
            b.n_frames,
            b.xids,
            b.ecc_increments,
            b.lost,
        )
        np.testing.assert_array_equal(a.present, b.present)
        np.testing.assert_array_equal(a.values, b.values)  # NaN == NaN here, otherwise exact
    assert x.stats == y.stats
    assert x._cnt_col == y._cnt_col  # counters numbered in the same order
    np.testing.assert_array_equal(x._cnt_v, y._cnt_v)  # counter samples, bit for bit
    np.testing.assert_array_equal(x._cnt_t, y._cnt_t)
    assert x.watermark == y.watermark and x.last_closed == y.last_closed


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_joined_ingest_equals_per_entry_ingest(seed: int) -> None:
    rng = np.random.default_rng(seed)
    deliveries = _deliveries(rng, 900)
    cuts = np.sort(rng.choice(np.arange(1, len(deliveries)), size=25, replace=False)).tolist()
    batches = [deliveries[a:b] for a, b in zip([0, *cuts], [*cuts, len(deliveries)], strict=True)]

    joined = _work()  # the real PartitionWork.ingest: runs of joinable entries in one call
    per_entry = _assembler()  # the reference: same de-duplication, one entry at a time
    by_frame = _assembler()  # and frame by frame, through Frame objects
    seen: dict[str, int] = {}
    got_j: list[WindowData] = []
    got_e: list[WindowData] = []
    got_f: list[WindowData] = []
    for batch in batches:
        joined.ingest(batch)
        for d in batch:
            tok = d.token
            if seen.get(tok.src, -1) >= tok.seq:
                continue
            seen[tok.src] = tok.seq
            if isinstance(d.frames, FrameBlock):
                per_entry.add_block(d.frames)
            else:
                for f in d.frames:
                    per_entry.add(f)
            for f in list(d.frames):
                by_frame.add(f)
        got_j += joined.pipeline.assembler.close_ready()
        got_e += per_entry.close_ready()
        got_f += by_frame.close_ready()
    got_j += joined.pipeline.assembler.flush()
    got_e += per_entry.flush()
    got_f += by_frame.flush()

    asm = joined.pipeline.assembler
    _assert_same(asm, per_entry, got_j, got_e)
    _assert_same(asm, by_frame, got_j, got_f)
    assert joined.duplicates > 20 and asm.stats.late > 0 and asm.stats.unknown_shard > 0
    assert any(w.xids for w in got_j) and any(w.lost for w in got_j) and any(w.ecc_increments for w in got_j)
    calls: list[int] = joined.pipeline.calls  # type: ignore[attr-defined]
    n_ingested = len(deliveries) - joined.duplicates
    assert len(calls) < n_ingested / 2  # it did join: far fewer calls than entries
    assert sum(calls) == sum(len(d.frames) for d in deliveries) - _dup_frames(deliveries)


def _dup_frames(deliveries: list[Delivery]) -> int:
    seen: dict[str, int] = {}
    n = 0
    for d in deliveries:
        if seen.get(d.token.src, -1) >= d.token.seq:
            n += len(d.frames)
        else:
            seen[d.token.src] = d.token.seq
    return n


def test_runs_break_on_names_counters_and_frame_lists() -> None:
    """What is joined and what is not: only consecutive blocks with equal names and shared counters."""

    def block(names: list[str], counters: Any, n: int = 2) -> FrameBlock:
        return FrameBlock(
            [f"s{i}" for i in range(n)],
            np.arange(n, dtype=np.float64),
            names,
            np.ones((n, len(names))),
            None,
            counters,
            {},
            set(),
        )

    c = frozenset({"x"})
    common = [block(["x", "y"], c) for _ in range(3)]
    wide = block(["x", "y", "z"], c)
    per_frame = block(["x", "y"], [c, frozenset()])
    frames = [Frame(1.0, "s0", {"x": 1.0})]
    got: list[Any] = []

    class Recorder:
        assembler = _assembler()  # what a failed run would be rolled back to

        def ingest(self, fr: Any) -> None:
            got.append(fr)

    work = PartitionWork("p", "cohort", Recorder(), lease=None, committed=-1)  # type: ignore[arg-type]
    seq = iter(range(100))
    work.ingest(
        [
            Delivery(b, EntryToken("p", b"1-0", "src", next(seq)))
            for b in (common[0], common[1], wide, common[2], per_frame, per_frame, common[0])
        ]
        + [
            Delivery(frames, EntryToken("p", b"2-0", "other", 1)),
            Delivery(common[1], EntryToken("p", b"3-0", "src", 1)),  # a duplicate: dropped
            Delivery(common[2], EntryToken("p", b"4-0", "src", 50)),
        ]
    )
    assert [len(g) for g in got] == [4, 2, 2, 2, 2, 2, 1, 2]
    assert isinstance(got[0], FrameBlock) and got[0] == [*common[0], *common[1]]
    assert [got[1], got[2], got[3], got[4], got[5], got[6], got[7]] == [
        wide,
        common[2],
        per_frame,
        per_frame,
        common[0],
        frames,
        common[2],
    ]
    assert got[1] is wide and got[3] is per_frame and got[4] is per_frame and got[6] is frames
    assert work.duplicates == 1 and work.position == b"4-0" and len(work.unacked) == 10


def _poison_block(ts: float, kind: str) -> FrameBlock:
    """A block the codec would refuse (it rejects bools as indices) made by hand: the assembler raises on it."""
    xids: dict[Any, tuple[int, ...]] = {True: (79,)} if kind == "xid" else {}
    lost: set[Any] = {True} if kind == "lost" else set()
    return FrameBlock(
        ["a", "b", "c"],
        np.full(3, ts),
        ["util", "tx_bytes"],
        np.ones((3, 2)),
        None,
        frozenset({"tx_bytes"}),
        xids,
        lost,
    )


@pytest.mark.parametrize("kind", ["xid", "lost"])
def test_a_poison_entry_is_rolled_back_and_handed_back(kind: str) -> None:
    """Joined into a run with good entries, the poison one raises inside ``add_block``: the run is rolled
    back, the good entries go in one at a time, the poison one is returned with its error, and the state
    is exactly what ingesting the good entries alone gives (nothing half-applied for a checkpoint)."""
    rng = np.random.default_rng(7)
    good = [d for d in _deliveries(rng, 300) if isinstance(d.frames, FrameBlock)]
    block = good[150].frames
    assert isinstance(block, FrameBlock)
    poison_block = _poison_block(float(block.ts[0]), kind)
    poison = Delivery(poison_block, EntryToken("p", b"999-0", "evil/boot", 1))
    batch = [*good[:150], poison, *good[150:]]
    with pytest.raises(ValueError):  # the failure is real: the assembler raises on this block
        _assembler().add_block(poison_block)

    work = _work()
    failed: list[tuple[Delivery, str, str]] = []
    got: list[WindowData] = []
    for i in range(0, len(batch), 40):
        failed += work.ingest(batch[i : i + 40])
        got += work.pipeline.assembler.close_ready()
    got += work.pipeline.assembler.flush()
    assert [d for d, _r, _e in failed] == [poison]
    assert failed[0][1] == "unprocessable" and failed[0][2].startswith("ValueError")

    clean = _work()
    ref: list[WindowData] = []
    for i in range(0, len(batch), 40):  # the same batches, without the poison entry
        assert clean.ingest([d for d in batch[i : i + 40] if d is not poison]) == []
        ref += clean.pipeline.assembler.close_ready()
    ref += clean.pipeline.assembler.flush()
    _assert_same(work.pipeline.assembler, clean.pipeline.assembler, got, ref)
    assert poison.token.id in work.unacked and work.position == batch[-1].token.id


def test_idle_close_counts_silence_from_the_stream_not_the_workers_own_stalls() -> None:
    """A partition's open windows close after ``idle_s`` of silence, measured between idle checks (one per
    consumer round, after its receive); time the worker spent busy after the last entries, before its next
    receive, is not silence (it closed windows early, with frames still unread, on a loaded machine)."""
    cfg = load_config(None, {"TESSERA_WINDOW__LENGTH_S": "10", "TESSERA_SIM__COHORTS": "1"})
    sim = ClusterSim(cfg.sim, start_ts=1_767_225_600.0)
    work = PartitionWork("p", "cohort", Pipeline(cfg, sim.topology), lease=None, committed=-1)  # type: ignore[arg-type]
    seq = 0

    def feed() -> None:
        nonlocal seq
        _ts, frames = sim.step()
        seq += 1
        work.ingest([Delivery(frames, EntryToken("p", f"{seq}-0".encode(), "agent/1", seq))])

    feed()
    assert work.pipeline.assembler._open
    idle_s = 0.05
    time.sleep(2 * idle_s)  # busy after the entries, before the round's idle check: not silence
    assert work.idle_close(idle_s) == [] and not work.fed  # the round that processed them: silence starts
    time.sleep(2 * idle_s)  # busy again (a long round elsewhere) before the next receive
    assert work.idle_close(idle_s) == []  # the receive came early in that round: only ~0 s of silence seen
    assert (closed := work.idle_close(idle_s)) and all(r.frames > 0 for r in closed)  # silent a full round
    assert not work.pipeline.assembler._open
    feed()
    time.sleep(2 * idle_s)
    assert work.idle_close(idle_s) == []  # entries again: silence starts over
