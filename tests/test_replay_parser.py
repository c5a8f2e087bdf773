"""Replay's typed parser (msgspec into FrameBlocks) against the contract's own parser, ``Frame.from_json``.

Every line means what ``Frame.from_json`` says: the same frames (values bit for bit), the same dead
letters with the same reasons, in the same batches; and a whole replay gives byte-identical firings
to the frame-by-frame reference fed ``Frame.from_json`` objects.
"""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest

from tessera_daemon.config import load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.errors import CodecError
from tessera_daemon.model import Frame, FrameBlock, Topology
from tessera_daemon.replay import BATCH, DeadLine, load_events, read_blocks, replay
from tessera_daemon.sim.messy import FleetShape, MessySpec, Nuisances, generate
from tests.window_reference import FrameByFrame

EDGE_LINES = [
    '{"v":1,"ts":1767225600.0,"shard":"a","metrics":{"x":1.5,"c":3},"counters":["c"]}',
    '{"v":1,"ts":1767225600,"shard":"b","metrics":{"x":-0.0,"c":630310905887315968},"counters":["c"]}',
    '{"v":1.0,"ts":1767225601.0,"shard":"a","metrics":{"x":2.5}}',  # 1.0 == 1: the contract accepts it
    '{"v":true,"ts":1767225601.0,"shard":"a","metrics":{"x":2.5}}',  # so is true (Python's ==)
    '{"v":2,"ts":1767225601.0,"shard":"a","metrics":{"x":2.5}}',
    '{"v":1,"ts":1767225601.0,"shard":"a","metrics":{"x":NaN,"y":Infinity}}',
    '{"v":1,"ts":1767225601.0,"shard":"a","metrics":{"x":1e400}}',
    '{"v":1,"ts":1767225601.0,"shard":"a","metrics":{"x":123456789012345678901234567890123}}',
    '{"v":1,"ts":1767225601.0,"shard":"a","metrics":{"x":1' + "0" * 400 + "}}",
    '{"v":1,"ts":1767225601.0,"shard":"a","metrics":{"x":true}}',
    '{"v":1,"ts":1767225601.0,"shard":"a","metrics":{"x":"1.0"}}',
    '{"v":1,"ts":1767225601.0,"shard":"a","metrics":null}',
    '{"v":1,"ts":true,"shard":"a"}',
    '{"v":1,"ts":-1,"shard":"a"}',
    '{"v":1,"ts":1e400,"shard":"a"}',
    '{"v":1,"ts":1767225601.0,"shard":""}',
    '{"v":1,"ts":1767225601.0,"shard":7}',
    '{"v":1,"ts":1767225601.0}',
    '{"v":1,"ts":1767225602.0,"shard":"a","xid":79}',
    '{"v":1,"ts":1767225602.0,"shard":"a","xid":[13,79]}',
    '{"v":1,"ts":1767225602.0,"shard":"a","xid":[]}',
    '{"v":1,"ts":1767225602.0,"shard":"a","xid":-1}',
    '{"v":1,"ts":1767225602.0,"shard":"a","xid":2147483648}',
    '{"v":1,"ts":1767225602.0,"shard":"a","xid":99999999999999999999999}',
    '{"v":1,"ts":1767225602.0,"shard":"a","xid":[true]}',
    '{"v":1,"ts":1767225602.0,"shard":"a","xid":' + json.dumps(list(range(257))) + "}",
    '{"v":1,"ts":1767225602.0,"shard":"a","xid":null}',
    '{"v":1,"ts":1767225602.0,"shard":"a","lost":true,"metrics":{"x":null}}',
    '{"v":1,"ts":1767225602.0,"shard":"a","lost":1}',
    '{"v":1,"ts":1767225602.0,"shard":"a","counters":"c"}',
    '{"v":1,"ts":1767225602.0,"shard":"a","counters":[1]}',
    '{"v":1,"ts":1767225602.0,"shard":"a","ts":1767225603.0,"metrics":{"x":1,"y":2,"x":3}}',  # last wins
    '{"v":1,"ts":1767225603.0,"shard":"a","unknown":{"deep":[1,[2,[3]]]},"metrics":{"z":4}}',
    '{"v":1,"ts":1767225603.0,"shard":"\\u00e9\\ud800"}',
    "[1,2,3]",
    "not json",
    '{"v":1,"ts":1767225603.0,"shard":"a"} trailing',
    "   ",
    "",
]


def reference(lines: list[str], batch: int) -> list[list[Frame] | tuple[int, str, str]]:
    """What replay did before the typed parser: ``Frame.from_json`` per line, batches of ``batch``."""
    out: list[list[Frame] | tuple[int, str, str]] = []
    cur: list[Frame] = []
    for n, line in enumerate(lines, 1):
        text = line.strip()
        if not text:
            continue
        try:
            cur.append(Frame.from_json(text))
        except CodecError as exc:
            out.append((n, str(exc), text[:4096]))
            continue
        if len(cur) >= batch:
            out.append(cur)
            cur = []
    if cur:
        out.append(cur)
    return out


