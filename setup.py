"""Build hook: copy the shipped files (alert rules, dashboards, deployment files, examples) into the wheel
as package data under tessera_daemon/assets/, with their repository paths. Everything else about the
package is in pyproject.toml. Keep ASSETS / EXCLUDED_NAMES equal to tessera_daemon/shipped.py (tested)."""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

ASSETS = ("alert_rules.yml", "grafana", "deploy", "examples")
EXCLUDED_NAMES = {"pagerduty.key", "__pycache__", ".DS_Store"}
ROOT = Path(__file__).resolve().parent


class BuildPyWithAssets(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # an editable install reads the files from the checkout
        target = Path(self.build_lib) / "tessera_daemon" / "assets"
        for name in ASSETS:
            src = ROOT / name
            if not src.exists():
                raise FileNotFoundError(f"{src}: shipped with the package but missing from the source tree")
            dst = target / name
            if src.is_file():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dst)
            else:
                shutil.copytree(src, dst, dirs_exist_ok=True,
                                ignore=lambda _d, names: [n for n in names if n in EXCLUDED_NAMES])


setup(cmdclass={"build_py": BuildPyWithAssets})
