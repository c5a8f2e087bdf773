"""Settings, declared apart from their loading: the one way to declare a setting, and the sections.

``setting()`` declares a setting (default, bounds and a line of help, read by ``config.py``'s loader
and ``config --reference``). The sections that other rooms read live here: ``settings.events``
(``[events]``), ``settings.sources`` (``[sources]`` and the source registry), ``settings.transport``
(``[transport]``). This package is a leaf (it imports only ``errors``), so any room imports its own
section without importing ``config.py``, and ``config.py`` (which assembles the sections into
``Config``, declares the core ones and loads TOML and the environment) imports nothing above it.
"""

from __future__ import annotations

from dataclasses import field
from typing import Any


def setting(
    default: Any,
    *,
    lo: float | None = None,
    hi: float | None = None,
    doc: str = "",
    auto: bool = False,
    pairs: bool = False,
) -> Any:
    """A dataclass field for a config setting. Sequences must be tuples (configs are frozen).

    ``auto``: a number that may also be given as the string ``"auto"``, stored as 0 (the daemon
    measures it). ``pairs``: a list of ``"key=value"`` strings that a TOML table may also give (merged
    over the default entries)."""
    if isinstance(default, list | dict | set):
        raise TypeError("use tuples for sequence defaults")
    return field(default=default, metadata={"lo": lo, "hi": hi, "doc": doc, "auto": auto, "pairs": pairs})
