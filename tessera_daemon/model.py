"""Value types for the stable contracts: frame, topology, cluster event, firing.

Each type has a strict ``from_json`` (raising :class:`CodecError` with the reason) and a
deterministic ``to_json`` (sorted keys where the contract does not fix an order), so replay output
is byte-identical for the same input. Contract version: ``v = 1`` everywhere.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, overload

import numpy as np

from tessera_daemon.errors import CodecError

CONTRACT_VERSION = 1
MAX_XID = 2**31 - 1  # XID codes are small non-negative integers
MAX_XIDS = 256  # codes of one shard in one sample

NodeKind = Literal["shard", "host", "nvlink_domain", "rack", "psu", "cooling_zone", "pod", "cohort", "fleet", "switch"]
NODE_KINDS: frozenset[str] = frozenset(
    {"shard", "host", "nvlink_domain", "rack", "psu", "cooling_zone", "pod", "cohort", "fleet", "switch"}
)
EDGE_KINDS: frozenset[str] = frozenset({"nvlink", "neuron_link", "ici", "power", "cooling", "member"})
EVENT_KINDS: frozenset[str] = frozenset(
    {
        "firmware_push",
        "driver_update",
        "model_redeploy",
        "config_change",
        "env_change",
        "capacity_change",
        "chaos_experiment",
        "maintenance",
    }
)
CLASSIFICATIONS: frozenset[str] = frozenset(
    {"shard_fault", "common_mode", "fleet_event", "event_conditional", "hard_fault"}
)


def _finite_or_none(value: Any, where: str) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CodecError(f"{where}: expected a number or null, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:  # an integer beyond float range: as non-finite, not a value
        return None
    if not math.isfinite(v):
        return None
    return v


def _unix_time(value: Any, where: str) -> float:
    """A finite, non-negative unix time (an integer beyond float range, NaN or inf: CodecError)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CodecError(f"{where}: expected a number, got {type(value).__name__}")
    try:
        v = float(value)
    except OverflowError:
        v = math.inf
    if not math.isfinite(v) or v < 0:
        raise CodecError(f"{where}: expected a finite unix time in seconds")
    return v


def _loads(text: str | bytes, what: str) -> Any:
    try:
        return json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise CodecError(f"{what}: not valid JSON ({exc})", payload=text) from exc
    except RecursionError as exc:
        raise CodecError(f"{what}: not valid JSON (nested too deeply)", payload=text) from exc


