"""tessera_build_info's revision: baked file, else the git checkout (plain repository, worktree, packed
refs, detached HEAD), else unknown."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tessera_daemon.buildinfo import build_info_family, git_revision

SHA1, SHA2 = "a" * 40, "b" * 40


def test_git_revision_reads_loose_packed_and_detached_refs(tmp_path: Path) -> None:
    git = tmp_path / ".git"
    (git / "refs" / "heads").mkdir(parents=True)
    (git / "HEAD").write_text("ref: refs/heads/main\n")
    assert git_revision(tmp_path) is None
    (git / "packed-refs").write_text(f"# pack-refs with: peeled\n{SHA2} refs/heads/main\n")
    assert git_revision(tmp_path) == SHA2
    (git / "refs" / "heads" / "main").write_text(SHA1 + "\n")
    assert git_revision(tmp_path) == SHA1
    (git / "HEAD").write_text(SHA2 + "\n")
    assert git_revision(tmp_path) == SHA2
    assert git_revision(tmp_path / "nowhere") is None


def test_git_revision_of_a_worktree(tmp_path: Path) -> None:
    main, wt = tmp_path / "main" / ".git", tmp_path / "wt"
    (main / "worktrees" / "wt").mkdir(parents=True)
    (main / "refs" / "heads").mkdir(parents=True)
    (main / "refs" / "heads" / "topic").write_text(SHA1)
    (main / "worktrees" / "wt" / "HEAD").write_text("ref: refs/heads/topic\n")
    (main / "worktrees" / "wt" / "commondir").write_text("../..\n")
    wt.mkdir()
    (wt / ".git").write_text(f"gitdir: {main / 'worktrees' / 'wt'}\n")
    assert git_revision(wt) == SHA1


def test_build_info_carries_version_revision_and_python() -> None:
    (sample,) = build_info_family().samples
    assert set(sample.labels) == {"version", "revision", "python"}
    root = Path(__file__).resolve().parents[1]
    git = shutil.which("git")
    if git is None or not (root / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(
        [git, "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    if not (root / "tessera_daemon" / "REVISION").exists():
        assert sample.labels["revision"] == head
