"""The daemon on a free port watching the simulator (speeded up): end to end over HTTP."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tessera_daemon.config import Config, load_config
from tessera_daemon.daemon import Running, run
from tessera_daemon.sim import ClusterSim
from tests.servers import free_port

SIM = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "4",
    "TESSERA_SIM__HOSTS_PER_RACK": "2",
    "TESSERA_SIM__COHORTS": "2",
    "TESSERA_LOG__LEVEL": "warning",
}


def cfg_for(**env: str) -> Config:
    return load_config(None, {**SIM, "TESSERA_HTTP__PORT": "0", **env})


@contextlib.asynccontextmanager
async def daemon(cfg: Config) -> AsyncIterator[tuple[Running, asyncio.Task[int]]]:
    got: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    task = asyncio.create_task(run(cfg, on_running=got.set_result, install_signals=False))
    started: set[asyncio.Future[Any]] = {got, task}
    done, _ = await asyncio.wait(started, timeout=120, return_when=asyncio.FIRST_COMPLETED)
    if task in done:
        raise AssertionError(f"daemon exited before serving: {task.result()!r}")
    assert got in done, "daemon did not start serving within 120 s"
    running = got.result()
    try:
        yield running, task
    finally:
        running.stop.set()
        await asyncio.wait_for(task, 30)


async def get(session: aiohttp.ClientSession, port: int, path: str) -> tuple[int, str]:
    async with session.get(f"http://127.0.0.1:{port}{path}") as r:
        return r.status, await r.text()


async def test_faults_fire_on_exactly_their_shards_and_metrics_parse() -> None:
    # demo scenario: straggler (ticks 900-1100) then sdc_drift (1140-1360); run 1500 simulated seconds
    cfg = cfg_for(TESSERA_SIM__SCENARIO="demo", TESSERA_SIM__SPEEDUP="250", TESSERA_SIM__DURATION_S="1500")
    labels = ClusterSim(cfg.sim, scenario="demo").labels()["faults"]
    truth = {f["kind"]: f["shards"][0] for f in labels}
    async with daemon(cfg) as (running, task), aiohttp.ClientSession() as s:
        port = running.port
        status, body = await get(s, port, "/readyz")
        assert status == 503 and "warming up" in body
        saw_ready = False
        while not task.done() and not saw_ready:
            with contextlib.suppress(aiohttp.ClientConnectionError):
                saw_ready = (await get(s, port, "/readyz"))[0] == 200
            await asyncio.sleep(0.02)
        await asyncio.wait_for(asyncio.shield(task), 60)
    assert saw_ready
    snap = running.status.snapshot
    # one incident per fault: a fault's first statistical firing holds it (Family A on the metric, or E
    # when its multivariate novelty crosses first, which depends on where the windows fall)
    fired = [f for f in [*snap.active, *snap.recent] if f.detector in ("A", "C", "E") and f.scope == "shard"]
    targets = {f.target for f in fired}
    assert {truth["straggler"], truth["sdc_drift"]} <= targets
    faulty = {s for f in labels for s in f["shards"]}  # the thermal rack starts at tick 1400 of 1500
    assert targets <= faulty, f"fired on healthy shards: {targets - faulty}"
    sdc = [f for f in fired if f.target == truth["sdc_drift"]]
    assert {f.metric for f in sdc if f.detector == "A"} <= {"power_w"}
    assert all(f.metric is None for f in sdc if f.detector != "A")
    families = {m.name: m for m in text_string_to_metric_families(running.status.metrics_bytes.decode())}
    assert families["tessera_windows_processed"].samples[0].value >= 290
    assert "tessera_firings_opened" in families and "tessera_shard_evidence_log" in families
    assert all(m.name.startswith(("tessera_", "process_")) for m in families.values())


async def test_clean_run_fires_nothing_and_serves_api() -> None:
    # 64 shards x 5-s windows x 1200 s = 15,360 shard-windows (>= 2,000 required), after warm-up
    cfg = cfg_for(TESSERA_SIM__SCENARIO="clean", TESSERA_SIM__SPEEDUP="500", TESSERA_SIM__DURATION_S="1500")
    async with daemon(cfg) as (running, task):
        await asyncio.wait_for(asyncio.shield(task), 60)
    p = running.status.snapshot
    assert p.windows_processed * len(p.shards) >= 2_000 + 60 * len(p.shards)
    assert p.active == () and p.recent == ()
    assert p.opened_total == {}


async def test_http_endpoints() -> None:
    cfg = cfg_for(TESSERA_SIM__SCENARIO="xid79", TESSERA_SIM__SPEEDUP="400")
    async with daemon(cfg) as (running, _task), aiohttp.ClientSession() as s:
        port = running.port
        for _ in range(400):
            if running.status.snapshot.active:
                break
            await asyncio.sleep(0.05)
        st, body = await get(s, port, "/healthz")
        assert st == 200 and '"ok"' in body
        st, body = await get(s, port, "/v1/firings?state=open")
        assert st == 200 and "hard_fault" in body and "rule:" in body
        assert (await get(s, port, "/v1/firings?state=bogus"))[0] == 400
        shard = running.status.snapshot.shards[0]
        st, body = await get(s, port, f"/v1/shards/{shard}")
        assert st == 200 and '"log_evidence"' in body
        assert (await get(s, port, "/v1/shards/nope"))[0] == 404
        st, body = await get(s, port, "/metrics")
        assert st == 200 and "tessera_firing_active{" in body


def test_sigterm_exits_zero_quickly(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        **SIM,
        "TESSERA_HTTP__PORT": str(port),
        "TESSERA_LOG__FORMAT": "json",
        "TESSERA_LOG__LEVEL": "info",
        "TESSERA_SIM__SPEEDUP": "50",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tessera_daemon", "run"],
        env=env,
        stderr=subprocess.PIPE,
        stdout=subprocess.DEVNULL,
        text=True,
    )
    try:
        lines = []
        deadline = time.monotonic() + 60
        assert proc.stderr is not None
        while time.monotonic() < deadline:
            line = proc.stderr.readline()
            lines.append(line)
            if "serving" in line:
                break
        assert "simulated cluster" in lines[0], lines[0]
        assert f"127.0.0.1:{port}/metrics" in lines[-1]
        time.sleep(1.0)
        t0 = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(20)
        assert rc == 0
        assert time.monotonic() - t0 < 8
        rest = proc.stderr.read()
        assert "shutdown complete" in rest
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stderr is not None:
            proc.stderr.close()


async def test_windows_run_on_their_own_thread_and_posted_events_reach_them() -> None:
    cfg = cfg_for(
        TESSERA_SIM__SCENARIO="clean",
        TESSERA_SIM__SPEEDUP="100",
        TESSERA_EVENTS__ALLOW_UNAUTHENTICATED="true",
    )
    async with daemon(cfg) as (running, task), aiohttp.ClientSession() as s:
        st = running.status
        for _ in range(600):
            if st.snapshot.windows_processed >= 5 or task.done():
                break
            await asyncio.sleep(0.05)
        assert st.snapshot.windows_processed >= 5
        assert any(t.name.startswith("tessera-window") for t in threading.enumerate())
        before = st.snapshot
        host = before.topology.nodes[before.shards[0]].parent
        assert host is not None
        shards = {x for x in before.shards if before.topology.nodes[x].parent == host}
        ev = {"v": 1, "id": "fw-1", "kind": "firmware_push", "ts": before.end_ts, "scope": [host]}
        async with s.post(f"http://127.0.0.1:{running.port}/v1/events", json=ev) as r:
            assert r.status == 202, await r.text()
            assert (await r.json())["affected_shards"] == len(shards)
        async with s.get(f"http://127.0.0.1:{running.port}/v1/events") as r:  # answered from the front book at once
            assert [e["id"] for e in (await r.json())["events"]] == ["fw-1"]
        for _ in range(600):  # the window thread takes it before its next batch; the snapshot after shows it
            if st.snapshot.events.get("fw-1") is not None:
                break
            await asyncio.sleep(0.05)
        after = st.snapshot
        assert after.events.get("fw-1") is not None and after.version > before.version
        assert set(after.events.frozen_now) == shards
        assert before.events.get("fw-1") is None  # an older snapshot never changes
