from __future__ import annotations

import numpy as np
import pytest

from tessera_daemon.config import load_config
from tessera_daemon.engine.attribution import attribute, binom_sf
from tessera_daemon.engine.ebh import e_bh, e_d_bh_selected
from tessera_daemon.model import Topology, TopoNode
from tessera_daemon.sim import build_topology


def tessera_fixture() -> Topology:
    """Tessera's topology-spanning demo: cz-1 > rack-A {00,01,02}, rack-B {03,04,05}."""
    nodes = [TopoNode("cz-1", "cooling_zone"), TopoNode("rack-A", "rack", "cz-1"), TopoNode("rack-B", "rack", "cz-1")]
    nodes += [TopoNode(f"shard-0{i}", "shard", "rack-A" if i < 3 else "rack-B") for i in range(6)]
    return Topology(nodes)


def test_binom_sf() -> None:
    assert binom_sf(0, 5, 0.1) == 1.0
    assert binom_sf(1, 5, 0.1) == pytest.approx(1 - 0.9**5)
    assert binom_sf(6, 5, 0.1) == 0.0
    assert binom_sf(3, 10, 1e-6) == pytest.approx(120e-18, rel=1e-3)


def test_spanning_fire_gives_one_cooling_zone_candidate() -> None:
    c = attribute(["shard-00", "shard-01", "shard-03", "shard-04"], tessera_fixture(), p0=0.01)
    assert [(x.node, x.members) for x in c] == [("cz-1", ("shard-00", "shard-01", "shard-03", "shard-04"))]


def test_rack_only_fire_gives_the_rack_and_no_ancestor_or_shadow() -> None:
    c = attribute(["shard-00", "shard-01"], tessera_fixture(), p0=0.01)
    assert [(x.node, x.members) for x in c] == [("rack-A", ("shard-00", "shard-01"))]


def zone_fixture(rack_b_size: int) -> Topology:
    """cz-1 > rack-A {shard-00, 01, 02}, rack-B {shard-03 .. shard-(02 + rack_b_size)}."""
    nodes = [TopoNode("cz-1", "cooling_zone"), TopoNode("rack-A", "rack", "cz-1"), TopoNode("rack-B", "rack", "cz-1")]
    nodes += [TopoNode(f"shard-{i:02d}", "shard", "rack-A" if i < 3 else "rack-B") for i in range(3 + rack_b_size)]
    return Topology(nodes)


@pytest.mark.parametrize("p0", [1e-3, 1e-2])
def test_full_rack_plus_lone_sibling_shard_is_the_zone_when_the_zone_is_significant(p0: float) -> None:
    # rack-A fired in full, shard-03 of rack-B fired alone; cz-1 (4 of 6) is significant: one node
    # explaining every fired shard beats "rack-A + an unexplained lone shard"
    fired = ["shard-00", "shard-01", "shard-02", "shard-03"]
    c = attribute(fired, tessera_fixture(), p0=p0)
    assert [(x.node, x.members, x.k, x.n) for x in c] == [("cz-1", tuple(fired), 4, 6)]


def test_full_rack_plus_lone_sibling_shard_stays_the_rack_when_the_zone_is_not_significant() -> None:
    # same pattern in a 10-shard zone at p0 = 0.1: rack-A (3 of 3, p = 1e-3) is significant at
    # 0.01 / 3 groups, cz-1 (4 of 10, p ~ 0.013) is not; shard-03 stays a lone, unexplained shard
    topo = zone_fixture(rack_b_size=7)
    c = attribute(["shard-00", "shard-01", "shard-02", "shard-03"], topo, p0=0.1)
    assert binom_sf(4, 10, 0.1) > 0.01 / 3 >= binom_sf(3, 3, 0.1)
    assert [(x.node, x.members) for x in c] == [("rack-A", ("shard-00", "shard-01", "shard-02"))]


