"""daemon.capture_path: a live `run` captured and replayed gives the same firings, bit for bit."""

from __future__ import annotations

import asyncio
import gzip
import json
from pathlib import Path

from tessera_daemon.capture import replay_capture, segments
from tessera_daemon.cli import main
from tessera_daemon.config import load_config
from tessera_daemon.daemon import Running, run

SIM = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "4",
    "TESSERA_SIM__HOSTS_PER_RACK": "2",
    "TESSERA_SIM__COHORTS": "2",
    "TESSERA_SIM__SCENARIO": "demo",
    "TESSERA_SIM__SPEEDUP": "400",
    "TESSERA_SIM__DURATION_S": "1500",
    "TESSERA_HTTP__PORT": "0",
    "TESSERA_LOG__LEVEL": "warning",
}


async def test_live_run_captured_and_replayed_fires_identically(tmp_path: Path) -> None:
    base = tmp_path / "cap" / "run"
    env = {**SIM, "TESSERA_DAEMON__CAPTURE_PATH": str(base), "TESSERA_DAEMON__CAPTURE_ROTATE_BYTES": "400000"}
    cfg = load_config(None, env)
    got: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run(cfg, on_running=got.set_result, install_signals=False))
    running = await asyncio.wait_for(got, 120)
    assert await asyncio.wait_for(task, 120) == 0
    live = running.status.snapshot
    live_firings = [f.to_json() for f in [*live.active, *live.recent]]
    assert len(live_firings) >= 2

    segs = segments(base)
    assert len(segs) >= 2, "rotation: the capture spans several segments"
    with gzip.open(segs[0], "rt") as fh:
        assert json.loads(fh.readline())["k"] == "topology"

    transitions, replayed = await asyncio.to_thread(replay_capture, cfg, base)
    assert [f.to_json() for f in [*replayed.book.active(), *replayed.book.recent]] == live_firings
    assert replayed.windows_processed == live.windows_processed
    assert replayed.assembler.stats.frames == live.stats.frames
    assert {f.id for f in transitions} == {json.loads(x)["id"] for x in live_firings}

    out = tmp_path / "firings.jsonl"
    assert main(["replay", "--capture", str(base), "--out", str(out)]) == 0
    assert out.read_text().splitlines() == [f.to_json() for f in transitions]
