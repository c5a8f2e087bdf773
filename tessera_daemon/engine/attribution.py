"""Attribution: the most specific topology node that explains a co-firing set of shards.

Input: the shards firing (on one metric, within a coincidence window), the topology, and the per-shard
probability ``p0`` that a healthy shard fires within that window. For a group node with ``n`` member
shards of which ``k`` fired, the null "k of n fired by chance" has p-value P(Binomial(n, p0) >= k);
a group is significant when that is <= ``alpha`` / (number of groups tested) and k >= 2.

Parsimony, bottom-up: groups are visited from the smallest. A group is selected if it is significant
and no selected group lies inside it. A group that contains selected groups replaces them only if it
adds evidence: its fired members outside them are significant on their own (remainder test), or it
contains two or more selected groups and is significant as a whole (one node explains them all: two
faulty hosts of one rack point at the rack). An ancestor that adds no evidence is never reported, and
a candidate's members are only the fired shards inside it, never a foreign shard ("shadow rack").
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from tessera_daemon.model import Topology

DEFAULT_KINDS = ("host", "nvlink_domain", "psu", "rack", "cooling_zone")
KIND_ORDER = {k: i for i, k in enumerate(("shard", "host", "nvlink_domain", "psu", "switch", "rack",
                                            "cooling_zone", "pod", "cohort", "fleet"))}


@dataclass(frozen=True, slots=True)
class Candidate:
    node: str
    kind: str
    members: tuple[str, ...]  # fired shards inside the node, sorted
    k: int  # fired members
    n: int  # all member shards
    p_value: float

    def to_obj(self) -> dict[str, object]:
        return {"node": self.node, "kind": self.kind, "members": list(self.members), "k": self.k, "n": self.n,
                "p_value": self.p_value}


def binom_sf(k: int, n: int, p: float) -> float:
    """P(Binomial(n, p) >= k), exact, stable for small p."""
    if k <= 0:
        return 1.0
    if k > n:
        return 0.0
    if p <= 0.0:
        return 0.0
    if p >= 1.0:
        return 1.0
    log_p, log_q = math.log(p), math.log1p(-p)
    terms = [math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
             for i in range(k, n + 1)]
    top = max(terms)
    return min(1.0, math.exp(top) * sum(math.exp(t - top) for t in terms))


def attribute(
    fired: Collection[str],
    topology: Topology,
    *,
    p0: float,
    alpha: float = 0.01,
    kinds: tuple[str, ...] = DEFAULT_KINDS,
    members: Mapping[str, list[str]] | None = None,
) -> list[Candidate]:
    """Candidates explaining ``fired``, most specific first (by size, then kind, then id)."""
    fired_set = {s for s in fired if s in topology.nodes}
    if len(fired_set) < 2:
        return []
    groups = topology.members() if members is None else members
    touched: dict[str, set[str]] = {}
    for s in fired_set:
        for g in topology.groups_of(s):
            if topology.nodes[g].kind in kinds and g in groups:
                touched.setdefault(g, set()).add(s)
    tested = max(1, len(touched))
    level = alpha / tested

    def significant(k: int, n: int) -> bool:
        return k >= 2 and binom_sf(k, n, p0) <= level

    def sort_key(g: str) -> tuple[int, int, str]:
        return (len(groups[g]), KIND_ORDER.get(topology.nodes[g].kind, 99), g)

    selected: dict[str, set[str]] = {}  # node -> fired members
    for g in sorted(touched, key=sort_key):
        k, n = len(touched[g]), len(groups[g])
        gm = set(groups[g])
        inner = [c for c in selected if set(groups[c]) <= gm]
        if not inner:
            if significant(k, n):
                selected[g] = touched[g]
            continue
        covered_members = set().union(*(set(groups[c]) for c in inner))
        covered_fired = set().union(*(selected[c] for c in inner))
        rest_k, rest_n = k - len(covered_fired & touched[g]), n - len(covered_members)
        same_set = rest_n == 0 and len(inner) == 1  # e.g. NVLink domain vs its host: keep the host
        if same_set:
            continue
        if significant(rest_k, rest_n) or (len(inner) >= 2 and significant(k, n)):
            for c in inner:
                del selected[c]
            selected[g] = touched[g]
    out = [Candidate(g, topology.nodes[g].kind, tuple(sorted(m)), len(m), len(groups[g]),
                     binom_sf(len(m), len(groups[g]), p0)) for g, m in selected.items()]
    return sorted(out, key=lambda c: sort_key(c.node))
