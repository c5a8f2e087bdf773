"""Config rejects NaN and infinities wherever a number is read: every float setting, nested sections
included (NaN compares False with every bound, so range checks alone let it through)."""

from __future__ import annotations

import dataclasses
import typing
from collections.abc import Iterator
from pathlib import Path

import pytest

from tessera_daemon.config import Config, load_config
from tessera_daemon.errors import ConfigError


def float_fields(cls: type = Config, path: str = "") -> Iterator[tuple[str, bool]]:
    """(dotted path, is a list) of every float setting."""
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        sub = f"{path}.{f.name}" if path else f.name
        if dataclasses.is_dataclass(tp):
            yield from float_fields(tp, sub)  # type: ignore[arg-type]
        elif tp is float:
            yield sub, False
        elif typing.get_origin(tp) is tuple and typing.get_args(tp)[0] is float:
            yield sub, True


FIELDS = sorted(float_fields())


def test_there_are_float_settings_in_every_kind_of_section() -> None:
    assert len(FIELDS) > 40
    assert {"window.length_s", "daemon.shutdown_grace_s", "detector.bets", "sim.start_ts"} <= {p for p, _ in FIELDS}


@pytest.mark.parametrize(("path", "is_list"), FIELDS)
def test_every_float_setting_rejects_nan_and_infinities(path: str, is_list: bool) -> None:
    env_key = "TESSERA_" + "__".join(p.upper() for p in path.split("."))
    for bad in ("nan", "inf", "-inf"):
        value = f"[{bad}]" if is_list else bad
        with pytest.raises(ConfigError) as info:
            load_config(None, {env_key: value})
        assert path in str(info.value), str(info.value)
        assert "finite" in str(info.value)


def test_nan_in_a_file_names_the_field(tmp_path: Path) -> None:
    p = tmp_path / "c.toml"
    p.write_text("[window]\nlength_s = nan\n[daemon]\nshutdown_grace_s = 5.0\n")
    with pytest.raises(ConfigError, match=r"window\.length_s.*finite"):
        load_config(p, {})
    p.write_text("[daemon]\nshutdown_grace_s = inf\n")
    with pytest.raises(ConfigError, match=r"daemon\.shutdown_grace_s.*finite"):
        load_config(p, {})


def test_an_integer_beyond_float_range_is_not_a_finite_number() -> None:
    with pytest.raises(ConfigError, match="finite"):
        load_config(None, {"TESSERA_WINDOW__GRACE_S": str(10**400)})
