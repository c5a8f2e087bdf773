"""Results of one matrix: acceptance checks, reproduction checks, tables; written as Markdown + JSON."""

from __future__ import annotations

import json
import math
import os
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera_daemon.evaluation.scoring import binom_sf

NOT_AVAILABLE = "not available"


@dataclass(frozen=True, slots=True)
class Check:
    """One criterion: ``ok`` True (holds), False (missed), None (could not be measured)."""

    name: str
    bound: str
    measured: str
    ok: bool | None

    @property
    def verdict(self) -> str:
        return {True: "PASS", False: "FAIL", None: NOT_AVAILABLE}[self.ok]

    def to_obj(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "bound": self.bound,
            "measured": self.measured,
            "ok": self.ok,
            "verdict": self.verdict,
        }


@dataclass(slots=True)
class MatrixResult:
    name: str
    title: str
    fast: bool
    checks: list[Check] = field(default_factory=list)  # acceptance (ours)
    reproduction: list[Check] = field(default_factory=list)  # re-generated inputs vs Tessera's data
    sections: list[str] = field(default_factory=list)  # Markdown blocks, in order
    data: dict[str, Any] = field(default_factory=dict)  # machine-readable details
    elapsed_s: float = 0.0
    provenance: dict[str, Any] = field(default_factory=dict)  # code the run started on (see provenance())

    @property
    def passed(self) -> bool | None:
        """True when every acceptance check holds; False if any fails; None if any is unavailable."""
        oks = [c.ok for c in self.checks]
        if any(o is False for o in oks):
            return False
        if any(o is None for o in oks):
            return None
        return True

    def summary(self) -> dict[str, Any]:
        return {
            "matrix": self.name,
            "title": self.title,
            "fast": self.fast,
            "passed": self.passed,
            "checks": [c.to_obj() for c in self.checks],
            "reproduction": [c.to_obj() for c in self.reproduction],
            "elapsed_s": round(self.elapsed_s, 2),
        }

    def markdown(self) -> str:
        lines = [f"# {self.title}", ""]
        if self.fast:
            lines += ["*Fast subset (`fast=True`): reduced grid; figures are not the full matrix.*", ""]
        if self.reproduction:
            lines += ["## Re-generation against Tessera's published data", ""]
            lines += [checks_table(self.reproduction), ""]
        lines += ["## Acceptance (ours)", "", checks_table(self.checks), ""]
        for s in self.sections:
            lines += [s.rstrip(), ""]
        lines.append(f"Elapsed: {self.elapsed_s:.1f} s.")
        return "\n".join(lines) + "\n"

    def write(self, out_dir: Path) -> list[Path]:
        out_dir.mkdir(parents=True, exist_ok=True)
        md = out_dir / f"{self.name}.md"
        js = out_dir / f"{self.name}.json"
        _atomic_write(md, self.markdown())
        payload = {
            **self.summary(),
            "provenance": self.provenance or provenance(),
            "sections": self.sections,
            "data": self.data,
        }
        _atomic_write(js, json.dumps(jsonable(payload), indent=2, sort_keys=False, allow_nan=False) + "\n")
        return [md, js]

    @classmethod
    def from_json(cls, path: Path) -> MatrixResult:
        """A result written by :meth:`write` (to re-render pages without re-running)."""
        doc = json.loads(path.read_text(encoding="utf-8"))

        def checks(key: str) -> list[Check]:
            return [Check(c["name"], c["bound"], c["measured"], c["ok"]) for c in doc.get(key, [])]

        return cls(
            doc["matrix"],
            doc["title"],
            bool(doc["fast"]),
            checks("checks"),
            checks("reproduction"),
            list(doc.get("sections", [])),
            dict(doc.get("data", {})),
            float(doc.get("elapsed_s", 0.0)),
            dict(doc.get("provenance") or {}),
        )


DETECTION_PATHS = (
    "tessera_daemon/detect",
    "tessera_daemon/engine",
    "tessera_daemon/evaluation",
    "tessera_daemon/sim",
    "tessera_daemon/config.py",
)


def provenance() -> dict[str, Any]:
    """The code the figures came from: git commit, and the detection code modified since (read-only git)."""
    root = Path(__file__).resolve().parents[2]
    out: dict[str, Any] = {"commit": None, "modified": None}
    git = ["git", "--no-optional-locks", "-C", str(root)]
    try:
        head = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True)
        status = subprocess.run(
            [*git, "status", "--porcelain", "--", *DETECTION_PATHS],
            capture_output=True,
            text=True,
            timeout=10,
            check=True,
        )
    except (OSError, subprocess.SubprocessError):
        return out
    out["commit"] = head.stdout.strip()
    out["modified"] = sorted(line[3:] for line in status.stdout.splitlines() if line.strip())
    return out


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def jsonable(value: Any) -> Any:
    """Plain JSON types: NaN/inf become None, tuples lists, numpy scalars Python numbers."""
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [jsonable(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def checks_table(checks: Sequence[Check]) -> str:
    return table(["check", "bound", "measured", "verdict"], [[c.name, c.bound, c.measured, c.verdict] for c in checks])


def table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    def cell(v: object) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v).replace("|", "\\|")

    out = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    out += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(out)


def rate(k: int, n: int) -> str:
    return f"{k}/{n} ({k / n:.3f})" if n else f"{k}/0"


def fpr_check(name: str, fires: int, n: int, alpha: float) -> Check:
    """False-fire rate at most ``alpha`` up to Monte-Carlo error: an exact one-sided binomial test
    of H: rate <= alpha does not reject at 5 % (P(Bin(n, alpha) >= fires) >= 0.05)."""
    p = binom_sf(fires, n, alpha)
    return Check(name, f"<= {alpha:g} (+MC: P(Bin(n,alpha) >= k) >= 0.05)", f"{rate(fires, n)}, p = {p:.3g}", p >= 0.05)
