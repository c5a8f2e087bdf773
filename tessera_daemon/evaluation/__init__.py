"""Evaluation harness: Tessera's published matrices re-generated bit-exactly, run through our
detectors beside Tessera's figures, plus a realistic evaluation on our simulator.

``run_matrix(name, cfg, out_dir, fast=False)`` runs one matrix (``r72``, ``r77``, ``r78``, ``r79``,
``calibration``, ``realistic``; ``messy`` by name only) or ``all``, writes ``<name>.md`` and
``<name>.json`` into ``out_dir``
(and, for ``all``, ``index.md`` / ``summary.json``), and returns a summary dict:
``{"matrix", "ok", "passed", "checks", "reproduction", "files", "elapsed_s", ...}``. ``ok`` is False
when an acceptance check or a reproduction check fails (a check that cannot be measured, e.g.
because Tessera's reference data is absent, is reported as "not available" and does not fail).
``fast=True`` runs the reduced subsets that ``make test`` uses.

Modules: ``tessera_lcg`` (Tessera's generators), ``tessera_bettor`` (Tessera's detectors, the
baseline), ``ours`` (our detectors on scalar streams), ``dgp`` (R79 / calibration null processes),
one module per matrix, ``report`` / ``scoring`` (checks, tables, writing) and ``reference`` (where
Tessera's published data is read from). See docs/evaluation.md.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tessera_daemon.config import Config
from tessera_daemon.errors import ConfigError
from tessera_daemon.evaluation.report import MatrixResult, checks_table, provenance, table

MATRICES: tuple[str, ...] = ("r72", "r77", "r78", "r79", "calibration", "realistic")
# Run by name only, not by ``all`` (issue 14: the messy fleet judges the engine being fixed; its
# figures are in docs/evaluation.md, not yet bounds that ``all`` enforces).
EXTRA_MATRICES: tuple[str, ...] = ("messy",)


def _runner(name: str) -> Callable[..., MatrixResult]:
    module = importlib.import_module(f"tessera_daemon.evaluation.{name}")  # import only what runs
    fn: Callable[..., MatrixResult] = module.run
    return fn


def run_one(name: str, cfg: Config, *, fast: bool = False) -> MatrixResult:
    if name not in MATRICES + EXTRA_MATRICES:
        raise ConfigError("evaluate", f"unknown matrix {name!r} (one of {', '.join(MATRICES + EXTRA_MATRICES)}, all)")
    prov = provenance()  # the code this run starts on
    res = _runner(name)(cfg, fast=fast)
    res.provenance = prov
    return res


def _ok(res: MatrixResult) -> bool:
    return all(c.ok is not False for c in (*res.checks, *res.reproduction))


def run_matrix(name: str, cfg: Config, out_dir: Path | None, *, fast: bool = False) -> dict[str, Any]:
    """Run matrix ``name`` (or ``all``), write Markdown + JSON into ``out_dir``, return the summary."""
    names = list(MATRICES) if name == "all" else [name]
    if name != "all" and name not in MATRICES + EXTRA_MATRICES:
        raise ConfigError("evaluate", f"unknown matrix {name!r} (one of {', '.join(MATRICES + EXTRA_MATRICES)}, all)")
    t0 = time.perf_counter()
    results = [run_one(n, cfg, fast=fast) for n in names]
    summaries = []
    for res in results:
        files = [str(p) for p in res.write(out_dir)] if out_dir is not None else []
        summaries.append({**res.summary(), "ok": _ok(res), "files": files})
    if name != "all":
        return summaries[0]
    index_files: list[str] = []
    if out_dir is not None:
        index_files = [str(p) for p in write_index(results, out_dir)]
    return {
        "matrix": "all",
        "fast": fast,
        "ok": all(s["ok"] for s in summaries),
        "passed": {s["matrix"]: s["passed"] for s in summaries},
        "matrices": summaries,
        "files": index_files,
        "elapsed_s": round(time.perf_counter() - t0, 2),
    }


def index_markdown(results: list[MatrixResult]) -> str:
    verdict = {True: "all pass", False: "some fail", None: "some not available"}
    lines = [
        "# Evaluation summary",
        "",
        table(
            ["matrix", "acceptance", "re-generation", "seconds"],
            [
                [
                    r.name,
                    verdict[r.passed],
                    (
                        "n/a"
                        if not r.reproduction
                        else "identical"
                        if all(c.ok is not False for c in r.reproduction)
                        else "DIFFERS"
                    ),
                    f"{r.elapsed_s:.1f}",
                ]
                for r in results
            ],
        ),
        "",
    ]
    for r in results:
        lines += [f"## {r.title}", "", checks_table(r.checks), ""]
    return "\n".join(lines) + "\n"


def write_index(results: list[MatrixResult], out_dir: Path) -> list[Path]:
    import json  # noqa: PLC0415

    from tessera_daemon.evaluation.report import jsonable  # noqa: PLC0415

    out_dir.mkdir(parents=True, exist_ok=True)
    md = out_dir / "index.md"
    md.write_text(index_markdown(results), encoding="utf-8")
    js = out_dir / "summary.json"
    js.write_text(
        json.dumps(jsonable([{**r.summary(), "ok": _ok(r)} for r in results]), indent=2) + "\n", encoding="utf-8"
    )
    return [md, js]


__all__ = ["EXTRA_MATRICES", "MATRICES", "run_matrix", "run_one"]
