"""Redis Streams transport throughput: one agent process in, one detector worker out, vs redis-benchmark.

Starts its own redis-server (no persistence) on a free loopback port, then in the same run:

1. ceiling: ``redis-benchmark -P 16 -c 50`` pipelined XADD of entries the size of ours;
2. agent: one process packs host frames (8 shards x 16 metrics) and XADDs them through the real
   ``StreamProducer`` (bounded buffer, pipelined XADD, MAXLEN ~), as fast as it can;
3. worker, transport only: one process drains the stream through ``RedisTransport.receive``
   (XREADGROUP COUNT 1000, decode to frames);
4. worker, full: one process runs the real detector ``Detector.step`` loop on a fresh consumer group:
   receive, de-duplicate, window assembly, residuals, e-detectors, window commits, checkpoints, acks;
5. both at once: agent and full worker concurrently (they share the machine's cores with redis).

Prints frames/s, values/s, entries/s and each figure as a ratio of the redis-benchmark ceiling.
Not a test: figures go to docs/performance.md. Usage: python bench/transport.py [--hosts 64] [--ticks 600]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

SHARDS_PER_HOST = 8
METRICS = [f"m{i:02d}" for i in range(16)]
START = 1_767_225_600.0


def bench_cfg(url: str, group: str = "tessera-detectors") -> Any:
    from tessera_daemon.config import load_config  # noqa: PLC0415

    return load_config(
        None,
        {
            "TESSERA_TRANSPORT__KIND": "redis",
            "TESSERA_TRANSPORT__REDIS__URL": url,
            "TESSERA_TRANSPORT__REDIS__GROUP": group,
            "TESSERA_TRANSPORT__REDIS__STREAM_MAXLEN": "10000000",
            "TESSERA_TRANSPORT__AGENT__BUFFER_FRAMES": "100000000",
            "TESSERA_TRANSPORT__AGENT__PIPELINE_ENTRIES": "1000",
            "TESSERA_TRANSPORT__BATCH_MAX": "1000000",
            "TESSERA_DETECTOR__METRICS": json.dumps(METRICS),
            "TESSERA_DETECTOR__LOG_METRICS": "[]",
            "TESSERA_DETECTOR__WARMUP_WINDOWS": "20",
            "TESSERA_TRANSPORT__DETECTOR__IDLE_CLOSE_S": "0",
            "TESSERA_LOG__LEVEL": "warning",
        },
    )


def topology(hosts: int) -> Any:
    from tessera_daemon.model import Topology, TopoNode  # noqa: PLC0415

    nodes = [TopoNode("fleet", "fleet")]
    for h in range(hosts):
        nodes.append(TopoNode(f"h{h:04d}", "host", "fleet"))
        nodes += [
            TopoNode(f"h{h:04d}/g{g}", "shard", f"h{h:04d}", {"cohort": "bench", "model": "H100"})
            for g in range(SHARDS_PER_HOST)
        ]
    return Topology(nodes)


def frames(hosts: int, ticks: int) -> list[list[Any]]:
    """Per tick, every shard's frame: 16 gauges around a level, deterministic."""
    import numpy as np  # noqa: PLC0415

    from tessera_daemon.model import Frame  # noqa: PLC0415

    rng = np.random.default_rng(0)
    shards = [f"h{h:04d}/g{g}" for h in range(hosts) for g in range(SHARDS_PER_HOST)]
    out = []
    for t in range(ticks):
        vals = (100.0 + rng.standard_normal((len(shards), len(METRICS)))).round(3).tolist()
        out.append([Frame(START + t, s, dict(zip(METRICS, v, strict=True))) for s, v in zip(shards, vals, strict=True)])
    return out


# ------------------------------------------------------------------------------------------ roles