def _require(obj: Mapping[str, Any], key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if key not in obj:
        raise CodecError(f"{where}: missing field {key!r}")
    value = obj[key]
    if isinstance(value, bool) and kind is not bool:
        raise CodecError(f"{where}.{key}: expected {kind}, got bool")
    if not isinstance(value, kind):
        raise CodecError(f"{where}.{key}: expected {kind}, got {type(value).__name__}")
    return value


def _check_version(obj: Mapping[str, Any], where: str) -> None:
    v = obj.get("v")
    if v != CONTRACT_VERSION:
        raise CodecError(f"{where}: unsupported contract version {v!r} (this daemon reads v=1)")


# --------------------------------------------------------------------------------------------- frame


@dataclass(frozen=True, slots=True)
class Frame:
    """One shard's counters for one sampling instant (contract 1).

    ``metrics`` maps metric name to value (None: not available this time). ``counters`` names the
    metrics that are monotone counters (the daemon turns them into rates / increments). ``xid``
    holds the XID codes that occurred in this sample only. ``lost`` marks a device the source could
    no longer reach (NVML GPU_IS_LOST); an optional, v1-compatible extension of the contract.
    """

    ts: float
    shard: str
    metrics: Mapping[str, float | None]
    counters: frozenset[str] = frozenset()
    xid: tuple[int, ...] = ()
    lost: bool = False

    @classmethod
    def from_obj(cls, obj: Any) -> Frame:
        if not isinstance(obj, dict):
            raise CodecError(f"frame: expected a JSON object, got {type(obj).__name__}")
        _check_version(obj, "frame")
        ts = _unix_time(_require(obj, "ts", (int, float), "frame"), "frame.ts")
        shard = _require(obj, "shard", str, "frame")
        if not shard:
            raise CodecError("frame.shard: empty shard id")
        raw_metrics = obj.get("metrics", {})
        if not isinstance(raw_metrics, dict):
            raise CodecError("frame.metrics: expected an object of name -> number|null")
        metrics: dict[str, float | None] = {}
        for name, value in raw_metrics.items():
            metrics[str(name)] = _finite_or_none(value, f"frame.metrics.{name}")
        raw_counters = obj.get("counters", [])
        if not isinstance(raw_counters, list) or not all(isinstance(c, str) for c in raw_counters):
            raise CodecError("frame.counters: expected a list of metric names")
        raw_xid = obj.get("xid", [])
        codes = [raw_xid] if isinstance(raw_xid, int) and not isinstance(raw_xid, bool) else raw_xid
        if (
            not isinstance(codes, list)
            or len(codes) > MAX_XIDS
            or not all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x <= MAX_XID for x in codes)
        ):
            raise CodecError(f"frame.xid: expected an XID code (0 to {MAX_XID}) or a list of at most {MAX_XIDS}")
        xids: tuple[int, ...] = tuple(codes)
        lost = obj.get("lost", False)
        if not isinstance(lost, bool):
            raise CodecError("frame.lost: expected a boolean")
        return cls(float(ts), shard, metrics, frozenset(raw_counters), xids, lost)

    @classmethod
    def from_json(cls, text: str | bytes) -> Frame:
        return cls.from_obj(_loads(text, "frame"))

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"v": CONTRACT_VERSION, "ts": self.ts, "shard": self.shard}
        obj["metrics"] = {k: self.metrics[k] for k in sorted(self.metrics)}
        if self.counters:
            obj["counters"] = sorted(self.counters)
        if self.xid:
            obj["xid"] = list(self.xid) if len(self.xid) > 1 else self.xid[0]
        if self.lost:
            obj["lost"] = True
        return obj

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), separators=(",", ":"), allow_nan=False)


# ------------------------------------------------------------------------------------------ topology


@dataclass(frozen=True, slots=True)
class TopoNode:
    id: str
    kind: str
    parent: str | None = None
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_obj(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "parent": self.parent,
            "labels": {k: self.labels[k] for k in sorted(self.labels)},
        }


@dataclass(frozen=True, slots=True)
class TopoEdge:
    a: str
    b: str
    kind: str

    def to_obj(self) -> dict[str, Any]:
        return {"a": self.a, "b": self.b, "kind": self.kind}


