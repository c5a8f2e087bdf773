"""dcgm-exporter source against recorded exporter output served by a local aiohttp server."""

from __future__ import annotations

import pytest

from tessera_daemon.errors import SubstrateFatal, SubstrateUnavailable
from tessera_daemon.settings.sources import DcgmSettings
from tessera_daemon.sources.dcgm import DcgmSource, parse_exposition
from tests.sources.conftest import FIXTURES, TextServer, make_config

OLD = (FIXTURES / "dcgm" / "dcgm-exporter-3.3.9-3.6.1.txt").read_text()
NEW = (FIXTURES / "dcgm" / "dcgm-exporter-4.x.txt").read_text()


def dcgm(*urls: str, host: str = "") -> DcgmSource:
    return DcgmSource(make_config(dcgm=DcgmSettings(urls=urls, host=host)))


def test_both_field_name_generations_normalise_to_the_same_metrics() -> None:
    old, new = parse_exposition(OLD, "x"), parse_exposition(NEW, "x")
    assert sorted(old) == [f"gpu-node-07/gpu{i}" for i in range(4)]
    assert sorted(new) == [f"gpu-node-08/gpu{i}" for i in range(4)]
    for i in range(4):
        a, b = old[f"gpu-node-07/gpu{i}"].metrics, new[f"gpu-node-08/gpu{i}"].metrics
        for name in (
            "gpu_util",
            "mem_bw_util",
            "sm_clock_mhz",
            "mem_clock_mhz",
            "temp_c",
            "mem_temp_c",
            "power_w",
            "energy_j",
            "mem_used_bytes",
            "ecc_sbe",
            "ecc_dbe",
            "pcie_replay",
            "row_remap_correctable",
            "row_remap_failure",
            "nvlink_crc_errors",
            "clock_event_reasons",
            "gr_engine_active",
            "tensor_active",
            "dram_active",
            "nvlink_bytes_per_s",
        ):
            assert a[name] == pytest.approx(b[name], rel=1e-6), (i, name)
    g2 = old["gpu-node-07/gpu2"].metrics
    assert g2["gpu_util"] == pytest.approx(0.98)  # percent -> ratio
    assert g2["mem_used_bytes"] == 62637 * 1024 * 1024  # MiB -> bytes
    assert g2["energy_j"] == pytest.approx(8123456789.012 + 2 * 1000.003)  # mJ -> J
    assert g2["nvlink_crc_errors"] == 7  # flit 5 + data 2


def test_new_name_wins_over_legacy_in_one_scrape_and_blank_sentinels_are_none() -> None:
    text = (
        'DCGM_FI_DEV_GPU_TEMP_CELSIUS{gpu="0",Hostname="h"} 50\n'
        'DCGM_FI_DEV_GPU_TEMP{gpu="0",Hostname="h"} 99\n'
        'DCGM_FI_DEV_MEMORY_TEMP{gpu="0",Hostname="h"} 9223372036854775794\n'
        'DCGM_FI_DEV_SM_CLOCK{gpu="0",Hostname="h",GPU_I_ID="3",GPU_I_PROFILE="1g.10gb"} 1410\n'
        "unrelated_metric 1\n"
    )
    s = parse_exposition(text, "fallback")
    assert s["h/gpu0"].metrics["temp_c"] == 50
    assert s["h/gpu0"].metrics["mem_temp_c"] is None
    assert s["h/gpu0-mig3"].metrics["sm_clock_mhz"] == 1410


async def test_scrape_frames_counters_and_topology(dcgm_server: TextServer) -> None:
    src = dcgm(dcgm_server.url)
    await src.open()
    frames = await src.poll(100.0)
    assert [f.shard for f in frames] == [f"gpu-node-07/gpu{i}" for i in range(4)]
    f = frames[2]
    assert {"energy_j", "ecc_sbe", "pcie_replay", "nvlink_crc_errors", "xid_total"} <= f.counters
    assert "temp_c" not in f.counters and f.metrics["temp_c"] == 56
    assert all(fr.xid == () for fr in frames)  # the first scrape only sets the XID baseline
    part = await src.topology()
    shards = {n.id: n for n in part.nodes if n.kind == "shard"}
    assert shards["gpu-node-07/gpu0"].labels["gpu_uuid"].startswith("GPU-6a8f")
    assert shards["gpu-node-07/gpu0"].labels["k8s_pod"] == "ml-team/trainer-0"
    assert shards["gpu-node-07/gpu0"].labels["model"] == "NVIDIA H100 80GB HBM3"
    await src.close()


async def test_xid_last_value_gauge_becomes_an_event_when_it_changes(dcgm_server: TextServer) -> None:
    src = dcgm(dcgm_server.url)
    await src.open()
    await src.poll(1.0)
    dcgm_server.body = OLD.replace('pod=""} 13', 'pod=""} 79')
    frames = await src.poll(2.0)
    assert frames[3].xid == (79,) and frames[3].metrics["xid_79_total"] == 1
    frames = await src.poll(3.0)
    assert frames[3].xid == () and frames[3].metrics["xid_total"] == 1
    await src.close()


async def test_exporter_xid_counter_is_preferred(dcgm_server: TextServer) -> None:
    dcgm_server.body = NEW
    src = dcgm(dcgm_server.url)
    await src.open()
    await src.poll(1.0)
    dcgm_server.body = NEW.replace('xid="13"} 1', 'xid="13"} 3')
    frames = await src.poll(2.0)
    assert frames[3].xid == (13, 13) and frames[3].metrics["xid_13_total"] == 3
    await src.close()


async def test_gpu_vanishing_from_the_exporter_is_lost(dcgm_server: TextServer) -> None:
    src = dcgm(dcgm_server.url)
    await src.open()
    await src.poll(1.0)
    dcgm_server.body = "\n".join(ln for ln in OLD.splitlines() if 'gpu="1"' not in ln) + "\n"
    frames = await src.poll(2.0)
    assert [(f.shard, f.lost) for f in frames if f.lost] == [("gpu-node-07/gpu1", True)]
    assert len(frames) == 4
    await src.close()


async def test_partial_urls_and_typed_errors(dcgm_server: TextServer) -> None:
    broken = TextServer("<html>proxy error</html>{", status=502)
    await broken.start()
    src = dcgm(dcgm_server.url, broken.url, host="override")
    await src.open()
    frames = await src.poll(1.0)  # one of two exporters fails: still frames from the other
    assert [f.shard for f in frames] == [f"override/gpu{i}" for i in range(4)]
    await src.close()

    only_broken = dcgm(broken.url)
    await only_broken.open()
    with pytest.raises(SubstrateUnavailable, match="HTTP 502"):
        await only_broken.poll(1.0)
    broken.status = 200
    with pytest.raises(SubstrateFatal, match="not Prometheus text"):
        await only_broken.poll(2.0)
    await broken.stop()
    with pytest.raises(SubstrateUnavailable):
        await only_broken.poll(3.0)
    await only_broken.close()
