"""Google TPU source: tpu-info outputs through a stub executable, Tessera's slice descriptions."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from tessera_daemon.errors import SubstrateFatal, SubstrateUnavailable
from tessera_daemon.settings.sources import TpuSettings
from tessera_daemon.sources import merge_topology
from tessera_daemon.sources.tpu import TpuSource
from tessera_daemon.sources.tpu_parse import parse_slice, parse_tpu_info
from tests.sources.conftest import FIXTURES, make_config

TP = FIXTURES / "tpu"


def stub(output: Path) -> tuple[str, ...]:
    return (sys.executable, str(TP / "stub_tpu_info.py"), str(output))


def test_tpu_info_markdown_and_rich_tables() -> None:
    v6e = parse_tpu_info((TP / "tpu-info-v6e-static.txt").read_text())
    assert sorted(v6e) == [0, 1, 2, 3]
    assert v6e[2]["gpu_util"] == pytest.approx(0.975) and v6e[0]["tensorcore_util"] == pytest.approx(0.136)
    assert v6e[0]["mem_used_bytes"] == pytest.approx(18.45 * 2**30) and v6e[0]["mem_total_bytes"] == 31.25 * 2**30
    v4 = parse_tpu_info((TP / "tpu-info-v4-rich.txt").read_text())
    assert v4[2]["gpu_util"] == pytest.approx(0.714)
    assert v4[2]["tensorcore_util"] == pytest.approx((0.221 + 0.219) / 2)  # 2 TensorCores per v4 chip
    metric_mode = "TPU Duty Cycle\n\n| Core ID | Duty Cycle (%) |\n|---|---|\n| 0 | 55.00% |\n| 1 | 45.00% |\n"
    assert parse_tpu_info(metric_mode) == {0: {"gpu_util": 0.55}, 1: {"gpu_util": 0.45}}
    with pytest.raises(ValueError, match="no TPU Chips"):
        parse_tpu_info("TPU gRPC TCP Minimum RTT\n| P50 |\n|---|\n| 35.99 us |\n")


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({}, "missing tpu_version"),
        ({"tpu_version": "v9"}, "unknown tpu_version"),
        ({"tpu_version": "v4", "slice_shape": [0, 1, 1]}, "invalid slice_shape"),
        ({"tpu_version": "v4", "slice_shape": [2, 2, 1]}, "missing chips"),
        ({"tpu_version": "v4", "slice_shape": [2, 2, 1], "chips": []}, "no chips"),
        ({"tpu_version": "v4", "slice_shape": [1, 1, 1], "chips": [{"chip": "c0"}]}, "tpu-<N>"),
    ],
)
def test_slice_description_is_strict(doc: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_slice(doc)


async def test_poll_and_topology_single_host_slice() -> None:
    src = TpuSource(
        make_config(
            tpu=TpuSettings(
                command=stub(TP / "tpu-info-v6e-static.txt"),
                slice_file=str(TP / "tpu-fixture-sparse-subcube.json"),
                host="tpu-a",
            )
        )
    )
    await src.open()
    frames = await src.poll(time.time())
    assert [f.shard for f in frames] == [f"tpu-a/tpu{i}" for i in range(4)]
    assert frames[2].metrics["gpu_util"] == pytest.approx(0.975) and not frames[2].counters
    part = await src.topology()
    nodes = {n.id: n for n in part.nodes}
    assert nodes["slice:slice0"].kind == "pod" and nodes["slice:slice0"].labels["slice_shape"] == "2x2x2"
    assert nodes["tpu-a/tpu7"].labels["pod"] == "slice:slice0" and nodes["tpu-a/tpu7"].labels["model"] == "tpu-v5p"
    assert len(part.edges) == 12 and {e.kind for e in part.edges} == {"ici"}  # a 2x2x2 mesh has 12 links
    assert part.notes == ("sub-cube mesh (a dimension < 4)",)
    await src.close()


async def test_multi_host_slice_places_chips_on_their_workers() -> None:
    hosts = tuple(f"tpu-w{i}" for i in range(16))
    src = TpuSource(
        make_config(
            tpu=TpuSettings(
                command=stub(TP / "tpu-info-v4-rich.txt"),
                slice_file=str(TP / "tpu-fixture-v4-cube.json"),
                host="tpu-w5",
                hosts=hosts,
                chips_per_host=4,
                accelerator="tpu-v4-podslice",
            )
        )
    )
    await src.open()
    frames = await src.poll(time.time())
    part = await src.topology()
    topo = merge_topology([part])
    assert len(topo.shards) == 64 and {f.shard for f in frames} <= set(topo.shards)
    assert topo.nodes["tpu-w5/tpu1"].labels["slice_chip"] == "tpu-21"
    assert len(part.edges) == 64 * 6 // 2  # a 4x4x4 torus: 6 ICI links per chip
    assert topo.groups_of("tpu-w5/tpu1") == ["tpu-w5", "slice:slice0"]
    await src.close()


async def test_errors_are_typed(tmp_path: Path) -> None:
    empty = tmp_path / "none.txt"
    empty.write_text("No TPU chips found.\n")
    src = TpuSource(make_config(tpu=TpuSettings(command=stub(empty))))
    with pytest.raises(SubstrateUnavailable, match="No TPU chips"):
        await src.poll(1.0)
    garbage = tmp_path / "garbage.txt"
    garbage.write_text("Segmentation fault\n")
    src = TpuSource(make_config(tpu=TpuSettings(command=stub(garbage))))
    with pytest.raises(SubstrateFatal):
        await src.poll(1.0)
    src = TpuSource(make_config(tpu=TpuSettings(command=("/nonexistent/tpu-info",))))
    with pytest.raises(SubstrateUnavailable, match="cannot run"):
        await src.poll(1.0)
    bad_slice = tmp_path / "slice.json"
    bad_slice.write_text(json.dumps({"tpu_version": "v7x"}))
    src = TpuSource(
        make_config(tpu=TpuSettings(command=stub(TP / "tpu-info-v6e-static.txt"), slice_file=str(bad_slice)))
    )
    with pytest.raises(SubstrateFatal, match="unknown tpu_version"):
        await src.open()
