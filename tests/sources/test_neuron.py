"""AWS Neuron source: recorded neuron-ls / neuron-monitor outputs fed through stub executables."""

from __future__ import annotations

import asyncio
import json
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tessera_daemon.errors import SubstrateFatal, SubstrateUnavailable
from tessera_daemon.settings.sources import NeuronSettings
from tessera_daemon.sources.neuron import NeuronSource
from tessera_daemon.sources.neuron_parse import accelerator_model, parse_monitor_report, parse_neuron_ls
from tests.sources.conftest import FIXTURES, make_config, poll_until_error

NE = FIXTURES / "neuron"
PY = sys.executable
RECORDING = NE / "neuron-monitor-trn1.32xlarge.jsonl"


def ls(name: str) -> tuple[str, ...]:
    return (PY, str(NE / "stub_print.py"), str(NE / name))


def monitor(*extra: str, interval: float = 0.05) -> tuple[str, ...]:
    return (PY, str(NE / "stub_neuron_monitor.py"), str(RECORDING), "--interval", str(interval), *extra)


def source(timeout_s: float = 2.0, **kw: object) -> NeuronSource:
    fields: dict[str, Any] = {
        "ls_command": ls("neuron-ls-trn1.32xlarge.json"),
        "monitor_command": monitor(),
        "host": "trn-a",
        "restart_backoff_s": 0.05,
        "restart_backoff_max_s": 0.2,
        **kw,
    }
    settings = NeuronSettings(**fields)
    return NeuronSource(make_config(timeout_s=timeout_s, neuron=settings))


def test_neuron_ls_both_shapes_and_models() -> None:
    itype, devs = parse_neuron_ls(json.loads((NE / "neuron-ls-trn1.32xlarge.json").read_text()))
    assert itype == "" and len(devs) == 16 and devs[0].peers == (1, 3, 4, 12) and devs[0].cores == 2
    itype, devs = parse_neuron_ls(json.loads((NE / "neuron-fixture-inferentia-ring.json").read_text()))
    assert itype == "inf2.24xlarge" and devs[0].peers == (1, 5)
    assert accelerator_model("trn1.32xlarge") == "trainium1" and accelerator_model("inf2.xlarge") == "inferentia2"
    assert accelerator_model("trn2n.48xlarge") == "trainium2"
    with pytest.raises(ValueError, match="unknown Neuron instance type"):
        accelerator_model("p5.48xlarge")
    for bad in (
        {"instance_type": "trn1.2xlarge"},
        {"instance_type": "trn1.2xlarge", "neuron_devices": []},
        [{"neuron_device": "0"}],
        "text",
    ):
        with pytest.raises(ValueError, match="neuron-ls JSON"):
            parse_neuron_ls(bad)


def test_monitor_report_maps_cores_to_devices() -> None:
    lines = RECORDING.read_text().splitlines()
    second = parse_monitor_report(json.loads(lines[1]), 2)
    assert len(second) == 16
    d5 = second[5]
    assert sum(d5.util) / len(d5.util) == pytest.approx((0.712 + 0.709) / 2)
    assert d5.hw["mem_ecc_corrected"] == 2 and d5.latency_p99_ms == pytest.approx(612.0)
    assert d5.mem_used == pytest.approx(2 * (196608 + 101711872 + 4194304 + 8589934592))


async def test_stream_frames_accumulate_per_period_counts() -> None:
    src = source()
    await src.open()
    seen: dict[str, dict[str, float | None]] = {}
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and len(seen) < 3:
        for f in await src.poll(time.time()):
            assert f.counters <= f.metrics.keys()
            if f.shard == "trn-a/neuron5":
                seen[f"r{len(seen)}"] = dict(f.metrics)
        await asyncio.sleep(0.02)
    r0, r1, r2 = seen["r0"], seen["r1"], seen["r2"]
    assert r0["gpu_util"] == pytest.approx(0.979) and r0["mem_ecc_corrected"] == 0
    assert r1["gpu_util"] == pytest.approx(0.7105) and r1["mem_ecc_corrected"] == 2
    assert r2["mem_ecc_corrected"] == 3 and r2["mem_ecc_uncorrected"] == 1 and r2["ecc_dbe"] == 1
    assert r2["exec_errors"] == 3 and r2["exec_completed"] == 212 + 208 + 190
    assert r2["exec_latency_p99_ms"] == pytest.approx(703.3)
    await src.close()


async def test_each_report_is_returned_once() -> None:
    src = source(monitor_command=monitor(interval=30.0))
    await src.open()  # waits for the first report
    frames = await src.poll(time.time())
    assert len(frames) == 16 and {f.shard for f in frames} == {f"trn-a/neuron{i}" for i in range(16)}
    assert await src.poll(time.time()) == []  # no new report yet: no duplicate samples
    await src.close()


async def test_monitor_death_is_restarted_with_backoff() -> None:
    src = source(monitor_command=monitor("--count", "1"))
    await src.open()
    deadline = time.monotonic() + 10
    while src.restarts < 3 and time.monotonic() < deadline:  # noqa: ASYNC110 - polling a counter
        await asyncio.sleep(0.05)
    assert src.restarts >= 3
    assert src._report_seq >= 3  # every restart delivered a report again
    await src.close()


async def test_silent_monitor_goes_stale(tmp_path: Path) -> None:
    src = source(monitor_command=("sh", "-c", "sleep 30"), stale_after_s=0.3, timeout_s=0.5)
    await src.open()  # waits a poll timeout for a first report, then carries on
    with pytest.raises(SubstrateUnavailable, match="no neuron-monitor report"):
        await src.poll(time.time())
    await src.close()


async def test_missing_monitor_executable_is_unavailable() -> None:
    src = source(monitor_command=("/nonexistent/neuron-monitor",), timeout_s=0.3)
    await src.open()
    exc = await poll_until_error(src)
    assert isinstance(exc, SubstrateUnavailable) and "cannot start" in str(exc)
    await src.close()


async def test_topology_trainium_torus_and_tessera_forms() -> None:
    src = source(instance_type="trn1.32xlarge")
    part = await src.topology()
    shards = [n for n in part.nodes if n.kind == "shard"]
    assert len(shards) == 16 and len(part.edges) == 32 and {e.kind for e in part.edges} == {"neuron_link"}
    assert all(n.labels["model"] == "trainium1" and n.parent == "trn-a" for n in shards)
    assert not part.partial
    await src.close()

    ring = source(ls_command=ls("neuron-fixture-inferentia-ring.json"))
    part = await ring.topology()
    assert len(part.edges) == 6 and {n.labels.get("model") for n in part.nodes if n.kind == "shard"} == {"inferentia2"}
    sparse = source(ls_command=ls("neuron-fixture-sparse.json"))
    part = await sparse.topology()
    assert part.partial and not part.edges


async def test_unknown_instance_type_is_fatal(tmp_path: Path) -> None:
    bad = tmp_path / "ls.json"
    bad.write_text(json.dumps({"instance_type": "p5.48xlarge", "neuron_devices": [{"neuron_device": 0}]}))
    src = source(ls_command=(PY, str(NE / "stub_print.py"), str(bad)))
    with pytest.raises(SubstrateFatal, match="unknown Neuron instance type"):
        await src.open()
    await src.close()