async def role_agent(url: str, hosts: int, ticks: int, group: str) -> dict[str, float]:
    from tessera_daemon.transport.keys import Keys  # noqa: PLC0415
    from tessera_daemon.transport.link import RedisLink  # noqa: PLC0415
    from tessera_daemon.transport.producer import StreamProducer  # noqa: PLC0415
    from tessera_daemon.transport.registry import Router, publish_registry  # noqa: PLC0415

    cfg = bench_cfg(url, group=group)
    link = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="agent")
    router = Router(topology(hosts))
    await publish_registry(link, Keys(cfg.transport.redis.prefix), "bench-agent", router, cfg.transport.redis.group)
    producer = StreamProducer(cfg.transport, link, router, agent_id="bench-agent")
    data = frames(hosts, ticks)
    t0 = time.perf_counter()
    for tick in data:  # one poll per tick: encode into the buffer, flush what is buffered
        producer.publish_nowait(tick)
        while len(producer.buffer) >= cfg.transport.agent.pipeline_entries:
            await producer.flush_once()
    while producer.buffer:
        await producer.flush_once()
    dt = time.perf_counter() - t0
    await link.close()
    st = producer.stats
    return {
        "seconds": dt,
        "frames": st.published_frames,
        "entries": st.published_entries,
        "values": st.published_frames * len(METRICS),
    }


async def role_read(url: str, entries: int) -> dict[str, float]:
    from tessera_daemon.transport.keys import Keys  # noqa: PLC0415
    from tessera_daemon.transport.link import RedisLink  # noqa: PLC0415
    from tessera_daemon.transport.redis import RedisTransport  # noqa: PLC0415
    from tessera_daemon.transport.registry import ensure_group  # noqa: PLC0415

    cfg = bench_cfg(url, group="bench-read")
    link = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="reader")
    stream = Keys(cfg.transport.redis.prefix).stream("bench")
    await link.call(lambda c: ensure_group(c, stream, "bench-read"))
    transport = RedisTransport(cfg.transport, link, consumer="reader")
    transport.attach("bench", b"0-0")
    got = frames_n = 0
    t0 = time.perf_counter()
    while got < entries:
        for d in await transport.receive(1_000_000, 0.1):
            got += 1
            frames_n += len(d.frames)
    dt = time.perf_counter() - t0
    await link.close()
    return {"seconds": dt, "frames": frames_n, "entries": got, "values": frames_n * len(METRICS)}


async def role_worker(url: str, entries: int, group: str) -> dict[str, float]:
    from tessera_daemon.detect.kernels import warm_up  # noqa: PLC0415
    from tessera_daemon.engine.families import warm_up as warm_up_families  # noqa: PLC0415
    from tessera_daemon.split.worker import Detector  # noqa: PLC0415

    warm_up()  # every kernel compiled (or loaded from the cache) before the timed loop: A, then C/D/E
    warm_up_families()
    cfg = bench_cfg(url, group=group)
    det = Detector(cfg, "bench-worker")
    stop = asyncio.Event()
    heartbeat = asyncio.create_task(det.coordinator.run(stop))  # renews the lease, as in the worker
    while not det.parts:
        await asyncio.sleep(0.01)
        await det.adopt()
    t0 = time.perf_counter()
    done = 0
    while done < entries and time.perf_counter() - t0 < 600:
        done += await det.step(0.1)
    dt = time.perf_counter() - t0
    stop.set()
    await heartbeat
    work = next(iter(det.parts.values()))
    frames_n = work.pipeline.assembler.stats.frames
    await det.shutdown()
    await det.link.close()
    return {
        "seconds": dt,
        "frames": frames_n,
        "entries": done,
        "values": frames_n * len(METRICS),
        "windows": det.counters.windows["committed"],
        "checkpoints": det.counters.checkpoints["written"],
    }


# ----------------------------------------------------------------------------------- orchestration


def spawn(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, __file__, *args], stdout=subprocess.PIPE, text=True, cwd=ROOT)


