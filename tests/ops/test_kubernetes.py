"""deploy/kubernetes/: schema validation of every built-in resource with kubernetes-validate (strict, for
the oldest and the newest Kubernetes it knows of that we support), structure checks of the Prometheus
Operator CRDs it cannot validate, and the cross-references between the manifests."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from tests.ops.catalog import ROOT

K8S = ROOT / "deploy" / "kubernetes"
MANIFESTS = sorted(p for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml")
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor"), ("monitoring.coreos.com/v1", "PrometheusRule")}
VERSIONS = ["1.28.0", kubernetes_validate.latest_version()]

Doc = dict[str, Any]


def _docs() -> list[tuple[Path, Doc]]:
    out = []
    for path in MANIFESTS:
        for doc in yaml.safe_load_all(path.read_text()):
            if doc:
                out.append((path, doc))
    return out


DOCS = _docs()


def _one(kind: str, name: str) -> Doc:
    (doc,) = [d for _, d in DOCS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def _id(item: tuple[Path, Doc]) -> str:
    return f"{item[1]['kind']}/{item[1]['metadata']['name']}"


@pytest.mark.parametrize("version", VERSIONS)
@pytest.mark.parametrize("item", [d for d in DOCS if (d[1]["apiVersion"], d[1]["kind"]) not in CRD_KINDS], ids=_id)
def test_resource_validates_strictly(item: tuple[Path, Doc], version: str) -> None:
    path, doc = item
    try:
        kubernetes_validate.validate(doc, version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        pytest.fail(f"{path.name} {_id(item)} against {version}: {exc}")


def test_kustomization_lists_every_manifest() -> None:
    kustomization = yaml.safe_load((K8S / "kustomization.yaml").read_text())
    assert sorted(kustomization["resources"]) == sorted(p.name for p in MANIFESTS)


def test_namespaced_resources_live_in_tessera() -> None:
    cluster_scoped = {"Namespace", "ClusterRole", "ClusterRoleBinding"}
    for _, doc in DOCS:
        if doc["kind"] not in cluster_scoped:
            assert doc["metadata"].get("namespace") == "tessera", _id((Path(), doc))


def test_rbac_reads_nodes_and_pods_only() -> None:
    role = _one("ClusterRole", "tessera-topology")
    assert role["rules"] == [{"apiGroups": [""], "resources": ["nodes", "pods"], "verbs": ["get", "list", "watch"]}]
    binding = _one("ClusterRoleBinding", "tessera-topology")
    assert binding["roleRef"] == {
        "apiGroup": "rbac.authorization.k8s.io",
        "kind": "ClusterRole",
        "name": "tessera-topology",
    }
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "tessera", "namespace": "tessera"}]
    _one("ServiceAccount", "tessera")
    for kind, name in (("DaemonSet", "tessera-agent"), ("Deployment", "tessera-detector")):
        assert _one(kind, name)["spec"]["template"]["spec"]["serviceAccountName"] == "tessera"


def _env(container: Doc) -> dict[str, str]:
    return {e["name"]: e.get("value", "") for e in container.get("env", [])}


@pytest.mark.parametrize(
    ("kind", "name", "mode"), [("DaemonSet", "tessera-agent", "agent"), ("Deployment", "tessera-detector", "detector")]
)
def test_tessera_pods_are_hardened_and_probed(kind: str, name: str, mode: str) -> None:
    pod = _one(kind, name)["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["args"][:1] == [mode]  # the whole command line runs: tests/ops/test_command_lines.py
    env = _env(container)
    assert env["TESSERA_HTTP__HOST"] == "0.0.0.0"
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"http": int(env.get("TESSERA_HTTP__PORT", "9477"))}
    assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
    assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
    assert container["startupProbe"]["httpGet"]["path"] == "/healthz"
    for key in ("requests", "limits"):
        assert {"cpu", "memory"} <= set(container["resources"][key])
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] != 0
    sc = container["securityContext"]
    assert sc["readOnlyRootFilesystem"] is True
    assert sc["allowPrivilegeEscalation"] is False
    assert sc["capabilities"]["drop"] == ["ALL"]
    # With a read-only root, the numba cache and /tmp must be on writable emptyDir volumes.
    volumes = {v["name"]: v for v in pod["volumes"]}
    mounts = {m["mountPath"]: volumes[m["name"]] for m in container["volumeMounts"]}
    numba = env["NUMBA_CACHE_DIR"]
    cache_mount = max((p for p in mounts if numba == p or numba.startswith(p + "/")), key=len)
    assert "emptyDir" in mounts[cache_mount]
    assert "emptyDir" in mounts["/tmp"]
    assert "configMap" in mounts["/etc/tessera"]
    cm = _one("ConfigMap", mounts["/etc/tessera"]["configMap"]["name"])
    assert "tessera.toml" in cm["data"]


def test_agent_runs_on_gpu_nodes_with_nvml_access() -> None:
    pod = _one("DaemonSet", "tessera-agent")["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.present": "true"}
    assert any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"])
    env = _env(pod["containers"][0])
    assert pod.get("runtimeClassName") == "nvidia" or env.get("NVIDIA_VISIBLE_DEVICES") == "all"
    assert env["NVIDIA_VISIBLE_DEVICES"] == "all"
    # The agent must not take a GPU away from the jobs.
    assert "nvidia.com/gpu" not in pod["containers"][0]["resources"]["limits"]


def test_redis_persists_with_aof_on_a_volume_claim() -> None:
    sts = _one("StatefulSet", "tessera-redis")
    (container,) = sts["spec"]["template"]["spec"]["containers"]
    args = container["args"]
    assert args[args.index("--appendonly") + 1] == "yes"
    assert args[args.index("--maxmemory-policy") + 1] == "noeviction"
    (claim,) = sts["spec"]["volumeClaimTemplates"]
    assert {m["name"]: m["mountPath"] for m in container["volumeMounts"]}[claim["metadata"]["name"]] == "/data"
    assert args[args.index("--dir") + 1] == "/data"
    assert sts["spec"]["serviceName"] == "tessera-redis"
    _one("Service", "tessera-redis")
    for name in ("tessera-agent-config", "tessera-detector-config"):
        assert "redis://tessera-redis.tessera.svc:6379" in _one("ConfigMap", name)["data"]["tessera.toml"]


def _pod_labels(service: Doc) -> dict[str, str]:
    for _, doc in DOCS:
        if doc["kind"] in {"DaemonSet", "Deployment", "StatefulSet"}:
            labels = doc["spec"]["template"]["metadata"]["labels"]
            if service["spec"]["selector"].items() <= labels.items():
                return dict(labels)
    raise AssertionError(f"service {service['metadata']['name']} selects no pods")


def test_services_select_pods_and_named_ports() -> None:
    for _, svc in DOCS:
        if svc["kind"] != "Service":
            continue
        _pod_labels(svc)
        assert all(isinstance(p["targetPort"], str) for p in svc["spec"]["ports"])


def _matches(selector: Doc, labels: dict[str, str]) -> bool:
    if not selector.get("matchLabels", {}).items() <= labels.items():
        return False
    for expr in selector.get("matchExpressions", []):
        value = labels.get(expr["key"])
        if expr["operator"] == "In" and value not in expr["values"]:
            return False
        if expr["operator"] == "NotIn" and value in expr["values"]:
            return False
        if expr["operator"] == "Exists" and value is None:
            return False
    return True


def test_servicemonitor_scrapes_agent_and_detector_only() -> None:
    sm = _one("ServiceMonitor", "tessera")
    assert sm["apiVersion"] == "monitoring.coreos.com/v1"
    spec = sm["spec"]
    selected = {
        svc["metadata"]["name"]
        for _, svc in DOCS
        if svc["kind"] == "Service" and _matches(spec["selector"], svc["metadata"]["labels"])
    }
    assert selected == {"tessera-agent", "tessera-detector"}, selected
    assert spec["namespaceSelector"] == {"matchNames": ["tessera"]}
    (endpoint,) = spec["endpoints"]
    assert endpoint["port"] == "http"
    assert endpoint["path"] == "/metrics"
    assert endpoint["interval"].endswith("s")
    for name in selected:
        assert "http" in {p["name"] for p in _one("Service", name)["spec"]["ports"]}
    # The job label becomes the Service name: the rules match job=~"tessera.*".
    assert all(name.startswith("tessera") for name in selected)


def test_prometheusrule_structure() -> None:
    rule = _one("PrometheusRule", "tessera-daemon")
    assert rule["apiVersion"] == "monitoring.coreos.com/v1"
    groups = rule["spec"]["groups"]
    assert groups
    for group in groups:
        assert group["name"]
        assert group["rules"]
        for r in group["rules"]:
            assert set(r) <= {"alert", "record", "expr", "for", "labels", "annotations", "keep_firing_for"}
            assert ("alert" in r) != ("record" in r)
            assert isinstance(r["expr"], str)
            assert r["expr"]
            assert all(isinstance(v, str) for v in r.get("labels", {}).values())
            assert all(isinstance(v, str) for v in r.get("annotations", {}).values())
