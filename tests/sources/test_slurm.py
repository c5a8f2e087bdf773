"""Slurm: parsers on recorded outputs (22.05 and 23.11+ layouts, Tessera's topology.conf files) and
the source against a real single-node Slurm (slurmctld + slurmd, fake GPUs) started by a fixture."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tessera_daemon.errors import SubstrateError, SubstrateUnavailable
from tessera_daemon.settings.sources import SlurmSettings
from tessera_daemon.sources.slurm import SlurmSource, build_part
from tessera_daemon.sources.slurm_parse import (
    check_errors,
    expand_hostlist,
    gres_count,
    gres_indexes,
    parse_topology,
    sinfo_nodes,
    squeue_jobs,
)
from tests.sources.conftest import FIXTURES, SlurmCluster, make_config

SL = FIXTURES / "slurm"


def doc(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((SL / name).read_text())
    return data


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("node[01-04,07]", ["node01", "node02", "node03", "node04", "node07"]),
        ("gpu-[1-3]", ["gpu-1", "gpu-2", "gpu-3"]),
        ("n[8-10]", ["n8", "n9", "n10"]),
        ("n[08-10],login", ["n08", "n09", "n10", "login"]),
        ("r[1-2]n[1-2]", ["r1n1", "r1n2", "r2n1", "r2n2"]),
        ("vm", ["vm"]),
        ("", []),
    ],
)
def test_hostlist_expansion(expr: str, names: list[str]) -> None:
    assert expand_hostlist(expr) == names


@pytest.mark.parametrize("bad", ["node[3-1]", "node[1-2", "node1-2]", "n[[1]]", "n[a-b]", "a,,b"])
def test_hostlist_errors(bad: str) -> None:
    with pytest.raises(ValueError, match="hostlist"):
        expand_hostlist(bad)


@given(st.lists(st.integers(0, 999), min_size=1, max_size=20, unique=True), st.integers(1, 4))
def test_hostlist_roundtrip_property(values: list[int], width: int) -> None:
    values.sort()
    tokens = [str(v).zfill(width) for v in values]
    expr = "x[" + ",".join(tokens) + "]"
    expected = [f"x{t}" if t.startswith("0") or len(t) == 1 else f"x{int(t)}" for t in tokens]
    assert expand_hostlist(expr) == expected


def test_tessera_topology_fixtures() -> None:
    canonical = parse_topology((SL / "slurm-fixture-canonical.conf").read_text())
    assert canonical["sw0"].nodes == ["node1", "node2", "node3"] and canonical["sw0"].level == 0
    tree = parse_topology((SL / "slurm-fixture-hierarchical.conf").read_text())
    assert (tree["top"].level, tree["mid0"].level, tree["mid1"].level) == (1, 0, 0)
    part = build_part([], [], tree, "gpu", "gpu")
    nodes = {n.id: n for n in part.nodes}
    assert nodes["switch:top"].kind == "switch" and nodes["switch:top"].labels["level"] == "1"
    assert nodes["rack:mid0"].kind == "rack" and nodes["rack:mid0"].parent == "switch:top"
    sparse = parse_topology((SL / "slurm-fixture-sparse.conf").read_text())
    assert not sparse["child0"].declared and sparse["child0"].level == 0


def test_three_level_tree_and_scontrol_output() -> None:
    tree = parse_topology((SL / "topology-cluster.conf").read_text())
    assert tree["core"].level == 2 and tree["spine0"].level == 1
    assert tree["leaf03"].nodes == ["node08", "node09", "node10"]
    assert tree["leaf04"].nodes == ["node1", "node2", "node3", "node7"]
    # scontrol lists every node under upper switches too: a host still hangs under its leaf
    shown = parse_topology((SL / "scontrol-show-topology.txt").read_text())
    assert shown["spine0"].level == 1 and shown["spine0"].nodes == ["vm"]
    part = build_part(sinfo_nodes(doc("sinfo-v0.0.38.json")), [], shown, "gpu", "gpu")
    assert {n.id: n for n in part.nodes}["vm"].parent == "rack:leaf0"


@pytest.mark.parametrize(
    "text",
    [
        "SwitchName=a Nodes=n1\nSwitchName=a Nodes=n2",
        "SwitchName= Nodes=n1",
        "SwitchName=a Foo=b",
        "Nodes=n1",
        "SwitchName=a Nodes=n[2-1]",
        "SwitchName=a Switches=n1\nSwitchName=b Nodes=a",
    ],
)
def test_topology_is_strict(text: str) -> None:
    with pytest.raises(ValueError, match=r"topology|hostlist"):
        parse_topology(text)


def test_gres_strings() -> None:
    assert gres_count("gpu:a100:4", "gpu") == (4, "a100")
    assert gres_count("gpu:4(S:0-1),nic:2", "gpu") == (4, "")
    assert gres_count("gpu:h100:8(S:0-1)", "gpu") == (8, "h100")
    assert gres_count("(null)", "gpu") == (0, "")
    assert gres_indexes("gpu:a100:2(IDX:1-2)", "gpu") == [1, 2]
    assert gres_indexes("gpu:h100:2(IDX:0,3)", "gpu") == [0, 3]
    assert gres_indexes("gpu:a100:0(IDX:N/A)", "gpu") == []


def test_both_json_layouts() -> None:
    old = sinfo_nodes(doc("sinfo-v0.0.38-allocated.json"))
    assert [(n.name, n.state, n.gres, n.partitions) for n in old] == [("vm", "ALLOCATED", "gpu:a100:4", ("debug",))]
    jobs = squeue_jobs(doc("squeue-v0.0.38.json"), "gpu")
    assert [(j.job_id, j.name, j.allocations) for j in jobs] == [
        (1, "train-a", (("vm", (0,)),)),
        (2, "train-b", (("vm", (1, 2)),)),
    ]
    new = sinfo_nodes(doc("sinfo-v0.0.40.json"))
    assert [n.name for n in new] == ["gpu-01", "gpu-02", "gpu-03", "gpu-04"]
    assert new[3].state == "IDLE+DRAIN" and new[0].partitions == ("debug", "gpu")
    jobs = squeue_jobs(doc("squeue-v0.0.40.json"), "gpu")
    assert [(j.job_id, j.allocations) for j in jobs] == [
        (1201, (("gpu-01", tuple(range(8))), ("gpu-02", tuple(range(8))))),
        (1202, (("gpu-03", (0, 3)),)),
    ]
    part = build_part(new, jobs, parse_topology((SL / "topology-cluster.conf").read_text()), "gpu", "gpu")
    nodes = {n.id: n for n in part.nodes}
    assert nodes["gpu-02/gpu5"].labels["cohort"] == "slurm/1201" and nodes["gpu-02/gpu5"].labels["model"] == "h100"
    assert nodes["gpu-03/gpu3"].labels["slurm_user"] == "bob" and "cohort" not in nodes["gpu-03/gpu1"].labels
    assert nodes["gpu-03"].parent == "rack:leaf02" and nodes["rack:leaf02"].parent == "switch:spine0"
    assert nodes["switch:spine1"].parent == "switch:core" and nodes["rack:leaf04"].parent == "switch:spine1"


def test_errors_field_of_a_controller_down_answer() -> None:
    assert check_errors(doc("sinfo-v0.0.38-controller-down.json")) == ["Unspecified error (errno -1)"]
    assert check_errors(
        {
            "errors": [
                {
                    "description": "Unable to contact slurm controller",
                    "error_number": 1007,
                    "error": "Unable to contact slurm controller (connect failure)",
                }
            ]
        }
    ) == ["Unable to contact slurm controller (errno 1007)"]


async def test_stub_commands_controller_down_answer_is_unavailable(tmp_path: Path) -> None:
    # a recorded controller-down answer (exit 0 + errors), replayed by a stub in place of sinfo
    stub = FIXTURES / "neuron" / "stub_print.py"
    settings = SlurmSettings(
        sinfo=(sys.executable, str(stub), str(SL / "sinfo-v0.0.38-controller-down.json")),
        squeue=(sys.executable, str(stub), str(SL / "squeue-v0.0.38.json")),
        topology="none",
    )
    src = SlurmSource(make_config(slurm=settings))
    with pytest.raises(SubstrateUnavailable, match="Unspecified error"):
        await src.open()
    await src.close()


async def test_command_timeout_kills_and_raises(tmp_path: Path) -> None:
    hang = ("sh", "-c", "sleep 30", "sh")  # ignores the --json the source appends
    settings = SlurmSettings(sinfo=hang, squeue=hang, command_timeout_s=0.3)
    src = SlurmSource(make_config(slurm=settings))
    t0 = time.monotonic()
    with pytest.raises(SubstrateError, match="did not finish"):
        await src.open()
    assert time.monotonic() - t0 < 3


@pytest.mark.slurm
async def test_real_slurm_job_holding_a_gpu_sets_the_cohort(slurm_cluster: SlurmCluster) -> None:
    job = slurm_cluster.run(
        "sbatch",
        "--parsable",
        "--gres=gpu:2",
        "-J",
        "train-x",
        "-D",
        str(slurm_cluster.workdir),
        "-o",
        "/dev/null",
        "--wrap",
        "sleep 60",
    ).strip()
    try:
        slurm_cluster.wait_running(job)
        src = SlurmSource(make_config(slurm=SlurmSettings(slurm_conf=str(slurm_cluster.conf), refresh_s=0.0)))
        await src.open()
        assert await src.poll(time.time()) == []
        part = await src.topology()
        nodes = {n.id: n for n in part.nodes}
        host = slurm_cluster.host
        assert nodes[host].kind == "host" and nodes[host].parent == "rack:leaf0"  # from scontrol show topology
        assert nodes["rack:leaf0"].parent == "switch:spine0" and nodes["switch:spine0"].labels["level"] == "1"
        shards = [nodes[f"{host}/gpu{i}"] for i in range(4)]
        held = [s for s in shards if s.labels.get("cohort") == f"slurm/{job}"]
        assert len(held) == 2 and all(s.labels["slurm_job"] == "train-x" for s in held)
        assert all(s.labels["model"] == "a100" for s in shards)
        await src.close()
    finally:
        slurm_cluster.run("scancel", job, check=False)
