"""History rings, fleet state codes and warm-up progress, on a real pipeline fed by the simulator."""

from __future__ import annotations

import tomllib
from pathlib import Path

import numpy as np
from structlog.testing import capture_logs

from tessera_daemon.config import Config, load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.model import ClusterEvent
from tessera_daemon.sim import ClusterSim
from tessera_daemon.transport.memory import MemoryTransport
from tessera_daemon.web.console import Console
from tessera_daemon.web.console_api import STATIC
from tessera_daemon.web.fleet import FIRING, FROZEN, HEALTHY, STALE, WARMING, fleet_codes
from tessera_daemon.web.status import Status

ENV = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "1",
    "TESSERA_SIM__HOSTS_PER_RACK": "2",
    "TESSERA_SIM__SHARDS_PER_HOST": "4",
    "TESSERA_SIM__COHORTS": "1",
    "TESSERA_SIM__SCENARIO": "sparse",
    "TESSERA_DETECTOR__WARMUP_WINDOWS": "8",
    "TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "8",
    "TESSERA_WINDOW__LENGTH_S": "5",
}


def feed(cfg: Config, ticks: int) -> tuple[ClusterSim, Pipeline, Console]:
    sim = ClusterSim(cfg.sim, scenario=cfg.sim.scenario)
    p = Pipeline(cfg, sim.topology)
    status = Status(cfg, p.snapshot(), MemoryTransport(10))
    console = Console.of(status)
    for _ in range(ticks):
        p.ingest(sim.step()[1])
        for w in p.assembler.close_ready():
            p.process(w)
            status.snapshot = p.snapshot(status.snapshot)
            console.record()
    return sim, p, console


def test_rings_keep_the_last_windows_in_order_on_the_metrics_scale() -> None:
    cfg = load_config(None, ENV)
    _sim, p, console = feed(cfg, 400)
    h = console.history
    slots = h.order()
    assert slots.size == h.depth and h.n == p.windows_processed >= 78  # 400 ticks of 1 s, 5-s windows (grace)
    ts = h.ts[slots]
    assert np.all(np.diff(ts) == cfg.window.length_s) and ts[-1] == p.table.end_ts
    series = h.shard_series(p.snapshot(), 0)
    step = series["metrics"]["step_time_ms"]
    assert step["scale"] == "log" and 300 < np.nanmedian(np.array(step["value"], float)) < 400  # ms, not log ms
    band = np.array(step["band_high"], float) - np.array(step["band_low"], float)
    assert np.all(band[~np.isnan(band)] > 0)
    assert console.history.record(console.p) is False  # the same window twice is recorded once


def test_state_codes_warming_healthy_stale_and_frozen() -> None:
    cfg = load_config(None, ENV)
    _sim, p, _c = feed(cfg, 20)
    assert set(fleet_codes(p.snapshot())["any"].tolist()) == {WARMING}
    sim, p, console = feed(cfg, 460)  # sparse: 3 % of shards (one here) stop reporting from tick 400
    codes = fleet_codes(p.snapshot())
    lost = [p.row[s] for s in sim.labels()["faults"][0]["shards"]]
    assert p.table.stale[lost].all()
    # stale on the map, unless a rule (device_missing) fires on it: firing outranks stale
    missing = {f.target for f in p.book.active() if f.detector.startswith("rule:")}
    assert codes["any"][lost].tolist() == [FIRING if p.shards[i] in missing else STALE for i in lost]
    others = np.setdiff1d(np.arange(len(p.shards)), lost)
    assert set(codes["power_w"][others].tolist()) <= {HEALTHY, 2}
    host = "z0-r00-h01"
    p.events.add(ClusterEvent("fw-1", "firmware_push", p.table.end_ts - 1, (host,), p.table.end_ts + 600))
    console.status.snapshot = p.snapshot()  # the event is in the next snapshot, not in the last one
    frozen = fleet_codes(console.p)["any"]
    rows = [p.row[s] for s in p.shards if s.startswith(host) and p.row[s] not in lost]
    assert frozen[rows].tolist() == [FROZEN] * len(rows)
    assert console.summary()["events"][0]["id"] == "fw-1"


def test_warm_up_progress_is_logged_then_completion_once() -> None:
    cfg = load_config(None, ENV)
    _sim, p, console = feed(cfg, 20)
    w = console.warmup
    with capture_logs() as logs:
        snap = p.snapshot()
        for t in (96.0, 98.0, 100.0):
            w.sample(snap, t)
        w.maybe_log(snap, cfg.window.length_s, 100.0)
        w.maybe_log(snap, cfg.window.length_s, 130.0)  # within the minute: nothing
        for _ in range(60):
            p.ingest(_sim.step()[1])
            for win in p.assembler.close_ready():
                p.process(win)
        snap = p.snapshot()
        w.sample(snap, 160.0)
        w.maybe_log(snap, cfg.window.length_s, 160.0)
        w.maybe_log(snap, cfg.window.length_s, 260.0)
    events = [e["event"] for e in logs]
    assert events == ["warm-up progress", "warm-up complete"], logs
    assert "of shard-metrics have a baseline" in logs[0]["message"]


def test_every_static_file_ships_in_the_wheel() -> None:
    cfg = tomllib.loads((Path(__file__).resolve().parents[2] / "pyproject.toml").read_text())
    globs = cfg["tool"]["setuptools"]["package-data"]["tessera_daemon"]
    assert "web/static/*" in globs
    assert {f.name for f in STATIC.iterdir()} == {"index.html", "console.js", "console.css"}
