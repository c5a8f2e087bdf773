"""The floor plan holds (docs/architecture.md): the import contracts pass, and no module is a warehouse."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import tessera_daemon

PACKAGE = Path(tessera_daemon.__file__).parent
ROOT = PACKAGE.parent
MAX_LINES = 400
# Over the limit for now, each split by the engineer who owns it this session (issue 17): the model's
# contracts stay one module; the pipeline's lifecycles, the window assembler, the residual model's
# warm-up, the worker's move into split/, the console's move to snapshots and the messy-fleet
# generator and evaluation are being reworked elsewhere. Remove an entry once its file is split.
OVER_LIMIT = {
    "model.py",
    "engine/pipeline.py",
    "engine/window.py",
    "detect/residuals.py",
    "split/worker.py",
    "web/console.py",
    "sim/messy.py",
    "evaluation/messy.py",
}


def test_no_module_over_400_lines() -> None:
    sizes = {
        str(p.relative_to(PACKAGE)): len(p.read_text(encoding="utf-8").splitlines()) for p in PACKAGE.rglob("*.py")
    }
    over = {name: n for name, n in sizes.items() if n > MAX_LINES and name not in OVER_LIMIT}
    assert over == {}


def test_import_contracts_hold() -> None:
    exe = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("import-linter is not installed (pip install -e '.[test]')")
    done = subprocess.run([exe, "--no-cache"], cwd=ROOT, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout
