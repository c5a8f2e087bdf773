from __future__ import annotations

from pathlib import Path

import pytest

from tessera_daemon.config import Config, dump_toml, load_config
from tessera_daemon.errors import ConfigError


def test_defaults_load_and_are_frozen() -> None:
    cfg = load_config(None, {})
    assert isinstance(cfg, Config)
    assert cfg.http.host == "127.0.0.1"
    with pytest.raises(AttributeError):
        cfg.http.port = 1  # type: ignore[misc]


def test_toml_and_env_override(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text('[window]\nlength_s = 2\n[detector]\nmetrics = ["a", "b"]\nlog_metrics = []\n')
    cfg = load_config(p, {"TESSERA_WINDOW__GRACE_S": "0.5", "TESSERA_SIM__SCENARIO": "clean"})
    assert cfg.window.length_s == 2.0
    assert cfg.window.grace_s == 0.5
    assert cfg.detector.metrics == ("a", "b")
    assert cfg.sim.scenario == "clean"


@pytest.mark.parametrize(
    ("toml", "env", "field", "words"),
    [
        ("[window]\nlenght_s = 2\n", {}, "window.lenght_s", "unknown setting"),
        ("[windw]\n", {}, "windw", "unknown setting"),
        ('[window]\nlength_s = "fast"\n', {}, "window.length_s", "expected a number"),
        ("[window]\nlength_s = -1\n", {}, "window.length_s", ">= 0.0"),
        ("[window]\nlength_s = 0.0001\n", {}, "window.length_s", "at least 0.001 s"),
        ("[http]\nport = 70000\n", {}, "http.port", "<= 65535"),
        ('[log]\nlevel = "loud"\n', {}, "log.level", "one of"),
        ("[http]\nenabled = 1\n", {}, "http.enabled", "boolean"),
        ('[detector]\nbets = [0.5, "x"]\n', {}, "detector.bets[1]", "expected a number"),
        ("", {"TESSERA_SIM__SEED": "-3"}, "sim.seed", ">= 0"),
        ("", {"TESSERA_DETECTOR__LOG_METRICS": '["nope"]'}, "detector.log_metrics", "not in detector.metrics"),
        (
            "[detector]\nwarmup_windows = 100\nwarmup_max_windows = 80\n",
            {},
            "detector.warmup_max_windows",
            "must be >= detector.warmup_windows (100)",
        ),
        (
            "",
            {"TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "30"},
            "detector.warmup_max_windows",
            "must be >= detector.warmup_windows (60)",
        ),
        ("[detector]\nwarmup_persistence = -1\n", {}, "detector.warmup_persistence", ">= 0.0"),
        ('[detector]\nwarmup_persistence = "long"\n', {}, "detector.warmup_persistence", "expected a number"),
        ("[detector]\nwarmup_max_windows = 2\n", {}, "detector.warmup_max_windows", ">= 5"),
    ],
)
def test_errors_name_the_field(tmp_path: Path, toml: str, env: dict[str, str], field: str, words: str) -> None:
    p = tmp_path / "c.toml"
    p.write_text(toml)
    with pytest.raises(ConfigError) as ei:
        load_config(p, env)
    assert ei.value.field == field
    assert words in ei.value.message


def test_missing_and_invalid_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "absent.toml", {})
    bad = tmp_path / "bad.toml"
    bad.write_text("[window\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad, {})


def test_dump_round_trips(tmp_path: Path) -> None:
    cfg = load_config(None, {"TESSERA_WINDOW__LENGTH_S": "3"})
    p = tmp_path / "eff.toml"
    p.write_text(dump_toml(cfg))
    assert load_config(p, {}) == cfg


def test_warmup_defaults_and_bounds() -> None:
    d = load_config(None, {}).detector
    assert (d.warmup_windows, d.warmup_max_windows, d.warmup_persistence) == (60, 240, 14.0)
    same = load_config(None, {"TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "60"}).detector  # max = min: fixed warm-up
    assert same.warmup_max_windows == same.warmup_windows == 60
    fixed = load_config(None, {"TESSERA_DETECTOR__WARMUP_PERSISTENCE": "0"}).detector
    assert fixed.warmup_persistence == 0.0
