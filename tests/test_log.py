"""One logger naming convention: every module logs through ``get_logger(__name__)``."""

from __future__ import annotations

import re
from pathlib import Path

import tessera_daemon

PACKAGE = Path(tessera_daemon.__file__).parent
LOGGER_CALL = re.compile(r"(?:get_logger|getLogger)\(([^)]*)\)")


def test_every_logger_is_named_after_its_module() -> None:
    odd = []
    for path in sorted(PACKAGE.rglob("*.py")):
        if path.name == "log.py" and path.parent == PACKAGE:
            continue  # the definition itself
        text = path.read_text(encoding="utf-8")
        odd += [
            f"{path.relative_to(PACKAGE)}: {m.group(0)}" for m in LOGGER_CALL.finditer(text) if m.group(1) != "__name__"
        ]
        if "structlog.get_logger" in text:
            odd.append(f"{path.relative_to(PACKAGE)}: structlog.get_logger (use tessera_daemon.log.get_logger)")
    assert odd == []