class Topology:
    """A containment forest (parent links) plus peer edges (contract 2), with lookup indexes.

    Extra containment memberships that do not fit one parent chain (a host's PSU, cooling zone)
    are expressed as nodes whose ``labels`` name them, e.g. a shard labelled ``psu=psu-r01-a``.
    :meth:`groups_of` returns every group node a shard belongs to, by walking parents and
    following those labels.
    """

    GROUP_LABELS = ("psu", "cooling_zone", "nvlink_domain", "pod")

    def __init__(self, nodes: Iterable[TopoNode], edges: Iterable[TopoEdge] = ()) -> None:
        self.nodes: dict[str, TopoNode] = {}
        for n in nodes:
            if n.id in self.nodes:
                raise CodecError(f"topology: duplicate node id {n.id!r}")
            self.nodes[n.id] = n
        self.edges: list[TopoEdge] = list(edges)
        for n in self.nodes.values():
            if n.parent is not None and n.parent not in self.nodes:
                raise CodecError(f"topology.nodes[{n.id}].parent: unknown node {n.parent!r}")
        for e in self.edges:
            for end in (e.a, e.b):
                if end not in self.nodes:
                    raise CodecError(f"topology.edges: unknown node {end!r}")
        self._check_acyclic()
        self.children: dict[str, list[str]] = {}
        for n in self.nodes.values():
            if n.parent is not None:
                self.children.setdefault(n.parent, []).append(n.id)
        for kids in self.children.values():
            kids.sort()
        self._shards: list[str] | None = None  # caches: a topology is not changed after construction
        self._members: dict[str, list[str]] | None = None
        self._ancestors: dict[str, tuple[str, ...]] = {}

    def _check_acyclic(self) -> None:
        for start in self.nodes:
            seen: set[str] = set()
            cur: str | None = start
            while cur is not None:
                if cur in seen:
                    raise CodecError(f"topology: containment cycle through {cur!r}")
                seen.add(cur)
                cur = self.nodes[cur].parent

    @property
    def shards(self) -> list[str]:
        if self._shards is None:
            self._shards = sorted(n.id for n in self.nodes.values() if n.kind == "shard")
        return list(self._shards)

    def cohort_of(self, shard: str) -> str:
        node = self.nodes[shard]
        return node.labels.get("cohort") or f"model:{node.labels.get('model', 'unknown')}"

    def ancestors(self, node_id: str) -> list[str]:
        return list(self._chain(node_id))

    def _chain(self, node_id: str) -> tuple[str, ...]:
        """Ancestors of ``node_id``, nearest first (cached per node: siblings share their parent's)."""
        got = self._ancestors.get(node_id)
        if got is None:
            parent = self.nodes[node_id].parent
            got = () if parent is None else (parent, *self._chain(parent))
            self._ancestors[node_id] = got
        return got

    def groups_of(self, shard: str) -> list[str]:
        """Every group node containing ``shard``: parent chain plus label-declared groups."""
        out = list(self.ancestors(shard))
        labels = self.nodes[shard].labels
        for key in self.GROUP_LABELS:
            gid = labels.get(key)
            if gid and gid in self.nodes and gid not in out:
                out.append(gid)
        return out

    def members(self) -> dict[str, list[str]]:
        """Group node id -> sorted shard ids it contains. Computed once per topology and shared by every
        caller (the pipeline, its groups and events, /metrics): read it, never change it."""
        if self._members is None:
            out: dict[str, list[str]] = {}
            for s in self.shards:
                for g in self.groups_of(s):
                    out.setdefault(g, []).append(s)
            self._members = out
        return self._members

    def to_obj(self) -> dict[str, Any]:
        return {
            "v": CONTRACT_VERSION,
            "nodes": [self.nodes[k].to_obj() for k in sorted(self.nodes)],
            "edges": [e.to_obj() for e in sorted(self.edges, key=lambda e: (e.a, e.b, e.kind))],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), separators=(",", ":"), sort_keys=False)

    def content_hash(self) -> str:
        return hashlib.sha256(self.to_json().encode()).hexdigest()

    @classmethod
    def from_obj(cls, obj: Any) -> Topology:
        if not isinstance(obj, dict):
            raise CodecError("topology: expected a JSON object")
        _check_version(obj, "topology")
        raw_nodes = _require(obj, "nodes", list, "topology")
        nodes = []
        for i, rn in enumerate(raw_nodes):
            where = f"topology.nodes[{i}]"
            if not isinstance(rn, dict):
                raise CodecError(f"{where}: expected an object")
            nid = _require(rn, "id", str, where)
            kind = _require(rn, "kind", str, where)
            if kind not in NODE_KINDS:
                raise CodecError(f"{where}.kind: unknown kind {kind!r} (one of {sorted(NODE_KINDS)})")
            parent = rn.get("parent")
            if parent is not None and not isinstance(parent, str):
                raise CodecError(f"{where}.parent: expected a node id or null")
            labels = rn.get("labels", {})
            if not isinstance(labels, dict):
                raise CodecError(f"{where}.labels: expected an object")
            nodes.append(TopoNode(nid, kind, parent, {str(k): str(v) for k, v in labels.items()}))
        edges = []
        raw_edges = obj.get("edges", [])
        if not isinstance(raw_edges, list):
            raise CodecError("topology.edges: expected a list")
        for i, re_ in enumerate(raw_edges):
            where = f"topology.edges[{i}]"
            if not isinstance(re_, dict):
                raise CodecError(f"{where}: expected an object")
            edges.append(
                TopoEdge(
                    _require(re_, "a", str, where), _require(re_, "b", str, where), _require(re_, "kind", str, where)
                )
            )
        return cls(nodes, edges)

    @classmethod
    def from_json(cls, text: str | bytes) -> Topology:
        return cls.from_obj(_loads(text, "topology"))


