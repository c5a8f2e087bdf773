"""grafana/: provisioning files and dashboards; every PromQL expression (panel targets and variable
queries) is parsed and evaluated by a real Prometheus."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.catalog import KNOWN_METRICS, ROOT, metric_names
from tests.ops.stack import promql

GRAFANA = ROOT / "grafana"
DASHBOARD_FILES = sorted((GRAFANA / "dashboards").glob("*.json"))
DS_UID = "tessera-prom"  # the provisioned datasource's uid (compose); the dashboards themselves pin none
DS_REF = {"type": "prometheus", "uid": "${datasource}"}

# Values for Grafana's built-in variables and the dashboards' own ones when the PromQL is sent to Prometheus.
BUILTINS = {
    "__rate_interval": "1m",
    "__interval": "15s",
    "__interval_ms": "15000",
    "__range": "1h",
    "__range_s": "3600",
    "__range_ms": "3600000",
}
SAMPLE_VALUES = {
    "cluster": ".*",
    "job": "tessera.*",
    "instance": ".+",
    "shard": "gpu-r01-h03-2",
    "host": "r01-h03",
    "rack": "r01",
}
_VAR = re.compile(r"\$\{([A-Za-z_]\w*)(?::[^}]*)?\}|\$([A-Za-z_]\w*)")


def _load(path: Path) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(path.read_text())
    return doc


def _panels(dashboard: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for panel in dashboard["panels"]:
        yield panel
        yield from panel.get("panels", [])


def _targets(dashboard: dict[str, Any]) -> Iterator[tuple[str, str]]:
    for panel in _panels(dashboard):
        for target in panel.get("targets", []):
            yield f"{panel['title']} / {target['refId']}", target["expr"]


def _variable_promql(query: str) -> str | None:
    """The PromQL inside a Prometheus variable query (label_values(Q, label) / query_result(Q))."""
    query = query.strip()
    if query.startswith("query_result(") and query.endswith(")"):
        return query[len("query_result(") : -1]
    if query.startswith("label_values(") and query.endswith(")"):
        inner = query[len("label_values(") : -1]
        return inner.rsplit(",", 1)[0] if "," in inner else None
    return None


def _expressions(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    exprs = list(_targets(dashboard))
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            inner = _variable_promql(var["query"]["query"])
            if inner is not None:
                exprs.append((f"variable {var['name']}", inner))
    return exprs


def _substitute(expr: str, defined: set[str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        if name in BUILTINS:
            return BUILTINS[name]
        assert name in defined, f"variable ${name} is not defined in the dashboard"
        return SAMPLE_VALUES.get(name, "x")

    return _VAR.sub(value, expr)


def test_datasource_provisioning_pins_the_uid() -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "datasources" / "prometheus.yaml").read_text())
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["uid"] == DS_UID
    assert ds["type"] == "prometheus"
    assert ds["access"] == "proxy"
    assert ds["url"].startswith("http")


def test_dashboard_provider_loads_the_dashboards_directory() -> None:
    doc = yaml.safe_load((GRAFANA / "provisioning" / "dashboards" / "provider.yaml").read_text())
    assert doc["apiVersion"] == 1
    (provider,) = doc["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"]
    # deploy/compose mounts grafana/dashboards exactly where the provider looks.
    compose = (ROOT / "deploy" / "compose" / "compose.yaml").read_text()
    assert f"../../grafana/dashboards:{provider['options']['path']}:ro" in compose


def test_the_three_dashboards_exist() -> None:
    uids = {_load(p)["uid"]: p for p in DASHBOARD_FILES}
    assert set(uids) == {"tessera-fleet", "tessera-shard", "tessera-health"}
    assert len(uids) == len(DASHBOARD_FILES)


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_structure(path: Path) -> None:
    dash = _load(path)
    assert dash["title"].startswith("Tessera / ")
    assert dash["schemaVersion"] >= 36
    ids = [p["id"] for p in _panels(dash)]
    assert len(ids) == len(set(ids)), "duplicate panel ids"
    for panel in _panels(dash):
        grid = panel["gridPos"]
        assert grid["x"] >= 0, panel["title"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] == "row":
            continue
        assert panel["datasource"] == DS_REF, panel["title"]
        assert panel["targets"], f"{panel['title']} has no query"
        for target in panel["targets"]:
            assert target["datasource"] == DS_REF
            assert target["expr"].strip()
    for var in dash["templating"]["list"]:
        if var["type"] == "query":
            assert var["datasource"] == DS_REF


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboard_imports_into_any_grafana(path: Path) -> None:
    """Importable as is (Dashboards > Import): an input for the Prometheus datasource, a datasource variable
    that every query goes through, a cluster variable every selector filters on, no pinned datasource uid,
    no database id."""
    dash = _load(path)
    assert [i["pluginId"] for i in dash["__inputs"] if i["type"] == "datasource"] == ["prometheus"]
    assert {r["id"] for r in dash["__requires"]} >= {"grafana", "prometheus"}
    assert dash.get("id") is None
    variables = {v["name"]: v for v in dash["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource" and variables["datasource"]["query"] == "prometheus"
    cluster = variables["cluster"]
    assert cluster["includeAll"] and cluster["allValue"] == ".*"
    assert [v["name"] for v in dash["templating"]["list"]][:2] == ["datasource", "cluster"]
    text = path.read_text()
    assert DS_UID not in text and '"uid": "${DS_PROMETHEUS}"' not in text
    for where, expr in _expressions(dash):
        if where == "variable cluster":
            continue
        selectors = re.findall(r"\b(?:tessera_[a-z_]+|process_[a-z_]+|up)\{[^}]*\}", expr)
        assert selectors, f"{path.name} {where}: no label selector"
        for sel in selectors:
            assert 'cluster=~"$cluster"' in sel, f"{path.name} {where}: {sel} does not filter on $cluster"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_dashboards_use_only_exported_metrics(path: Path) -> None:
    for where, expr in _expressions(_load(path)):
        unknown = metric_names(expr) - KNOWN_METRICS
        assert not unknown, f"{path.name} {where}: unknown metrics {unknown}"


def test_dashboards_cover_what_operators_look_at() -> None:
    text = {p.stem: " ".join(e for _, e in _expressions(_load(p))) for p in DASHBOARD_FILES}
    for needle in (
        "tessera_firings_active",
        "tessera_shard_evidence_log_bucket",
        "tessera_top_shard_evidence_log",
        'kind="rack"',
        'kind="cooling_zone"',
        "tessera_firing_active",
    ):
        assert needle in text["tessera-fleet"], needle
    assert 'shard="$shard"' in text["tessera-shard"]
    assert 'target="$shard"' in text["tessera-shard"]
    assert {v["name"] for v in _load(GRAFANA / "dashboards" / "tessera-shard.json")["templating"]["list"]} >= {"shard"}
    for needle in (
        "tessera_windows_processed_total",
        "tessera_window_lag_seconds",
        "tessera_source_up",
        "tessera_redis_up",
        "tessera_checkpoints_total",
        "tessera_stream_lag_entries",
    ):
        assert needle in text["tessera-health"], needle
    fleet = (GRAFANA / "dashboards" / "tessera-fleet.json").read_text()
    assert "/d/tessera-shard/" in fleet, "fleet overview links to the shard drill-down"


@pytest.mark.prometheus
@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.stem)
def test_every_expression_is_accepted_by_prometheus(path: Path, empty_prometheus: str) -> None:
    dash = _load(path)
    defined = {v["name"] for v in dash["templating"]["list"]}
    failures = []
    exprs = _expressions(dash)
    assert exprs
    for where, expr in exprs:
        concrete = _substitute(expr, defined)
        answer = promql(empty_prometheus, concrete)
        if answer.get("status") != "success":
            failures.append(f"{where}: {concrete!r}: {answer.get('error')}")
    assert not failures, "\n".join(failures)
