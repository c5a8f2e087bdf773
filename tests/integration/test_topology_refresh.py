"""The daemon re-reads topology while it runs: a GPU that appears later is adopted (state kept)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from tessera_daemon.config import load_config
from tessera_daemon.daemon import Running, run
from tessera_daemon.testing import StaticExporter

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "dcgm" / "dcgm-exporter-4.x.txt"


def only_gpus(text: str, gpus: set[str]) -> str:
    keep = []
    for line in text.splitlines():
        if line.startswith("#") or not any(f'gpu="{g}"' in line for g in {"0", "1", "2", "3"} - gpus):
            keep.append(line)
    return "\n".join(keep) + "\n"


async def test_a_gpu_that_appears_later_joins_the_topology() -> None:
    full = FIXTURE.read_text()
    with StaticExporter(only_gpus(full, {"0", "1"})) as exporter:
        cfg = load_config(
            None,
            {
                "TESSERA_SOURCES__ENABLED": '["dcgm"]',
                "TESSERA_SOURCES__DCGM__URLS": f'["http://{exporter.target}/metrics"]',
                "TESSERA_SOURCES__TOPOLOGY_REFRESH_S": "1",
                "TESSERA_SOURCES__POLL_INTERVAL_S": "0.2",
                "TESSERA_HTTP__PORT": "0",
                "TESSERA_LOG__LEVEL": "warning",
            },
        )
        got: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
        task = asyncio.create_task(run(cfg, on_running=got.set_result, install_signals=False))
        running = await asyncio.wait_for(got, 60)
        try:
            assert len(running.status.snapshot.shards) == 2
            exporter.text = full
            for _ in range(100):
                if len(running.status.snapshot.shards) == 4:
                    break
                await asyncio.sleep(0.1)
            p = running.status.snapshot  # the groups were rebuilt on the window thread, then published
            assert len(p.shards) == 4
            assert p.states.offset.shape[0] == 4 and p.states.missing_run.shape == (4,)
        finally:
            running.stop.set()
            assert await asyncio.wait_for(task, 30) == 0
