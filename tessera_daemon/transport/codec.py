"""Wire formats: packed host entries for Redis streams, contract JSON for MQTT and files.

Redis entry (one per host per sampling instant, schema version 1), stream fields:

=====  ==========================================================================================
field  value
=====  ==========================================================================================
v      b"1": entry schema version (an unknown version is a CodecError, reason ``version``)
src    the publishing agent instance, ``<agent id>/<boot id>``
seq    decimal sequence number of the entry in this partition stream for this ``src`` (dedupe)
d      msgpack map: ``h`` host, ``s`` shard ids [S], ``t`` float64 LE [S] timestamps,
       ``m`` metric names [M], ``x`` float64 LE [S x M] values (NaN: null), optional ``a``
       packbits of the [S x M] absent mask (metric not in that frame at all), ``c`` counter
       names, optional ``cf`` per-shard counter lists when the frames disagree, optional ``e``
       [[shard index, [xid codes]]...], optional ``l`` [lost shard indices]
=====  ==========================================================================================

Never pickle: msgpack and raw little-endian float64 only. Anything the decoder cannot read raises
:class:`EntryError` (a :class:`CodecError`) whose ``reason`` is one of ``undecodable``, ``version``,
``invalid``: the detector dead-letters it with that reason. Integers are real integers (a msgpack
``true`` is not the index 1), indices lie inside the entry, timestamps are finite and non-negative.
An entry that decodes but then fails in the window assembler is dead-lettered as ``unprocessable``
(``split/partition.py``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

import msgpack
import msgspec
import numpy as np

from tessera_daemon.errors import CodecError
from tessera_daemon.model import MAX_XID, MAX_XIDS, Firing, Frame, FrameBlock

ENTRY_VERSION = 1
# unprocessable: decoded, then failed in the window assembler; clock_skew: every frame too far in the future
REASONS = ("undecodable", "version", "invalid", "unprocessable", "clock_skew")
_F8 = np.dtype("<f8")
_MAX_SHARDS = 65_536
_MAX_METRICS = 4_096
_MAX_XIDS = MAX_XIDS
_MAX_XID = MAX_XID
_MAX_BIN = 1 << 28

_Name = Annotated[str, msgspec.Meta(min_length=1)]
_Names = Annotated[list[_Name], msgspec.Meta(max_length=_MAX_METRICS)]


class _Payload(msgspec.Struct):
    """The ``d`` map as a typed struct (types, non-empty names and list lengths checked in C); what it
    cannot express (sizes, ranges, indices) is checked in :func:`_frames_fast`."""

    h: str
    s: Annotated[list[_Name], msgspec.Meta(max_length=_MAX_SHARDS)]
    t: bytes
    m: _Names
    x: bytes
    a: bytes | msgspec.UnsetType = msgspec.UNSET
    c: _Names = []
    cf: list[_Names] | msgspec.UnsetType = msgspec.UNSET
    e: list[tuple[int, list[int]]] = []
    l: list[int] = []  # noqa: E741 - the wire name


_PAYLOAD = msgspec.msgpack.Decoder(_Payload)


class EntryError(CodecError):
    """A stream entry that can never be decoded; ``reason`` labels the dead-letter counter."""

    def __init__(self, reason: str, message: str) -> None:
        self.reason = reason if reason in REASONS else "invalid"
        super().__init__(f"{self.reason}: {message}")


@dataclass(frozen=True, slots=True)
class HostEntry:
    src: str
    seq: int
    host: str
    frames: FrameBlock

    @property
    def n_values(self) -> int:
        return self.frames.n_values


# ------------------------------------------------------------------------------------------- encode


def encode_host(frames: Sequence[Frame], host: str, src: str, seq: int) -> dict[bytes, bytes]:
    """Pack one host's frames of one poll into stream fields."""
    if not frames:
        raise ValueError("encode_host needs at least one frame")
    names = sorted({k for f in frames for k in f.metrics})
    m = len(names)
    rows = [[f.metrics.get(k) for k in names] for f in frames]
    values = np.array(rows, dtype=_F8).reshape(len(frames), m)
    payload: dict[str, Any] = {
        "h": host,
        "s": [f.shard for f in frames],
        "t": np.array([f.ts for f in frames], dtype=_F8).tobytes(),
        "m": names,
        "x": values.tobytes(),
    }
    if any(len(f.metrics) != m for f in frames):
        absent = np.array([[k not in f.metrics for k in names] for f in frames], dtype=np.bool_)
        payload["a"] = np.packbits(absent.ravel()).tobytes()
    counters = frames[0].counters
    if all(f.counters == counters for f in frames):
        payload["c"] = sorted(counters)
    else:
        payload["c"] = sorted(set().union(*(f.counters for f in frames)))
        payload["cf"] = [sorted(f.counters) for f in frames]
    xids = [[i, list(f.xid)] for i, f in enumerate(frames) if f.xid]
    if xids:
        payload["e"] = xids
    lost = [i for i, f in enumerate(frames) if f.lost]
    if lost:
        payload["l"] = lost
    data: bytes = msgpack.packb(payload, use_bin_type=True)
    return {b"v": b"1", b"src": src.encode(), b"seq": str(seq).encode(), b"d": data}


