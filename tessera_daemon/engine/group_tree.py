"""Containment between topology groups: which groups lie inside which, without pairwise tests."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt


def containment(rows: list[npt.NDArray[np.int64]]) -> tuple[list[list[int]], list[list[int]], list[list[int]]]:
    """(parents, children, descendants) of groups given by their member rows (distinct member sets).

    ``parents[i]``: every group whose members strictly contain i's; ``descendants[i]``: every group
    strictly inside i; ``children[i]``: the descendants with no other descendant of i between them and
    i. Each list ascending. A superset of i holds i's first member, so only the groups holding that
    member are tested (a handful: one per topology level), never all pairs: O(sum of group sizes x
    depth), where pairwise subset tests were O(groups^2) (22 s at 100k shards)."""
    n = len(rows)
    if n == 0:
        return [], [], []
    sizes = np.array([r.size for r in rows], np.int64)
    flat = np.concatenate(rows)
    owner = np.repeat(np.arange(n, dtype=np.int64), sizes)
    order = np.lexsort((owner, flat))  # by row, then group: the groups holding a row, ascending
    by_row, by_owner = flat[order], owner[order]
    firsts = np.array([int(r[0]) if r.size else -1 for r in rows], np.int64)
    lo = np.searchsorted(by_row, firsts, "left").tolist()
    hi = np.searchsorted(by_row, firsts, "right").tolist()
    sets: dict[int, frozenset[int]] = {}  # member sets of the groups tested as supersets only
    size_l = sizes.tolist()
    parents: list[list[int]] = []
    for i in range(n):
        found = []
        for j in by_owner[lo[i] : hi[i]].tolist():
            if size_l[j] > size_l[i]:
                sj = sets.get(j)
                if sj is None:
                    sj = sets[j] = frozenset(rows[j].tolist())
                if sj.issuperset(rows[i].tolist()):
                    found.append(j)
        parents.append(found)
    descendants: list[list[int]] = [[] for _ in range(n)]
    for j in range(n):
        for p in parents[j]:
            descendants[p].append(j)
    children: list[list[int]] = []
    for i in range(n):
        inside = set(descendants[i])
        children.append([j for j in descendants[i] if not any(k in inside for k in parents[j])])
    return parents, children, descendants
