"""The web console at fleet scale, in a real browser: first paint and live-update latency.

Starts ``tessera-daemon demo clean`` on the simulator with ``--shards`` shards (4 cooling zones, 8
GPUs a host; one sample per shard per 5-s window; the short warm-up fast-forwarded, then simulated
time at the wall clock's pace, so a window closes every 5 s as in production) on a free loopback
port, waits until the detector has warmed up, then drives Debian's
Chromium (``/usr/bin/chromium``) with Playwright:

1. first paint: ``--loads`` fresh page loads; the time from navigation start to the first complete
   fleet-map draw (topology, fleet codes, summary and incidents fetched, layout computed, every cell
   drawn), as the page itself reports it (``window.__tessera.firstPaintMs``);
2. live update: one page left open for ``--watch-s`` seconds; for each Server-Sent Event, the time
   from the daemon recording the window (after the detector processed it) to the browser having
   applied the diff and repainted the map (``window.__tessera.updates``), split into cell diffs and
   full refetches (warm-up, or more than 4,096 changed cells).

Also prints the size of the JSON the page loads. Not a test: figures go to docs/performance.md.
Usage: python bench/console.py [--shards 10240] [--loads 5] [--watch-s 40]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=10) as r:
        return json.loads(r.read())


def size(url: str) -> tuple[int, int]:
    """(bytes as sent with gzip, bytes of the JSON)."""
    req = urllib.request.Request(url, headers={"Accept-Encoding": "gzip"})
    with urllib.request.urlopen(req, timeout=10) as r:
        raw = r.read()
    import gzip  # noqa: PLC0415

    body = gzip.decompress(raw) if raw[:2] == b"\x1f\x8b" else raw
    return len(raw), len(body)


def start_daemon(shards: int, port: int, log: Any) -> subprocess.Popen[bytes]:
    racks = 10
    hosts = max(1, shards // (4 * racks * 8))
    env = {
        **os.environ,
        "TESSERA_HTTP__PORT": str(port),
        "TESSERA_LOG__LEVEL": "warning",
        "TESSERA_SIM__ZONES": "4",
        "TESSERA_SIM__RACKS_PER_ZONE": str(racks),
        "TESSERA_SIM__HOSTS_PER_RACK": str(hosts),
        "TESSERA_SIM__SHARDS_PER_HOST": "8",
        "TESSERA_SIM__COHORTS": "8",
        "TESSERA_SIM__TICK_S": "5",
        "TESSERA_DETECTOR__WARMUP_WINDOWS": "8",
        "TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "8",
    }
    # the warm-up fast-forwarded, then live at the wall clock's pace (one window every 5 s)
    return subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from tessera_daemon.cli import main; sys.exit(main())",
            "demo",
            "clean",
            "--no-browser",
            "--fast-forward",
            "4",
            "--speed",
            "1",
        ],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
    )


def pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q * (len(xs) - 1)))]


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--shards", type=int, default=10240)
    ap.add_argument("--loads", type=int, default=5)
    ap.add_argument("--watch-s", type=float, default=40.0)
    args = ap.parse_args()
    from playwright.sync_api import sync_playwright  # noqa: PLC0415

    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log:
        proc = start_daemon(args.shards, port, log)
        try:
            t0 = time.monotonic()
            while True:
                try:
                    s = get(base + "/v1/summary")
                    if s["warmup"]["done"] and s["windows_processed"] >= 10:
                        break
                except OSError:
                    pass
                if proc.poll() is not None or time.monotonic() - t0 > 600:
                    log.seek(0)
                    print(log.read().decode()[-3000:])
                    return 1
                time.sleep(1.0)
            n = s["shards"]
            load = os.getloadavg()[0]
            print(
                f"daemon: {n} shards x {len(s['metrics'])} metrics, warm after {time.monotonic() - t0:.0f} s; "
                f"{platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
                f"load average {load:.1f}"
            )
            for path in ("/v1/topology", "/v1/fleet", "/v1/summary", "/v1/incidents"):
                gz, raw = size(base + path)
                print(f"  {path}: {raw / 1024:.0f} KiB JSON, {gz / 1024:.0f} KiB as sent")
            with sync_playwright() as pw:
                browser = pw.chromium.launch(executable_path=CHROMIUM)
                ctx = browser.new_context(viewport={"width": 1400, "height": 900}, bypass_csp=True)
                paints: list[float] = []
                fetched: list[float] = []
                scripts: list[float] = []
                for _ in range(args.loads):
                    page = ctx.new_page()
                    page.goto(base + "/")
                    page.wait_for_function("window.__tessera && window.__tessera.firstPaintMs !== null", timeout=30_000)
                    paints.append(float(page.evaluate("window.__tessera.firstPaintMs")))
                    fetched.append(float(page.evaluate("window.__tessera.fetchedMs")))
                    scripts.append(float(page.evaluate("window.__tessera.t0")))
                    page.close()
                page = ctx.new_page()
                page.goto(base + "/")
                page.wait_for_function("window.__tessera && window.__tessera.firstPaintMs !== null", timeout=30_000)
                time.sleep(args.watch_s)
                updates = page.evaluate("window.__tessera.updates")
                errors = page.evaluate("window.__tessera.errors")
                browser.close()
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(30)
    diffs = [u["latencyMs"] for u in updates if u["diff"]]
    fulls = [u["latencyMs"] for u in updates if not u["diff"]]
    print(
        f"first paint over {len(paints)} loads: median {statistics.median(paints):.0f} ms, "
        f"max {max(paints):.0f} ms ({', '.join(f'{p:.0f}' for p in paints)})"
    )
    print(
        f"  of which: page and script loaded at {statistics.median(scripts):.0f} ms, the four JSON documents "
        f"fetched at {statistics.median(fetched):.0f} ms (medians)"
    )
    if diffs:
        print(
            f"live update (cell diff), {len(diffs)} updates: median {statistics.median(diffs):.0f} ms, "
            f"p95 {pct(diffs, 0.95):.0f} ms, max {max(diffs):.0f} ms"
        )
    if fulls:
        print(
            f"live update (full refetch), {len(fulls)} updates: median {statistics.median(fulls):.0f} ms, "
            f"max {max(fulls):.0f} ms"
        )
    if errors:
        print(f"page errors: {errors}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
