"""Soak of `tessera-daemon run`: simulated time at high speed-up, periodic SIGTERM restarts (resumed from
daemon.state_dir), and the process watched from outside through /metrics.

    python bench/soak.py --sim-hours 168 --speedup 3000 --restart-every-s 60

Reports, per run segment and overall: RSS and open file handles (first, last, least-squares slope per
simulated day, after the first minute of each process), windows processed against the windows the
simulated time holds (lost = the difference), firings opened more than once across restarts
(duplicated), restarts. Prints a Markdown table (docs/operations.md keeps one). The short version runs in
tests/integration/test_soak.py. Not covered yet: the split deployment (agent, workers, Redis with AOF,
worker kills, Redis restarts, topology changes).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WINDOW_S = 5.0
START_TS = 1_700_000_000.0


@dataclass(slots=True)
class Sample:
    wall_s: float
    sim_s: float  # simulated seconds since the start (window end)
    rss_bytes: float
    open_fds: float
    windows: float
    run: int


@dataclass(slots=True)
class SoakResult:
    sim_s: float
    restarts: int
    samples: list[Sample] = field(default_factory=list)
    windows_expected: int = 0
    windows_processed: int = 0
    opened: int = 0
    duplicated: int = 0
    exit_codes: list[int] = field(default_factory=list)

    @property
    def windows_lost(self) -> int:
        return max(0, self.windows_expected - self.windows_processed)

    @property
    def windows_twice(self) -> int:
        """Windows processed again after a restart (resumed from an older checkpoint)."""
        return max(0, self.windows_processed - self.windows_expected)

    def slope_per_day(self, attr: str) -> float:
        """Least-squares slope of ``attr`` per simulated day over the steady samples (each process's
        first 20 % of samples dropped: start-up allocations are not growth)."""
        steady: list[Sample] = []
        for run in sorted({s.run for s in self.samples}):
            xs = [s for s in self.samples if s.run == run]
            steady += xs[len(xs) // 5 :]
        if len(steady) < 3:
            return 0.0
        mx = sum(s.sim_s for s in steady) / len(steady)
        my = sum(getattr(s, attr) for s in steady) / len(steady)
        sxx = sum((s.sim_s - mx) ** 2 for s in steady)
        sxy = sum((s.sim_s - mx) * (getattr(s, attr) - my) for s in steady)
        return 0.0 if sxx == 0 else sxy / sxx * 86400.0

    def table(self) -> str:
        first, last = self.samples[0], self.samples[-1]
        rows = [
            ("simulated time", f"{self.sim_s / 3600:.1f} h", ""),
            ("restarts (SIGTERM, resumed from state_dir)", str(self.restarts), ""),
            ("RSS", f"{first.rss_bytes / 2**20:.0f} -> {last.rss_bytes / 2**20:.0f} MiB",
             f"{self.slope_per_day('rss_bytes') / 2**20:+.2f} MiB / simulated day"),
            ("open file handles", f"{first.open_fds:.0f} -> {last.open_fds:.0f}",
             f"{self.slope_per_day('open_fds'):+.2f} / simulated day"),
            ("windows processed / expected", f"{self.windows_processed} / {self.windows_expected}",
             f"lost: {self.windows_lost}, processed twice: {self.windows_twice}"),
            ("firings opened", str(self.opened), f"duplicated: {self.duplicated}"),
        ]  # fmt: skip
        out = ["| quantity | value | trend / loss |", "|---|---|---|"]
        out += [f"| {a} | {b} | {c} |" for a, b, c in rows]
        return "\n".join(out)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _scrape(port: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        text = r.read().decode()
    out: dict[str, float] = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line.split(" ")[0]:
            name, _, value = line.partition(" ")
            try:
                out[name] = float(value.split(" ")[0])
            except ValueError:
                continue
    return out


def soak(
    sim_s: float,
    speedup: float,
    restart_every_s: float,
    *,
    workdir: Path,
    scenario: str = "mixed",
    sample_every_s: float = 0.5,
) -> SoakResult:
    state = workdir / "state"
    port = _free_port()
    env = {
        **os.environ,
        "TESSERA_SIM__ZONES": "1",
        "TESSERA_SIM__RACKS_PER_ZONE": "4",
        "TESSERA_SIM__HOSTS_PER_RACK": "2",
        "TESSERA_SIM__COHORTS": "2",
        "TESSERA_SIM__SCENARIO": scenario,
        "TESSERA_SIM__SPEEDUP": str(speedup),
        "TESSERA_SIM__DURATION_S": str(sim_s),
        "TESSERA_SIM__START_TS": str(START_TS),
        "TESSERA_WINDOW__LENGTH_S": str(WINDOW_S),
        "TESSERA_DAEMON__STATE_DIR": str(state),
        "TESSERA_HTTP__PORT": str(port),
        "TESSERA_LOG__FORMAT": "json",
        "TESSERA_LOG__LEVEL": "info",
    }
    # the last window is still open when the simulated time ends (it waits for grace; it is in the checkpoint)
    res = SoakResult(sim_s=sim_s, restarts=0, windows_expected=int(sim_s // WINDOW_S) - 1)
    opened: Counter[str] = Counter()
    run = 0
    while True:
        log = workdir / f"run-{run}.log"
        with open(log, "wb") as fh:
            proc = subprocess.Popen([sys.executable, "-m", "tessera_daemon", "run"], env=env, cwd=ROOT, stderr=fh)
        started = time.monotonic()
        serving = 0.0
        finished = False
        while proc.poll() is None:
            time.sleep(sample_every_s)
            try:
                m = _scrape(port)
            except OSError:
                continue
            idx = m.get("tessera_window_index", 0.0)
            res.samples.append(
                Sample(
                    time.monotonic() - started,
                    max(0.0, (idx + 1) * WINDOW_S - START_TS),
                    m.get("process_resident_memory_bytes", 0.0),
                    m.get("process_open_fds", 0.0),
                    m.get("tessera_windows_processed_total", 0.0),
                    run,
                )
            )
            serving = serving or time.monotonic()  # the restart clock starts once it serves
            if time.monotonic() - serving >= restart_every_s and proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                break
        res.exit_codes.append(proc.wait(120))
        lines = [json.loads(x) for x in log.read_text().splitlines() if x.startswith("{")]
        for e in lines:
            if e.get("event") == "firing opened":
                opened[str(e["id"])] += 1
            if e.get("event") == "simulation finished":
                finished = True
            if e.get("event") == "shutdown complete":
                res.windows_processed += int(e["windows"])  # windows this process closed
        if finished:
            break
        run += 1
        res.restarts += 1
    res.opened = len(opened)
    res.duplicated = sum(n - 1 for n in opened.values() if n > 1)
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sim-hours", type=float, default=168.0)
    ap.add_argument("--speedup", type=float, default=3000.0)
    ap.add_argument("--restart-every-s", type=float, default=60.0, help="wall seconds between SIGTERMs")
    ap.add_argument("--scenario", default="mixed")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="tessera-soak-") as tmp:
        t0 = time.monotonic()
        res = soak(args.sim_hours * 3600, args.speedup, args.restart_every_s, workdir=Path(tmp), scenario=args.scenario)
        print(f"soak: {args.sim_hours} simulated hours at {args.speedup}x in {time.monotonic() - t0:.0f} s wall")
    print(res.table())
    ok = res.windows_lost == 0 and res.windows_twice == 0 and res.duplicated == 0 and set(res.exit_codes) <= {0}
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
