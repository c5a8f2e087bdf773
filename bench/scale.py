"""Scale-out over Redis: one agent, then 1 and 2 detector workers sharing the partitions, values/s per worker.

Starts its own redis-server (no persistence) on a free loopback port. The fleet: ``--partitions``
cohorts (a partition each), ``--hosts`` hosts of 8 shards, 16 metrics per shard, ``--ticks`` polls.
For each worker count N in (1, 2), on a clean Redis:

1. N real detector workers (``worker.Detector``, each in its own process, kernels compiled first)
   join the consumer group and settle the partitions between them (fair share through the leases);
2. one agent process packs every poll into host entries and XADDs them (``StreamProducer``): the
   agent's rate;
3. the workers drain their partitions together, timed in each worker from "go" to its last entry:
   each worker's values/s and the aggregate (all values over the slowest worker's time).

On a machine with fewer cores than processes (redis-server + N workers) the workers share cores, so
the aggregate cannot grow with N there: the per-worker figure is what capacity planning uses
(docs/performance.md). Not a test. Usage: python bench/scale.py [--partitions 4] [--hosts 64] [--ticks 300]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
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
GROUP = "tessera-detectors"


def bench_cfg(url: str) -> Any:
    from tessera_daemon.config import load_config  # noqa: PLC0415

    return load_config(
        None,
        {
            "TESSERA_TRANSPORT__KIND": "redis",
            "TESSERA_TRANSPORT__REDIS__URL": url,
            "TESSERA_TRANSPORT__REDIS__GROUP": GROUP,
            "TESSERA_TRANSPORT__REDIS__STREAM_MAXLEN": "10000000",
            "TESSERA_TRANSPORT__AGENT__BUFFER_FRAMES": "100000000",
            "TESSERA_TRANSPORT__AGENT__PIPELINE_ENTRIES": "1000",
            "TESSERA_TRANSPORT__BATCH_MAX": "1000000",
            "TESSERA_TRANSPORT__DETECTOR__HEARTBEAT_MS": "200",
            "TESSERA_TRANSPORT__DETECTOR__LEASE_MS": "3000",
            "TESSERA_TRANSPORT__DETECTOR__IDLE_CLOSE_S": "0",
            "TESSERA_DETECTOR__METRICS": json.dumps(METRICS),
            "TESSERA_DETECTOR__LOG_METRICS": "[]",
            "TESSERA_DETECTOR__WARMUP_WINDOWS": "20",
            "TESSERA_LOG__LEVEL": "warning",
        },
    )


def topology(hosts: int, partitions: int) -> Any:
    """``hosts`` hosts of 8 shards; host h is in cohort h % partitions (one partition per cohort)."""
    from tessera_daemon.model import Topology, TopoNode  # noqa: PLC0415

    nodes = [TopoNode("fleet", "fleet")]
    for h in range(hosts):
        nodes.append(TopoNode(f"h{h:04d}", "host", "fleet"))
        labels = {"cohort": f"c{h % partitions}", "model": "H100"}
        nodes += [TopoNode(f"h{h:04d}/g{g}", "shard", f"h{h:04d}", labels) for g in range(SHARDS_PER_HOST)]
    return Topology(nodes)


async def role_agent(url: str, hosts: int, partitions: int, ticks: int) -> dict[str, float]:
    import numpy as np  # noqa: PLC0415

    from tessera_daemon.model import Frame  # noqa: PLC0415
    from tessera_daemon.transport.keys import Keys  # noqa: PLC0415
    from tessera_daemon.transport.link import RedisLink  # noqa: PLC0415
    from tessera_daemon.transport.producer import StreamProducer  # noqa: PLC0415
    from tessera_daemon.transport.registry import Router, publish_registry  # noqa: PLC0415

    cfg = bench_cfg(url)
    link = RedisLink(cfg.transport.redis, cfg.transport.breaker, role="agent")
    router = Router(topology(hosts, partitions))
    await publish_registry(link, Keys(cfg.transport.redis.prefix), "bench-agent", router, GROUP)
    if ticks == 0:  # the registry only: workers settle the partitions before any entry exists
        await link.close()
        return {"seconds": 0.0, "frames": 0, "entries": 0, "values": 0}
    rng = np.random.default_rng(0)
    shards = [f"h{h:04d}/g{g}" for h in range(hosts) for g in range(SHARDS_PER_HOST)]
    data = []
    for t in range(ticks):
        vals = (100.0 + rng.standard_normal((len(shards), len(METRICS)))).round(3).tolist()
        data.append(
            [Frame(START + t, s, dict(zip(METRICS, v, strict=True))) for s, v in zip(shards, vals, strict=True)]
        )
    producer = StreamProducer(cfg.transport, link, router, agent_id="bench-agent")
    t0 = time.perf_counter()
    for tick in data:
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


async def role_worker(url: str, name: str, share: int, entries_per_partition: int) -> dict[str, float]:
    from tessera_daemon.detect.kernels import warm_up  # noqa: PLC0415
    from tessera_daemon.engine.families import warm_up as warm_up_families  # noqa: PLC0415
    from tessera_daemon.split.worker import Detector  # noqa: PLC0415

    warm_up()
    warm_up_families()
    cfg = bench_cfg(url)
    det = Detector(cfg, name)
    stop = asyncio.Event()
    heartbeat = asyncio.create_task(det.coordinator.run(stop))
    stable_since = None
    while True:  # settle: hold exactly the fair share for a few heartbeats (streams are still empty)
        await det.step(0.05)
        if len(det.parts) == share:
            stable_since = stable_since or time.perf_counter()
            if time.perf_counter() - stable_since > 1.0:
                break
        else:
            stable_since = None
    print("ready", flush=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(None, sys.stdin.readline)  # "go": the agent has filled the streams
    want = share * entries_per_partition
    done = 0
    t0 = time.perf_counter()
    while done < want and time.perf_counter() - t0 < 600:
        done += await det.step(0.1)
    dt = time.perf_counter() - t0
    frames_n = sum(w.pipeline.assembler.stats.frames for w in det.parts.values())
    windows = det.counters.windows["committed"]
    stop.set()
    await heartbeat
    await det.shutdown()
    await det.link.close()
    return {
        "seconds": dt,
        "frames": frames_n,
        "entries": done,
        "values": frames_n * len(METRICS),
        "windows": windows,
        "partitions": share,
    }


# ----------------------------------------------------------------------------------- orchestration


def spawn(*args: str, stdin: bool = False) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE,
        stdin=subprocess.PIPE if stdin else None,
        text=True,
        cwd=ROOT,
    )


def result(proc: subprocess.Popen[str]) -> dict[str, float]:
    out, _ = proc.communicate(timeout=900)
    if proc.returncode:
        raise SystemExit(f"role failed with {proc.returncode}")
    data: dict[str, float] = json.loads(out.strip().splitlines()[-1])
    return data


def run_n(url: str, port: int, n: int, args: argparse.Namespace) -> dict[str, Any]:
    subprocess.run(["redis-cli", "-p", str(port), "flushall"], capture_output=True, check=True)
    shape = ("--hosts", str(args.hosts), "--partitions", str(args.partitions))
    result(spawn("--role", "agent", "--url", url, *shape, "--ticks", "0"))
    share = -(-args.partitions // n)
    per_part = (args.hosts // args.partitions) * args.ticks
    workers = [
        spawn(
            "--role",
            "worker",
            "--url",
            url,
            "--name",
            f"w{i}",
            "--share",
            str(share),
            "--entries",
            str(per_part),
            stdin=True,
        )
        for i in range(n)
    ]
    for w in workers:  # log lines may come first
        assert w.stdout is not None
        while (line := w.stdout.readline()) and line.strip() != "ready":
            pass
        if not line:
            raise SystemExit("a worker ended before it settled")
    agent = result(spawn("--role", "agent", "--url", url, *shape, "--ticks", str(args.ticks)))
    for w in workers:
        assert w.stdin is not None
        w.stdin.write("go\n")
        w.stdin.flush()
    got = [result(w) for w in workers]
    return {"agent": agent, "workers": got, "wall": max(w["seconds"] for w in got)}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--hosts", type=int, default=64)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--ticks", type=int, default=300)
    ap.add_argument("--workers", default="1,2")
    ap.add_argument("--role", choices=["agent", "worker"])
    ap.add_argument("--url", default="")
    ap.add_argument("--name", default="w0")
    ap.add_argument("--share", type=int, default=1)
    ap.add_argument("--entries", type=int, default=0)
    args = ap.parse_args()
    if args.role == "agent":
        print(json.dumps(asyncio.run(role_agent(args.url, args.hosts, args.partitions, args.ticks))))
        return
    if args.role == "worker":
        print(json.dumps(asyncio.run(role_worker(args.url, args.name, args.share, args.entries))))
        return
    if args.hosts % args.partitions:
        raise SystemExit("--hosts must be a multiple of --partitions")

    from tests.servers import free_port, redis_argv, running  # noqa: PLC0415

    counts = [int(x) for x in args.workers.split(",")]
    runs: dict[int, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as d:
        port = free_port()
        with running(redis_argv(port, Path(d)), port, Path(d) / "redis.log"):
            url = f"redis://127.0.0.1:{port}/0"
            for n in counts:
                runs[n] = run_n(url, port, n, args)
    shards = args.hosts * SHARDS_PER_HOST
    total_values = shards * len(METRICS) * args.ticks
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(
        f"scale-out over Redis Streams: {args.partitions} partitions (cohorts), {args.hosts} hosts x "
        f"{SHARDS_PER_HOST} shards = {shards:,} shards x {len(METRICS)} metrics, {args.ticks} polls "
        f"({total_values / 1e6:.1f} M values); python {platform.python_version()}, {platform.machine()}, "
        f"{os.cpu_count()} cpus, 1-min load at the end {load:.1f}"
    )
    print(f"{'run':<34} {'seconds':>8} {'values/s':>12} {'partitions':>10} {'windows':>8}")
    for n, r in runs.items():
        a = r["agent"]
        print(f"{f'N={n}: agent (encode + XADD)':<34} {a['seconds']:>8.2f} {a['values'] / a['seconds']:>12,.0f}")
        for i, w in enumerate(r["workers"]):
            print(
                f"{f'N={n}: worker {i}':<34} {w['seconds']:>8.2f} {w['values'] / w['seconds']:>12,.0f} "
                f"{w['partitions']:>10.0f} {w['windows']:>8.0f}"
            )
        agg = sum(w["values"] for w in r["workers"]) / r["wall"]
        per = sum(w["values"] / w["seconds"] for w in r["workers"]) / n
        print(f"{f'N={n}: aggregate / mean per worker':<34} {r['wall']:>8.2f} {agg:>12,.0f}   per worker {per:,.0f}")
    if 1 in runs and 2 in runs:
        one = runs[1]["workers"][0]
        two = runs[2]["workers"]
        one_rate = one["values"] / one["seconds"]
        agg2 = sum(w["values"] for w in two) / runs[2]["wall"]
        per2 = sum(w["values"] / w["seconds"] for w in two) / 2
        print(
            f"2 workers / 1 worker: aggregate {agg2 / one_rate:.2f}x, per worker {per2 / one_rate:.2f}x "
            f"({os.cpu_count()} cpus for redis-server and the workers)"
        )


if __name__ == "__main__":
    main()