# ------------------------------------------------------------------------------------------- decode


def _field(fields: Mapping[Any, Any], name: str) -> bytes:
    value = fields.get(name.encode(), fields.get(name))
    if value is None:
        raise EntryError("undecodable", f"missing field {name!r}")
    if isinstance(value, str):
        return value.encode()
    if not isinstance(value, bytes):
        raise EntryError("undecodable", f"field {name!r} is not bytes")
    return value


def _str_list(obj: Any, what: str, *, limit: int) -> list[str]:
    if not isinstance(obj, list) or len(obj) > limit or not all(isinstance(s, str) and s for s in obj):
        raise EntryError("invalid", f"{what}: expected a list of non-empty strings")
    return obj


def _int(obj: Any) -> bool:
    """A real integer: msgpack reads ``true`` as a bool, and ``isinstance(True, int)`` holds."""
    return isinstance(obj, int) and not isinstance(obj, bool)


def _index(obj: Any, n: int) -> bool:
    return _int(obj) and 0 <= obj < n


def _floats(obj: Any, n: int, what: str) -> np.ndarray:
    if not isinstance(obj, bytes) or len(obj) != n * _F8.itemsize:
        raise EntryError("invalid", f"{what}: expected {n} little-endian float64")
    return np.frombuffer(obj, dtype=_F8)


def decode_entry(fields: Mapping[Any, Any] | None) -> HostEntry:
    """Decode stream fields into frames; EntryError (a CodecError) on anything unreadable."""
    if not isinstance(fields, Mapping):
        raise EntryError("undecodable", "entry has no fields (deleted or trimmed)")
    version = _field(fields, "v")
    if version != b"1":
        raise EntryError("version", f"unsupported entry version {version[:16]!r} (this daemon reads 1)")
    try:
        src = _field(fields, "src").decode()
        raw_seq = _field(fields, "seq")
        if not raw_seq.isdigit() or len(raw_seq) > 20:
            raise ValueError(f"seq {raw_seq[:24]!r} is not a decimal sequence number")
        seq = int(raw_seq)
    except (UnicodeDecodeError, ValueError) as exc:
        raise EntryError("undecodable", f"bad src/seq ({exc})") from exc
    data = _field(fields, "d")
    fast = _frames_fast(data)
    if fast is not None:
        return HostEntry(src, seq, *fast)
    try:  # the entry breaks a rule: the generic path names it (or, for what the struct refuses, reads it)
        obj = msgpack.unpackb(data, raw=False, strict_map_key=True, max_bin_len=_MAX_BIN)
    except Exception as exc:  # msgpack raises several unrelated types on garbage
        raise EntryError("undecodable", f"payload is not msgpack ({type(exc).__name__})") from exc
    if not isinstance(obj, dict):
        raise EntryError("undecodable", "payload is not a map")
    return HostEntry(src, seq, *_frames(obj))


