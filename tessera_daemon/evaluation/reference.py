"""Tessera's published figures (the data files copied under ``shared/data/tessera``).

Looked up in order: ``$TESSERA_REFERENCE_DIR``; ``../shared/data/tessera`` from the working
directory; the same path next to the repository that holds this package. When none exists, a
matrix still runs and reports Tessera's columns as "not available". The test suite points
``$TESSERA_REFERENCE_DIR`` at the copy vendored in ``tests/fixtures/tessera`` (README and licence there).
"""

from __future__ import annotations

import json
import os
from functools import lru_cache
from pathlib import Path
from typing import Any

ENV = "TESSERA_REFERENCE_DIR"
R72 = "coverage-matrices/R72-saturation-matrix.json"
R77 = "coverage-matrices/R77-detection-envelope-matrix.json"
R78 = "coverage-matrices/R78-topology-walk-tuning-matrix.json"
R79 = "coverage-matrices/R79-mismatched-dgp.json"
CALIBRATION = "coverage-matrices/calibration-envelope-matrix.json"
DEMOS = "demos/scenarios"


def reference_dir() -> Path | None:
    env = os.environ.get(ENV)
    candidates = [Path(env)] if env else []
    candidates += [
        Path.cwd() / ".." / "shared" / "data" / "tessera",
        Path(__file__).resolve().parents[3] / "shared" / "data" / "tessera",
    ]
    for c in candidates:
        if (c / "coverage-matrices").is_dir():
            return c.resolve()
    return None


@lru_cache(maxsize=32)
def _load(path: str) -> Any:
    return json.loads(Path(path).read_text(encoding="utf-8"))


def load(rel: str) -> Any | None:
    """The parsed JSON file ``rel`` under the reference directory, or None when absent."""
    base = reference_dir()
    if base is None or not (base / rel).is_file():
        return None
    return _load(str(base / rel))


def demo(name: str) -> Any | None:
    return load(f"{DEMOS}/{name}.json")
