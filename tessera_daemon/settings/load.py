"""Loading settings: a tree of frozen setting dataclasses built from a mapping (TOML, environment).

``build(cls, data, path)`` converts and range-checks every field (``setting()`` metadata), collecting
every error of a file before raising ``ConfigErrors``; ``merge_env`` applies ``TESSERA_SECTION__KEY``
overrides; ``parse_material`` reads ``"metric=N"`` / ``"metric=N%"`` entries. Generic: nothing here
knows the sections, so ``config.py`` (which does) imports this and not the other way round.
"""

from __future__ import annotations

import dataclasses
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal

from tessera_daemon.errors import ConfigError, ConfigErrors

ENV_PREFIX = "TESSERA_"


def parse_material(entries: tuple[str, ...], path: str = "detector.material") -> dict[str, tuple[float, bool]]:
    """``("temp_c=2", "power_w=8%")`` -> ``{"temp_c": (2.0, False), "power_w": (0.08, True)}`` (later
    entries win). Raises ConfigError naming the entry."""
    out: dict[str, tuple[float, bool]] = {}
    for e in entries:
        name, sep, spec = e.partition("=")
        name, spec = name.strip(), spec.strip()
        where = f"{path}.{name}" if name else path
        if not sep or not name:
            raise ConfigError(where, f'expected "metric=N" or "metric=N%", got {e!r}')
        rel = spec.endswith("%")
        try:
            val = float(spec[:-1] if rel else spec)
        except ValueError:
            raise ConfigError(where, f"expected a number or a percentage, got {spec!r}") from None
        if not math.isfinite(val) or val < 0 or (rel and val >= 100):
            raise ConfigError(where, f"must be a finite number >= 0 (a percentage below 100), got {spec!r}")
        out[name] = (val / 100.0 if rel else val, rel)
    return out


def to_plain(value: Any) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [to_plain(v) for v in value]
    return value


def describe(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin is Literal:
        return "one of " + ", ".join(repr(a) for a in typing.get_args(tp))
    if origin is tuple:
        return f"a list of {describe(typing.get_args(tp)[0])}"
    if dataclasses.is_dataclass(tp):
        return "a table"
    return {bool: "a boolean", int: "an integer", float: "a number", str: "a string"}.get(tp, str(tp))


def convert(tp: Any, value: Any, path: str) -> Any:  # noqa: C901 - one branch per supported type
    origin = typing.get_origin(tp)
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a table, got {type(value).__name__}")
        return build(tp, value, path)
    if origin is Literal:
        if value not in typing.get_args(tp):
            raise ConfigError(path, f"expected {describe(tp)}, got {value!r}")
        return value
    if origin is tuple:
        (item_tp, _ellipsis) = typing.get_args(tp)
        if isinstance(value, str) and item_tp is str:
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list | tuple):
            raise ConfigError(path, f"expected {describe(tp)}, got {type(value).__name__}")
        return tuple(convert(item_tp, v, f"{path}[{i}]") for i, v in enumerate(value))
    if origin is dict:
        key_tp, item_tp = typing.get_args(tp)
        if not isinstance(value, Mapping):
            raise ConfigError(path, f"expected a table, got {type(value).__name__}")
        return {convert(key_tp, k, path): convert(item_tp, v, f"{path}.{k}") for k, v in value.items()}
    if origin in (types.UnionType, typing.Union):
        raise ConfigError(path, "unsupported union type in config schema")
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(path, f"expected a boolean (true/false), got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(path, f"expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise ConfigError(path, f"expected a number, got {value!r}")
        try:
            number = float(value)
        except OverflowError:  # an integer beyond float range
            number = math.inf
        if not math.isfinite(number):  # TOML reads nan / inf; every bound check is False for NaN
            raise ConfigError(path, f"expected a finite number, got {value!r}")
        return number
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(path, f"expected a string, got {value!r}")
        return value
    raise ConfigError(path, f"unsupported type {tp!r}")


def check_range(f: dataclasses.Field[Any], value: Any, path: str) -> None:
    lo, hi = f.metadata.get("lo"), f.metadata.get("hi")
    items = value if isinstance(value, tuple) else (value,)
    for v in items:
        if isinstance(v, bool) or not isinstance(v, int | float):
            continue
        if lo is not None and v < lo:
            raise ConfigError(path, f"must be >= {lo}, got {v}")
        if hi is not None and v > hi:
            raise ConfigError(path, f"must be <= {hi}, got {v}")


def build(cls: Any, data: Mapping[str, Any], path: str) -> Any:
    """Construct ``cls`` from ``data``, checking every field before raising: all the errors of a file
    (unknown keys, wrong types, values out of range, in any section) come out together."""
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    errors: list[ConfigError] = []
    for name in sorted(set(data) - set(fields)):
        where = f"{path}.{name}" if path else name
        errors.append(ConfigError(where, f"unknown setting (known here: {', '.join(sorted(fields))})"))
    kwargs: dict[str, Any] = {}
    for name, value in data.items():
        if name not in fields:
            continue
        sub = f"{path}.{name}" if path else name
        try:
            if fields[name].metadata.get("auto") and value == "auto":
                kwargs[name] = 0.0
                continue
            if fields[name].metadata.get("pairs"):  # "k=v" entries; a table merges over the defaults
                entries = [f"{k}={v}" for k, v in value.items()] if isinstance(value, Mapping) else value
                given = convert(hints[name], entries, sub)
                # entries replace the defaults of their metric; "*" replaces every default not named
                default: tuple[str, ...] = fields[name].default  # type: ignore[assignment]
                wild = any(e.partition("=")[0].strip() == "*" for e in given)
                merged = parse_material(given if wild else (*default, *given), sub)
                kwargs[name] = tuple(f"{k}={v * 100:g}%" if rel else f"{k}={v:g}" for k, (v, rel) in merged.items())
                continue
            converted = convert(hints[name], value, sub)
            check_range(fields[name], converted, sub)
        except ConfigError as exc:
            errors.append(exc)
            continue
        kwargs[name] = converted
    if errors:
        raise ConfigErrors(errors)
    return cls(**kwargs)


def parse_env_value(raw: str) -> Any:
    try:
        return tomllib.loads(f"v = {raw}")["v"]
    except tomllib.TOMLDecodeError:
        return raw


def merge_env(data: dict[str, Any], environ: Mapping[str, str]) -> None:
    for key, raw in sorted(environ.items()):
        if not key.startswith(ENV_PREFIX) or "__" not in key:
            continue
        parts = [p.lower() for p in key[len(ENV_PREFIX) :].split("__")]
        if not all(parts):
            raise ConfigError(key, "malformed override; use TESSERA_SECTION__KEY")
        node = data
        for p in parts[:-1]:
            child = node.setdefault(p, {})
            if not isinstance(child, dict):
                raise ConfigError(".".join(parts), "cannot override inside a non-table setting")
            node = child
        node[parts[-1]] = parse_env_value(raw)
