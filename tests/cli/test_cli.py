"""The command line: replay is deterministic, bad config exits 2 naming the field, config prints."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tessera_daemon.cli import main

SMALL = {"TESSERA_SIM__ZONES": "1", "TESSERA_SIM__RACKS_PER_ZONE": "2", "TESSERA_SIM__HOSTS_PER_RACK": "2",
         "TESSERA_SIM__COHORTS": "1"}


@pytest.fixture
def small_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SMALL.items():
        monkeypatch.setenv(k, v)


def test_simulate_then_replay_is_byte_identical(tmp_path: Path, small_env: None,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "sim"
    assert main(["simulate", "--scenario", "mixed", "--seed", "2", "--duration-s", "1400", "--out", str(out)]) == 0
    for name in ("frames.jsonl", "topology.json", "events.jsonl", "labels.json"):
        assert (out / name).exists()
    # a malformed line is dead-lettered and counted, never fatal
    with (out / "frames.jsonl").open("a") as f:
        f.write('{"v":1,"ts":"soon"}\n')
    runs = []
    for k in (1, 2):
        dst = tmp_path / f"firings{k}.jsonl"
        rc = main(["replay", "--frames", str(out / "frames.jsonl"), "--topology", str(out / "topology.json"),
                   "--events", str(out / "events.jsonl"), "--out", str(dst)])
        assert rc == 0
        runs.append(dst.read_bytes())
        summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
        assert summary["dead_letters"] == 1
    assert runs[0] == runs[1]
    firings = [json.loads(line) for line in runs[0].decode().splitlines()]
    assert firings, "the mixed scenario should fire"
    assert all(f["v"] == 1 and f["receipt"] for f in firings)
    dead = (tmp_path / "firings1.jsonl.dead-letter.jsonl").read_text()
    assert "frame.ts" in dead


def test_bad_config_exits_2_naming_the_field(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text("[window]\nlength_s = -5\n")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    r = subprocess.run([sys.executable, "-m", "tessera_daemon", "--config", str(cfg), "run"],
                       capture_output=True, text=True, env=env, timeout=60, check=False)
    assert r.returncode == 2
    assert "window.length_s" in r.stderr and ">= 0" in r.stderr
    r = subprocess.run([sys.executable, "-m", "tessera_daemon", "config"], capture_output=True, text=True,
                       env={**env, "TESSERA_DETECTOR__BETZ": "1"}, timeout=60, check=False)
    assert r.returncode == 2 and "detector.betz" in r.stderr


def test_config_prints_effective_toml(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_WINDOW__LENGTH_S", "7")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "[window]\nlength_s = 7.0" in out and "[detector]" in out


def test_check_fails_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--url", "http://127.0.0.1:9", "--timeout-s", "0.5"]) == 1
