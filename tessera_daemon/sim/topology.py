"""The simulated cluster's shape: zones > racks > hosts > shards, PSUs, NVLink domains, cohorts.

Node ids (zero-padded so that sorted order is hierarchical order):

- ``fleet``: the root (kind ``fleet``).
- ``z0``: a cooling zone (kind ``cooling_zone``, parent ``fleet``).
- ``z0-r00``: a rack (parent: its zone).
- ``z0-r00-psu-a`` / ``z0-r00-psu-b``: the rack's two PSUs (parent: the rack). PSU ``a`` powers the
  first half of the rack's hosts (rounded up), ``b`` the rest; a one-host rack has only ``a``.
- ``z0-r00-h00``: a host (parent: its rack).
- ``z0-r00-h00-nvl``: the host's NVLink domain (parent: the host).
- ``z0-r00-h00-g3``: a shard, GPU 3 of that host (parent: the host).
- ``job-0``: a cohort (a training job; kind ``cohort``, parent ``fleet``).

Cohorts take whole hosts round-robin over the hosts in (zone, rack, host) order, so with more hosts
than cohorts every cohort spans several racks. NVLink peer edges (kind ``nvlink``) join every pair of
shards of a host (an NVSwitch full mesh). Shard labels name their cohort, model, host, rack,
cooling_zone, psu, nvlink_domain, gpu_index, rank (within the cohort) and a fake, seed-derived
gpu_uuid; the psu, cooling_zone and nvlink_domain labels hold node ids, so
:meth:`Topology.groups_of` finds every group.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from tessera_daemon.config import SimConfig
from tessera_daemon.errors import ConfigError
from tessera_daemon.model import TopoEdge, Topology, TopoNode
from tessera_daemon.sim.metrics import MODEL

FLEET = "fleet"
_UUID_STREAM = 0x5555


def _width(n: int, minimum: int) -> int:
    return max(minimum, len(str(max(n - 1, 0))))


@dataclass(slots=True)
class Layout:
    """Index arrays of the cluster: one row per shard (sorted id order), one entry per group."""

    shard_ids: list[str]
    nodes: list[TopoNode]
    edges: list[TopoEdge]
    host_ids: list[str]
    rack_ids: list[str]
    cohort_ids: list[str]
    host_of: np.ndarray  # int index into host_ids, per shard row
    rack_of: np.ndarray  # int index into rack_ids, per shard row
    cohort_of: np.ndarray  # int index into cohort_ids, per shard row
    rows_of: dict[str, np.ndarray] = field(default_factory=dict)  # node id -> shard rows
    kind_of: dict[str, str] = field(default_factory=dict)  # node id -> kind

    def ids_of_kind(self, kind: str) -> list[str]:
        return sorted(nid for nid, k in self.kind_of.items() if k == kind)

    def hosts_under(self, node_id: str) -> list[str]:
        """Host ids whose shards all lie inside ``node_id``'s shard set."""
        rows = set(self.rows_of[node_id].tolist())
        return [h for h in self.host_ids if set(self.rows_of[h].tolist()) <= rows]


def _gpu_uuids(seed: int, n: int) -> list[str]:
    rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([seed, _UUID_STREAM])))
    raw = rng.integers(0, 256, size=(n, 16), dtype=np.uint8)
    out = []
    for row in raw:
        h = bytes(row.tolist()).hex()
        out.append(f"GPU-{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}")
    return out


