"""Every command line the repository ships runs: systemd ExecStart, compose services, Kubernetes containers,
the Dockerfile's CMD, HEALTHCHECK and comments, the examples' headers and README / docs snippets (`make run` included).

Each is executed as a real process (``python -m tessera_daemon``) with its deployment's environment, its
deployed config path replaced by the repository file installed there (tests/ops/command_lines.py), and
``--check-config`` appended: the process parses the command line, loads and validates the configuration as
the subcommand would, and must exit 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.ops.catalog import ROOT
from tests.ops.command_lines import TMP, Shipped, shipped, unique

UNIQUE = unique()


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TESSERA_")}
    return subprocess.run(
        [sys.executable, "-m", "tessera_daemon", *argv],
        capture_output=True,
        text=True,
        env=base | env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def _materialise(line: Shipped, tmp: Path) -> list[str]:
    for path, text in line.files.items():
        target = Path(path.replace(TMP, str(tmp)))
        target.write_text(text)
    return [a.replace(TMP, str(tmp)) for a in line.argv]


def test_every_kind_of_shipped_command_line_is_found() -> None:
    origins = [s.origin for s in shipped()]
    for prefix, count in (
        ("deploy/systemd/tessera-", 3),
        ("deploy/compose/compose.yaml:", 2),
        ("deploy/kubernetes:", 2),
        ("Dockerfile CMD", 1),
        ("Dockerfile HEALTHCHECK", 1),
        ("Dockerfile:", 2),
        ("examples/", 7),
        ("README.md", 2),
        ("docs/operations.md", 4),
        ("docs/runbook.md", 1),
    ):
        found = [o for o in origins if o.startswith(prefix)]
        assert len(found) >= count, f"{prefix}: expected at least {count} command lines, found {found}"
    commands = {s.command for s in shipped()}
    assert {"run", "agent", "detector", "config"} <= commands


@pytest.mark.parametrize("key", list(UNIQUE), ids=[" + ".join(s.origin for s in v) for v in UNIQUE.values()])
def test_shipped_command_line_loads_its_config(
    key: tuple[tuple[str, ...], tuple[tuple[str, str], ...]], tmp_path: Path
) -> None:
    lines = UNIQUE[key]
    argv = _materialise(lines[0], tmp_path)
    r = _run([*argv, "--check-config"], dict(key[1]))
    where = ", ".join(s.origin for s in lines)
    assert r.returncode == 0, f"{where}: tessera-daemon {' '.join(argv)} exited {r.returncode}\n{r.stderr}"
    assert "configuration ok" in r.stdout


def test_check_config_refuses_what_the_subcommand_refuses(tmp_path: Path) -> None:
    """The check is the subcommand's own: `run` on the split configuration (Redis transport) exits 2."""
    split = str(ROOT / "deploy" / "systemd" / "tessera-split.toml.example")
    r = _run(["run", "--config", split, "--check-config"], {})
    assert r.returncode == 2 and "transport.kind" in r.stderr
    assert _run(["agent", "--config", split, "--check-config"], {}).returncode == 0
    bad = tmp_path / "bad.toml"
    bad.write_text('[sources]\nenabled = ["nvmll"]\n')
    for command in ("run", "config", "agent", "detector"):
        r = _run([command, "--config", str(bad), "--check-config"], {})
        assert r.returncode == 2 and "sources.enabled" in r.stderr and "nvmll" in r.stderr, (command, r.stderr)
