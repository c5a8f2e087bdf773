"""Kubernetes objects (raw API JSON) -> our topology part. Pure functions, no I/O.

Nodes: one ``host`` per Node (id = node name) with labels zone, region, instance_type and the TPU
labels; ``rack:<v>`` (kind rack, the host's parent) from ``kubernetes.rack_label``; ``zone:<v>``
(kind cooling_zone, as Tessera maps zones) named by the host's ``cooling_zone`` label, or
``cooling:<v>`` from ``kubernetes.cooling_zone_label`` when set; ``psu:<v>``; ``nvlink:<clique>``
(kind nvlink_domain) from the GPU clique label; ``tpu-slice:<node pool>`` (kind pod) for GKE TPU
nodes. Devices: ``<node>/<kind><i>`` shards for i < the device count (GPU: the
``nvidia.com/gpu.count`` label, else the extended resource capacity; TPU / Neuron: capacity).

Cohorts: pods that are Running or Pending on a node and request a device resource are grouped into
jobs (first ``cohort_labels`` match, else the controller owner, else the pod itself), named
``<namespace>/<job>``. The API does not say which device index a pod got, so indexes are handed out
in (cohort, pod) order; when pods of different cohorts share a node, the shards carry
``cohort_approx=true``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from tessera_daemon.settings.sources import KubernetesSettings
from tessera_daemon.sources._util import PartBuilder, parse_pairs, shard_id
from tessera_daemon.sources.base import TopologyPart

GPU_COUNT_LABEL = "nvidia.com/gpu.count"
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"
TPU_ACCELERATOR_LABEL = "cloud.google.com/gke-tpu-accelerator"
TPU_TOPOLOGY_LABEL = "cloud.google.com/gke-tpu-topology"
NODEPOOL_LABEL = "cloud.google.com/gke-nodepool"
INSTANCE_TYPE_LABEL = "node.kubernetes.io/instance-type"
REGION_LABEL = "topology.kubernetes.io/region"
ACTIVE_PHASES = ("Running", "Pending")


def _int(value: Any) -> int:
    try:
        n = int(str(value).strip())
    except (TypeError, ValueError):
        return 0
    return max(n, 0)


def device_count(node: Mapping[str, Any], kind: str, resource: str) -> int:
    labels = node.get("metadata", {}).get("labels") or {}
    if kind == "gpu" and _int(labels.get(GPU_COUNT_LABEL)):
        return _int(labels.get(GPU_COUNT_LABEL))
    status = node.get("status") or {}
    capacity = status.get("capacity") or status.get("allocatable") or {}
    return _int(capacity.get(resource))


def device_model(labels: Mapping[str, str], kind: str) -> str:
    if kind == "gpu":
        return labels.get(GPU_PRODUCT_LABEL, "")
    if kind == "tpu":
        return labels.get(TPU_ACCELERATOR_LABEL, "")
    return labels.get(INSTANCE_TYPE_LABEL, "")


def pod_requests(pod: Mapping[str, Any], resource: str) -> int:
    total = 0
    for c in (pod.get("spec") or {}).get("containers") or []:
        res = c.get("resources") or {}
        total += _int((res.get("limits") or {}).get(resource) or (res.get("requests") or {}).get(resource))
    return total


def pod_cohort(pod: Mapping[str, Any], cohort_labels: Iterable[str]) -> str:
    meta = pod.get("metadata") or {}
    ns = meta.get("namespace") or "default"
    labels = meta.get("labels") or {}
    for key in cohort_labels:
        if labels.get(key):
            return f"{ns}/{labels[key]}"
    owners = meta.get("ownerReferences") or []
    controller = next((o for o in owners if o.get("controller")), owners[0] if owners else None)
    if controller and controller.get("name"):
        return f"{ns}/{controller['name']}"
    return f"{ns}/{meta.get('name', '')}"


def assign_cohorts(
    pods: Iterable[Mapping[str, Any]], settings: KubernetesSettings
) -> dict[tuple[str, str], list[tuple[str, str, bool]]]:
    """(node, device kind) -> per device index (cohort, pod, approximate)."""
    devices = parse_pairs(settings.devices, "sources.kubernetes.devices")
    holders: dict[tuple[str, str], list[tuple[str, str, int]]] = {}
    for pod in pods:
        spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
        node = spec.get("nodeName")
        if not node or (pod.get("status") or {}).get("phase") not in ACTIVE_PHASES:
            continue
        for kind, resource in devices:
            n = pod_requests(pod, resource)
            if n:
                name = f"{meta.get('namespace') or 'default'}/{meta.get('name', '')}"
                holders.setdefault((node, kind), []).append((pod_cohort(pod, settings.cohort_labels), name, n))
    out: dict[tuple[str, str], list[tuple[str, str, bool]]] = {}
    for key, items in holders.items():
        approx = len({c for c, _p, _n in items}) > 1
        slots: list[tuple[str, str, bool]] = []
        for cohort, name, n in sorted(items):
            slots.extend([(cohort, name, approx)] * n)
        out[key] = slots
    return out


def build_part(
    nodes: Iterable[Mapping[str, Any]], pods: Iterable[Mapping[str, Any]], settings: KubernetesSettings
) -> TopologyPart:
    b = PartBuilder()
    devices = parse_pairs(settings.devices, "sources.kubernetes.devices")
    cohorts = assign_cohorts(pods, settings)
    for node in sorted(nodes, key=lambda n: str(n.get("metadata", {}).get("name", ""))):
        meta = node.get("metadata") or {}
        name = meta.get("name")
        if not name:
            continue
        labels: Mapping[str, str] = meta.get("labels") or {}
        group: dict[str, str] = {}
        zone = labels.get(settings.zone_label, "") if settings.zone_label else ""
        if settings.cooling_zone_label and labels.get(settings.cooling_zone_label):
            group["cooling_zone"] = b.node(f"cooling:{labels[settings.cooling_zone_label]}", "cooling_zone")
        elif zone:
            group["cooling_zone"] = b.node(f"zone:{zone}", "cooling_zone", None, zone=zone)
        if settings.psu_label and labels.get(settings.psu_label):
            group["psu"] = b.node(f"psu:{labels[settings.psu_label]}", "psu")
        if settings.nvlink_domain_label and labels.get(settings.nvlink_domain_label):
            group["nvlink_domain"] = b.node(f"nvlink:{labels[settings.nvlink_domain_label]}", "nvlink_domain")
        if labels.get(TPU_TOPOLOGY_LABEL):
            pool = labels.get(NODEPOOL_LABEL) or name
            group["pod"] = b.node(
                f"tpu-slice:{pool}",
                "pod",
                None,
                tpu_topology=labels[TPU_TOPOLOGY_LABEL],
                tpu_accelerator=labels.get(TPU_ACCELERATOR_LABEL, ""),
            )
        rack = labels.get(settings.rack_label, "") if settings.rack_label else ""
        parent = b.node(f"rack:{rack}", "rack", None, rack=rack) if rack else None
        b.node(
            name,
            "host",
            parent,
            host=name,
            zone=zone,
            region=labels.get(REGION_LABEL, ""),
            instance_type=labels.get(INSTANCE_TYPE_LABEL, ""),
            tpu_topology=labels.get(TPU_TOPOLOGY_LABEL, ""),
            **group,
        )
        for kind, resource in devices:
            slots = cohorts.get((name, kind), [])
            for i in range(device_count(node, kind, resource)):
                cohort, pod, approx = slots[i] if i < len(slots) else ("", "", False)
                shard_groups = {k: v for k, v in group.items() if kind == "gpu" or k != "nvlink_domain"}
                b.node(
                    shard_id(name, kind, i),
                    "shard",
                    name,
                    host=name,
                    model=device_model(labels, kind),
                    index=str(i),
                    cohort=cohort,
                    k8s_pod=pod,
                    cohort_approx="true" if approx else "",
                    **shard_groups,
                )
    out_nodes, edges = b.result()
    return TopologyPart("kubernetes", out_nodes, edges)
