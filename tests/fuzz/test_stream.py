"""Fuzzed host entries through the split worker's real path, without Redis: codec, then ``PartitionWork``
(de-duplication, joined runs, the poison guard) over a real pipeline, then window processing. Nothing
raises; an entry is decoded, or refused with a dead-letter reason, or handed back as poison; every frame
of every taken entry is counted; no state array holds an infinity."""

from __future__ import annotations

import contextlib

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera_daemon.config import load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.errors import CodecError
from tessera_daemon.model import Frame
from tessera_daemon.sim import ClusterSim
from tessera_daemon.split.partition import PartitionWork
from tessera_daemon.transport.base import Delivery
from tessera_daemon.transport.codec import REASONS, EntryError, decode_entry, encode_host
from tessera_daemon.transport.redis import EntryToken
from tests.detect.test_hostile_values import no_infinity
from tests.fuzz.strategies import EDGE_FLOATS, JSON

SMALL = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "1",
    "TESSERA_SIM__HOSTS_PER_RACK": "2",
    "TESSERA_SIM__COHORTS": "1",
    "TESSERA_DETECTOR__WARMUP_WINDOWS": "5",
    "TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "5",
}
CFG = load_config(None, SMALL)
SIM = ClusterSim(CFG.sim, scenario="clean", seed=5)
TICKS = [SIM.step()[1] for _ in range(50)]
KEYS = ["h", "s", "t", "m", "x", "a", "c", "cf", "e", "l"]
HOSTILE_INTS = st.sampled_from([True, False, -1, 0, 1, 7, 2**31, 2**63, -(2**63), 10**6])


@st.composite
def hostile_entry(draw: st.DrawFn, frames: list[Frame], seq: int) -> dict[bytes, bytes]:
    """One host's frames, encoded, then made hostile: values at the edges of float64, times shifted, a payload
    field replaced (bools and out-of-range integers where indices belong), or the bytes corrupted."""
    fs = list(frames)
    kind = draw(st.integers(0, 5))
    if kind == 0:  # extreme values (encodable: the agent sends what its sources read)
        fs = [
            Frame(
                f.ts,
                f.shard,
                {k: draw(st.one_of(st.just(v), EDGE_FLOATS)) if v is not None else None for k, v in f.metrics.items()},
                f.counters,
                f.xid,
                f.lost,
            )
            for f in fs
        ]
    elif kind == 1:  # times: late, ahead of the stream, far ahead
        dt = draw(st.sampled_from([-60.0, -5.0, 2.5, 40.0, 1e7]))
        fs = [Frame(f.ts + dt, f.shard, f.metrics, f.counters, f.xid, f.lost) for f in fs]
    fields = encode_host(fs, "host", f"agent-{kind}/boot", seq)
    if kind == 2:
        obj = msgpack.unpackb(fields[b"d"])
        key = draw(st.sampled_from(["e", "l"]))
        obj[key] = [[draw(HOSTILE_INTS), [draw(HOSTILE_INTS)]]] if key == "e" else [draw(HOSTILE_INTS)]
        fields[b"d"] = msgpack.packb(obj, use_bin_type=True)
    elif kind == 3:
        obj = msgpack.unpackb(fields[b"d"])
        obj[draw(st.sampled_from(KEYS))] = draw(JSON)
        with contextlib.suppress(OverflowError, ValueError, TypeError):  # what msgpack cannot pack
            fields[b"d"] = msgpack.packb(obj, use_bin_type=True)
    elif kind == 4:
        d = bytearray(fields[b"d"])
        for _ in range(draw(st.integers(1, 3))):
            d[draw(st.integers(0, len(d) - 1))] = draw(st.integers(0, 255))
        fields[b"d"] = bytes(d)
    return fields


@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.large_base_example, HealthCheck.data_too_large],
)
@given(data=st.data())
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy reports overflows in sums of 1e308s; not failures
def test_fuzzed_host_entries_through_a_partition(data: st.DataObject) -> None:
    work = PartitionWork("p", "cohort", Pipeline(CFG, SIM.topology), lease=None, committed=-1)  # type: ignore[arg-type]
    work.pipeline.assembler.guard_future(CFG.window.max_future_skew_s)
    hosts: dict[str, list[Frame]] = {}
    refused: dict[str, int] = dict.fromkeys(REASONS, 0)
    taken = poison_frames = 0
    seq = 0
    for tick, frames in enumerate(TICKS):
        hosts.clear()
        for f in frames:
            hosts.setdefault(f.shard.rsplit("-", 1)[0], []).append(f)
        deliveries = []
        for fs in hosts.values():
            seq += 1
            hostile = tick >= 25 and data.draw(st.integers(0, 3)) == 0
            fields = data.draw(hostile_entry(fs, seq)) if hostile else encode_host(fs, "host", "agent/boot", seq)
            try:
                e = decode_entry(fields)
            except EntryError as exc:
                refused[exc.reason] += 1
                continue
            except CodecError:  # pragma: no cover - the decoder raises EntryError only
                raise
            deliveries.append(Delivery(e.frames, EntryToken("p", f"{seq}-0".encode(), e.src, e.seq)))
        poison = work.ingest(deliveries)
        assert all(reason in REASONS for _d, reason, _e in poison)
        taken += sum(len(d.frames) for d in deliveries)
        poison_frames += sum(len(d.frames) for d, reason, _e in poison if reason == "unprocessable")
        work.advance()
    work.pipeline.flush()
    a = work.pipeline.assembler.stats
    assert a.frames + a.late + a.unknown_shard + a.future == taken - poison_frames  # every frame counted
    assert no_infinity(work.pipeline) == []
    assert np.isfinite(work.pipeline.state.log_m).all()
