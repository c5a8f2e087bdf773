"""Attribution: the most specific topology node that explains a co-firing set of shards.

Input: the shards firing (on one metric, within a coincidence window), the topology, and the per-shard
probability ``p0`` that a healthy shard fires within that window. For a group node with ``n`` member
shards of which ``k`` fired, the null "k of n fired by chance" has p-value P(Binomial(n, p0) >= k);
a group is significant when that is <= ``alpha`` / (number of groups tested) and k >= 2.

Parsimony, bottom-up: groups are visited from the smallest. A group is selected if it is significant
and no selected group lies inside it. A group that contains selected groups replaces them only if it
adds evidence, in one of three ways:

1. remainder: its fired members outside them are significant on their own;
2. merge: it contains two or more selected groups and is significant as a whole (one node explains
   them all: two faulty hosts of one rack point at the rack);
3. absorb: it is significant as a whole (all its fired members, k of n) and it explains fired shards
   that the selected groups inside it leave unexplained (at least one fired member outside them).

Rule 3 is the minimum-description choice: one node explaining every fired shard beneath it is a
shorter account than "a group plus lone shards that fired by chance", and it is taken only when that
one node is itself significant under the null. A cooling zone whose one rack fired in full and whose
other rack has one fired shard is named as the zone, with all four shards; the same pattern where the
zone is not significant (a base rate high enough, or a zone large enough) stays the rack plus a lone
shard. The whole-node test counts the inner group's shards too, so at small p0 a zone holding a
significant rack is significant unless very large: a concurrent unrelated shard fire in the zone on
the same metric is absorbed.

An ancestor that adds no evidence is never reported: one that explains no fired shard beyond a
single selected group inside it never replaces that group, however significant it is as a whole. A
candidate's members are only the fired shards inside it, never a foreign shard ("shadow rack").
"""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping
from dataclasses import dataclass

from tessera_daemon.model import Topology

DEFAULT_KINDS = ("host", "nvlink_domain", "psu", "rack", "cooling_zone")
KIND_ORDER = {
    k: i
    for i, k in enumerate(
        ("shard", "host", "nvlink_domain", "psu", "switch", "rack", "cooling_zone", "pod", "cohort", "fleet")
    )
}


@dataclass(frozen=True, slots=True)
class Candidate:
    node: str
    kind: str
    members: tuple[str, ...]  # fired shards inside the node, sorted
    k: int  # fired members
    n: int  # all member shards
    p_value: float

    def to_obj(self) -> dict[str, object]:
        return {
            "node": self.node,
            "kind": self.kind,
            "members": list(self.members),
            "k": self.k,
            "n": self.n,
            "p_value": self.p_value,
        }


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
    terms = [
        math.lgamma(n + 1) - math.lgamma(i + 1) - math.lgamma(n - i + 1) + i * log_p + (n - i) * log_q
        for i in range(k, n + 1)
    ]
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
        remainder = significant(rest_k, rest_n)  # rule 1: the rest is evidence on its own
        merge = len(inner) >= 2 and significant(k, n)  # rule 2: one node for several selected groups
        absorb = rest_k >= 1 and significant(k, n)  # rule 3: one node for a group plus lone fired shards
        if remainder or merge or absorb:
            for c in inner:
                del selected[c]
            selected[g] = touched[g]
    out = [
        Candidate(
            g, topology.nodes[g].kind, tuple(sorted(m)), len(m), len(groups[g]), binom_sf(len(m), len(groups[g]), p0)
        )
        for g, m in selected.items()
    ]
    return sorted(out, key=lambda c: sort_key(c.node))
