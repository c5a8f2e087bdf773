"""The short soak (bench/soak.py): `run` through simulated time with SIGTERM restarts every few seconds,
resumed from daemon.state_dir: nothing lost or done twice, memory and file handles flat. About 30 s:
the long soak (a simulated week) is the bench."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

ROOT = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_soak", ROOT / "bench" / "soak.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def test_short_soak_loses_nothing_and_does_not_grow(tmp_path: Path) -> None:
    soak = _bench()
    res = soak.soak(1800.0, 300.0, 2.0, workdir=tmp_path)
    assert set(res.exit_codes) == {0}
    assert res.restarts >= 2, "the soak must restart the daemon"
    assert res.windows_lost == 0 and res.windows_twice == 0, res.table()
    assert res.duplicated == 0, res.table()
    runs = sorted({s.run for s in res.samples})
    first = [s for s in res.samples if s.run == runs[0]]
    later = [s for s in res.samples if s.run != runs[0]]
    assert max(s.rss_bytes for s in later) <= 1.3 * max(s.rss_bytes for s in first), res.table()
    assert max(s.open_fds for s in later) <= max(s.open_fds for s in first) + 2, res.table()
