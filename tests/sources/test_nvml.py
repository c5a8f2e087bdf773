"""NVML source against a simulated NVML (the real pynvml constants, structures and error classes;
faked device functions), plus one real-GPU test."""

from __future__ import annotations

import asyncio
import threading
import time

import pynvml as real
import pytest

from tessera_daemon.errors import SubstrateTimeout, SubstrateUnavailable
from tessera_daemon.settings.sources import NvmlSettings
from tessera_daemon.sources.nvml import NvmlSource
from tests.sources.conftest import FIXTURES, make_config
from tests.sources.fake_pynvml import FakeNvml


def source(fake: FakeNvml, **kw: object) -> NvmlSource:
    return NvmlSource(make_config(nvml=NvmlSettings(host="n1", **kw)), nvml=fake.module)  # type: ignore[arg-type]


async def test_frames_carry_simulator_metric_names_in_their_units() -> None:
    fake = FakeNvml(2)
    src = source(fake)
    await src.open()
    f0, f1 = await src.poll(1000.0)
    assert (f0.shard, f1.shard) == ("n1/gpu0", "n1/gpu1")
    m = f0.metrics
    assert m["gpu_util"] == pytest.approx(0.87) and m["mem_bw_util"] == pytest.approx(0.41)
    assert m["sm_clock_mhz"] == 1980 and m["mem_clock_mhz"] == 2619 and m["temp_c"] == 61
    assert m["power_w"] == pytest.approx(612.0)  # NVML_FI_DEV_POWER_INSTANT is mW
    assert m["nvlink_tx_bytes"] == 1_000_000 * 1024  # KiB counter -> bytes
    assert m["nvlink_crc_errors"] == 3  # flit + data CRC totals
    assert m["mem_used_bytes"] == 52_000_000_000 and m["clock_event_reasons"] == 0
    assert {
        "ecc_sbe",
        "ecc_dbe",
        "pcie_replay",
        "nvlink_tx_bytes",
        "nvlink_rx_bytes",
        "nvlink_crc_errors",
        "xid_total",
    } <= f0.counters
    assert "row_remap_pending" not in f0.counters and m["row_remap_failure"] == 0
    await src.close()


async def test_xids_are_events_per_poll_and_cumulative_counters_per_code() -> None:
    fake = FakeNvml(2)
    src = source(fake)
    await src.open()
    fake.xid(1, 79)
    fake.xid(1, 79)
    fake.xid(1, 48)
    _, f1 = await src.poll(1.0)
    assert f1.xid == (79, 79, 48)
    assert f1.metrics["xid_79_total"] == 2 and f1.metrics["xid_48_total"] == 1 and f1.metrics["xid_total"] == 3
    _, f1 = await src.poll(2.0)
    assert f1.xid == ()  # only in the sample in which it occurred
    assert f1.metrics["xid_79_total"] == 2 and "xid_79_total" in f1.counters
    await src.close()


async def test_a_lost_gpu_gives_a_lost_frame_and_the_others_still_report() -> None:
    fake = FakeNvml(8)
    src = source(fake, expected_devices=9)
    await src.open()
    fake.lose(3)
    fake.lose(5)
    fake.xid(3, 79)
    frames = await src.poll(5.0)
    assert len(frames) == 9
    lost = {f.shard: f for f in frames if f.lost}
    assert set(lost) == {"n1/gpu3", "n1/gpu5", "n1/gpu8"}  # gpu8: expected but not visible
    assert lost["n1/gpu3"].xid == (79,)
    assert sum(1 for f in frames if not f.lost and f.metrics["gpu_util"] is not None) == 6
    part = await src.topology()
    host = next(n for n in part.nodes if n.kind == "host")
    assert host.labels["devices_visible"] == "8" and host.labels["devices_expected"] == "9"
    await src.close()


async def test_unsupported_fields_are_left_out_not_reported_as_zero() -> None:
    fake = FakeNvml(1)
    fake.gpus[0].unsupported_fields |= {real.NVML_FI_DEV_REMAPPED_COR, real.NVML_FI_DEV_POWER_INSTANT}
    src = source(fake)
    await src.open()
    [f] = await src.poll(1.0)
    assert "row_remap_correctable" not in f.metrics
    assert f.metrics["power_w"] == pytest.approx(612.0)  # fell back to nvmlDeviceGetPowerUsage
    await src.close()


async def test_driver_gone_is_unavailable_and_the_next_poll_reinitialises() -> None:
    fake = FakeNvml(2)
    src = source(fake)
    await src.open()
    fake.unload()
    with pytest.raises(SubstrateUnavailable):
        await src.poll(1.0)
    with pytest.raises(SubstrateUnavailable):
        await src.poll(2.0)
    fake.reload()
    frames = await src.poll(3.0)
    assert [f.lost for f in frames] == [False, False]
    await src.close()
    assert fake.initialised == 0 and fake.event_sets == 0


