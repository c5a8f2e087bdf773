"""Failures of the split deployment: a worker killed with SIGKILL, redis-server restarted under load.

Workers here are real subprocesses (``python -m tessera_daemon --config X detector``); the agent runs
in the test's event loop. Both tests compare every committed window and every published firing with
the uninterrupted single-process reference.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tessera_daemon.config import Config, dump_toml
from tessera_daemon.transport.keys import Keys
from tests.transport.conftest import Server
from tests.transport.helpers import (
    agent,
    all_committed,
    assert_exact,
    client_for,
    detector,
    make_cfg,
    read_outputs,
    reference,
    wait_for,
)

pytestmark = pytest.mark.redis
ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def worker_process(cfg_path: Path, worker: str, log_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = {
        **os.environ,
        "TESSERA_TRANSPORT__DETECTOR__ID": worker,
        "TESSERA_LOG__FORMAT": "json",
        "TESSERA_LOG__LEVEL": "info",
    }
    with (log_dir / f"{worker}.log").open("wb") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tessera_daemon", "--config", str(cfg_path), "detector"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            yield proc
        finally:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)


async def holders(client: object, cfg: Config) -> dict[str, str | None]:
    keys = Keys(cfg.transport.redis.prefix)
    out: dict[str, str | None] = {}
    for token in ("job-0", "job-1"):
        raw = await client.get(keys.lease(token))  # type: ignore[attr-defined]
        out[token] = raw.decode().rsplit("|", 1)[0] if raw else None
    return out


async def test_kill_9_worker_mid_stream_survivor_takes_over_exactly(redis_server: Server, tmp_path: Path) -> None:
    cfg = make_cfg(redis_server.url, TESSERA_SIM__SPEEDUP="100")
    ref = reference(cfg)
    cfg_path = tmp_path / "tessera.toml"
    cfg_path.write_text(dump_toml(cfg))
    keys = Keys(cfg.transport.redis.prefix)
    client = client_for(redis_server.url)
    with worker_process(cfg_path, "wA", tmp_path) as wa, worker_process(cfg_path, "wB", tmp_path) as wb:
        procs = {"wA": wa, "wB": wb}
        async with agent(cfg) as (_ag, at):
            await wait_for(lambda: _split(client, cfg), 30, "the two workers holding one partition each")
            victim_token = "job-0"
            victim = (await holders(client, cfg))[victim_token]
            assert victim is not None
            survivor = "wB" if victim == "wA" else "wA"
            mark0 = await client.get(keys.committed(victim_token))
            await wait_for(
                lambda: _committed_beyond(client, keys, victim_token, int(mark0 or 0) + 20),
                30,
                "the victim committing windows",
            )
            assert not at.done(), "the stream must still be flowing when the worker dies"
            mark_at_kill = int(await client.get(keys.committed(victim_token)))
            procs[victim].send_signal(signal.SIGKILL)
            killed = time.monotonic()
            await wait_for(lambda: _held_by(client, cfg, victim_token, survivor), 30, "the takeover")
            takeover_s = time.monotonic() - killed
            await wait_for(
                lambda: _committed_beyond(client, keys, victim_token, mark_at_kill + 1),
                30,
                "the survivor committing the victim's partition",
            )
            resumed_s = time.monotonic() - killed
            await asyncio.wait_for(asyncio.shield(at), 60)
        await wait_for(lambda: all_committed(client, cfg, ref), 60, "every window committed")
        procs[survivor].send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(procs[survivor].wait, 30) == 0
        assert procs[victim].wait(5) == -signal.SIGKILL
    out = await read_outputs(client, cfg, ["job-0", "job-1"])
    assert_exact(out, ref)
    assert {by for _w, _n, by in out.windows[victim_token]} == {victim, survivor}
    log = (tmp_path / f"{survivor}.log").read_text()
    assert "partition acquired" in log
    print(
        f"\nworker takeover {takeover_s:.2f}s after SIGKILL, first new window committed after {resumed_s:.2f}s "
        f"(lease {cfg.transport.detector.lease_ms} ms, claim idle {cfg.transport.detector.claim_idle_ms} ms)"
    )
    await client.aclose()


async def _split(client: object, cfg: Config) -> bool:
    h = await holders(client, cfg)
    return None not in h.values() and len(set(h.values())) == 2


async def _held_by(client: object, cfg: Config, token: str, worker: str) -> bool:
    return (await holders(client, cfg))[token] == worker


async def _committed_beyond(client: object, keys: Keys, token: str, window: int) -> bool:
    mark = await client.get(keys.committed(token))  # type: ignore[attr-defined]
    return mark is not None and int(mark) >= window


async def test_redis_restart_with_aof_agent_and_worker_recover_zero_loss(redis_aof: Server) -> None:
    cfg = make_cfg(redis_aof.url, TESSERA_SIM__SPEEDUP="150")
    ref = reference(cfg)
    keys = Keys(cfg.transport.redis.prefix)
    async with detector(cfg) as (worker, _wt), agent(cfg) as (ag, at):
        client = client_for(redis_aof.url)
        await wait_for(lambda: _committed_beyond(client, keys, "job-1", 0), 30, "windows flowing")
        await client.aclose()
        redis_aof.stop()  # SIGTERM: redis writes and fsyncs its AOF
        await asyncio.sleep(1.5)
        assert not ag.status.link.up and not worker.detector.link.up
        assert ag.status.producer.buffered_frames > 0  # the agent holds what it polled meanwhile
        restarted = time.monotonic()
        redis_aof.start()
        await wait_for(lambda: ag.status.link.up and worker.detector.link.up, 30, "both reconnecting")
        reconnect_s = time.monotonic() - restarted
        client = client_for(redis_aof.url)
        await asyncio.wait_for(asyncio.shield(at), 60)
        await wait_for(lambda: all_committed(client, cfg, ref), 60, "every window committed")
        assert ag.status.link.reconnects >= 1 and worker.detector.link.reconnects >= 1
        assert ag.status.producer.stats.dropped_frames == 0
        assert ag.status.producer.stats.published_frames >= ref.frames
    out = await read_outputs(client, cfg, ["job-0", "job-1"])
    assert_exact(out, ref)
    print(f"\nredis restart: agent and worker reconnected {reconnect_s:.2f}s after redis-server was back")
    await client.aclose()