@pytest.mark.parametrize("p0", [1e-6, 1e-3, 1e-2])
def test_an_ancestor_explaining_no_extra_fired_shard_is_never_reported(p0: float) -> None:
    # rack-A fired in full, nothing else: cz-1 (3 of 6) is significant as a whole, yet it explains no
    # fired shard beyond rack-A, so it never replaces the rack (at any base rate)
    full = ["shard-00", "shard-01", "shard-02"]
    c = attribute(full, tessera_fixture(), p0=p0)
    assert [(x.node, x.members) for x in c] == [("rack-A", tuple(full))]
    # deeper: a host inside the rack, the rack and the zone all hold exactly the same fired shards
    nodes = [
        TopoNode("cz-1", "cooling_zone"),
        TopoNode("rack-A", "rack", "cz-1"),
        TopoNode("rack-B", "rack", "cz-1"),
        TopoNode("host-A0", "host", "rack-A"),
        TopoNode("host-A1", "host", "rack-A"),
        TopoNode("host-B0", "host", "rack-B"),
    ]
    nodes += [
        TopoNode(f"shard-0{i}", "shard", "host-A0" if i < 2 else "host-A1" if i < 4 else "host-B0") for i in range(6)
    ]
    c = attribute(["shard-00", "shard-01"], Topology(nodes), p0=p0)
    assert [(x.node, x.members) for x in c] == [("host-A0", ("shard-00", "shard-01"))]


def test_chance_pairs_are_not_candidates_when_the_base_rate_is_high() -> None:
    assert attribute(["shard-00", "shard-01"], tessera_fixture(), p0=0.5) == []
    assert attribute(["shard-00"], tessera_fixture(), p0=1e-6) == []


def test_simulated_cluster_rack_psu_host() -> None:
    cfg = load_config(
        None, {"TESSERA_SIM__ZONES": "2", "TESSERA_SIM__RACKS_PER_ZONE": "2", "TESSERA_SIM__HOSTS_PER_RACK": "4"}
    )
    topo = build_topology(cfg.sim)
    members = topo.members()
    rack = sorted(g for g in members if topo.nodes[g].kind == "rack")[0]
    psu = sorted(g for g in members if topo.nodes[g].kind == "psu")[0]
    host = sorted(g for g in members if topo.nodes[g].kind == "host")[0]
    for node in (rack, psu, host):
        (cand,) = attribute(members[node], topo, p0=1e-4)
        assert cand.node == node and cand.k == len(members[node])
    # two racks in different zones: two candidates, no zone, no fleet
    rack2 = sorted(g for g in members if topo.nodes[g].kind == "rack")[-1]
    got = attribute(members[rack] + members[rack2], topo, p0=1e-4)
    assert [c.node for c in got] == sorted([rack, rack2])
    # a rack plus one stray shard elsewhere: the stray is not pulled into a bigger group
    stray = members[rack2][0]
    got = attribute(members[rack] + [stray], topo, p0=1e-4)
    assert [c.node for c in got] == [rack]
    assert stray not in got[0].members


def test_e_bh_matches_tessera_rule() -> None:
    e = np.array([1.0, 50.0, 0.1, 30.0, 200.0])
    # K=5, q=0.1: K/q = 50; sorted 200 (k=1: 200>=50), 50 (k=2: 100>=50), 30 (k=3: 90>=50), 1 (k=4: 4)
    assert e_bh(e, 0.1).tolist() == [1, 3, 4]
    assert e_bh(np.ones(4), 0.1).tolist() == []
    with pytest.raises(ValueError, match="q must be"):
        e_bh(e, 0.0)


def test_e_d_bh_lowers_the_bar_only_when_several_streams_are_elevated() -> None:
    log_c = 20.0
    one = np.array([[19.5, 0.0, 0.0, 0.0]])
    assert not e_d_bh_selected(one, log_c).any()
    many = np.array([[19.5, 19.0, 18.95, 0.0]])  # 3 elevated: bar for k=3 is 20 - log 3 = 18.90
    assert e_d_bh_selected(many, log_c).tolist() == [[True, True, True, False]]
