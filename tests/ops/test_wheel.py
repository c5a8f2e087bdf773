"""The package as a user installs it: `python -m build` makes an sdist and, from the sdist, a wheel; both
carry the shipped files (alert rules, dashboards, deployment files, examples) and the wheel, installed in a
fresh venv outside the checkout, runs `--version`, `check`, `drill --help` and `assets` with its package
data. The venv reaches the dependencies through a .pth to the project venv (no download); the wheel itself
is installed with --no-deps."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import zipfile
from pathlib import Path

import pytest

from tessera_daemon.shipped import ASSETS, EXCLUDED_NAMES, asset_files
from tests.ops.catalog import ROOT

pytestmark = pytest.mark.slow
SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "README.md", "tessera_daemon", *ASSETS)


def _run(argv: list[str], cwd: Path, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=cwd, timeout=timeout, check=False)


def test_setup_py_ships_what_the_package_looks_up() -> None:
    tree = ast.parse((ROOT / "setup.py").read_text())
    values = {
        t.id: ast.literal_eval(node.value)
        for node in tree.body
        if isinstance(node, ast.Assign)
        for t in node.targets
        if isinstance(t, ast.Name) and t.id in {"ASSETS", "EXCLUDED_NAMES"}
    }
    assert values == {"ASSETS": ASSETS, "EXCLUDED_NAMES": EXCLUDED_NAMES}


def test_wheel_in_a_fresh_venv_runs_with_its_package_data(tmp_path: Path) -> None:
    src, dist, home = tmp_path / "src", tmp_path / "dist", tmp_path / "elsewhere"
    home.mkdir()
    src.mkdir()
    ignore = shutil.ignore_patterns("__pycache__", "*.py[cod]", "assets", "REVISION", "*.nbi", "*.nbc", "pagerduty.key")
    for name in SOURCES:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, src / name, ignore=ignore)
        else:
            shutil.copy2(ROOT / name, src / name)
    built = _run([sys.executable, "-m", "build", "--outdir", str(dist), str(src)], tmp_path)
    assert built.returncode == 0, built.stdout[-3000:] + built.stderr[-3000:]
    (wheel,) = dist.glob("*.whl")
    (sdist,) = dist.glob("*.tar.gz")

    expected = asset_files(ROOT)
    assert "alert_rules.yml" in expected and any(p.startswith("grafana/dashboards/") for p in expected)
    with zipfile.ZipFile(wheel) as z:
        packaged = sorted(
            n.removeprefix("tessera_daemon/assets/") for n in z.namelist() if n.startswith("tessera_daemon/assets/")
        )
    assert packaged == expected
    with tarfile.open(sdist) as t:
        names = {n.split("/", 1)[1] for n in t.getnames() if "/" in n}
    assert set(expected) <= names and "setup.py" in names

    venv = tmp_path / "venv"
    made = _run([sys.executable, "-m", "venv", "--without-pip", str(venv)], tmp_path)
    assert made.returncode == 0, made.stderr
    python = venv / "bin" / "python"
    site = Path(
        _run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], home).stdout.strip()
    )
    (site / "project-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    installed = _run(
        [sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--no-index", "-q", str(wheel)],
        tmp_path,
    )
    assert installed.returncode == 0, installed.stderr

    exe = str(venv / "bin" / "tessera-daemon")
    r = _run([exe, "--version"], home)
    assert r.returncode == 0 and r.stdout.startswith("tessera-daemon 0."), r.stderr
    where = _run(
        [str(python), "-c", "import tessera_daemon.shipped as s; print(s.shipped_file('alert_rules.yml'))"], home
    )
    assert where.stdout.strip().startswith(str(site / "tessera_daemon" / "assets")), where.stdout + where.stderr
    r = _run([exe, "check", "--help"], home)
    assert r.returncode == 0 and "--timeout-s" in r.stdout
    r = _run([exe, "check", "--url", "http://127.0.0.1:9", "--timeout-s", "0.5"], home)
    assert r.returncode == 1 and "/healthz 0" in r.stdout and "Traceback" not in r.stderr
    r = _run([exe, "drill", "--help"], home)
    assert r.returncode == 0 and "--speedup" in r.stdout
    r = _run([exe, "assets", "list"], home)
    assert r.returncode == 0 and r.stdout.split() == expected
    r = _run([exe, "assets", "export", str(home / "out")], home)
    assert r.returncode == 0 and (home / "out" / "grafana" / "dashboards" / "tessera-fleet.json").is_file()
    assert (home / "out" / "alert_rules.yml").read_bytes() == (ROOT / "alert_rules.yml").read_bytes()
