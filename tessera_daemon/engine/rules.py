"""Hard-fault rules: deterministic, no statistics, fire in the window the fault is seen.

- a critical XID (default: 48 DBE, 63/64 row remap, 74 NVLink, 79 fallen off the bus, 92, 94/95
  contained/uncontained ECC, 119/120 GSP) on a shard;
- an uncorrectable (double-bit) ECC counter increment;
- a device lost (the source could no longer reach it);
- a device missing: a shard that stopped reporting for ``window.stale_after_windows`` of its own sample
  intervals while other shards of its host still report (the pipeline decides, ``Pipeline._silence``);
- a host gone silent: every shard of a host stopped reporting; one host-level hit, not one per shard.
A rule firing resolves after ``clear_windows`` windows without recurrence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

RULE_ORDER = {"xid": 0, "ecc_dbe": 1, "device_lost": 2, "device_missing": 3, "host_silent": 4}
"""When one shard has several hard faults in a window, the first opens the incident (XID 79 before the
loss it causes) and the others are recorded in it."""


@dataclass(frozen=True, slots=True)
class RuleHit:
    shard: str  # the target: a shard, or a host for host_silent
    rule: str  # "xid" | "ecc_dbe" | "device_lost" | "device_missing" | "host_silent"
    detail: dict[str, object] = field(default_factory=dict)
    scope: str = "shard"
    members: tuple[str, ...] = ()  # the shards concerned when the target is a group


def evaluate_rules(
    xids: dict[str, tuple[int, ...]],
    ecc_increments: dict[str, float],
    lost: set[str],
    critical_xids: frozenset[int],
) -> list[RuleHit]:
    """Rule hits of one window, sorted by (shard, rule) for deterministic output."""
    hits: list[RuleHit] = []
    for shard, codes in xids.items():
        crit = sorted({c for c in codes if c in critical_xids})
        if crit:
            hits.append(RuleHit(shard, "xid", {"xid": crit}))
    for shard, inc in ecc_increments.items():
        if inc > 0:
            hits.append(RuleHit(shard, "ecc_dbe", {"ecc_dbe_increment": inc}))
    hits.extend(RuleHit(shard, "device_lost", {}) for shard in lost)
    hits.sort(key=lambda h: (h.shard, RULE_ORDER.get(h.rule, 99)))
    return hits
