"""Topology merge: precedence, joining peer-only parts to containment, determinism."""

from __future__ import annotations

import itertools
import json
from pathlib import Path

import pytest

from tessera_daemon.errors import ConfigError
from tessera_daemon.model import TopoEdge, Topology, TopoNode
from tessera_daemon.settings.sources import KubernetesSettings
from tessera_daemon.sources import load_static_topology, merge_topology
from tessera_daemon.sources.base import TopologyPart
from tessera_daemon.sources.k8s_topology import build_part as k8s_part
from tessera_daemon.sources.slurm import build_part as slurm_part
from tessera_daemon.sources.slurm_parse import SlurmNode, parse_topology
from tests.sources.conftest import FIXTURES


def nvml_part(host: str = "gpu-node-01") -> TopologyPart:
    shards = [
        TopoNode(
            f"{host}/gpu{i}",
            "shard",
            host,
            {"host": host, "model": "H100", "gpu_uuid": f"GPU-{i}", "nvlink_domain": f"{host}/nvlink"},
        )
        for i in range(4)
    ]
    edges = [TopoEdge(f"{host}/gpu{a}", f"{host}/gpu{b}", "nvlink") for a, b in itertools.combinations(range(4), 2)]
    return TopologyPart(
        "nvml",
        [TopoNode(host, "host", None, {"host": host}), TopoNode(f"{host}/nvlink", "nvlink_domain", host), *shards],
        edges,
    )


def test_peer_only_part_is_joined_to_slurm_containment() -> None:
    tree = parse_topology("SwitchName=leaf7 Nodes=gpu-node-[01-02]\nSwitchName=spine Switches=leaf7\n")
    slurm = slurm_part([SlurmNode("gpu-node-01", "ALLOCATED", "gpu:h100:4", ("gpu",))], [], tree, "gpu", "gpu")
    topo = merge_topology([nvml_part(), slurm])
    shard = topo.nodes["gpu-node-01/gpu2"]
    assert shard.labels["gpu_uuid"] == "GPU-2"  # device source label kept
    assert shard.labels["model"] == "h100"  # slurm's GRES type outranks the device source's name
    assert shard.labels["rack"] == "rack:leaf7" and shard.labels["host"] == "gpu-node-01"
    assert topo.groups_of("gpu-node-01/gpu2") == ["gpu-node-01", "rack:leaf7", "switch:spine", "gpu-node-01/nvlink"]
    assert len(topo.edges) == 6


def test_kubernetes_outranks_slurm_and_zone_reaches_device_shards() -> None:
    nodes = json.loads((FIXTURES / "kubernetes" / "nodelist.json").read_text())["items"]
    k8s = k8s_part(nodes[:1], [], KubernetesSettings())
    tree = parse_topology("SwitchName=leafX Nodes=gpu-node-01\n")
    slurm = slurm_part([SlurmNode("gpu-node-01", "IDLE", "gpu:h100:8", ())], [], tree, "gpu", "gpu")
    topo = merge_topology([slurm, nvml_part(), k8s])
    host = topo.nodes["gpu-node-01"]
    assert host.parent == "rack:r01"  # kubernetes' rack label beats slurm's leaf switch
    assert "rack:leafX" in topo.nodes  # still present, now without the host
    shard = topo.nodes["gpu-node-01/gpu1"]
    assert shard.labels["cooling_zone"] == "zone:us-east-1a" and shard.labels["rack"] == "rack:r01"
    assert shard.labels["model"] == "NVIDIA-H100-80GB-HBM3"  # kubernetes label beats the device's
    assert shard.labels["nvlink_domain"].startswith("nvlink:")  # the clique label beats nvml's per-host domain
    assert "zone:us-east-1a" in topo.groups_of("gpu-node-01/gpu1")


def test_static_file_outranks_every_source(tmp_path: Path) -> None:
    static = Topology(
        [
            TopoNode("row-a", "cooling_zone"),
            TopoNode("rack:r99", "rack", "row-a"),
            TopoNode("gpu-node-01", "host", "rack:r99", {"psu": "psu-7"}),
            TopoNode("psu-7", "psu"),
        ]
    )
    path = tmp_path / "static.json"
    path.write_text(static.to_json())
    loaded = load_static_topology(str(path))
    assert loaded is not None
    nodes = json.loads((FIXTURES / "kubernetes" / "nodelist.json").read_text())["items"]
    topo = merge_topology([nvml_part(), k8s_part(nodes[:1], [], KubernetesSettings())], loaded)
    assert topo.nodes["gpu-node-01"].parent == "rack:r99"
    shard = topo.nodes["gpu-node-01/gpu0"]
    assert shard.labels["rack"] == "rack:r99" and shard.labels["psu"] == "psu-7"
    assert {"psu-7", "rack:r99", "row-a"} <= set(topo.groups_of("gpu-node-01/gpu0"))


def test_merge_is_deterministic_whatever_the_order() -> None:
    nodes = json.loads((FIXTURES / "kubernetes" / "nodelist.json").read_text())["items"]
    tree = parse_topology((FIXTURES / "slurm" / "topology-cluster.conf").read_text())
    parts = [
        nvml_part("gpu-01"),
        nvml_part("gpu-node-02"),
        k8s_part(nodes, [], KubernetesSettings()),
        slurm_part([SlurmNode("gpu-01", "IDLE", "gpu:4", ())], [], tree, "gpu", "gpu"),
    ]
    hashes = {merge_topology(list(p)).content_hash() for p in itertools.permutations(parts)}
    assert len(hashes) == 1


def test_conflicting_parents_cycle_is_broken_at_the_weakest_source() -> None:
    a = TopologyPart("kubernetes", [TopoNode("x", "rack", "y"), TopoNode("y", "rack")])
    b = TopologyPart("nvml", [TopoNode("y", "rack", "x"), TopoNode("x", "rack")])
    topo = merge_topology([b, a])
    assert topo.nodes["x"].parent == "y" and topo.nodes["y"].parent is None


def test_dangling_references_are_dropped() -> None:
    part = TopologyPart("dcgm", [TopoNode("h/gpu0", "shard", "missing-host")], [TopoEdge("h/gpu0", "h/gpu9", "nvlink")])
    topo = merge_topology([part])
    assert topo.nodes["h/gpu0"].parent is None and topo.edges == []


def test_static_topology_setting_errors(tmp_path: Path) -> None:
    assert load_static_topology("") is None
    with pytest.raises(ConfigError, match=r"sources\.static_topology"):
        load_static_topology(str(tmp_path / "missing.json"))
    bad = tmp_path / "bad.json"
    bad.write_text('{"v": 1, "nodes": [{"id": "a", "kind": "galaxy"}]}')
    with pytest.raises(ConfigError, match="unknown kind"):
        load_static_topology(str(bad))
