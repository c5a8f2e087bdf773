"""Merge the sources' topology parts (and an optional static file) into one Topology snapshot.

Precedence, highest first: the static file > kubernetes > slurm > every other (device) source,
ties broken by source name, so the result depends only on the inputs (never on arrival order).

* A node defined by several parts takes its kind from the highest-precedence definition, its parent
  from the highest-precedence definition that names a parent present in the merged snapshot, and its
  labels key by key from the highest-precedence definition carrying that key.
* Edges are the union, undirected (stored with ``a < b``); edges naming an unknown node are dropped.
* A containment cycle created by conflicting parents is broken by dropping the parent link that came
  from the lowest-precedence source (ties: the largest node id).
* Attribution labels are filled in on every shard from its containment chain: ``host`` (nearest host
  ancestor), ``rack``, ``cooling_zone``, ``psu``, ``nvlink_domain`` and ``pod`` (nearest ancestor of
  that kind, else the same label on the shard's host), unless a source already set them.

Peer-only substrates (NVLink, Neuron, TPU) name their host as the shard's parent, so once Kubernetes,
Slurm or the static file place that host under a rack / zone, attribution reaches the shard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tessera_daemon.errors import CodecError, ConfigError
from tessera_daemon.model import TopoEdge, Topology, TopoNode
from tessera_daemon.sources.base import TopologyPart

SOURCE_RANK = {"static": 0, "kubernetes": 1, "slurm": 2}
DEVICE_RANK = 3
PROPAGATED_KINDS = ("rack", "cooling_zone", "psu", "nvlink_domain", "pod")


@dataclass(slots=True)
class _Merged:
    kind: str
    rank: tuple[int, str]
    parents: list[tuple[tuple[int, str], str]] = field(default_factory=list)
    labels: dict[str, str] = field(default_factory=dict)


def _rank(source: str) -> tuple[int, str]:
    return (SOURCE_RANK.get(source, DEVICE_RANK), source)


def merge_topology(parts: Sequence[TopologyPart], static: Topology | None = None) -> Topology:
    """One deterministic snapshot from every part (see the module docstring for the rules)."""
    contributions: list[tuple[tuple[int, str], Sequence[TopoNode], Sequence[TopoEdge]]] = []
    if static is not None:
        contributions.append((_rank("static"), list(static.nodes.values()), static.edges))
    contributions.extend((_rank(p.source), p.nodes, p.edges) for p in parts)
    contributions.sort(key=lambda c: c[0])

    merged: dict[str, _Merged] = {}
    for rank, nodes, _edges in contributions:
        for n in nodes:
            m = merged.get(n.id)
            if m is None:
                m = merged[n.id] = _Merged(n.kind, rank)
            if n.parent is not None:
                m.parents.append((rank, n.parent))
            for key, value in n.labels.items():
                m.labels.setdefault(key, value)

    parent_of: dict[str, tuple[str, tuple[int, str]]] = {}
    for nid, m in merged.items():
        chosen = next(((p, r) for r, p in m.parents if p in merged and p != nid), None)
        if chosen is not None:
            parent_of[nid] = chosen
    _break_cycles(parent_of)

    edges: set[tuple[str, str, str]] = set()
    for _r, _nodes, part_edges in contributions:
        for e in part_edges:
            if e.a in merged and e.b in merged and e.a != e.b:
                lo, hi = sorted((e.a, e.b))
                edges.add((lo, hi, e.kind))

    out = {
        nid: TopoNode(nid, m.kind, parent_of[nid][0] if nid in parent_of else None, m.labels)
        for nid, m in merged.items()
    }
    _propagate_labels(out)
    return Topology((out[k] for k in sorted(out)), (TopoEdge(a, b, k) for a, b, k in sorted(edges)))


def _break_cycles(parent_of: dict[str, tuple[str, tuple[int, str]]]) -> None:
    for start in sorted(parent_of):
        path: list[str] = []
        seen: set[str] = set()
        cur: str | None = start
        while cur is not None and cur not in seen:
            seen.add(cur)
            path.append(cur)
            link = parent_of.get(cur)
            cur = None if link is None else link[0]
        if cur is None:
            continue
        cycle = path[path.index(cur) :]
        # weakest link: lowest precedence (largest rank), then the largest id
        weakest = max(cycle, key=lambda n: (parent_of[n][1], n))
        del parent_of[weakest]


def _propagate_labels(nodes: dict[str, TopoNode]) -> None:
    for nid in sorted(nodes):
        node = nodes[nid]
        if node.kind != "shard":
            continue
        found: dict[str, str] = {}
        host: TopoNode | None = None
        cur = node.parent
        while cur is not None:
            anc = nodes[cur]
            if anc.kind == "host" and host is None:
                host = anc
            if anc.kind in PROPAGATED_KINDS:
                found.setdefault(anc.kind, anc.id)
            cur = anc.parent
        labels = dict(node.labels)
        if host is not None:
            labels.setdefault("host", host.id)
            for key in PROPAGATED_KINDS:
                value = found.get(key) or host.labels.get(key)
                if value:
                    labels.setdefault(key, value)
        else:
            for key, value in found.items():
                labels.setdefault(key, value)
        if labels != dict(node.labels):
            nodes[nid] = TopoNode(node.id, node.kind, node.parent, labels)


def load_static_topology(path: str) -> Topology | None:
    """The static topology file named by ``sources.static_topology`` (None when the setting is empty)."""
    if not path:
        return None
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("sources.static_topology", f"cannot read {path}: {exc}") from exc
    try:
        return Topology.from_json(text)
    except CodecError as exc:
        raise ConfigError("sources.static_topology", f"{path}: {exc}") from exc
