"""docs/operations.md and docs/runbook.md: the sections operators look for, and links that resolve."""

from __future__ import annotations

import re

import pytest
import yaml

from tests.ops.catalog import ROOT, github_anchor

DOCS = {name: (ROOT / "docs" / name).read_text() for name in ("operations.md", "runbook.md")}
ALERTS = [
    r["alert"]
    for g in yaml.safe_load((ROOT / "alert_rules.yml").read_text())["groups"]
    for r in g["rules"]
    if "alert" in r
]


def _sections(text: str, level: str = "## ") -> dict[str, str]:
    parts = re.split(rf"^{level}(.+)$", text, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_operations_covers_the_lifecycle() -> None:
    headings = " | ".join(_sections(DOCS["operations.md"])).lower()
    for topic in (
        "install",
        "configure",
        "systemd",
        "container",
        "kubernetes",
        "upgrade",
        "signals",
        "state and checkpoints",
        "capacity",
    ):
        assert topic in headings, f"docs/operations.md has no section on {topic}"


@pytest.mark.parametrize("alert", ALERTS)
def test_runbook_section_per_alert(alert: str) -> None:
    sections = _sections(DOCS["runbook.md"])
    assert alert in sections, f"docs/runbook.md has no '## {alert}'"
    assert github_anchor(alert) == alert.lower()
    body = sections[alert]
    for part in ("**Meaning.**", "**First checks.**", "**What to do.**", "**Severity:**"):
        assert part in body, f"{alert}: missing {part}"


@pytest.mark.parametrize("name", sorted(DOCS))
def test_relative_links_resolve(name: str) -> None:
    for target in re.findall(r"\]\(([^)#\s]+)(?:#[^)]*)?\)", DOCS[name]):
        if "://" in target:
            continue
        assert (ROOT / "docs" / target).resolve().exists(), f"{name}: broken link {target}"


def test_configuration_reference_matches_the_code(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/configuration.md is `tessera-daemon config --reference`; every setting has a line of doc."""
    from tessera_daemon.cli import main  # noqa: PLC0415

    assert main(["config", "--reference"]) == 0
    generated = capsys.readouterr().out
    current = (ROOT / "docs" / "configuration.md").read_text()
    assert current == generated, (
        "docs/configuration.md is stale: tessera-daemon config --reference > docs/configuration.md"
    )
    rows = [line for line in generated.splitlines() if line.startswith("| `")]
    assert len(rows) > 150
    undocumented = [
        r.split("|")[1].strip() + " " + r.split("|")[-2].strip()
        for r in rows
        if re.split(r"(?<!\\)\|", r)[5].strip() == ""
    ]
    assert not undocumented, f"settings without a doc line (setting(..., doc=...)): {undocumented}"


def test_api_reference_matches_the_code() -> None:
    from tessera_daemon.web.openapi import markdown  # noqa: PLC0415

    assert (ROOT / "docs" / "api.md").read_text() == markdown(), (
        "docs/api.md is stale: tessera-daemon openapi --markdown > docs/api.md"
    )
