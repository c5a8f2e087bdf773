"""`tessera-daemon completion bash`: the script, sourced into a real bash, completes subcommands, their
options, option values and file names."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from tessera_daemon.cli import _parser
from tessera_daemon.completion import bash


def _complete(script: Path, *words: str, cwd: Path | None = None) -> list[str]:
    line = " ".join(f"'{w}'" for w in words)
    cmd = (
        f"source {script}; COMP_WORDS=(tessera-daemon {line}); COMP_CWORD={len(words)}; "
        f'_tessera_daemon; printf "%s\\n" "${{COMPREPLY[@]}}"'
    )
    out = subprocess.run(["bash", "--norc", "-c", cmd], capture_output=True, text=True, timeout=30, check=True, cwd=cwd)
    return sorted(w for w in out.stdout.splitlines() if w)


def test_bash_completion(tmp_path: Path) -> None:
    if shutil.which("bash") is None:
        pytest.skip("no bash")
    script = tmp_path / "tessera-daemon.bash"
    script.write_text(bash(_parser()))
    assert _complete(script, "ev") == ["evaluate"]
    assert _complete(script, "evaluate", "r7") == ["r72", "r77", "r78", "r79"]
    assert _complete(script, "run", "--ch") == ["--check-config"]
    assert _complete(script, "--log-level", "w") == ["warning"]
    assert _complete(script, "check", "--t") == ["--timeout-s"]
    assert _complete(script, "assets", "ex") == ["export"]
    (tmp_path / "site.toml").write_text("")
    assert _complete(script, "agent", "--config", "si", cwd=tmp_path) == ["site.toml"]