def parsed(lines: list[str], batch: int) -> list[FrameBlock | tuple[int, str, str]]:
    return [(x.line, x.reason, x.payload) if isinstance(x, DeadLine) else x for x in read_blocks(lines, batch)]


@pytest.mark.parametrize("batch", [1, 3, 1000])
def test_typed_parser_means_what_the_contract_parser_means(batch: int) -> None:
    want = reference(EDGE_LINES, batch)
    got = parsed(EDGE_LINES, batch)
    assert len(got) == len(want)
    for g, w in zip(got, want, strict=True):
        if isinstance(w, tuple):
            assert g == w
        else:
            assert isinstance(g, FrameBlock) and list(g) == w
            for f, fw in zip(g, w, strict=True):  # bit for bit (and -0.0 stays -0.0)
                for k, v in fw.metrics.items():
                    assert v is None or struct.pack("<d", f.metrics[k]) == struct.pack("<d", v)
    dead = [w for w in want if isinstance(w, tuple)]
    assert 15 < len(dead) < len(EDGE_LINES) - 10  # both kinds are exercised


def test_numbers_parse_bit_for_bit() -> None:
    """Random doubles (every exponent), integers beyond 2**53 and 2**64, and hand-written forms."""
    rng = np.random.default_rng(7)
    bits = rng.integers(0, 2**63, size=3000, dtype=np.uint64) | (rng.integers(0, 2, 3000, dtype=np.uint64) << 63)
    doubles = [float(x) for x in bits.view(np.float64) if np.isfinite(x)]
    ints = [int(x) for x in rng.integers(0, 2**62, 500)] + [2**53 + 1, 2**64 + 12345, 10**25 + 1, -(2**63) - 7]
    texts = [repr(d) for d in doubles] + [str(i) for i in ints] + ["1E5", "1e-5", "-0", "0.1e1", "2.5E-320", "5e-324"]
    lines = [f'{{"v":1,"ts":1.0,"shard":"s","metrics":{{"x":{t}}}}}' for t in texts]
    (block,) = parsed(lines, len(lines))
    assert isinstance(block, FrameBlock)
    want = np.array([json.loads(t) for t in texts], np.float64)
    assert block.values[:, 0].tobytes() == want.tobytes()


def test_replay_equals_the_frame_by_frame_reference(tmp_path: Path) -> None:
    """A messy recording (mixed cadences, auto window length, jitter, dropouts, faults, a firmware
    event) with malformed and unusual lines mixed in: the typed parser and the array path give the
    firings, byte for byte, that ``Frame.from_json`` objects fed frame by frame give."""
    shape = FleetShape(zones=2, racks_per_zone=1, hosts_per_rack=4, gpus_per_host=2, second_job_share=0.5)
    spec = MessySpec(
        shape=shape,
        nuisances=Nuisances(cadence_mix="mixed", dropouts_per_host_day=40.0),
        duration_s=3600.0,
        seed=11,
        fault_kinds=("thermal_rack", "straggler", "xid79", "ecc_dbe", "silent_device"),
    )
    rec = generate(spec, tmp_path / "rec")
    lines = rec.frames_path.read_text(encoding="utf-8").splitlines()
    for i, extra in enumerate(EDGE_LINES[2:18]):  # unusual and malformed lines, early in the file
        lines.insert(50 + 40 * i, extra.replace("1767225601.0", "1").replace("1767225600", "1"))
    frames_path = tmp_path / "frames.jsonl"
    frames_path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    cfg = load_config(None, {})
    summary = replay(cfg, frames_path, rec.topology_path, tmp_path / "got.jsonl", rec.events_path)
    assert summary.opened > 0 and summary.dead_letters > 5

    topology = Topology.from_json(rec.topology_path.read_bytes())
    pipe = Pipeline(cfg, topology)
    length = None if cfg.window.auto else cfg.window.length_s
    pipe.assembler = FrameByFrame(pipe.shards, pipe.metrics, length, cfg.window.grace_s, cfg.rules.ecc_dbe_counter)
    for ev in load_events(rec.events_path):
        assert pipe.events.add(ev, source="replay").ok
    out: list[str] = []
    for item in reference(lines, BATCH):
        if isinstance(item, list):
            pipe.assembler.add_block(FrameBlock.from_frames(item))
            results = pipe.advance()
        else:
            results = []
        for r in results:
            out += [f.to_json() for f in (*r.opened, *r.resolved)]
    for r in pipe.flush():
        out += [f.to_json() for f in (*r.opened, *r.resolved)]
    assert (tmp_path / "got.jsonl").read_text(encoding="utf-8") == "".join(x + "\n" for x in out)
