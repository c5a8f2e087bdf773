"""What ``tessera_build_info`` reports: the package version, the source revision and the Python version.

The revision is, in order: the file ``tessera_daemon/REVISION`` baked into a build (the Dockerfile and
the release workflow write the git commit there before building the wheel), else the commit of the git
checkout the package runs from (read from ``.git`` directly, no ``git`` binary needed), else ``unknown``.
"""

from __future__ import annotations

import functools
import platform
import re
from pathlib import Path

from prometheus_client.core import GaugeMetricFamily

from tessera_daemon import __version__

PACKAGE = Path(__file__).resolve().parent
_SHA = re.compile(r"^[0-9a-f]{40}([0-9a-f]{24})?$")


def _git_dir(root: Path) -> Path | None:
    dot = root / ".git"
    if dot.is_dir():
        return dot
    if dot.is_file():  # a worktree or submodule: "gitdir: <path>"
        text = dot.read_text().strip()
        if text.startswith("gitdir:"):
            target = Path(text[len("gitdir:") :].strip())
            return target if target.is_absolute() else (root / target).resolve()
    return None


def _resolve_ref(git_dir: Path, ref: str) -> str | None:
    common = git_dir
    commondir = git_dir / "commondir"
    if commondir.is_file():  # refs of a worktree live in the main repository
        common = (git_dir / commondir.read_text().strip()).resolve()
    for base in (git_dir, common):
        loose = base / ref
        if loose.is_file():
            return loose.read_text().strip()
    packed = common / "packed-refs"
    if packed.is_file():
        for line in packed.read_text().splitlines():
            sha, _, name = line.partition(" ")
            if name == ref:
                return sha
    return None


def git_revision(root: Path) -> str | None:
    """The commit checked out at ``root`` (None when it is not a readable git checkout)."""
    try:
        git_dir = _git_dir(root)
        if git_dir is None:
            return None
        head = (git_dir / "HEAD").read_text().strip()
        sha = _resolve_ref(git_dir, head[len("ref:") :].strip()) if head.startswith("ref:") else head
    except OSError:
        return None
    return sha if sha and _SHA.match(sha) else None


@functools.cache
def revision() -> str:
    baked = PACKAGE / "REVISION"
    try:
        text = baked.read_text().strip()
    except OSError:
        text = ""
    if text:
        return text
    return git_revision(PACKAGE.parent) or "unknown"


def build_info_family() -> GaugeMetricFamily:
    info = GaugeMetricFamily(
        "tessera_build_info",
        "Build information: version, source revision, Python.",
        labels=["version", "revision", "python"],
    )
    info.add_metric([__version__, revision(), platform.python_version()], 1.0)
    return info