# ------------------------------------------------------------------------------------------- events


@dataclass(frozen=True, slots=True)
class ClusterEvent:
    """An announced change (contract 3). ``scope`` is a tuple of node ids, or ``("fleet",)``."""

    id: str
    kind: str
    ts: float
    scope: tuple[str, ...]
    end_ts: float | None = None

    @property
    def fleet_wide(self) -> bool:
        return self.scope == ("fleet",)

    @classmethod
    def from_obj(cls, obj: Any) -> ClusterEvent:
        if not isinstance(obj, dict):
            raise CodecError("event: expected a JSON object")
        _check_version(obj, "event")
        eid = _require(obj, "id", str, "event")
        kind = _require(obj, "kind", str, "event")
        if kind not in EVENT_KINDS:
            raise CodecError(f"event.kind: unknown kind {kind!r} (one of {sorted(EVENT_KINDS)})")
        ts = _unix_time(_require(obj, "ts", (int, float), "event"), "event.ts")
        end_ts = obj.get("end_ts")
        if end_ts is not None:
            end_ts = _unix_time(end_ts, "event.end_ts")
            if end_ts < ts:
                raise CodecError("event.end_ts: must not be before ts")
        scope = obj.get("scope", "fleet")
        if scope == "fleet":
            scope_t: tuple[str, ...] = ("fleet",)
        elif isinstance(scope, list) and scope and all(isinstance(s, str) for s in scope):
            scope_t = tuple(scope)
        else:
            raise CodecError('event.scope: expected "fleet" or a non-empty list of node ids')
        return cls(eid, kind, ts, scope_t, end_ts)

    @classmethod
    def from_json(cls, text: str | bytes) -> ClusterEvent:
        return cls.from_obj(_loads(text, "event"))

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {"v": CONTRACT_VERSION, "id": self.id, "kind": self.kind, "ts": self.ts}
        if self.end_ts is not None:
            obj["end_ts"] = self.end_ts
        obj["scope"] = "fleet" if self.fleet_wide else list(self.scope)
        return obj

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), separators=(",", ":"))


# ------------------------------------------------------------------------------------------ firings


@dataclass(slots=True)
class Firing:
    """An alarm (contract 4). Mutable only through the lifecycle in ``engine.firings``."""

    id: str
    state: Literal["open", "resolved"]
    opened_ts: float
    window: int
    scope: str
    target: str
    members: list[str]
    detector: str
    metric: str | None
    log_evidence: float
    threshold_log: float
    classification: str
    receipt: dict[str, Any]
    event_id: str | None = None
    resolved_ts: float | None = None
    resolved_window: int | None = None

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "v": CONTRACT_VERSION,
            "id": self.id,
            "state": self.state,
            "opened_ts": self.opened_ts,
            "window": self.window,
            "scope": self.scope,
            "target": self.target,
            "members": list(self.members),
            "detector": self.detector,
            "metric": self.metric,
            "log_evidence": round(self.log_evidence, 6),
            "threshold_log": round(self.threshold_log, 6),
            "classification": self.classification,
        }
        if self.event_id is not None:
            obj["event_id"] = self.event_id
        if self.resolved_ts is not None:
            obj["resolved_ts"] = self.resolved_ts
            obj["resolved_window"] = self.resolved_window
        obj["receipt"] = self.receipt
        return obj

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), separators=(",", ":"), allow_nan=False)


