"""Prometheus query source against a real prometheus scraping a local dcgm-exporter stand-in."""

from __future__ import annotations

import time

import pytest

from tessera_daemon.errors import SubstrateFatal
from tessera_daemon.settings.sources import PrometheusSettings
from tessera_daemon.sources.prometheus import PrometheusSource
from tests.sources.conftest import PrometheusServer, make_config

pytestmark = pytest.mark.prometheus


def source(server: PrometheusServer, *queries: str, counters: tuple[str, ...] = ()) -> PrometheusSource:
    return PrometheusSource(
        make_config(prometheus=PrometheusSettings(url=server.url, queries=queries, counters=counters))
    )


async def test_instant_queries_become_per_shard_frames(prometheus_server: PrometheusServer) -> None:
    src = source(
        prometheus_server,
        "gpu_util=DCGM_FI_DEV_GPU_UTIL / 100",
        "temp_c=DCGM_FI_DEV_GPU_TEMP",
        "energy_j=DCGM_FI_DEV_TOTAL_ENERGY_CONSUMPTION / 1000",
        counters=("energy_j",),
    )
    await src.open()
    frames = await src.poll(time.time())
    assert [f.shard for f in frames] == [f"gpu-node-07/gpu{i}" for i in range(4)]
    f2 = frames[2]
    assert f2.metrics["gpu_util"] == pytest.approx(0.98) and f2.metrics["temp_c"] == 56
    assert f2.counters == {"energy_j"} and (f2.metrics["energy_j"] or 0) > 8.1e9
    part = await src.topology()
    shard = {n.id: n for n in part.nodes}["gpu-node-07/gpu0"]
    assert shard.labels["model"] == "NVIDIA H100 80GB HBM3" and shard.labels["gpu_uuid"].startswith("GPU-6a8f")
    await src.close()


async def test_a_rejected_query_drops_only_its_metric(prometheus_server: PrometheusServer) -> None:
    src = source(prometheus_server, "power_w=DCGM_FI_DEV_POWER_USAGE", "broken=sum(by (")
    frames = await src.poll(time.time())
    assert len(frames) == 4 and all(set(f.metrics) == {"power_w"} for f in frames)
    only_bad = source(prometheus_server, "broken=rate(DCGM_FI_DEV_GPU_UTIL)")  # range vector required
    with pytest.raises(SubstrateFatal, match="bad_data"):
        await only_bad.poll(time.time())
    await src.close()
    await only_bad.close()


async def test_series_without_host_or_device_labels_are_skipped(prometheus_server: PrometheusServer) -> None:
    src = source(prometheus_server, "total_power_w=sum(DCGM_FI_DEV_POWER_USAGE)", "temp_c=DCGM_FI_DEV_GPU_TEMP")
    frames = await src.poll(time.time())
    assert len(frames) == 4 and all("total_power_w" not in f.metrics for f in frames)
    await src.close()
