"""The files tessera-daemon ships beside its code: alert rules, Grafana dashboards and provisioning, the
deployment files (systemd, Kubernetes, compose, Prometheus, Alertmanager) and the example configurations.

In a wheel or an sdist install they are package data under ``tessera_daemon/assets/`` (copied there at
build time by setup.py, with the same relative paths as in the repository); in a source checkout they are
read from the checkout. ``tessera-daemon assets export DIR`` writes them out; the drill reads its alert
rules and Alertmanager configuration through :func:`shipped_file`.
"""

from __future__ import annotations

import shutil
from pathlib import Path

# Top-level repository paths shipped as assets (setup.py copies the same list; a test compares them).
ASSETS = ("alert_rules.yml", "grafana", "deploy", "examples")
# Never shipped: secrets an operator may have created inside the checkout, and build leftovers.
EXCLUDED_NAMES = {"pagerduty.key", "__pycache__", ".DS_Store"}

PACKAGE_ASSETS = Path(__file__).resolve().parent / "assets"
CHECKOUT = Path(__file__).resolve().parents[1]


def asset_roots() -> list[Path]:
    """Where assets are looked up, in order: the package data, the source checkout, the current directory."""
    return [PACKAGE_ASSETS, CHECKOUT, Path.cwd()]


def asset_root() -> Path:
    """The first place that holds the shipped files (FileNotFoundError naming them all when none does)."""
    for base in asset_roots():
        if (base / ASSETS[0]).is_file():
            return base
    raise FileNotFoundError(
        f"the shipped files ({', '.join(ASSETS)}) are neither package data nor in a "
        f"source checkout: looked in {', '.join(str(b) for b in asset_roots())}"
    )


def shipped_file(relative: str) -> Path:
    """A shipped file by its repository path (``alert_rules.yml``, ``deploy/...``)."""
    for base in asset_roots():
        path = base / relative
        if path.is_file():
            return path
    raise FileNotFoundError(f"{relative} not found in {', '.join(str(b) for b in asset_roots())}")


def asset_files(root: Path | None = None) -> list[str]:
    """Repository-relative paths of every shipped file under ``root`` (default :func:`asset_root`)."""
    base = root or asset_root()
    out: list[str] = []
    for name in ASSETS:
        top = base / name
        if top.is_file():
            out.append(name)
            continue
        for path in sorted(top.rglob("*")):
            rel = path.relative_to(base)
            if path.is_file() and not EXCLUDED_NAMES.intersection(rel.parts):
                out.append(rel.as_posix())
    return sorted(out)


def export(dest: Path) -> list[Path]:
    """Copy every shipped file into ``dest`` (relative paths kept; existing files overwritten)."""
    base = asset_root()
    written = []
    for rel in asset_files(base):
        target = dest / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(base / rel, target)
        written.append(target)
    return written
