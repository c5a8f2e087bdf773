"""The command line: replay is deterministic, bad config exits 2 naming the field, config prints."""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tessera_daemon.cli import main
from tessera_daemon.config import dump_toml, load_config
from tessera_daemon.errors import ConfigErrors

SMALL = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "2",
    "TESSERA_SIM__HOSTS_PER_RACK": "2",
    "TESSERA_SIM__COHORTS": "1",
}


@pytest.fixture
def small_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k, v in SMALL.items():
        monkeypatch.setenv(k, v)


def test_simulate_then_replay_is_byte_identical(
    tmp_path: Path, small_env: None, capsys: pytest.CaptureFixture[str]
) -> None:
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
        rc = main(
            [
                "replay",
                "--frames",
                str(out / "frames.jsonl"),
                "--topology",
                str(out / "topology.json"),
                "--events",
                str(out / "events.jsonl"),
                "--out",
                str(dst),
            ]
        )
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
    r = subprocess.run(
        [sys.executable, "-m", "tessera_daemon", "--config", str(cfg), "run"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert r.returncode == 2
    assert "window.length_s" in r.stderr and ">= 0" in r.stderr
    r = subprocess.run(
        [sys.executable, "-m", "tessera_daemon", "config"],
        capture_output=True,
        text=True,
        env={**env, "TESSERA_DETECTOR__BETZ": "1"},
        timeout=60,
        check=False,
    )
    assert r.returncode == 2 and "detector.betz" in r.stderr


def test_config_prints_effective_toml(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_WINDOW__LENGTH_S", "7")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "[window]\nlength_s = 7.0" in out and "[detector]" in out


def test_check_fails_when_nothing_listens(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--url", "http://127.0.0.1:9", "--timeout-s", "0.5"]) == 1


def test_global_options_before_or_after_the_subcommand(tmp_path: Path) -> None:
    """--config / --log-level anywhere; the value after the subcommand wins only when it is given."""
    from tessera_daemon.cli import _parser  # noqa: PLC0415

    before, after = tmp_path / "a.toml", tmp_path / "b.toml"
    p = _parser()
    args = p.parse_args(["--config", str(before), "run"])
    assert args.config == before and args.log_level is None and not args.check_config
    args = p.parse_args(["run", "--config", str(after), "--log-level", "debug"])
    assert args.config == after and args.log_level == "debug"
    args = p.parse_args(["--config", str(before), "--log-level", "error", "agent", "--config", str(after)])
    assert args.config == after and args.log_level == "error"
    args = p.parse_args(["--check-config", "detector"])
    assert args.check_config and args.config is None
    args = p.parse_args(["simulate", "--list", "--config", str(after), "--check-config"])
    assert args.config == after and args.check_config and args.list


def test_every_subcommand_help_lists_its_options_with_defaults_in_plain_text() -> None:
    from tessera_daemon.cli import COMMANDS, _parser  # noqa: PLC0415

    p = _parser()
    sub = next(a for a in p._actions if isinstance(a, argparse._SubParsersAction))
    texts = {"": p.format_help()} | {name: sp.format_help() for name, sp in sub.choices.items()}
    assert set(texts) - {""} == set(COMMANDS)
    for name, text in texts.items():
        assert "`" not in text, f"{name or 'top-level'} --help shows reST/Markdown backticks"
        for option in ("--config FILE", "--log-level", "--check-config"):
            assert option in text, f"{name} --help does not list {option}"
    for name, sp in sub.choices.items():
        for action in sp._actions:
            if (
                action.option_strings
                and action.default not in (None, False, argparse.SUPPRESS)
                and not isinstance(action, argparse._HelpAction)
            ):
                assert f"(default: {action.default})" in " ".join(texts[name].split()), (name, action.dest)
    assert "(default: 20.0)" in texts["drill"] and "(default: 3.0)" in texts["check"]


def test_check_config_exits_0_without_running(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "ok.toml"
    cfg.write_text("[window]\nlength_s = 7\n")
    assert main(["run", "--config", str(cfg), "--check-config"]) == 0
    assert "configuration ok" in capsys.readouterr().out
    cfg.write_text("[window]\nlength_s = -7\n")
    assert main(["--check-config", "run", "--config", str(cfg)]) == 2


def _cli(args: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    return subprocess.run(
        [sys.executable, "-m", "tessera_daemon", *args],
        capture_output=True,
        text=True,
        env={**base, **SMALL, **env},
        timeout=120,
        check=False,
    )


@pytest.mark.parametrize("command", ["run", "agent"])
def test_port_in_use_is_one_line_naming_the_setting(command: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        r = _cli(
            [command],
            {
                "TESSERA_HTTP__PORT": str(port),
                "TESSERA_LOG__LEVEL": "error",
                "TESSERA_TRANSPORT__REDIS__URL": "redis://127.0.0.1:9/0",
            },
        )
    assert r.returncode == 2, r.stderr
    assert "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert f"127.0.0.1:{port}" in line and "http.port" in line and "already in use" in line


def test_bad_redis_url_is_one_line() -> None:
    r = _cli(["agent"], {"TESSERA_TRANSPORT__REDIS__URL": "http://:secret@redis.internal:6379/0"})
    assert r.returncode == 2 and "Traceback" not in r.stderr
    (line,) = r.stderr.strip().splitlines()
    assert "transport.redis.url" in line and "redis://" in line and "secret" not in line


def test_every_config_error_is_reported_at_once(tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text(
        '[window]\nlength_s = -5\nbogus = 1\n[http]\nport = "x"\n[sources]\nenabled = ["nvmll"]\n'
        '[transport.redis]\nurl = "http://x"\n'
    )
    with pytest.raises(ConfigErrors) as info:
        load_config(cfg, {"TESSERA_DETECTOR__CLIP_SIGMA": "0"})
    fields = [e.field for e in info.value.errors]
    assert sorted(fields) == [
        "detector.clip_sigma",
        "http.port",
        "transport.redis.url",
        "window.bogus",
        "window.length_s",
    ]
    r = _cli(["run", "--config", str(cfg)], {"TESSERA_DETECTOR__CLIP_SIGMA": "0"})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 5 and all(line.startswith("tessera-daemon: configuration error: ") for line in lines)
    # cross-field checks run once every field is valid, and are reported together too
    cfg.write_text('[sources]\nenabled = ["nvmll", "nvml", "nvml"]\n[detector]\nfamilies = ["Z"]\n')
    with pytest.raises(ConfigErrors) as info:
        load_config(cfg, {})
    assert [e.field for e in info.value.errors] == ["detector.families", "sources.enabled", "sources.enabled"]


def test_config_output_round_trips_any_value(tmp_path: Path) -> None:
    """`tessera-daemon config` output is valid TOML that loads back to the same configuration, whatever the
    strings hold (newline, quotes, backslash, unicode); tokens are redacted."""
    cluster = 'line one\nline "two" \\ ünï\ttab'
    cfg = load_config(
        None,
        {
            "TESSERA_DAEMON__CLUSTER": json.dumps(cluster),
            "TESSERA_DETECTOR__METRICS": '["gpu_util", "a\\"b"]',
            "TESSERA_DETECTOR__LOG_METRICS": "[]",
        },
    )
    assert cfg.daemon.cluster == cluster
    text = dump_toml(cfg)
    path = tmp_path / "dumped.toml"
    path.write_text(text)
    assert load_config(path, {}) == cfg