def firing_id(*parts: object) -> str:
    """Deterministic firing id from its identifying parts (target, detector, metric, window)."""
    return hashlib.sha256("|".join(str(p) for p in parts).encode()).hexdigest()[:16]


def read_jsonl(lines: Sequence[str] | Iterable[str]) -> Iterable[tuple[int, str]]:
    """Yield (line number, text) of non-empty lines."""
    for i, line in enumerate(lines, start=1):
        s = line.strip()
        if s:
            yield i, s


class FrameBlock(Sequence[Frame]):
    """One decoded host entry as arrays, readable as a sequence of :class:`Frame`.

    ``values`` [S, M] holds NaN where a metric was null or absent from that shard's frame (``absent``
    keeps the difference for the frames). ``engine.window.WindowAssembler.add_block`` reads the
    arrays directly; anything else iterates frames, built on first use exactly as the entry encoded
    them.
    """

    __slots__ = ("_frames", "absent", "counters", "lost", "names", "shards", "ts", "values", "xids")

    def __init__(
        self,
        shards: list[str],
        ts: np.ndarray,
        names: list[str],
        values: np.ndarray,
        absent: np.ndarray | None,
        counters: frozenset[str] | list[frozenset[str]],
        xids: dict[int, tuple[int, ...]],
        lost: set[int],
    ) -> None:
        self.shards = shards
        self.ts = ts
        self.names = names
        self.values = values
        self.absent = absent
        self.counters = counters  # one set for every frame, or one per frame
        self.xids = xids
        self.lost = lost
        self._frames: list[Frame] | None = None

    def joinable(self, other: FrameBlock) -> bool:
        """Whether :meth:`concat` can join the two: same metric names, one shared counter set each, equal."""
        a, b = self.counters, other.counters
        return isinstance(a, frozenset) and isinstance(b, frozenset) and a == b and self.names == other.names

    @classmethod
    def concat(cls, blocks: Sequence[FrameBlock]) -> FrameBlock:
        """One block holding the frames of ``blocks`` in order (its frames equal theirs, concatenated).
        The blocks must be :meth:`joinable` (same ``names``, same shared ``counters``); frame indices
        of ``xids`` and ``lost`` are shifted to the joined block. ValueError otherwise."""
        if not blocks:
            raise ValueError("FrameBlock.concat needs at least one block")
        first = blocks[0]
        if not all(first.joinable(b) for b in blocks):
            raise ValueError(
                "FrameBlock.concat: the blocks differ in metric names or counters, or carry per-frame counters"
            )
        shards: list[str] = []
        xids: dict[int, tuple[int, ...]] = {}
        lost: set[int] = set()
        off = 0
        for b in blocks:
            shards += b.shards
            if b.xids:
                xids.update({i + off: x for i, x in b.xids.items()})
            if b.lost:
                lost.update(i + off for i in b.lost)
            off += len(b.shards)
        ts = np.concatenate([b.ts for b in blocks])
        values = np.concatenate([b.values for b in blocks])
        absent = None
        if any(b.absent is not None for b in blocks):
            absent = np.concatenate(
                [b.absent if b.absent is not None else np.zeros(b.values.shape, np.bool_) for b in blocks]
            )
        return cls(shards, ts, list(first.names), values, absent, first.counters, xids, lost)

    @classmethod
    def from_frames(cls, frames: Sequence[Frame]) -> FrameBlock:
        """The block of ``frames`` (in order): the object path's boundary into the array path. Metric
        names in order of first appearance; a null or non-finite value is NaN (neither is a sample);
        ``absent`` marks a name a frame does not carry. One shared counter set when every frame has the
        same, else one per frame."""
        if isinstance(frames, FrameBlock):
            return frames
        n = len(frames)
        col: dict[str, int] = {}
        layout: tuple[str, ...] | None = None
        same = True
        for f in frames:
            keys = tuple(f.metrics)
            if keys != layout:
                if layout is not None:
                    same = False
                layout = keys
                for k in keys:
                    col.setdefault(k, len(col))
        names = list(col)
        absent: np.ndarray | None = None
        if same and n:
            values = np.array([list(f.metrics.values()) for f in frames], np.float64).reshape(n, len(names))
        else:
            nan = math.nan
            values = np.array([[f.metrics.get(k, nan) for k in names] for f in frames], np.float64)
            values = values.reshape(n, len(names))
            absent = np.array([[k not in f.metrics for k in names] for f in frames], np.bool_).reshape(values.shape)
            if not absent.any():
                absent = None
        if not np.isfinite(values).all():
            values[~np.isfinite(values)] = np.nan
        first = frames[0].counters if n else frozenset()
        counters: frozenset[str] | list[frozenset[str]] = first
        if any(f.counters != first for f in frames):
            counters = [f.counters for f in frames]
        xids = {i: f.xid for i, f in enumerate(frames) if f.xid}
        lost = {i for i, f in enumerate(frames) if f.lost}
        ts = np.array([f.ts for f in frames], np.float64)
        return cls([f.shard for f in frames], ts, names, values, absent, counters, xids, lost)

    def take(self, start: int, stop: int) -> FrameBlock:
        """The frames ``start:stop`` as a block of their own (frame indices of ``xids`` and ``lost`` shifted)."""
        n = len(self.shards)
        start, stop = max(0, min(start, n)), max(0, min(stop, n))
        stop = max(start, stop)
        c = self.counters
        return FrameBlock(
            self.shards[start:stop],
            self.ts[start:stop],
            self.names,
            self.values[start:stop],
            None if self.absent is None else self.absent[start:stop],
            c if isinstance(c, frozenset) else c[start:stop],
            {i - start: x for i, x in self.xids.items() if start <= i < stop},
            {i - start for i in self.lost if start <= i < stop},
        )

    @property
    def n_values(self) -> int:
        """Values carried, nulls included (what the frames' metric maps hold), without building frames."""
        return int(self.values.size - (self.absent.sum() if self.absent is not None else 0))

    def counters_of(self, i: int) -> frozenset[str]:
        c = self.counters
        return c if isinstance(c, frozenset) else c[i]

    def frames(self) -> list[Frame]:
        if self._frames is None:
            self._frames = self._build()
        return self._frames

    def __len__(self) -> int:
        return len(self.shards)

    @overload
    def __getitem__(self, i: int) -> Frame: ...

    @overload
    def __getitem__(self, i: slice) -> list[Frame]: ...

    def __getitem__(self, i: int | slice) -> Frame | list[Frame]:
        return self.frames()[i]

    def __iter__(self) -> Iterator[Frame]:
        return iter(self.frames())

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Sequence):
            return self.frames() == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable cache, compared by its frames

    def _build(self) -> list[Frame]:
        names, absent = self.names, self.absent
        tss = self.ts.tolist()
        rows = self.values.tolist()
        finite = bool(np.isfinite(self.values).all())
        out: list[Frame] = []
        for i, sid in enumerate(self.shards):
            row = rows[i]
            if absent is None and finite:
                metrics: dict[str, float | None] = dict(zip(names, row))  # noqa: B905 - lengths fixed by reshape
            else:
                skip = absent[i] if absent is not None else None
                metrics = {
                    k: (v if math.isfinite(v) else None)
                    for j, (k, v) in enumerate(zip(names, row, strict=True))
                    if skip is None or not skip[j]
                }
            out.append(Frame(tss[i], sid, metrics, self.counters_of(i), self.xids.get(i, ()), i in self.lost))
        return out
