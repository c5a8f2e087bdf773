"""Group detectors: the containment relations and the seeding schedule."""

from __future__ import annotations

import numpy as np
import pytest

from tessera_daemon.config import SimConfig
from tessera_daemon.detect.state import DetectorState
from tessera_daemon.engine.groups import KIND_ORDER, MIN_SEED, GroupDetector
from tessera_daemon.model import Topology, TopoNode
from tessera_daemon.sim.topology import build_topology

BETS = np.array([0.1, 0.25, 0.5, 1.0, 1.5])


def _detector(topology: Topology, m: int = 2) -> GroupDetector:
    row = {s: i for i, s in enumerate(topology.shards)}
    return GroupDetector(topology, row, m, KIND_ORDER, BETS, 30, 2000.0)


def _pairwise(rows: list[np.ndarray]) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """The definitions, by testing every pair of groups (what the detector did before it was O(groups))."""
    sets = [set(r.tolist()) for r in rows]
    parents = [[j for j, sj in enumerate(sets) if j != i and si < sj] for i, si in enumerate(sets)]
    desc = [[j for j, sj in enumerate(sets) if j != i and sj < si] for i, si in enumerate(sets)]
    children = [[j for j in d if not any(sets[j] < sets[k] for k in d if k != j)] for d in desc]
    return parents, children, desc


def _random_topology(rng: np.random.Generator) -> Topology:
    """A forest of racks > hosts > shards plus label-declared PSUs and NVLink domains that cut across it
    (a PSU feeding hosts of two racks, domains spanning two hosts), cohorts of uneven size."""
    nodes = [TopoNode("fleet", "fleet")]
    psus = [f"psu{i}" for i in range(int(rng.integers(2, 6)))]
    nodes += [TopoNode(p, "psu", "fleet") for p in psus]
    domains = [f"nvl{i}" for i in range(int(rng.integers(2, 8)))]
    nodes += [TopoNode(d, "nvlink_domain", "fleet") for d in domains]
    for r in range(int(rng.integers(2, 5))):
        rack = f"r{r}"
        nodes.append(TopoNode(rack, "rack", "fleet"))
        for h in range(int(rng.integers(1, 5))):
            host = f"{rack}-h{h}"
            nodes.append(TopoNode(host, "host", rack))
            psu = psus[int(rng.integers(len(psus)))]
            for g in range(int(rng.integers(1, 9))):
                labels = {"cohort": f"c{int(rng.integers(3))}", "psu": psu}
                if rng.random() < 0.7:
                    labels["nvlink_domain"] = domains[int(rng.integers(len(domains)))]
                nodes.append(TopoNode(f"{host}-g{g}", "shard", host, labels))
    return Topology(nodes)


@pytest.mark.parametrize("seed", range(12))
def test_containment_equals_the_pairwise_definition(seed: int) -> None:
    topo = _random_topology(np.random.default_rng(seed))
    det = _detector(topo)
    assert len(det) > 0 or seed > 8  # most draws have groups worth comparing
    parents, children, desc = _pairwise(det.rows)
    assert det.parents == parents
    assert det.children == children
    assert det.descendants == desc


def test_containment_on_the_simulated_cluster() -> None:
    """Hosts sit in PSUs only by label (their tree parent is the rack): containment still finds it."""
    topo = build_topology(SimConfig(zones=2, racks_per_zone=3, hosts_per_rack=4, cohorts=2))
    det = _detector(topo)
    kinds = set(det.kinds)
    assert {"host", "psu"} <= kinds
    parents, children, desc = _pairwise(det.rows)
    assert (det.parents, det.children, det.descendants) == (parents, children, desc)
    host = det.kinds.index("host")
    assert any(det.kinds[p] == "psu" for p in det.parents[host])


def test_seeding_is_retried_only_when_more_members_are_warm() -> None:
    """A group whose warm members' buffers are too short to seed from is not retried until another
    member is warm; then it seeds, from exactly the members' whitened buffers."""
    topo = build_topology(SimConfig(zones=1, racks_per_zone=2, hosts_per_rack=2, shards_per_host=4, cohorts=1))
    det = _detector(topo, m=1)
    n = len(topo.shards)
    depth = MIN_SEED + 5
    st = DetectorState.empty(n, 1, depth, len(BETS))
    rng = np.random.default_rng(3)
    st.buf = rng.standard_normal((n, 1, depth)).astype(np.float32)
    st.buf_row[:] = np.arange(n)
    st.buf[:, 0, MIN_SEED - 5 :] = np.nan  # too short a warm-up history to seed any group
    host = det.kinds.index("host")
    rows = det.rows[host]
    st.n_warm[rows[:2], 0] = depth  # half of a 4-GPU host warm
    assert det.seed(st, 4.0) == 0
    assert det.seed_tried[host, 0] == 2
    st.buf[rows[:3], 0, :] = rng.standard_normal((3, depth)).astype(np.float32)  # buffers replaced ...
    assert det.seed(st, 4.0) == 0  # ... but no more members warm: not tried again
    assert not det.ready[host, 0]
    st.n_warm[rows[2], 0] = depth  # a third member warm: tried, and now seeded
    assert det.seed(st, 4.0) >= 1
    assert det.ready[host, 0]
    w = st.buf[rows[:3], 0, :].astype(np.float64)
    z = w[:, 1:].sum(axis=0) / np.sqrt(3.0)  # offset 0, phi 0, scale 1: whitened = buffered
    np.testing.assert_allclose(det.var[host, 0], max(float(np.mean(z * z)), 0.25))
    det.relearn(rows[:1])
    assert not det.ready[host, 0] and det.seed_tried[host, 0] == -1


def test_a_topology_change_keeps_the_variance_of_unchanged_groups() -> None:
    """A rack gains a host (every shard row after it moves): groups with the same members keep their
    learnt variance without any member buffer; the new host and the groups that grew start over."""
    grown = build_topology(SimConfig(zones=1, racks_per_zone=2, hosts_per_rack=3, cohorts=2))
    kept = Topology([n for n in grown.nodes.values() if not n.id.startswith("z0-r00-h02")])
    before = _detector(kept)
    before.var[:] = np.arange(len(before))[:, None] + 2.0
    before.ready[:] = True
    before.n[:] = 40
    old = {s: i for i, s in enumerate(kept.shards)}
    row = {s: i for i, s in enumerate(grown.shards)}
    old_row = np.array([old.get(s, -1) for s in grown.shards], np.int64)
    after = GroupDetector(grown, row, 2, KIND_ORDER, BETS, 30, 2000.0, previous=before, old_row=old_row)
    assert len(kept.shards) < len(grown.shards)
    for gi, gid in enumerate(after.ids):
        same = (
            gid in before.index and sorted(old_row[after.rows[gi]].tolist()) == before.rows[before.index[gid]].tolist()
        )
        if same:
            np.testing.assert_array_equal(after.var[gi], before.var[before.index[gid]])
            assert after.ready[gi].all()
        else:
            assert not after.ready[gi].any() and (after.var[gi] == 1.0).all()
    carried = [gid for gi, gid in enumerate(after.ids) if after.ready[gi].all()]
    assert {"z0-r00-h00", "z0-r01-h02"} <= set(carried)
    assert "z0-r00-h02" in after.index and "z0-r00-h02" not in carried  # the new host
    assert len(carried) < len(after)
