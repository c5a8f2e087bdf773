"""Wire formats: packed host entries round-trip exactly; anything else is a CodecError, never a crash."""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera_daemon.engine.window import WindowAssembler
from tessera_daemon.errors import CodecError
from tessera_daemon.model import Frame, FrameBlock
from tessera_daemon.sim import ClusterSim
from tessera_daemon.transport.codec import EntryError, decode_entry, encode_host, frame_from_json
from tessera_daemon.transport.keys import Keys, partition_token
from tests.transport.helpers import SIM, make_cfg


def test_simulated_host_round_trips_exactly() -> None:
    cfg = make_cfg("redis://127.0.0.1:1/0", **{k: v for k, v in SIM.items() if k.startswith("TESSERA_SIM")})
    sim = ClusterSim(cfg.sim, scenario="xid79")
    for _ in range(402):
        _ts, frames = sim.step()
    host = [f for f in frames if f.shard.startswith("z0-r00-h00-")]
    fields = encode_host(host, "z0-r00-h00", "agent/1", 7)
    e = decode_entry(fields)
    assert (e.src, e.seq, e.host) == ("agent/1", 7, "z0-r00-h00")
    assert e.frames == host  # counters up to 2**64, lost frames and XIDs included
    assert len(fields[b"d"]) < 1200


def test_mixed_frames_keep_none_absent_xid_lost_and_counters() -> None:
    frames = [
        Frame(10.0, "h/g0", {"a": 1.5, "b": None, "c": 2.0**64 - 5}, frozenset({"c"}), (79,)),
        Frame(10.0, "h/g1", {"a": -0.25}, frozenset(), (), lost=False),
        Frame(10.5, "h/g2", {"a": None, "b": None, "c": None}, frozenset({"c"}), (48, 79), lost=True),
    ]
    e = decode_entry(encode_host(frames, "h", "s", 1))
    assert e.frames == frames
    assert e.n_values == 7


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (None, "undecodable"),
        ({}, "undecodable"),
        ({b"v": b"2", b"src": b"a", b"seq": b"1", b"d": b""}, "version"),
        ({b"v": b"1", b"src": b"a", b"seq": b"x", b"d": b""}, "undecodable"),
        ({b"v": b"1", b"src": b"a", b"seq": b"1", b"d": b"\xc1"}, "undecodable"),
        ({b"v": b"1", b"src": b"a", b"seq": b"1", b"d": msgpack.packb([1, 2])}, "undecodable"),
        ({b"v": b"1", b"src": b"a", b"seq": b"1", b"d": msgpack.packb({"h": "h", "s": [], "m": []})}, "invalid"),
    ],
)
def test_unreadable_entries_name_their_reason(fields: dict[bytes, bytes] | None, reason: str) -> None:
    with pytest.raises(EntryError) as info:
        decode_entry(fields)
    assert info.value.reason == reason
    assert isinstance(info.value, CodecError)


def _valid_payload() -> dict[str, object]:
    return dict(
        msgpack.unpackb(
            encode_host([Frame(1.0, "s0", {"m": 1.0}, frozenset(), (3,)), Frame(1.0, "s1", {"m": 2.0})], "h", "a", 1)[
                b"d"
            ]
        )
    )


PAYLOAD_KEYS = ["h", "s", "t", "m", "x", "a", "c", "cf", "e", "l"]
values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=8)
    | st.binary(max_size=64),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=4), inner, max_size=4),
    max_leaves=12,
)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(key=st.sampled_from(PAYLOAD_KEYS), value=values, raw=st.binary(max_size=200), mode=st.integers(0, 2))
def test_fuzzed_payloads_only_ever_raise_codec_errors(key: str, value: object, raw: bytes, mode: int) -> None:
    payload = _valid_payload()
    if mode == 0:
        payload[key] = value
        data = msgpack.packb(payload, use_bin_type=True)
    elif mode == 1:
        payload.pop(key, None)
        data = msgpack.packb(payload, use_bin_type=True)
    else:
        data = raw
    try:
        e = decode_entry({b"v": b"1", b"src": b"a", b"seq": b"1", b"d": data})
    except CodecError:
        return
    for f in e.frames:  # whatever decodes is a well-formed frame
        assert f.shard and math.isfinite(f.ts) and f.ts >= 0
        assert all(v is None or math.isfinite(v) for v in f.metrics.values())
    WindowAssembler(["s0", "s1"], ["m"], 5.0, 1.0).add_block(e.frames)  # and the window assembler takes it


def _with(key: str, value: object) -> dict[bytes, bytes]:
    payload = _valid_payload()
    payload[key] = value
    return {b"v": b"1", b"src": b"a", b"seq": b"1", b"d": msgpack.packb(payload, use_bin_type=True)}


@pytest.mark.parametrize(
    ("fields", "what"),
    [  # regression: each of these once passed the codec (``isinstance(True, int)``) and killed the worker
        (_with("e", [[True, [79]]]), "xid shard index true"),
        (_with("e", [[0, [True]]]), "xid code true"),
        (_with("e", [[0, [79]], [2, [79]]]), "xid shard index out of range"),
        (_with("e", [[0, [-1]]]), "negative xid code"),
        (_with("e", [[0, [2**40]]]), "xid code beyond 32 bits"),
        (_with("l", [True]), "lost index true"),
        (_with("l", [-1]), "negative lost index"),
        (_with("t", np.array([1.0, -5.0]).tobytes()), "negative timestamp"),
        (_with("t", np.array([1.0, np.inf]).tobytes()), "infinite timestamp"),
        (_with("t", np.array([np.nan, 1.0]).tobytes()), "NaN timestamp"),
        ({**_with("h", "h"), b"seq": b"1_0"}, "seq with an underscore"),
        ({**_with("h", "h"), b"seq": b"-3"}, "negative seq"),
    ],
)
def test_bools_out_of_range_indices_and_bad_numbers_are_refused(fields: dict[bytes, bytes], what: str) -> None:
    with pytest.raises(EntryError) as info:
        decode_entry(fields)
    assert info.value.reason in ("invalid", "undecodable"), what


