"""detector.backend: numba, the NumPy twins, and the automatic fallback when the kernels are unusable."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from tessera_daemon.config import load_config
from tessera_daemon.daemon import Running, run
from tessera_daemon.detect import backend, family_c, kernels, reference_cde
from tessera_daemon.errors import KernelError

SIM = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "4",
    "TESSERA_SIM__HOSTS_PER_RACK": "2",
    "TESSERA_SIM__COHORTS": "2",
    "TESSERA_SIM__SCENARIO": "demo",
    "TESSERA_SIM__SPEEDUP": "400",
    "TESSERA_SIM__DURATION_S": "1500",
    "TESSERA_SIM__START_TS": "1700000000",
    "TESSERA_HTTP__PORT": "0",
    "TESSERA_LOG__LEVEL": "warning",
}


@pytest.fixture(autouse=True)
def compiled_afterwards() -> Iterator[None]:
    yield
    backend.install_compiled()


def test_numpy_setting_installs_the_twins() -> None:
    choice = backend.select("numpy")
    assert choice.backend == "numpy" and backend.current() == "numpy"
    assert family_c._family_c_update is reference_cde.family_c_update
    backend.install_compiled()
    assert backend.current() == "numba"


def test_auto_compiles_and_passes_the_self_check() -> None:
    assert backend.select("auto") == backend.BackendChoice("numba", "")
    assert backend.current() == "numba"


@pytest.mark.parametrize("fault", ["compile", "selfcheck"])
def test_auto_falls_back_and_numba_refuses(fault: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(backend.FAULT_ENV, fault)
    with pytest.raises(KernelError, match=r"detector\.backend = numba"):
        backend.select("numba")
    choice = backend.select("auto")
    assert choice.backend == "numpy" and fault.replace("selfcheck", "self-check") in choice.reason
    assert backend.current() == "numpy"


def test_unknown_backend_is_refused() -> None:
    with pytest.raises(KernelError, match=r"detector\.backend"):
        backend.select("cuda")


async def _firings(env: dict[str, str]) -> tuple[list[tuple[str, str, str | None, int]], dict[str, float]]:
    cfg = load_config(None, {**SIM, **env})
    got: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run(cfg, on_running=got.set_result, install_signals=False))
    running = await asyncio.wait_for(got, 120)
    await asyncio.wait_for(task, 120)
    snap = running.status.snapshot
    fired = sorted((f.id, f.target, f.metric, f.window) for f in [*snap.active, *snap.recent])
    families = {m.name: m for m in text_string_to_metric_families(running.status.metrics_bytes.decode())}
    metrics = {s.labels["backend"]: s.value for s in families["tessera_kernel_backend"].samples}
    lag = {s.name: s.value for s in families["tessera_event_loop_lag_seconds"].samples if not s.labels.get("le")}
    assert lag["tessera_event_loop_lag_seconds_count"] > 0  # sampled while the daemon ran (selfwatch.py)
    return fired, metrics


async def test_run_detects_on_the_twins_when_numba_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled, m1 = await _firings({})
    assert m1 == {"numba": 1.0, "numpy": 0.0}
    assert len(compiled) >= 2
    monkeypatch.setenv(backend.FAULT_ENV, "compile")
    twins, m2 = await _firings({})
    assert m2 == {"numba": 0.0, "numpy": 1.0}
    assert kernels._family_a_update is not backend._COMPILED[(kernels, "_family_a_update")]
    assert twins == compiled
