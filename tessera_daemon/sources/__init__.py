"""Substrate sources: the registry, the builder and the topology merge.

``SOURCES`` (declared with the settings, ``settings/sources.py``, so ``config.py`` validates
``sources.enabled`` without importing a source) maps a name usable in ``sources.enabled`` to
``"module:Class"``; ``build_sources`` imports only the modules of the enabled sources (so ``pynvml``
/ ``kubernetes`` are loaded only when asked for) and constructs each as ``Cls(cfg)``. ``merge_topology``
joins the sources' parts.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from tessera_daemon.errors import ConfigError
from tessera_daemon.settings.sources import SOURCES
from tessera_daemon.sources.base import Source, TopologyPart
from tessera_daemon.sources.merge import load_static_topology, merge_topology

if TYPE_CHECKING:
    from tessera_daemon.config import Config


def source_class(name: str) -> type[Source]:
    """The class registered under ``name`` (ConfigError naming ``sources.enabled`` if unknown)."""
    target = SOURCES.get(name)
    if target is None:
        known = ", ".join(sorted(SOURCES))
        raise ConfigError("sources.enabled", f"unknown source {name!r} (known: {known})")
    module_name, _, attr = target.partition(":")
    cls: type[Source] = getattr(importlib.import_module(module_name), attr)
    return cls


def build_sources(cfg: Config) -> list[Source]:
    """One constructed source per ``sources.enabled`` entry, in that order (duplicates refused)."""
    seen: set[str] = set()
    out: list[Source] = []
    for name in cfg.sources.enabled:
        if name in seen:
            raise ConfigError("sources.enabled", f"source {name!r} is listed twice")
        seen.add(name)
        out.append(source_class(name)(cfg))  # type: ignore[call-arg]
    return out


__all__ = [
    "SOURCES",
    "Source",
    "TopologyPart",
    "build_sources",
    "load_static_topology",
    "merge_topology",
    "source_class",
]
