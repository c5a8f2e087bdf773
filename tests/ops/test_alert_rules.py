"""alert_rules.yml: promtool check/test, coverage of every alert by the unit tests, metadata, runbook links,
and the generated PrometheusRule."""

from __future__ import annotations

import re
import sys
from typing import Any

import pytest
import yaml

from tests.ops.catalog import (
    KNOWN_METRICS,
    ROOT,
    RUNBOOK_BASE,
    SEVERITIES,
    github_anchor,
    metric_names,
    run,
)
from tests.ops.gen_promtool_tests import generate
from tests.servers import find_exe

RULES_FILE = ROOT / "alert_rules.yml"
TEST_FILES = sorted((ROOT / "tests" / "prometheus").glob("*.test.yml"))


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES_FILE.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


ALERTS = {rule["alert"]: rule for rule in _rules() if "alert" in rule}


def _seconds(duration: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "h": 3600}
    for unit in ("ms", "s", "m", "h"):
        if duration.endswith(unit):
            return float(duration[: -len(unit)]) * units[unit]
    raise ValueError(duration)


@pytest.mark.prometheus
def test_promtool_check_rules() -> None:
    out = run([find_exe("promtool"), "check", "rules", str(RULES_FILE)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert f"SUCCESS: {len(_rules())} rules found" in out.stdout


@pytest.mark.prometheus
def test_promtool_unit_tests_pass() -> None:
    assert TEST_FILES, "no tests/prometheus/*.test.yml"
    out = run([find_exe("promtool"), "test", "rules", *map(str, TEST_FILES)], cwd=ROOT)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "FAILED" not in out.stdout + out.stderr
    assert out.stdout.count("SUCCESS") == len(TEST_FILES)


def test_every_alert_has_a_firing_and_a_quiet_case() -> None:
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TEST_FILES:
        doc = yaml.safe_load(path.read_text())
        loaded = {(path.parent / rf).resolve() for rf in doc["rule_files"]}
        assert RULES_FILE in loaded, f"{path.name} does not load alert_rules.yml"
        for test in doc["tests"]:
            for case in test.get("alert_rule_test", []):
                (firing if case.get("exp_alerts") else quiet).add(case["alertname"])
    unknown = (firing | quiet) - set(ALERTS)
    assert not unknown, f"tests name alerts that do not exist: {sorted(unknown)}"
    assert set(ALERTS) - firing == set(), f"never tested firing: {sorted(set(ALERTS) - firing)}"
    assert set(ALERTS) - quiet == set(), f"never tested not firing: {sorted(set(ALERTS) - quiet)}"


@pytest.mark.parametrize("name", sorted(ALERTS))
def test_alert_metadata(name: str) -> None:
    rule = ALERTS[name]
    assert name.startswith("Tessera")
    assert rule["labels"]["severity"] in SEVERITIES
    annotations = rule["annotations"]
    for key in ("summary", "description", "runbook_url"):
        assert annotations.get(key, "").strip(), f"{name} lacks annotations.{key}"
    assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower()
    assert metric_names(rule["expr"]) <= KNOWN_METRICS, metric_names(rule["expr"]) - KNOWN_METRICS


def test_paging_policy() -> None:
    assert "for" not in ALERTS["TesseraHardFault"], "hard faults page at once"
    assert ALERTS["TesseraHardFault"]["labels"]["severity"] == "page"
    for name in ("TesseraShardFault", "TesseraCommonModeRack", "TesseraCommonModeZone"):
        assert ALERTS[name]["labels"]["severity"] == "page"
        assert _seconds(ALERTS[name].get("for", "0s")) <= 60, f"{name}: keep for: short (drill, latency)"
    assert ALERTS["TesseraFleetEvent"]["labels"]["severity"] == "ticket"
    assert ALERTS["TesseraEventConditional"]["labels"]["severity"] == "info"
    assert ALERTS["TesseraDaemonDown"]["labels"]["severity"] == "page"


def test_only_daemon_down_fires_on_absence() -> None:
    for name, rule in ALERTS.items():
        if name != "TesseraDaemonDown":
            assert "absent" not in rule["expr"], f"{name} must not fire on a missing series"
    assert 'up{job=~"tessera.*"} == 0' in ALERTS["TesseraDaemonDown"]["expr"]


def test_firing_alerts_keep_the_inhibition_labels() -> None:
    # Inhibition (alertmanager.yml) compares rack / host / cooling_zone: the alerts keep the firing's labels
    # (no aggregation), and a group firing gets its own topology label from its target (a rack node's
    # labels do not name the rack itself). tests/prometheus/firings.test.yml checks the resulting labels.
    for name in ("TesseraHardFault", "TesseraShardFault", "TesseraCommonModeRack", "TesseraCommonModeZone"):
        expr = ALERTS[name]["expr"]
        assert "tessera_firing_active{" in expr
        assert not re.search(r"\b(sum|max|min|avg|count|topk)\b", expr), f"{name} aggregates labels away"
    assert '"rack", "$1", "target"' in ALERTS["TesseraCommonModeRack"]["expr"]
    assert '"host", "$1", "target"' in ALERTS["TesseraCommonModeRack"]["expr"]
    assert '"cooling_zone", "$1", "target"' in ALERTS["TesseraCommonModeZone"]["expr"]


def test_runbook_has_a_section_per_alert() -> None:
    runbook = (ROOT / "docs" / "runbook.md").read_text()
    anchors = {github_anchor(line.lstrip("#")) for line in runbook.splitlines() if line.startswith("#")}
    missing = [n for n in ALERTS if ALERTS[n]["annotations"]["runbook_url"].split("#", 1)[1] not in anchors]
    assert not missing, f"docs/runbook.md has no section for {missing}"


def test_prometheusrule_is_generated_from_alert_rules() -> None:
    script = ROOT / "scripts" / "gen_prometheus_rule.py"
    out = run([sys.executable, str(script), "--stdout"])
    assert out.returncode == 0, out.stderr
    committed = (ROOT / "deploy" / "kubernetes" / "prometheusrule.yaml").read_text()
    assert committed == out.stdout, "run: python scripts/gen_prometheus_rule.py"
    check = run([sys.executable, str(script), "--check"])
    assert check.returncode == 0, check.stderr
    doc = yaml.safe_load(committed)
    assert doc["spec"]["groups"] == yaml.safe_load(RULES_FILE.read_text())["groups"]


def test_promtool_test_files_are_generated() -> None:
    for name, text in generate().items():
        committed = (ROOT / "tests" / "prometheus" / name).read_text()
        assert committed == text, f"tests/prometheus/{name} is stale: python -m tests.ops.gen_promtool_tests"
