"""Time is bounded: a frame far ahead of the receiver's clock never moves the watermark (quarantined,
counted, its host's skew exported), and readiness fails when frames arrive but no window completes."""

from __future__ import annotations

import dataclasses
import math
import time

import numpy as np
import pytest

from tessera_daemon.config import load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.engine.window import WindowAssembler
from tessera_daemon.model import Frame
from tessera_daemon.sim import ClusterSim
from tessera_daemon.transport.codec import decode_entry, encode_host
from tessera_daemon.transport.memory import MemoryTransport
from tessera_daemon.web.metrics import MetricsRenderer, clock_skew
from tessera_daemon.web.status import StallWatch, Status

DAY = 86_400.0


@pytest.mark.parametrize("path", ["add", "add_block"])
def test_a_frame_a_day_ahead_is_quarantined_and_windows_go_on(path: str) -> None:
    t0 = time.time() - 300.0  # recent frames, stamped in the past of the receiver's clock
    a = WindowAssembler(["a", "b"], ["x"], length_s=10.0, grace_s=2.0)
    a.guard_future(10.0)
    closed = []
    for step in range(30):
        ts = t0 + 5.0 * step
        frames = [Frame(ts, "a", {"x": 1.0}), Frame(ts + (DAY if step == 5 else 0.0), "b", {"x": 2.0})]
        if path == "add":
            for f in frames:
                a.add(f)
        else:
            a.add_block(decode_entry(encode_host(frames, "h", "agent/1", step + 1)).frames)
        closed += a.close_ready()
    assert a.stats.future == 1 and a.stats.late == 0
    assert a.watermark == t0 + 5.0 * 29  # never a day ahead
    first = a.window_of(t0)
    assert [w.index for w in closed] == list(range(first, first + len(closed))) and len(closed) >= 13
    skew, seen, source = a.skewed["b"]
    assert abs(skew - (t0 + 25.0 + DAY - time.time())) < 60 and abs(seen - time.time()) < 60 and source == "local"


def test_replay_arms_no_guard() -> None:
    """Replay of recorded files (no ``guard_future``): frame times are the only clock."""
    a = WindowAssembler(["a"], ["x"], length_s=10.0, grace_s=2.0)
    a.add(Frame(1000.0 + DAY, "a", {"x": 1.0}))
    assert a.stats.future == 0 and a.watermark == 1000.0 + DAY


def test_zero_disables_the_guard() -> None:
    a = WindowAssembler(["a"], ["x"], length_s=10.0, grace_s=2.0)
    a.guard_future(0.0)
    a.add(Frame(time.time() + DAY, "a", {"x": 1.0}))
    assert a.stats.future == 0 and a.watermark > time.time()


def test_run_mode_pipeline_keeps_committing_exports_the_skew_and_stays_ready() -> None:
    cfg = load_config(
        None,
        {
            "TESSERA_SIM__ZONES": "1",
            "TESSERA_SIM__RACKS_PER_ZONE": "1",
            "TESSERA_SIM__HOSTS_PER_RACK": "2",
            "TESSERA_SIM__COHORTS": "1",
            "TESSERA_DETECTOR__WARMUP_WINDOWS": "5",
            "TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "5",
        },
    )
    sim = ClusterSim(cfg.sim, scenario="clean", seed=3, start_ts=math.floor(time.time() / 60) * 60 - 1200.0)
    p = Pipeline(cfg, sim.topology)
    p.assembler.guard_future(cfg.window.max_future_skew_s)  # as `run` does with live sources
    status = Status(cfg, p.snapshot(), MemoryTransport(16))
    bad = sim.topology.shards[3]
    host = sim.topology.nodes[bad].parent
    assert host is not None and sim.topology.nodes[host].kind == "host"
    windows = []
    for tick in range(120):
        ts, frames = sim.step()
        if tick == 110:  # within the last minute: the host counts as currently skewed
            frames = [*frames, dataclasses.replace(frames[3], ts=ts + DAY)]
        p.ingest(frames)
        windows += [r.index for r in p.advance()]
    assert p.assembler.stats.future == 1 and p.assembler.stats.late == 0
    assert windows == list(range(windows[0], windows[0] + len(windows))) and len(windows) > 20
    assert windows[-1] >= p.assembler.window_of(ts) - 2  # committing up to the newest frame, not stalled
    status.snapshot = p.snapshot()
    assert not [r for r in status.not_ready_reasons() if "stalled" in r]
    text = MetricsRenderer(status).render().decode()
    assert f'tessera_clock_skew_seconds{{host="{host}",source="local"}} 8' in text  # ~86,400 s minus the lag
    assert 'tessera_frames_dropped_total{reason="clock_skew"} 1.0' in text
    later = clock_skew(status.snapshot, time.time() + 3600.0)  # an hour on, nothing newer: no longer reported
    assert later.samples == [] and clock_skew(status.snapshot, time.time()).samples[0].labels == {
        "source": "local",
        "host": host,
    }


def test_stall_watch_flags_frames_without_windows() -> None:
    w = StallWatch(after_s=50.0)
    assert w.check(0, 0, now=0.0) is None
    for t in range(1, 40):  # frames and windows move: fine
        assert w.check(10 * t, t, now=float(t)) is None
    for t in range(40, 89):  # frames move, windows do not, for less than after_s
        assert w.check(10 * t, 39, now=float(t)) is None
    assert w.check(900, 39, now=89.0) is not None  # 50 s without a window while frames arrive
    assert "stalled" in (w.check(910, 39, now=90.0) or "")
    assert w.check(910, 39, now=141.0) is None  # no frames either: idle, not stalled
    assert w.check(920, 40, now=142.0) is None  # a window completed
    assert StallWatch(after_s=0.0).check(10**6, 0, now=1e9) is None  # 0: never


def test_stall_shows_in_readiness() -> None:
    cfg = load_config(
        None,
        {
            "TESSERA_SIM__ZONES": "1",
            "TESSERA_SIM__RACKS_PER_ZONE": "1",
            "TESSERA_SIM__HOSTS_PER_RACK": "1",
            "TESSERA_SIM__COHORTS": "1",
        },
    )
    sim = ClusterSim(cfg.sim, scenario="clean", seed=3)
    p = Pipeline(cfg, sim.topology)
    status = Status(cfg, p.snapshot(), MemoryTransport(16))
    assert status.stall.after_s == cfg.window.stall_windows * p.window_length_s
    status.stall.check(0, 0, now=0.0)
    p.assembler.stats.late = 500  # frames keep arriving, all late; no window completes
    status.snapshot = p.snapshot()
    status.stall.frames_mono = float(np.float64(1e12))  # (as if just now)
    status.stall.windows_mono = -1e12
    assert any("stalled" in r for r in status.not_ready_reasons())