def result(proc: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = proc.communicate(timeout=900)
    if proc.returncode:
        raise SystemExit(f"role failed with {proc.returncode}")
    data: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return data


def ceiling(port: int, payload_bytes: int, n: int) -> float:
    exe = shutil.which("redis-benchmark")
    if exe is None:
        raise SystemExit("redis-benchmark is not installed (apt-get install redis-tools)")
    blob = "x" * payload_bytes
    cmd = [
        exe,
        "-h",
        "127.0.0.1",
        "-p",
        str(port),
        "-n",
        str(n),
        "-c",
        "50",
        "-P",
        "16",
        "-q",
        "XADD",
        "ceiling",
        "MAXLEN",
        "~",
        "100000",
        "*",
        "v",
        "1",
        "src",
        "bench/1",
        "seq",
        "__rand_int__",
        "d",
        blob,
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=600).stdout
    line = [ln for ln in out.replace("\r", "\n").splitlines() if "requests per second" in ln][-1]
    return float(line.split(":")[1].split("requests")[0].strip())


def row(name: str, r: dict[str, float], ceil_eps: float) -> str:
    eps = r["entries"] / r["seconds"]
    return (
        f"{name:<34} {r['frames'] / r['seconds']:>12,.0f} {r['values'] / r['seconds']:>14,.0f} "
        f"{eps:>11,.0f} {eps / ceil_eps:>8.2f}"
    )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--ticks", type=int, default=600)
    ap.add_argument("--role", choices=["agent", "read", "worker"])
    ap.add_argument("--url", default="")
    ap.add_argument("--entries", type=int, default=0)
    ap.add_argument("--group", default="tessera-detectors")
    args = ap.parse_args()
    if args.role == "agent":
        print(json.dumps(asyncio.run(role_agent(args.url, args.hosts, args.ticks, args.group))))
        return
    if args.role == "read":
        print(json.dumps(asyncio.run(role_read(args.url, args.entries))))
        return
    if args.role == "worker":
        print(json.dumps(asyncio.run(role_worker(args.url, args.entries, args.group))))
        return

    from tessera_daemon.transport.codec import encode_host  # noqa: PLC0415
    from tests.servers import free_port, redis_argv, running  # noqa: PLC0415

    entries = args.hosts * args.ticks
    sample = encode_host(frames(1, 1)[0], "h0000", "bench-agent/1", 1)
    payload = len(sample[b"d"])
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        with running(redis_argv(port, Path(d)), port, Path(d) / "redis.log"):
            url = f"redis://127.0.0.1:{port}/0"
            ceil_eps = ceiling(port, payload, 200_000)
            subprocess.run(["redis-cli", "-p", str(port), "del", "ceiling"], capture_output=True, check=False)
            shape = ("--hosts", str(args.hosts), "--ticks", str(args.ticks))
            agent = result(spawn("--role", "agent", "--url", url, *shape))
            read = result(spawn("--role", "read", "--url", url, "--entries", str(entries)))
            worker = result(spawn("--role", "worker", "--url", url, "--entries", str(entries)))
            subprocess.run(["redis-cli", "-p", str(port), "flushall"], capture_output=True, check=False)
            w = spawn("--role", "worker", "--url", url, "--entries", str(entries), "--group", "both")
            time.sleep(0.5)
            t0 = time.perf_counter()
            a = spawn("--role", "agent", "--url", url, *shape, "--group", "both")
            both_agent, both_worker = result(a), result(w)
            both = {**both_worker, "seconds": time.perf_counter() - t0}
    print(
        f"Redis Streams transport: {args.hosts} hosts x {SHARDS_PER_HOST} shards x {len(METRICS)} metrics, "
        f"{args.ticks} polls ({entries:,} host entries of {payload} payload bytes); python "
        f"{platform.python_version()}, {platform.machine()}, {os.cpu_count()} cpus, redis on loopback"
    )
    print(
        f"redis-benchmark ceiling (XADD, -P 16, -c 50, same entry size): {ceil_eps:,.0f} entries/s "
        f"= {ceil_eps * SHARDS_PER_HOST:,.0f} frames/s = {ceil_eps * SHARDS_PER_HOST * len(METRICS):,.0f} values/s"
    )
    print(f"{'path':<34} {'frames/s':>12} {'values/s':>14} {'entries/s':>11} {'/ceiling':>8}")
    print(row("agent -> redis (encode + XADD)", agent, ceil_eps))
    print(row("redis -> worker (read + decode)", read, ceil_eps))
    print(row("redis -> worker (full detector)", worker, ceil_eps))
    print(row("agent + worker concurrently", both, ceil_eps))
    print(
        f"full detector: {worker['windows']:.0f} windows committed, {worker['checkpoints']:.0f} checkpoints; "
        f"concurrent run: agent alone part took {both_agent['seconds']:.2f}s of {both['seconds']:.2f}s"
    )


if __name__ == "__main__":
    main()
