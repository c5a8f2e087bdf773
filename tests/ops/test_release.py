"""The release workflow (.github/workflows/release.yml): triggered by a version tag, it builds the sdist and
wheel, the image the manifests and the chart name, and the chart; its version check passes on this tree."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from typing import Any

import yaml

from tests.ops.catalog import ROOT

WORKFLOW = ROOT / ".github" / "workflows" / "release.yml"


def _workflow() -> dict[Any, Any]:
    doc: dict[Any, Any] = yaml.safe_load(WORKFLOW.read_text())
    return doc


def _version() -> str:
    version: str = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    return version


def test_release_runs_on_version_tags_and_builds_everything() -> None:
    wf = _workflow()
    trigger = wf.get("on", wf.get(True))  # PyYAML reads the key `on` as True
    assert trigger == {"push": {"tags": ["v*.*.*"]}}
    jobs = wf["jobs"]
    assert {"dist", "image", "chart", "publish"} <= set(jobs)
    dist = " ".join(s.get("run", "") for s in jobs["dist"]["steps"])
    assert "python -m build" in dist and "tessera_daemon/REVISION" in dist
    image = next(s for s in jobs["image"]["steps"] if "docker/build-push-action" in s.get("uses", ""))
    assert "REVISION=${{ github.sha }}" in image["with"]["build-args"]
    assert "helm package deploy/helm/tessera-daemon" in " ".join(s.get("run", "") for s in jobs["chart"]["steps"])


def test_the_image_it_pushes_is_the_one_the_deployments_pull() -> None:
    image = _workflow()["env"]["IMAGE"]
    values = yaml.safe_load((ROOT / "deploy" / "helm" / "tessera-daemon" / "values.yaml").read_text())
    assert values["image"]["repository"] == image
    for name in ("agent.yaml", "detector.yaml"):
        text = (ROOT / "deploy" / "kubernetes" / name).read_text()
        assert f"image: {image}:{_version()}" in text, name
    kustomization = yaml.safe_load((ROOT / "deploy" / "kubernetes" / "kustomization.yaml").read_text())
    assert kustomization["images"] == [{"name": image, "newTag": _version()}]


def test_the_version_check_passes_on_this_tree() -> None:
    step = next(s for s in _workflow()["jobs"]["dist"]["steps"] if s.get("id") == "version")
    script = re.search(r"<<'PY'\n(.*?)\n\s*PY\n", step["run"], flags=re.DOTALL)
    assert script, "the version check script"
    code = "\n".join(line.strip() for line in script.group(1).splitlines())
    r = subprocess.run(
        [sys.executable, "-c", code, _version()], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode == 0, r.stderr
    r = subprocess.run(
        [sys.executable, "-c", code, "9.9.9"], cwd=ROOT, capture_output=True, text=True, timeout=60, check=False
    )
    assert r.returncode != 0, "a tag that names another version must fail the release"