def build_layout(cfg: SimConfig, seed: int | None = None) -> Layout:
    """Build the cluster layout (nodes, edges, index arrays) for ``cfg``; uuids come from ``seed``."""
    n_hosts = cfg.zones * cfg.racks_per_zone * cfg.hosts_per_rack
    if cfg.cohorts > n_hosts:
        raise ConfigError(
            "sim.cohorts", f"{cfg.cohorts} cohorts need at least as many hosts (the cluster has {n_hosts})"
        )
    zw, rw, hw = _width(cfg.zones, 1), _width(cfg.racks_per_zone, 2), _width(cfg.hosts_per_rack, 2)
    gw, cw = _width(cfg.shards_per_host, 1), _width(cfg.cohorts, 1)
    cohort_ids = [f"job-{c:0{cw}d}" for c in range(cfg.cohorts)]

    nodes: list[TopoNode] = [TopoNode(FLEET, "fleet", None, {})]
    nodes += [TopoNode(c, "cohort", FLEET, {"model": MODEL}) for c in cohort_ids]
    edges: list[TopoEdge] = []
    shard_rows: list[tuple[str, int, int, int]] = []  # (shard id, host idx, rack idx, cohort idx)
    host_ids: list[str] = []
    rack_ids: list[str] = []
    rank_in_cohort = [0] * cfg.cohorts
    half = (cfg.hosts_per_rack + 1) // 2
    for z in range(cfg.zones):
        zone = f"z{z:0{zw}d}"
        nodes.append(TopoNode(zone, "cooling_zone", FLEET, {}))
        for r in range(cfg.racks_per_zone):
            rack = f"{zone}-r{r:0{rw}d}"
            rack_ids.append(rack)
            nodes.append(TopoNode(rack, "rack", zone, {"cooling_zone": zone}))
            psus = [f"{rack}-psu-a"] + ([f"{rack}-psu-b"] if cfg.hosts_per_rack > 1 else [])
            nodes += [TopoNode(p, "psu", rack, {"rack": rack, "cooling_zone": zone}) for p in psus]
            for h in range(cfg.hosts_per_rack):
                host = f"{rack}-h{h:0{hw}d}"
                cohort_idx = len(host_ids) % cfg.cohorts
                cohort = cohort_ids[cohort_idx]
                host_ids.append(host)
                psu = psus[0] if h < half else psus[-1]
                nvl = f"{host}-nvl"
                common = {"rack": rack, "cooling_zone": zone, "psu": psu, "cohort": cohort}
                nodes.append(TopoNode(host, "host", rack, {**common, "nvlink_domain": nvl}))
                nodes.append(TopoNode(nvl, "nvlink_domain", host, {"host": host}))
                shards = [f"{host}-g{g:0{gw}d}" for g in range(cfg.shards_per_host)]
                for g, sid in enumerate(shards):
                    labels = {
                        **common,
                        "model": MODEL,
                        "host": host,
                        "nvlink_domain": nvl,
                        "gpu_index": str(g),
                        "rank": str(rank_in_cohort[cohort_idx]),
                    }
                    rank_in_cohort[cohort_idx] += 1
                    nodes.append(TopoNode(sid, "shard", host, labels))
                    shard_rows.append((sid, len(host_ids) - 1, len(rack_ids) - 1, cohort_idx))
                edges += [TopoEdge(a, b, "nvlink") for i, a in enumerate(shards) for b in shards[i + 1 :]]
    shard_rows.sort()
    uuids = _gpu_uuids(cfg.seed if seed is None else seed, len(shard_rows))
    uuid_of = {sid: u for (sid, *_), u in zip(shard_rows, uuids, strict=True)}
    nodes = [
        TopoNode(n.id, n.kind, n.parent, {**n.labels, "gpu_uuid": uuid_of[n.id]}) if n.kind == "shard" else n
        for n in nodes
    ]
    layout = Layout(
        shard_ids=[s for s, *_ in shard_rows],
        nodes=nodes,
        edges=edges,
        host_ids=host_ids,
        rack_ids=rack_ids,
        cohort_ids=cohort_ids,
        host_of=np.array([h for _, h, _, _ in shard_rows], dtype=np.intp),
        rack_of=np.array([r for _, _, r, _ in shard_rows], dtype=np.intp),
        cohort_of=np.array([c for _, _, _, c in shard_rows], dtype=np.intp),
    )
    _index_groups(layout)
    return layout


def _index_groups(layout: Layout) -> None:
    """Fill ``rows_of`` (node id -> sorted shard rows) for every node, and ``kind_of``."""
    row_of = {sid: i for i, sid in enumerate(layout.shard_ids)}
    members: dict[str, list[int]] = {n.id: [] for n in layout.nodes}
    parent = {n.id: n.parent for n in layout.nodes}
    for n in layout.nodes:
        layout.kind_of[n.id] = n.kind
        if n.kind != "shard":
            continue
        row = row_of[n.id]
        groups = {n.id, n.labels["cohort"], n.labels["psu"], n.labels["nvlink_domain"]}
        cur = n.parent
        while cur is not None:
            groups.add(cur)
            cur = parent[cur]
        for g in groups:
            members[g].append(row)
    layout.rows_of = {nid: np.array(sorted(rows), dtype=np.intp) for nid, rows in members.items()}


def build_topology(cfg: SimConfig, *, seed: int | None = None) -> Topology:
    """The simulated cluster in the topology contract (gpu_uuids derived from ``seed`` or cfg.seed)."""
    layout = build_layout(cfg, seed)
    return Topology(layout.nodes, layout.edges)
