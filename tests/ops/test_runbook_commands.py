"""Every curl / jq command of docs/runbook.md runs against a real daemon and finds what it says it finds.

The daemon runs the xid79 scenario (a hard fault fires within seconds); ``$D`` is its address and the
placeholders ``<shard-id>``, ``<shard>`` and ``<id>`` become the shard of that firing. Each command runs in
bash with ``pipefail``, so a jq filter that does not fit the JSON (jq exit 5) fails the test.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import subprocess

import pytest

from tests.integration.test_daemon import cfg_for, daemon
from tests.ops.catalog import ROOT

RUNBOOK = (ROOT / "docs" / "runbook.md").read_text()


def runbook_commands() -> list[str]:
    blocks = re.findall(r"^```sh\n(.*?)^```", RUNBOOK, flags=re.MULTILINE | re.DOTALL)
    lines = [line for block in blocks for line in block.splitlines() if line.startswith("curl ")]
    outside = re.sub(r"^```.*?^```", "", RUNBOOK, flags=re.MULTILINE | re.DOTALL)
    spans = [s for s in re.findall(r"`([^`\n]+)`", outside) if s.startswith("curl ")]
    return [re.sub(r"\s+#.*$", "", c) for c in lines + spans]


def test_runbook_has_the_expected_commands() -> None:
    commands = runbook_commands()
    assert sum("jq" in c for c in commands) >= 4
    assert any("/v1/shards/" in c for c in commands) and any("/readyz" in c for c in commands)


async def test_runbook_commands_run_against_a_daemon() -> None:
    for tool in ("curl", "jq"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} is not installed")
    cfg = cfg_for(TESSERA_SIM__SCENARIO="xid79", TESSERA_SIM__SPEEDUP="400")
    async with daemon(cfg) as (running, _task):
        for _ in range(600):
            if running.status.snapshot.active:
                break
            await asyncio.sleep(0.05)
        (firing, *_) = running.status.snapshot.active
        base = f"http://127.0.0.1:{running.port}"
        for command in runbook_commands():
            line = command.replace("$D", base)
            for placeholder in ("<shard-id>", "<shard>", "<id>"):
                line = line.replace(placeholder, firing.target)
            r = await asyncio.to_thread(
                subprocess.run,
                ["bash", "-o", "pipefail", "-c", line],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
            assert r.returncode == 0, f"docs/runbook.md: {command}\nexit {r.returncode}: {r.stderr}"
            selects_present = any(k in command for k in ('state=="open"', "hard_fault", "<shard>"))
            if selects_present or "/v1/shards/" in command:
                assert r.stdout.strip(), f"docs/runbook.md: {command} printed nothing"
