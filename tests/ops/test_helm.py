"""deploy/helm/tessera-daemon: rendered with its default values and with every toggle flipped, each result
validates with kubernetes-validate (strict; the Prometheus Operator kinds by structure), its references
resolve, and the tessera.toml it ships passes the daemon's own check. Rendering uses `helm template` where a
helm binary is installed (and then also compares it with the pure-Python renderer of tests/ops/helm_render.py),
else that renderer alone."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tessera_daemon.cli import main
from tests.ops.catalog import ROOT
from tests.ops.helm_render import TemplateError, render_chart

CHART = ROOT / "deploy" / "helm" / "tessera-daemon"
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]
CASES: dict[str, dict[str, Any]] = {
    "defaults": {},
    "everything-on": {
        "serviceMonitor": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "prometheusRule": {"enabled": True, "labels": {"release": "kube-prometheus-stack"}},
        "detector": {
            "replicas": 3,
            "env": [{"name": "TESSERA_LOG__LEVEL", "value": "debug"}],
            "extraConfig": "[window]\nlength_s = 10.0",
        },
        "agent": {
            "extraConfig": '[sources.dcgm]\nurls = ["http://127.0.0.1:9400/metrics"]',
            "sources": ["nvml", "dcgm", "kubernetes"],
        },
        "redis": {"persistence": {"storageClass": "fast-ssd"}},
    },
    "external-redis-no-agent": {
        "redis": {"enabled": False, "url": "rediss://:secret@redis.example:6380/2"},
        "agent": {"enabled": False},
        "detector": {"podDisruptionBudget": {"enabled": False}},
        "serviceAccount": {"create": False, "name": "existing"},
        "rbac": {"create": False},
    },
}
Doc = dict[str, Any]


def _helm() -> str | None:
    return shutil.which("helm")


def _render(overrides: dict[str, Any], tmp_path: Path) -> list[Doc]:
    docs = render_chart(CHART, overrides, release="tessera", namespace="tessera")
    helm = _helm()
    if helm is not None:  # the real renderer, and the pure-Python one must agree with it
        values = tmp_path / "values.yaml"
        values.write_text(yaml.safe_dump(overrides))
        out = subprocess.run(
            [helm, "template", "tessera", str(CHART), "--namespace", "tessera", "-f", str(values)],
            capture_output=True,
            text=True,
            timeout=120,
            check=True,
        ).stdout
        real = [d for d in yaml.safe_load_all(out) if d]
        key = lambda d: (d["kind"], d["metadata"]["name"])  # noqa: E731
        assert sorted(real, key=key) == sorted(docs, key=key)
        docs = real
    return docs


@pytest.fixture(scope="module", params=sorted(CASES))
def rendered(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, list[Doc]]:
    name: str = request.param
    return name, _render(CASES[name], tmp_path_factory.mktemp(name))


def _by(docs: list[Doc], kind: str) -> list[Doc]:
    return [d for d in docs if d["kind"] == kind]


def test_chart_resources_validate(rendered: tuple[str, list[Doc]]) -> None:
    name, docs = rendered
    kinds = {d["kind"] for d in docs}
    assert {"ConfigMap", "Deployment", "Service"} <= kinds
    for doc in docs:
        assert doc["metadata"].get("namespace", "tessera") == "tessera"
        if (doc["apiVersion"], doc["kind"]) in CRD_KINDS:
            continue
        for version in VERSIONS:
            try:
                kubernetes_validate.validate(doc, version, strict=True)
            except kubernetes_validate.ValidationError as exc:
                pytest.fail(f"{name}: {doc['kind']}/{doc['metadata']['name']} against {version}: {exc}")


def test_chart_references_resolve(rendered: tuple[str, list[Doc]]) -> None:
    name, docs = rendered
    configmaps = {d["metadata"]["name"] for d in _by(docs, "ConfigMap")}
    accounts = {d["metadata"]["name"] for d in _by(docs, "ServiceAccount")} or {"existing"}
    workloads = _by(docs, "DaemonSet") + _by(docs, "Deployment") + _by(docs, "StatefulSet")
    for w in workloads:
        pod = w["spec"]["template"]
        assert w["spec"]["selector"]["matchLabels"].items() <= pod["metadata"]["labels"].items()
        for vol in pod["spec"].get("volumes", []):
            if "configMap" in vol:
                assert vol["configMap"]["name"] in configmaps, (name, vol)
        if w["kind"] != "StatefulSet":
            assert pod["spec"]["serviceAccountName"] in accounts
    pods = [w["spec"]["template"]["metadata"]["labels"] for w in workloads]
    for svc in _by(docs, "Service"):
        assert any(svc["spec"]["selector"].items() <= p.items() for p in pods), svc["metadata"]["name"]
    for pdb in _by(docs, "PodDisruptionBudget"):
        assert any(pdb["spec"]["selector"]["matchLabels"].items() <= p.items() for p in pods)
    (detector,) = _by(docs, "Deployment")
    assert detector["spec"]["replicas"] == CASES[name].get("detector", {}).get("replicas", 1)
    assert bool(_by(docs, "PodDisruptionBudget")) == (name != "external-redis-no-agent")
    assert bool(_by(docs, "DaemonSet")) == (name != "external-redis-no-agent")
    assert bool(_by(docs, "StatefulSet")) == (name != "external-redis-no-agent")
    for rule in _by(docs, "PrometheusRule"):
        assert rule["spec"] == yaml.safe_load((ROOT / "alert_rules.yml").read_text())
    for sm in _by(docs, "ServiceMonitor"):
        assert sm["metadata"]["labels"]["release"] == "kube-prometheus-stack"
        assert sm["spec"]["endpoints"][0]["port"] == "http"


def test_chart_configs_pass_the_daemons_check(
    rendered: tuple[str, list[Doc]], tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    _name, docs = rendered
    for w in _by(docs, "DaemonSet") + _by(docs, "Deployment"):
        (container,) = w["spec"]["template"]["spec"]["containers"]
        cm = next(v["configMap"]["name"] for v in w["spec"]["template"]["spec"]["volumes"] if "configMap" in v)
        (config,) = [d for d in _by(docs, "ConfigMap") if d["metadata"]["name"] == cm]
        path = tmp_path / f"{cm}.toml"
        path.write_text(config["data"]["tessera.toml"])
        for env in container["env"]:
            if env["name"].startswith("TESSERA_"):
                monkeypatch.setenv(env["name"], env["value"])
        args = [a if a != "/etc/tessera/tessera.toml" else str(path) for a in container["args"]]
        assert main([*args, "--check-config"]) == 0, capsys.readouterr().err
        assert "configuration ok" in capsys.readouterr().out


def test_external_redis_needs_its_url() -> None:
    with pytest.raises(TemplateError, match=r"redis\.url is required"):
        render_chart(CHART, {"redis": {"enabled": False}})


def test_chart_rules_are_alert_rules_yml() -> None:
    assert (CHART / "files" / "alert_rules.yml").read_bytes() == (ROOT / "alert_rules.yml").read_bytes(), (
        "python scripts/gen_prometheus_rule.py copies alert_rules.yml into the chart"
    )