def test_json_frames_from_mqtt_topics() -> None:
    f = frame_from_json(b'{"v":1,"ts":5,"metrics":{"loss":0.5,"grad_norm":1.25}}', shard="job7/rank3")
    assert f == Frame(5.0, "job7/rank3", {"loss": 0.5, "grad_norm": 1.25})
    with pytest.raises(CodecError, match="does not match"):
        frame_from_json(b'{"v":1,"ts":5,"shard":"other","metrics":{}}', shard="job7/rank3")
    with pytest.raises(CodecError):
        frame_from_json(b"{not json", shard="x")
    with pytest.raises(CodecError):
        frame_from_json(b'{"v":2,"ts":5,"metrics":{}}', shard="x")


def test_keys_carry_hash_tags_and_safe_tokens() -> None:
    k = Keys("tessera")
    assert k.stream("job-0") == "tessera:{job-0}:frames"
    assert k.token_of_stream(k.stream("model:H100")) == "model:H100"
    assert partition_token("job-0") == "job-0"
    odd = partition_token("team {a}/job 1")
    assert odd.startswith("h-") and "{" not in odd and odd == partition_token("team {a}/job 1")
    assert np.all([k.lease("t").startswith("tessera:{t}"), k.checkpoint("t").startswith("tessera:{t}")])


def _generic(data: bytes) -> tuple[str, FrameBlock] | str:
    """The generic decoder (msgpack + checks in Python): (host, block), or the EntryError's reason."""
    from tessera_daemon.transport.codec import _frames  # noqa: PLC0415

    try:
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=1 << 28)
        if not isinstance(obj, dict):
            return "undecodable"
        return _frames(obj)
    except EntryError as exc:
        return str(exc)
    except Exception:
        return "undecodable"


def _mutations(rng: np.random.Generator) -> list[dict[str, object]]:
    s, m = 3, 4
    good: dict[str, object] = {
        "h": "h0",
        "s": ["a", "b", "c"],
        "t": np.array([1.0, 2.0, 3.0]).tobytes(),
        "m": ["w", "x", "y", "z"],
        "x": rng.standard_normal(s * m).tobytes(),
        "c": ["x"],
        "e": [[1, [79, 13]]],
        "l": [2],
    }
    odd: list[object] = [None, True, 0, -1, 3, 2**31, 2**64 - 1, 1.5, "", "q", b"", b"\x00" * 8, [], [""], [True], {}]
    out = [good, {**good, "a": np.packbits(rng.random(s * m) < 0.3).tobytes()}, {**good, "cf": [["x"], [], ["w", "x"]]}]
    for _ in range(400):
        bad = dict(good)
        key = str(rng.choice(["h", "s", "t", "m", "x", "a", "c", "cf", "e", "l", "zz"]))
        kind = int(rng.integers(0, 4))
        if kind == 0:
            bad.pop(key, None)
        elif kind == 1:
            bad[key] = odd[int(rng.integers(0, len(odd)))]
        elif kind == 2 and key in ("e",):
            bad[key] = [[int(rng.integers(-1, 5)), [int(rng.integers(-2, 2**31 + 2))]]]
        elif kind == 2 and key in ("l",):
            bad[key] = [int(rng.integers(-1, 5))]
        elif kind == 2 and key in ("s", "m", "c"):
            bad[key] = [*list(bad.get(key, [])), odd[int(rng.integers(0, len(odd)))]]  # type: ignore[call-overload]
        else:
            bad[key] = np.array([math.nan if rng.random() < 0.5 else -1.0] * s).tobytes()
        out.append(bad)
    return out


def test_typed_fast_path_accepts_and_gives_exactly_what_the_generic_path_gives() -> None:
    """Every payload the msgspec struct accepts, the generic decoder accepts with the same block; every
    payload the generic decoder accepts, the struct accepts (so real traffic never takes the slow path)."""
    from tessera_daemon.transport.codec import _frames_fast  # noqa: PLC0415

    rng = np.random.default_rng(5)
    accepted = refused = 0
    for obj in _mutations(rng):
        data = msgpack.packb(obj, use_bin_type=True)
        fast, slow = _frames_fast(data), _generic(data)
        if fast is None:
            assert isinstance(slow, str), obj
            refused += 1
            continue
        assert not isinstance(slow, str), (obj, slow)
        (h1, b1), (h2, b2) = fast, slow
        assert h1 == h2 and b1.shards == b2.shards and b1.names == b2.names
        for attr in ("counters", "xids", "lost"):
            assert getattr(b1, attr) == getattr(b2, attr)
        assert b1.ts.tobytes() == b2.ts.tobytes() and b1.values.tobytes() == b2.values.tobytes()
        a1, a2 = b1.absent, b2.absent
        assert (a1 is None and a2 is None) or (a1 is not None and a2 is not None and np.array_equal(a1, a2))
        accepted += 1
    assert accepted > 30 and refused > 150
