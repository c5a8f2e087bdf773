"""Checkpoint of a detector :class:`Pipeline`: everything a replacement needs to continue exactly.

What is saved is the pipeline's whole object graph except its configuration: every per-shard and
per-cohort state array, the missing-window runs, the window assembler (open windows' sums and
counts, counter samples for rates, last closed window, watermark, counters), the firing book (active
firings with their hysteresis counters, recently resolved, totals), the event book, the window table
and the topology, plus the caller's position in its input (a stream id) and a small ``extra`` map.
The graph is walked generically, so state added to the pipeline later is saved too; a value of a
type the walker does not know (a callable, an object from outside the package) fails the snapshot
loudly instead of being skipped. Configuration objects and the attributes the pipeline derives from
its configuration (``DERIVED``) are not saved: the restoring process's own are used, after checking
that the settings that change the meaning of the state (metrics, bets, warm-up, window) are equal.
Restoring a checkpoint and feeding the input after its position gives the same windows and firings
as an uninterrupted run.

Format: ``b"TSCK"`` + schema version (2 bytes, big-endian) + SHA-256 of the body (32 bytes) + body,
body = zlib(msgpack(map)). Values are tagged maps (``{"~": tag, ...}``): arrays are raw bytes with a
numeric dtype and a shape, objects name a class of this package and carry their fields, shared
references are kept. Never pickle: nothing in a checkpoint can name code to run. Anything that does
not validate (magic, version, checksum, structure, classes, fields, dtypes, shapes, configuration)
raises :class:`~tessera_daemon.errors.CheckpointError` and nothing is loaded.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib
import struct
import time
import zlib
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass
from typing import Any

import msgpack
import numpy as np

from tessera_daemon.config import Config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.errors import CheckpointError, CodecError
from tessera_daemon.model import Topology

MAGIC = b"TSCK"
SCHEMA_VERSION = 2  # 2: detector state holds the warm-up fits (cohort pooling)
_HEADER = struct.Struct(">4sH32s")
PACKAGE = "tessera_daemon."
CONFIG_MODULES = ("tessera_daemon.config", "tessera_daemon.settings")
DERIVED = frozenset({"cfg", "params", "bets", "log_cols", "critical_xids", "metrics", "_member_sets"})  # + caches
_INT64 = (-(2**63), 2**64 - 1)


@dataclass(frozen=True, slots=True)
class CheckpointMeta:
    partition: str
    position: str  # the caller's input position (a stream entry id) the state covers
    window: int  # last closed window index, -1: none yet
    created_ts: float
    extra: dict[str, Any]
    size_bytes: int


def _is_config(v: Any) -> bool:
    mod = type(v).__module__
    return dataclasses.is_dataclass(v) and (mod.startswith(CONFIG_MODULES) or mod.endswith("settings"))


def _fields(obj: Any) -> list[str]:
    if dataclasses.is_dataclass(obj):
        return [f.name for f in dataclasses.fields(obj)]
    names = list(getattr(obj, "__dict__", {}))
    for cls in type(obj).__mro__:
        names += [s for s in getattr(cls, "__slots__", ()) if s not in names and hasattr(obj, s)]
    return names


# ---------------------------------------------------------------------------------------- encoder


class _Encoder:
    def __init__(self) -> None:
        self.memo: dict[int, int] = {}
        self.keep: list[Any] = []  # keeps encoded objects alive so ids stay unique

    def enc(self, v: Any) -> Any:  # noqa: C901 - one branch per supported type
        if v is None or isinstance(v, bool | str | bytes):
            return v
        if isinstance(v, float):
            return v
        if isinstance(v, int):
            return v if _INT64[0] <= v <= _INT64[1] else {"~": "big", "v": str(v)}
        if isinstance(v, np.generic):
            return {"~": "sc", "d": v.dtype.str, "v": v.item()} if v.dtype.kind in "biuf" else self._bad(v)
        if _is_config(v):
            return {"~": "cfg"}
        ref = self.memo.get(id(v))
        if ref is not None:
            return {"~": "ref", "i": ref}
        i = self.memo[id(v)] = len(self.memo)
        self.keep.append(v)
        if isinstance(v, np.ndarray):
            if v.dtype.kind not in "biuf":
                self._bad(v)
            a = np.ascontiguousarray(v)
            return {"~": "nd", "i": i, "d": a.dtype.str, "s": list(a.shape), "b": a.tobytes()}
        if isinstance(v, Topology):
            return {"~": "topo", "i": i, "v": v.to_json()}
        if isinstance(v, Counter):
            return {"~": "ctr", "i": i, "v": [[self.enc(k), n] for k, n in v.items()]}
        if isinstance(v, OrderedDict):
            return {"~": "od", "i": i, "v": [[self.enc(k), self.enc(x)] for k, x in v.items()]}
        if type(v) is dict:
            return {"~": "dict", "i": i, "v": [[self.enc(k), self.enc(x)] for k, x in v.items()]}
        if isinstance(v, deque):
            return {"~": "dq", "i": i, "m": v.maxlen, "v": [self.enc(x) for x in v]}
        if type(v) in (list, tuple, set, frozenset):
            return {"~": type(v).__name__, "i": i, "v": [self.enc(x) for x in v]}
        cls = type(v)
        if not cls.__module__.startswith(PACKAGE) or callable(v) or isinstance(v, type):
            self._bad(v)
        return {
            "~": "obj",
            "i": i,
            "c": f"{cls.__module__}:{cls.__qualname__}",
            "f": {n: self.enc(getattr(v, n)) for n in _fields(v)},
        }

    @staticmethod
    def _bad(v: Any) -> Any:
        raise CheckpointError(
            f"checkpoint: cannot save a {type(v).__module__}.{type(v).__qualname__} "
            "(teach engine/checkpoint.py about it)"
        )


# ---------------------------------------------------------------------------------------- decoder


class _Decoder:
    def __init__(self) -> None:
        self.memo: dict[int, Any] = {}

    def dec(self, e: Any, fresh: Any = None) -> Any:  # noqa: C901 - one branch per tag
        if e is None or isinstance(e, bool | int | float | str | bytes):
            return e
        if isinstance(e, list):
            raise CheckpointError("checkpoint: untagged list")
        if not isinstance(e, dict):
            raise CheckpointError(f"checkpoint: unexpected {type(e).__name__}")
        tag = e.get("~")
        if tag == "cfg":
            if fresh is None or not _is_config(fresh):
                raise CheckpointError("checkpoint: a configuration object has no counterpart here")
            return fresh
        if tag == "big":
            return int(e["v"])
        if tag == "sc":
            return np.dtype(_dtype(e["d"])).type(e["v"])
        if tag == "ref":
            try:
                return self.memo[e["i"]]
            except KeyError:
                raise CheckpointError("checkpoint: dangling reference") from None
        i = e["i"]
        v: Any
        if tag == "nd":
            dt = np.dtype(_dtype(e["d"]))
            shape = e["s"]
            if not isinstance(shape, list) or not all(isinstance(n, int) and n >= 0 for n in shape):
                raise CheckpointError(f"checkpoint: bad array shape {shape!r}")
            raw = e["b"]
            if not isinstance(raw, bytes) or len(raw) != int(np.prod(shape, dtype=np.int64)) * dt.itemsize:
                raise CheckpointError(f"checkpoint: array bytes do not fill shape {shape} of {dt}")
            v = np.frombuffer(raw, dtype=dt).reshape(shape).copy()
        elif tag == "topo":
            v = Topology.from_json(e["v"])
        elif tag == "ctr":
            v = Counter()
            self.memo[i] = v
            v.update({self._key(k): int(n) for k, n in e["v"]})
        elif tag in ("dict", "od"):
            v = {} if tag == "dict" else OrderedDict()
            self.memo[i] = v
            for k, x in e["v"]:
                v[self._key(k)] = self.dec(x)
        elif tag == "dq":
            v = deque(maxlen=e["m"])
            self.memo[i] = v
            v.extend(self.dec(x) for x in e["v"])
        elif tag in ("list", "tuple", "set", "frozenset"):
            items = [self.dec(x) for x in e["v"]]
            v = {"list": list, "tuple": tuple, "set": set, "frozenset": frozenset}[tag](items)
        elif tag == "obj":
            v = self._obj(e, i, fresh)
        else:
            raise CheckpointError(f"checkpoint: unknown tag {tag!r}")
        self.memo[i] = v
        return v

    def _key(self, k: Any) -> Any:
        key = self.dec(k)
        try:
            hash(key)
        except TypeError:
            raise CheckpointError("checkpoint: unhashable mapping key") from None
        return key

    def _obj(self, e: dict[str, Any], i: int, fresh: Any) -> Any:
        module, _, qual = str(e["c"]).partition(":")
        if not module.startswith(PACKAGE) or "." in qual or not qual:
            raise CheckpointError(f"checkpoint: class {e['c']!r} is not allowed")
        try:
            cls = getattr(importlib.import_module(module), qual)
        except (ImportError, AttributeError) as exc:
            raise CheckpointError(f"checkpoint: unknown class {e['c']!r}") from exc
        if not isinstance(cls, type):
            raise CheckpointError(f"checkpoint: {e['c']!r} is not a class")
        saved = e["f"]
        if not isinstance(saved, dict):
            raise CheckpointError(f"checkpoint: {qual}: fields are not a map")
        want = (
            set(_fields(fresh))
            if type(fresh) is cls
            else ({f.name for f in dataclasses.fields(cls)} if dataclasses.is_dataclass(cls) else None)
        )
        if want is not None and set(saved) != want:
            diff = sorted(set(saved) ^ want)
            raise CheckpointError(f"checkpoint: {qual} was saved by another version (fields differ: {diff})")
        obj: Any = object.__new__(cls)
        self.memo[i] = obj
        for name, x in saved.items():
            object.__setattr__(obj, name, self.dec(x, getattr(fresh, name, None)))
        return obj


def _dtype(d: Any) -> str:
    if not isinstance(d, str):
        raise CheckpointError("checkpoint: bad dtype")
    try:
        dt = np.dtype(d)
    except TypeError:
        raise CheckpointError(f"checkpoint: bad dtype {d!r}") from None
    if dt.kind not in "biuf":
        raise CheckpointError(f"checkpoint: dtype {d!r} not allowed")
    return d


# -------------------------------------------------------------------------------------- snapshot


def _config_fingerprint(cfg: Config) -> dict[str, Any]:
    # "warmup_max" (the warm-up buffer depth) arrived with the adaptive warm-up: checkpoints written
    # before it lack the key and are refused here, before any state is decoded
    d = cfg.detector
    return {
        "metrics": list(d.metrics),
        "log_metrics": list(d.log_metrics),
        "bets": [float(b) for b in d.bets],
        "warmup": d.warmup_windows,
        "warmup_max": d.warmup_max_windows,
        "length_s": cfg.window.length_s,
        "grace_s": cfg.window.grace_s,
        "ecc_counter": cfg.rules.ecc_dbe_counter,
    }


def snapshot(
    pipeline: Pipeline,
    *,
    partition: str,
    position: str,
    extra: dict[str, Any] | None = None,
    now: float | None = None,
    level: int = 1,
) -> bytes:
    """Serialise ``pipeline`` (and the caller's input ``position``) into a checkpoint blob."""
    enc = _Encoder()
    state = {n: enc.enc(getattr(pipeline, n)) for n in _fields(pipeline) if n not in DERIVED}
    body: dict[str, Any] = {
        "schema": SCHEMA_VERSION,
        "partition": partition,
        "position": position,
        "created_ts": time.time() if now is None else now,
        "extra": extra or {},
        "config": _config_fingerprint(pipeline.cfg),
        "topology": pipeline.topology.to_json(),
        "pipeline": state,
    }
    packed = zlib.compress(msgpack.packb(body, use_bin_type=True), level)
    return _HEADER.pack(MAGIC, SCHEMA_VERSION, hashlib.sha256(packed).digest()) + packed


# --------------------------------------------------------------------------------------- restore


def read_body(blob: bytes) -> dict[str, Any]:
    """Validate the envelope (magic, version, checksum) and decode the body map."""
    if not isinstance(blob, bytes) or len(blob) < _HEADER.size:
        raise CheckpointError("checkpoint: too short to hold a header")
    magic, version, digest = _HEADER.unpack_from(blob)
    if magic != MAGIC:
        raise CheckpointError(f"checkpoint: bad magic {magic!r}")
    if version != SCHEMA_VERSION:
        raise CheckpointError(f"checkpoint: schema version {version} (this daemon reads {SCHEMA_VERSION})")
    packed = blob[_HEADER.size :]
    if hashlib.sha256(packed).digest() != digest:
        raise CheckpointError("checkpoint: checksum mismatch (corrupted or truncated)")
    try:
        body = msgpack.unpackb(zlib.decompress(packed), raw=False, strict_map_key=False)
    except Exception as exc:  # zlib / msgpack raise assorted types
        raise CheckpointError(f"checkpoint: undecodable body ({type(exc).__name__}: {exc})") from exc
    if not isinstance(body, dict) or body.get("schema") != SCHEMA_VERSION:
        raise CheckpointError("checkpoint: body schema does not match its header")
    return body


def restore(blob: bytes, cfg: Config, *, partition: str | None = None) -> tuple[Pipeline, CheckpointMeta]:
    """A pipeline in exactly the checkpointed state; CheckpointError if anything fails validation."""
    body = read_body(blob)
    try:
        return _restore(body, cfg, partition, len(blob))
    except CheckpointError:
        raise
    except (KeyError, TypeError, ValueError, IndexError, AttributeError, CodecError, RecursionError) as exc:
        raise CheckpointError(f"checkpoint: invalid content ({type(exc).__name__}: {exc})") from exc


def _restore(body: dict[str, Any], cfg: Config, partition: str | None, size: int) -> tuple[Pipeline, CheckpointMeta]:
    if partition is not None and body["partition"] != partition:
        raise CheckpointError(f"checkpoint: belongs to partition {body['partition']!r}, not {partition!r}")
    want = _config_fingerprint(cfg)
    if body["config"] != want:
        diff = sorted(k for k in want if body["config"].get(k) != want[k])
        raise CheckpointError(f"checkpoint: written under a different detector configuration ({', '.join(diff)})")
    fresh = Pipeline(cfg, Topology.from_json(body["topology"]))
    saved = body["pipeline"]
    if not isinstance(saved, dict):
        raise CheckpointError("checkpoint: pipeline state is not a map")
    expected = set(_fields(fresh)) - DERIVED
    if set(saved) != expected:
        diff = sorted(set(saved) ^ expected)
        raise CheckpointError(f"checkpoint: pipeline saved by another version (attributes differ: {diff})")
    dec = _Decoder()
    values = {n: dec.dec(x, getattr(fresh, n, None)) for n, x in saved.items()}  # encoding order: refs
    for n, v in values.items():
        setattr(fresh, n, v)
    _check_shapes(fresh)
    last = fresh.assembler.last_closed
    meta = CheckpointMeta(
        str(body["partition"]),
        str(body["position"]),
        -1 if last is None else int(last),
        float(body["created_ts"]),
        dict(body["extra"]),
        size,
    )
    return fresh, meta


def _check_shapes(p: Pipeline) -> None:
    """The restored arrays must fit the restored topology and this configuration."""
    s, m = len(p.shards), len(p.metrics)
    if p.state.shape != (s, m):
        raise CheckpointError(f"checkpoint: state is {p.state.shape}, the topology needs ({s}, {m})")
    if p.missing_run.shape != (s,):
        raise CheckpointError(f"checkpoint: missing_run has shape {p.missing_run.shape}, expected ({s},)")
    for st in (p.state, p.cstate):
        st.check_shapes()
    depth = p.cfg.detector.warmup_max_windows  # the warm-up buffer holds the longest warm-up
    for st in (p.state, p.cstate):
        if st.buf.shape[2] != depth or st.e_state.shape[2] != 2 * len(p.bets) + 1:
            raise CheckpointError("checkpoint: state depth does not match warm-up (warmup_max_windows) / bets")
    for k, acc in p.assembler._open.items():
        if acc.sums.shape != (s, m) or acc.counts.shape != (s, m) or acc.present.shape != (s,):
            raise CheckpointError(f"checkpoint: open window {k} does not match the topology")
    if p.shards != p.topology.shards or p.assembler.shards != p.shards:
        raise CheckpointError("checkpoint: shard index does not match the topology")