async def test_missing_library_is_unavailable_not_a_crash(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = FakeNvml(1)
    fake.unload()
    src = source(fake)
    with pytest.raises(SubstrateUnavailable, match="Driver Not Loaded"):
        await src.open()
    await src.close()


async def test_a_hung_nvml_call_times_out_and_fails_fast_until_it_returns() -> None:
    fake = FakeNvml(1)
    release = threading.Event()
    hung = fake.module.nvmlDeviceGetUtilizationRates

    def slow(h: object) -> object:
        release.wait(5)
        return hung(h)

    setattr(fake.module, "nvmlDeviceGetUtilizationRates", slow)  # noqa: B010 - a module attribute mypy cannot see
    src = NvmlSource(make_config(timeout_s=0.2, nvml=NvmlSettings(host="n1")), nvml=fake.module)
    await src.open()
    t0 = time.monotonic()
    with pytest.raises(SubstrateTimeout):
        await src.poll(1.0)
    assert time.monotonic() - t0 < 1.0
    with pytest.raises(SubstrateTimeout, match="still running"):
        await src.poll(2.0)
    release.set()
    for _ in range(100):
        if not src._off.busy:
            break
        await asyncio.sleep(0.01)
    [f] = await src.poll(3.0)
    assert f.metrics["gpu_util"] == pytest.approx(0.87)
    await src.close()


async def test_topology_nvlink_mesh_and_nvswitch_domain() -> None:
    src = source(FakeNvml(4, nvlink="mesh"))
    await src.open()
    part = await src.topology()
    assert len(part.edges) == 6 and {e.kind for e in part.edges} == {"nvlink"}
    shards = [n for n in part.nodes if n.kind == "shard"]
    assert all(
        n.labels["nvlink_domain"] == "n1/nvlink"
        and n.labels["gpu_uuid"].startswith("GPU-")
        and n.labels["model"] == "NVIDIA H100 80GB HBM3"
        and n.parent == "n1"
        for n in shards
    )
    await src.close()

    src = source(FakeNvml(4, nvlink="switch"))
    await src.open()
    part = await src.topology()
    assert not part.edges and not part.partial  # all behind NVSwitch: one domain, no direct peers
    assert {n.id for n in part.nodes if n.kind == "nvlink_domain"} == {"n1/nvlink"}
    await src.close()

    src = source(FakeNvml(2, nvlink="none"))
    await src.open()
    part = await src.topology()
    assert part.partial and not part.edges
    await src.close()


@pytest.mark.parametrize(
    ("fixture", "edges", "partial"),
    [("nvlink-fixture-well-formed.txt", 6, False), ("nvlink-fixture-sparse.txt", 0, True)],
)
async def test_nvlink_peers_from_tessera_recordings(fixture: str, edges: int, partial: bool) -> None:
    fake = FakeNvml.from_nvlink_status((FIXTURES / "nvml" / fixture).read_text())
    src = source(fake)
    await src.open()
    part = await src.topology()
    assert len(part.edges) == edges and part.partial is partial
    uuids = sorted(n.labels["gpu_uuid"] for n in part.nodes if n.kind == "shard")
    assert uuids == sorted(g.uuid for g in fake.gpus) and uuids[0].startswith("GPU-")
    await src.close()


@pytest.mark.gpu
async def test_real_gpu_through_real_nvml() -> None:
    try:
        real.nvmlInit()
        count = real.nvmlDeviceGetCount()
        real.nvmlShutdown()
    except real.NVMLError as exc:
        pytest.skip(f"no usable NVML here: {exc}")
    if count == 0:
        pytest.skip("NVML sees no GPU")
    src = NvmlSource(make_config(timeout_s=10.0, nvml=NvmlSettings(host="gpu-test")))
    await src.open()
    frames = await src.poll(time.time())
    assert len(frames) == count and not any(f.lost for f in frames)
    m = frames[0].metrics
    assert 0.0 <= (m["gpu_util"] or 0.0) <= 1.0 and (m["sm_clock_mhz"] or 0) > 0 and (m["temp_c"] or 0) > 0
    assert (m["mem_used_bytes"] or 0) > 0 and m.get("power_w") is not None
    part = await src.topology()
    assert all(n.labels.get("gpu_uuid", "").startswith("GPU-") for n in part.nodes if n.kind == "shard")
    await src.close()


async def test_a_gpu_lost_before_open_does_not_block_the_others() -> None:
    fake = FakeNvml(4)
    fake.lose(2)
    orig = fake.module.nvmlDeviceGetHandleByIndex

    def handle(index: int) -> object:
        if index == 2:
            raise real.NVMLError(real.NVML_ERROR_GPU_IS_LOST)
        return orig(index)

    setattr(fake.module, "nvmlDeviceGetHandleByIndex", handle)  # noqa: B010
    src = source(fake)
    await src.open()
    frames = await src.poll(1.0)
    assert [f.lost for f in frames] == [False, False, True, False]
    part = await src.topology()
    assert "n1/gpu2" in {n.id for n in part.nodes}
    await src.close()
