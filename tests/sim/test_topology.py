from __future__ import annotations

import re
from collections import Counter

import pytest

from tessera_daemon.config import SimConfig
from tessera_daemon.errors import ConfigError
from tessera_daemon.model import Topology
from tessera_daemon.sim import ClusterSim, build_topology
from tests.sim.runs import SMALL

UUID = re.compile(r"^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")
SHARD_LABELS = {
    "cohort",
    "model",
    "host",
    "rack",
    "cooling_zone",
    "psu",
    "nvlink_domain",
    "gpu_index",
    "gpu_uuid",
    "rank",
}


@pytest.fixture(scope="module")
def topo() -> Topology:
    return build_topology(SMALL)


def kinds(topo: Topology) -> Counter[str]:
    return Counter(n.kind for n in topo.nodes.values())


def test_shape_counts(topo: Topology) -> None:
    k = kinds(topo)
    assert k["fleet"] == 1
    assert k["cooling_zone"] == 2
    assert k["rack"] == 4
    assert k["psu"] == 8  # two per rack
    assert k["host"] == 16
    assert k["nvlink_domain"] == 16
    assert k["shard"] == 128
    assert k["cohort"] == 2
    per_host = Counter(topo.nodes[s].parent for s in topo.shards)
    assert set(per_host.values()) == {8}
    assert all(h is not None and topo.nodes[h].kind == "host" for h in per_host)


def test_parents_form_the_hierarchy(topo: Topology) -> None:
    for n in topo.nodes.values():
        want = {
            "fleet": None,
            "cohort": "fleet",
            "cooling_zone": "fleet",
            "rack": "cooling_zone",
            "psu": "rack",
            "host": "rack",
            "nvlink_domain": "host",
            "shard": "host",
        }[n.kind]
        if want is None:
            assert n.parent is None
        else:
            assert n.parent is not None
            assert topo.nodes[n.parent].kind == want


def test_shard_labels_and_groups(topo: Topology) -> None:
    for s in topo.shards:
        labels = topo.nodes[s].labels
        assert set(labels) >= SHARD_LABELS
        assert UUID.match(labels["gpu_uuid"])
        assert labels["model"] == "H100-SXM5-80GB"
        assert labels["host"] == topo.nodes[s].parent
        assert s.startswith(labels["host"])
        assert s.endswith(f"-g{labels['gpu_index']}")
        for key in ("cohort", "host", "rack", "cooling_zone", "psu", "nvlink_domain"):
            assert labels[key] in topo.nodes, key
        kinds_of_groups = {topo.nodes[g].kind: g for g in topo.groups_of(s)}
        assert set(kinds_of_groups) == {"host", "rack", "cooling_zone", "fleet", "psu", "nvlink_domain"}
        assert kinds_of_groups["psu"] == labels["psu"]
        assert topo.nodes[labels["psu"]].parent == labels["rack"]
        assert topo.nodes[labels["nvlink_domain"]].parent == labels["host"]
        assert topo.cohort_of(s) == labels["cohort"]


def test_psus_split_each_rack_in_halves(topo: Topology) -> None:
    members = topo.members()
    for p in (n.id for n in topo.nodes.values() if n.kind == "psu"):
        assert len(members[p]) == 16  # 2 hosts x 8 shards
        assert len({topo.nodes[s].parent for s in members[p]}) == 2


def test_uuids_unique_and_seeded() -> None:
    a = build_topology(SMALL)
    b = build_topology(SMALL, seed=SMALL.seed + 1)
    ua = [a.nodes[s].labels["gpu_uuid"] for s in a.shards]
    ub = [b.nodes[s].labels["gpu_uuid"] for s in b.shards]
    assert len(set(ua)) == len(ua)
    assert ua == [build_topology(SMALL).nodes[s].labels["gpu_uuid"] for s in a.shards]
    assert ua != ub


def test_cohorts_span_racks_and_cover_every_shard_once(topo: Topology) -> None:
    by_cohort: dict[str, set[str]] = {}
    for s in topo.shards:
        labels = topo.nodes[s].labels
        by_cohort.setdefault(labels["cohort"], set()).add(labels["rack"])
    assert set(by_cohort) == {n.id for n in topo.nodes.values() if n.kind == "cohort"}
    assert all(len(racks) > 1 for racks in by_cohort.values())
    # whole hosts per cohort; ranks 0..k-1 within each cohort
    for h in (n.id for n in topo.nodes.values() if n.kind == "host"):
        kids = [c for c in topo.children[h] if topo.nodes[c].kind == "shard"]
        assert len({topo.nodes[c].labels["cohort"] for c in kids}) == 1
    for c in by_cohort:
        ranks = sorted(int(topo.nodes[s].labels["rank"]) for s in topo.shards if topo.cohort_of(s) == c)
        assert ranks == list(range(len(ranks)))


def test_nvlink_full_mesh_per_host(topo: Topology) -> None:
    assert all(e.kind == "nvlink" for e in topo.edges)
    assert len(topo.edges) == 16 * 28
    for e in topo.edges:
        assert topo.nodes[e.a].parent == topo.nodes[e.b].parent


def test_contract_round_trip(topo: Topology) -> None:
    again = Topology.from_json(topo.to_json())
    assert again.to_json() == topo.to_json()
    assert again.content_hash() == topo.content_hash()


def test_sim_topology_matches_build_topology() -> None:
    sim = ClusterSim(SMALL)
    assert sim.topology.to_json() == build_topology(SMALL).to_json()
    assert sim.shard_ids == sim.topology.shards == sorted(sim.shard_ids)


def test_sorted_ids_follow_the_hierarchy_with_wide_counts() -> None:
    cfg = SimConfig(zones=1, racks_per_zone=12, hosts_per_rack=1, shards_per_host=12, cohorts=3)
    sim = ClusterSim(cfg)
    assert sim.shard_ids[12] == "z0-r01-h00-g00"
    assert [sim.layout.rack_ids[r] for r in sim.layout.rack_of.tolist()] == sorted(
        sim.layout.rack_ids[r] for r in sim.layout.rack_of.tolist()
    )
    assert len({n.id for n in sim.topology.nodes.values() if n.kind == "psu"}) == 12  # one per 1-host rack


def test_more_cohorts_than_hosts_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="cohorts"):
        build_topology(SimConfig(zones=1, racks_per_zone=1, hosts_per_rack=2, cohorts=3))