def _frames_fast(data: bytes) -> tuple[str, FrameBlock] | None:
    """:func:`_frames` for a well-formed payload, typed-decoded by msgspec; None for anything else
    (the generic path then decodes it, or raises the :class:`EntryError` it deserves). Accepts
    exactly what the generic path accepts and gives the same block (tests/transport/test_codec.py)."""
    try:
        p = _PAYLOAD.decode(data)
    except (msgspec.ValidationError, msgspec.DecodeError):
        return None
    s, m = len(p.s), len(p.m)
    if s == 0 or len(p.t) != s * 8 or len(p.x) != s * m * 8 or len(p.x) > _MAX_BIN:
        return None
    tss = np.frombuffer(p.t, dtype=_F8)
    if not ((tss >= 0.0) & (tss < np.inf)).all():  # finite, non-negative (NaN fails both)
        return None
    absent: np.ndarray | None = None
    if p.a is not msgspec.UNSET:
        if len(p.a) != (s * m + 7) // 8:
            return None
        absent = np.unpackbits(np.frombuffer(p.a, np.uint8))[: s * m].reshape(s, m).astype(np.bool_)
    counters: frozenset[str] | list[frozenset[str]] = frozenset(p.c)
    if p.cf is not msgspec.UNSET:
        if len(p.cf) != s:
            return None
        counters = [frozenset(c) for c in p.cf]
    xids: dict[int, tuple[int, ...]] = {}
    for i, codes in p.e:
        if not 0 <= i < s or len(codes) > _MAX_XIDS or (codes and not 0 <= min(codes) <= max(codes) <= _MAX_XID):
            return None
        xids[i] = tuple(codes)
    if p.l and not 0 <= min(p.l) <= max(p.l) < s:
        return None
    values = np.frombuffer(p.x, dtype=_F8).reshape(s, m)
    return p.h, FrameBlock(p.s, tss, p.m, values, absent, counters, xids, set(p.l))


def _frames(obj: dict[str, Any]) -> tuple[str, FrameBlock]:
    host = obj.get("h")
    if not isinstance(host, str):
        raise EntryError("invalid", "h: expected the host name")
    shards = _str_list(obj.get("s"), "s", limit=_MAX_SHARDS)
    names = _str_list(obj.get("m"), "m", limit=_MAX_METRICS)
    s, m = len(shards), len(names)
    if s == 0:
        raise EntryError("invalid", "s: no shards")
    tss_arr = _floats(obj.get("t"), s, "t")
    if not np.isfinite(tss_arr).all() or tss_arr.min() < 0:
        raise EntryError("invalid", "t: timestamps must be finite unix seconds")
    values = _floats(obj.get("x"), s * m, "x").reshape(s, m)
    absent: np.ndarray | None = None
    if "a" in obj:
        raw = obj["a"]
        if not isinstance(raw, bytes) or len(raw) != (s * m + 7) // 8:
            raise EntryError("invalid", "a: bad absent mask")
        absent = np.unpackbits(np.frombuffer(raw, np.uint8))[: s * m].reshape(s, m).astype(np.bool_)
    counters = frozenset(_str_list(obj.get("c", []), "c", limit=_MAX_METRICS))
    per_frame: list[frozenset[str]] | None = None
    if "cf" in obj:
        cf = obj["cf"]
        if not isinstance(cf, list) or len(cf) != s:
            raise EntryError("invalid", "cf: expected one counter list per shard")
        per_frame = [frozenset(_str_list(c, "cf", limit=_MAX_METRICS)) for c in cf]
    xids: dict[int, tuple[int, ...]] = {}
    pairs = obj.get("e", [])
    if not isinstance(pairs, list):
        raise EntryError("invalid", "e: expected a list")
    for pair in pairs:
        if (
            not isinstance(pair, list)
            or len(pair) != 2
            or not _index(pair[0], s)
            or not isinstance(pair[1], list)
            or len(pair[1]) > _MAX_XIDS
            or not all(_int(c) and 0 <= c <= _MAX_XID for c in pair[1])
        ):
            raise EntryError("invalid", "e: expected [[shard index, [xid codes]], ...]")
        xids[pair[0]] = tuple(pair[1])
    lost_raw = obj.get("l", [])
    if not isinstance(lost_raw, list) or not all(_index(i, s) for i in lost_raw):
        raise EntryError("invalid", "l: expected shard indices")
    lost = set(lost_raw)
    return host, FrameBlock(
        shards, tss_arr, names, values, absent, counters if per_frame is None else per_frame, xids, lost
    )


# --------------------------------------------------------------------------------------- JSON forms


def frame_from_json(payload: bytes | str, *, shard: str | None = None) -> Frame:
    """A frame in contract-1 JSON (MQTT, files). ``shard``: the shard the topic names, which the
    payload must match (or supply, when the payload leaves ``shard`` out)."""
    try:
        obj = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"frame: not valid JSON ({exc})", payload=payload) from exc
    except RecursionError as exc:
        raise CodecError("frame: not valid JSON (nested too deeply)", payload=payload) from exc
    if shard is not None and isinstance(obj, dict):
        named = obj.setdefault("shard", shard)
        if named != shard:
            raise CodecError(f"frame.shard {named!r} does not match the topic's shard {shard!r}", payload=payload)
    return Frame.from_obj(obj)


def frame_to_json(frame: Frame) -> str:
    return frame.to_json()


def firing_to_json(firing: Firing) -> str:
    return firing.to_json()
