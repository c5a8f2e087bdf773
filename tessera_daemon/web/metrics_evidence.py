"""/metrics, the detector's evidence: the fleet histogram, the top shards, and per-group evidence."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily, Metric

from tessera_daemon.engine.snapshot import PipelineSnapshot

TOP_N = 10
EVIDENCE_BUCKETS = (0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 20.0, 30.0, 50.0, 100.0)
GROUP_KINDS = ("host", "rack", "cooling_zone", "psu", "cohort")


def _log_mean_exp(a: np.ndarray, axis: int) -> np.ndarray:
    m = np.max(a, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    out: np.ndarray = np.squeeze(m, axis) + np.log(np.mean(np.exp(a - m), axis=axis))
    return out


def labels_of(p: PipelineSnapshot, node_id: str) -> dict[str, str]:
    """Topology labels of a firing target: a shard's own labels, or for a group node its own id
    under its kind plus its ancestors (a rack firing carries rack= and cooling_zone=)."""
    topo = p.topology
    node = topo.nodes.get(node_id)
    if node is None:
        return {"cohort": node_id} if node_id in p.cohorts else {}
    if node.kind == "shard":
        out = dict(node.labels)
        if "host" not in out and node.parent:
            out["host"] = node.parent
        return out
    out = {node.kind: node.id}
    for anc in topo.ancestors(node_id):
        out.setdefault(topo.nodes[anc].kind, anc)
    return out


def evidence_families(p: PipelineSnapshot) -> Iterator[Metric]:
    table = p.table
    hist = HistogramMetricFamily(
        "tessera_shard_evidence_log", "Distribution over shards of the largest log-evidence of any metric."
    )
    top = GaugeMetricFamily(
        "tessera_top_shard_evidence_log",
        "Log-evidence of the top shards.",
        labels=["shard", "metric", "host", "rack"],
    )
    group = GaugeMetricFamily(
        "tessera_group_evidence_log",
        "Log of the mean of member e-values per topology group.",
        labels=["kind", "group"],
    )
    if table.window >= 0 and table.log_m.size:
        lm = np.where(table.stale[:, None], -np.inf, table.log_m)
        best = lm.max(axis=1)
        finite = best[np.isfinite(best)]
        clipped = np.maximum(finite, 0.0)
        buckets = [(str(b), float(np.sum(clipped <= b))) for b in EVIDENCE_BUCKETS]
        buckets.append(("+Inf", float(clipped.size)))
        hist.add_metric([], buckets, float(clipped.sum()))
        order = np.argsort(-np.where(np.isfinite(best), best, -1e300), kind="stable")[:TOP_N]
        for i in order:
            if not np.isfinite(best[i]):
                continue
            j = int(np.argmax(lm[i]))
            labels = labels_of(p, p.shards[i])
            top.add_metric([p.shards[i], p.metrics[j], labels.get("host", ""), labels.get("rack", "")], float(best[i]))
        shard_e = _log_mean_exp(np.where(np.isfinite(lm), lm, -50.0), axis=1)  # mean over metrics
        members = p.members  # once per topology, not per render
        for gid in sorted(members):
            node = p.topology.nodes[gid]
            if node.kind not in GROUP_KINDS:
                continue
            rows = [p.row[s] for s in members[gid] if s in p.row]
            if rows:
                group.add_metric([node.kind, gid], float(_log_mean_exp(shard_e[rows], axis=0)))
    else:
        hist.add_metric([], [(str(b), 0.0) for b in EVIDENCE_BUCKETS] + [("+Inf", 0.0)], 0.0)
    yield hist
    yield top
    yield group
