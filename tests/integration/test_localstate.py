"""``run`` with ``daemon.state_dir``: checkpoints, resume without warm-up, stale / corrupt refused.

The restart test runs real ``tessera-daemon run`` processes stopped with SIGTERM (about 25 s on two
loaded cores: it is the issue's acceptance test, kept to one uninterrupted and one interrupted run).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tessera_daemon.config import Config, load_config
from tessera_daemon.engine.checkpoint import restore
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.localstate import FILENAME, LocalState, resume_pipeline
from tessera_daemon.sim import ClusterSim

ROOT = Path(__file__).resolve().parents[2]
SIM = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "4",
    "TESSERA_SIM__HOSTS_PER_RACK": "2",
    "TESSERA_SIM__COHORTS": "2",
    "TESSERA_SIM__SCENARIO": "demo",  # straggler (ticks 900-1100), then sdc_drift (1140-1360)
    "TESSERA_SIM__DURATION_S": "1500",
    "TESSERA_SIM__START_TS": "1700000000",  # fixed: the restarted simulator resumes where it stopped
    "TESSERA_HTTP__PORT": "0",
    "TESSERA_LOG__FORMAT": "json",
    "TESSERA_LOG__LEVEL": "info",
}


def _lines(path: Path) -> list[dict[str, object]]:
    out = []
    for line in path.read_text().splitlines():
        if line.startswith("{"):
            out.append(json.loads(line))
    return out


def _firings(path: Path) -> list[tuple[object, ...]]:
    return [
        (e["event"], e["id"], e.get("window"), e.get("target"), e.get("metric"))
        for e in _lines(path)
        if e["event"] in ("firing opened", "firing resolved")
    ]


def _start(state_dir: Path, log: Path, speedup: str) -> subprocess.Popen[bytes]:
    env = {**os.environ, **SIM, "TESSERA_SIM__SPEEDUP": speedup, "TESSERA_DAEMON__STATE_DIR": str(state_dir)}
    with open(log, "wb") as fh:
        return subprocess.Popen([sys.executable, "-m", "tessera_daemon", "run"], env=env, cwd=ROOT, stderr=fh)


def _wait_for(proc: subprocess.Popen[bytes], log: Path, event: str, deadline_s: float) -> None:
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if any(e["event"] == event for e in _lines(log)):
            return
        assert proc.poll() is None, f"run exited before {event!r}: {log.read_text()}"
        time.sleep(0.05)
    raise AssertionError(f"no {event!r} within {deadline_s} s: {log.read_text()}")


def test_run_stopped_and_restarted_mid_scenario_fires_as_uninterrupted(tmp_path: Path) -> None:
    full_log = tmp_path / "full.log"
    full = _start(tmp_path / "full-state", full_log, "250")
    assert full.wait(180) == 0, full_log.read_text()
    expected = _firings(full_log)
    assert [f[0] for f in expected].count("firing opened") >= 2, full_log.read_text()

    # part one: slower, so that SIGTERM lands mid-scenario (after the first firing, before the end)
    p1_log, p2_log = tmp_path / "p1.log", tmp_path / "p2.log"
    p1 = _start(tmp_path / "state", p1_log, "60")
    try:
        _wait_for(p1, p1_log, "firing opened", 180)
        p1.send_signal(signal.SIGTERM)
        assert p1.wait(60) == 0, p1_log.read_text()
    finally:
        if p1.poll() is None:
            p1.kill()
    assert not any(e["event"] == "simulation finished" for e in _lines(p1_log)), "SIGTERM came too late"
    written = [e for e in _lines(p1_log) if e["event"] == "local state written"]
    assert written and written[-1]["reason"] == "shutdown"
    assert (tmp_path / "state" / FILENAME).exists()

    p2 = _start(tmp_path / "state", p2_log, "250")
    assert p2.wait(180) == 0, p2_log.read_text()
    events = _lines(p2_log)
    resumed = [e for e in events if e["event"] == "resumed from local state: no warm-up"]
    assert len(resumed) == 1, p2_log.read_text()
    assert int(str(resumed[0]["simulator_ticks_skipped"])) > 0
    assert not any(e["event"] == "warm-up progress" for e in events), "the restarted daemon warmed up again"
    got = _firings(p1_log) + _firings(p2_log)
    assert _firings(p2_log), "nothing fired after the restart: the test did not interrupt mid-scenario"
    assert got == expected


# ------------------------------------------------------------------------ refusal, in process


def _cfg(state_dir: Path, **env: str) -> Config:
    fixed = {"TESSERA_WINDOW__LENGTH_S": "5"}
    return load_config(None, {**SIM, **fixed, "TESSERA_DAEMON__STATE_DIR": str(state_dir), **env})


def _pipeline_with_windows(cfg: Config, windows: int) -> Pipeline:
    sim = ClusterSim(cfg.sim, scenario=cfg.sim.scenario, start_ts=cfg.sim.start_ts)
    p = Pipeline(cfg, sim.topology)
    for _ in range(int(windows * cfg.window.length_s / sim.tick_s)):
        _, frames = sim.step()
        p.ingest(frames)
        p.advance()
    return p


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Config, Pipeline]:
    cfg = _cfg(tmp_path)
    p = _pipeline_with_windows(cfg, 12)
    assert p.windows_processed > 4
    st = LocalState(cfg)
    st.dir.mkdir(parents=True, exist_ok=True)
    st.last_frame_ts = 123.0
    st.save(p, st.extra())
    return cfg, p


def test_checkpoint_round_trips_and_resumes(saved: tuple[Config, Pipeline]) -> None:
    cfg, p = saved
    st = LocalState(cfg)
    got = st.load()
    assert got is not None
    assert got.meta.window == p.assembler.last_closed
    assert got.meta.extra["last_frame_ts"] == 123.0
    assert np.array_equal(got.pipeline.state.buf, p.state.buf, equal_nan=True)
    again = resume_pipeline(LocalState(cfg), cfg, p.topology, None)
    assert again.windows_processed == p.windows_processed


def test_corrupt_checkpoint_is_refused_by_name(saved: tuple[Config, Pipeline], tmp_path: Path) -> None:
    cfg, p = saved
    path = tmp_path / FILENAME
    blob = bytearray(path.read_bytes())
    blob[-10] ^= 0xFF
    path.write_bytes(bytes(blob))
    st = LocalState(cfg)
    assert st.load() is None
    assert st.refused == "corrupt"
    assert not path.exists() and (tmp_path / (FILENAME + ".refused")).exists()
    fresh = resume_pipeline(LocalState(cfg), cfg, p.topology, None)
    assert fresh.windows_processed == 0


def test_stale_checkpoint_is_refused_by_name(saved: tuple[Config, Pipeline]) -> None:
    cfg, _ = saved
    st = LocalState(cfg)
    assert st.load(now=time.time() + cfg.daemon.state_max_age_s + 5) is None
    assert st.refused == "stale"
    samples = {(s.name, s.labels.get("outcome")): s.value for m in st.collect() for s in m.samples}
    assert samples[("tessera_checkpoints_total", "refused")] == 1
    assert samples[("tessera_checkpoints_total", "restored")] == 0


def test_checkpoint_of_another_configuration_is_refused(saved: tuple[Config, Pipeline], tmp_path: Path) -> None:
    cfg, _ = saved
    other = _cfg(tmp_path, TESSERA_DETECTOR__WARMUP_WINDOWS=str(cfg.detector.warmup_windows + 1))
    st = LocalState(other)
    assert st.load() is None
    assert st.refused == "incompatible"


def test_checkpoint_is_the_split_workers_format(saved: tuple[Config, Pipeline], tmp_path: Path) -> None:
    cfg, p = saved
    restored, meta = restore((tmp_path / FILENAME).read_bytes(), cfg)
    assert meta.partition == "run" and restored.windows_processed == p.windows_processed
