from __future__ import annotations

import contextlib
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tessera_daemon.errors import CodecError
from tessera_daemon.model import ClusterEvent, Frame, FrameBlock, Topology, TopoNode
from tessera_daemon.transport.codec import decode_entry, encode_host


def test_frame_round_trip() -> None:
    f = Frame(12.5, "h0/gpu1", {"gpu_util": 0.5, "ecc_dbe": 3.0, "temp_c": None}, frozenset({"ecc_dbe"}), (79,))
    g = Frame.from_json(f.to_json())
    assert g == f
    assert json.loads(f.to_json())["xid"] == 79


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("not json", "not valid JSON"),
        ("[]", "expected a JSON object"),
        ('{"v":2,"ts":1,"shard":"a","metrics":{}}', "unsupported contract version"),
        ('{"v":1,"shard":"a","metrics":{}}', "missing field 'ts'"),
        ('{"v":1,"ts":-1,"shard":"a","metrics":{}}', "frame.ts"),
        ('{"v":1,"ts":1,"shard":"","metrics":{}}', "empty shard"),
        ('{"v":1,"ts":1,"shard":"a","metrics":{"x":"hot"}}', "frame.metrics.x"),
        ('{"v":1,"ts":1,"shard":"a","metrics":{},"xid":"79"}', "frame.xid"),
        ('{"v":1,"ts":1,"shard":"a","metrics":{},"counters":"x"}', "frame.counters"),
    ],
)
def test_malformed_frames_raise_codec_error(text: str, words: str) -> None:
    with pytest.raises(CodecError, match=words):
        Frame.from_json(text)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200) | st.text(max_size=200))
def test_fuzzed_frames_never_raise_anything_but_codec_error(payload: bytes | str) -> None:
    with contextlib.suppress(CodecError):
        Frame.from_json(payload)


def test_topology_round_trip_groups_and_hash() -> None:
    nodes = [
        TopoNode("fleet", "fleet"),
        TopoNode("z0", "cooling_zone", "fleet"),
        TopoNode("r0", "rack", "z0"),
        TopoNode("psu0", "psu", "r0"),
        TopoNode("h0", "host", "r0"),
        TopoNode("h0/g0", "shard", "h0", {"cohort": "job-1", "psu": "psu0"}),
        TopoNode("h0/g1", "shard", "h0", {"model": "H100"}),
    ]
    t = Topology(nodes)
    t2 = Topology.from_json(t.to_json())
    assert t2.to_json() == t.to_json()
    assert t.content_hash() == t2.content_hash()
    assert t.groups_of("h0/g0") == ["h0", "r0", "z0", "fleet", "psu0"]
    assert t.cohort_of("h0/g1") == "model:H100"
    assert t.members()["psu0"] == ["h0/g0"]


def test_topology_rejects_cycles_and_dangling_parents() -> None:
    with pytest.raises(CodecError, match="cycle"):
        Topology([TopoNode("a", "rack", "b"), TopoNode("b", "rack", "a")])
    with pytest.raises(CodecError, match="unknown node"):
        Topology([TopoNode("a", "rack", "zz")])


def test_event_contract() -> None:
    e = ClusterEvent.from_json('{"v":1,"id":"e1","kind":"firmware_push","ts":10,"end_ts":20,"scope":["h0"]}')
    assert e.scope == ("h0",) and e.end_ts == 20.0
    assert ClusterEvent.from_json(e.to_json()) == e
    with pytest.raises(CodecError, match=r"event\.kind"):
        ClusterEvent.from_json('{"v":1,"id":"e1","kind":"party","ts":10}')
    with pytest.raises(CodecError, match="end_ts"):
        ClusterEvent.from_json('{"v":1,"id":"e1","kind":"maintenance","ts":10,"end_ts":5}')


def _host_blocks(seed: int, n: int) -> list[FrameBlock]:
    """Decoded host entries of one shape (same metric names, one shared counter set) with the rest
    varying: absent and null metrics, XIDs and lost devices at various frame indices."""
    rng = np.random.default_rng(seed)
    out = []
    for e in range(n):
        frames = []
        for g in range(int(rng.integers(1, 5))):
            metrics: dict[str, float | None] = {"util": float(rng.normal()), "tx": float(e), "temp": 40.0}
            if rng.random() < 0.2:
                metrics["util"] = None
            if rng.random() < 0.2 and g > 0:
                del metrics["temp"]
            xid = tuple(int(x) for x in rng.integers(1, 120, size=int(rng.integers(1, 3))))
            if rng.random() < 0.7:
                xid = ()
            frames.append(
                Frame(100.0 + e + g / 10, f"h{e % 3}/g{g}", metrics, frozenset({"tx"}), xid, bool(rng.random() < 0.25))
            )
        out.append(decode_entry(encode_host(frames, f"h{e % 3}", "a/1", e)).frames)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_frameblock_concat_round_trip(seed: int) -> None:
    blocks = _host_blocks(seed, 12)
    expected = [f for b in blocks for f in list(b)]
    fresh = _host_blocks(seed, 12)  # frames not built yet: concat must work from the arrays alone
    joined = FrameBlock.concat(fresh)
    assert len(joined) == len(expected)
    assert joined.frames() == expected  # every field, order preserved: xid and lost at the right frames
    assert [f.xid for f in joined] == [f.xid for f in expected] and any(f.xid for f in expected)
    assert [f.lost for f in joined] == [f.lost for f in expected] and any(f.lost for f in expected)
    assert joined.n_values == sum(b.n_values for b in blocks)
    assert isinstance(joined.counters, frozenset)
    assert FrameBlock.concat(fresh[:1]).frames() == list(blocks[0])
    halves = FrameBlock.concat([FrameBlock.concat(fresh[:5]), FrameBlock.concat(fresh[5:])])
    assert halves.frames() == expected and halves.xids == joined.xids and halves.lost == joined.lost


def test_frameblock_concat_refuses_blocks_it_cannot_join() -> None:
    def block(names: list[str], counters: frozenset[str] | list[frozenset[str]]) -> FrameBlock:
        return FrameBlock(["s0", "s1"], np.zeros(2), names, np.ones((2, len(names))), None, counters, {}, set())

    c = frozenset({"x"})
    base = block(["x", "y"], c)
    assert base.joinable(block(["x", "y"], frozenset({"x"})))
    for other in (block(["x", "z"], c), block(["x", "y"], frozenset()), block(["x", "y"], [c, c])):
        assert not base.joinable(other) and not other.joinable(base)
        with pytest.raises(ValueError, match="concat"):
            FrameBlock.concat([base, other])
    with pytest.raises(ValueError, match="at least one"):
        FrameBlock.concat([])
