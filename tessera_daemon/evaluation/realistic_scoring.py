"""Scoring of the realistic evaluation, per shard: which faults were paged, how fast, attributed where;
false pages on clean shards and fleet tickets explained by a fault."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from tessera_daemon.config import Config
from tessera_daemon.evaluation.realistic_cases import COMMON_MODE_KINDS, GRACE_WINDOWS, PAGE_CLASSES
from tessera_daemon.evaluation.scoring import median

# ------------------------------------------------------------------------------------------ scoring


@dataclass(slots=True)
class Fault:
    kind: str
    scope: str
    target: str
    shards: frozenset[str]
    metrics: tuple[str, ...]
    onset_w: int
    end_w: float  # inclusive last window a flag counts as true (inf: sustained)
    magnitude: float | None
    hard: bool


def _faults(run: dict[str, Any], length_s: float) -> list[Fault]:
    out = []
    for lab in run["labels"]:
        if lab["benign"] or lab["kind"] == "sparse":
            continue
        onset = math.floor(lab["start_ts"] / length_s)
        end = math.inf if lab["end_ts"] is None else math.floor(lab["end_ts"] / length_s) + GRACE_WINDOWS
        out.append(
            Fault(
                lab["kind"],
                lab["scope"],
                lab["target"],
                frozenset(lab["shards"]),
                tuple(lab["metrics"]),
                onset,
                end,
                lab["magnitude"],
                lab["hard"],
            )
        )
    return out


@dataclass(slots=True)
class Scored:
    tp_pairs: int = 0
    fp_pairs: int = 0
    positives: int = 0
    detected_pos: int = 0
    false_firings: int = 0
    clean_shard_windows: int = 0
    metric_ok: int = 0
    metric_total: int = 0
    event_conditional: int = 0
    fleet_events: int = 0
    fleet_explained: int = 0
    expected_silence: int = 0  # rule:device_missing on the shards of a sparse reporting gap


def _score_run(run: dict[str, Any], length_s: float, warm: int, out: dict[str, Any]) -> Scored:
    """Score one case; per-fault, attribution and false-firing records are appended to ``out``."""
    faults = _faults(run, length_s)
    eval_start = run["first_window"] + warm
    n_windows = run["last_window"] - eval_start + 1
    fault_shards = set().union(*(f.shards for f in faults)) if faults else set()
    true_first: dict[tuple[int, str], int] = {}  # (fault index, shard) -> first true window
    silent = {sh for lab in run["labels"] if lab["kind"] == "sparse" for sh in lab["shards"]}
    flagged_true: set[str] = set()
    flagged_false: set[str] = set()
    c = Scored()
    for fr in run["firings"]:
        cls = fr["classification"]
        if cls == "event_conditional":
            c.event_conditional += 1
            continue
        if cls == "fleet_event":
            c.fleet_events += 1
            c.fleet_explained += _fleet_explained(fr, run, length_s)
            continue
        if cls not in PAGE_CLASSES:
            continue
        if fr["detector"] == "rule:device_missing" and set(fr["members"] or [fr["target"]]) <= silent:
            c.expected_silence += 1  # a GPU silent while its host reports is a missing device (issue 14)
            continue
        w = fr["window"]
        any_true = False
        for s in fr["members"] or [fr["target"]]:
            hits = [i for i, f in enumerate(faults) if s in f.shards and f.onset_w <= w <= f.end_w]
            if not hits:
                flagged_false.add(s)
                continue
            any_true = True
            flagged_true.add(s)
            for i in hits:
                true_first[(i, s)] = min(true_first.get((i, s), w), w)
                if fr["scope"] == "shard" and not faults[i].hard and fr["metric"] is not None:
                    c.metric_total += 1
                    c.metric_ok += fr["metric"] in faults[i].metrics
        if not any_true:
            c.false_firings += 1
            if len(out["false_examples"]) < 25:
                out["false_examples"].append({"case": run["case"], **fr})
    c.tp_pairs = len(flagged_true)
    c.fp_pairs = len(flagged_false)
    c.positives = sum(len(f.shards) for f in faults)
    c.detected_pos = len({s for (_i, s) in true_first})
    c.clean_shard_windows = sum(1 for s in run["shards"] if s not in fault_shards) * max(0, n_windows)
    c.clean_shard_windows += sum(len(f.shards) * max(0, f.onset_w - eval_start) for f in faults)
    for i, f in enumerate(faults):
        delays = [true_first[(i, s)] - f.onset_w for s in sorted(f.shards) if (i, s) in true_first]
        out["per_fault"].append(
            {
                "case": run["case"],
                "kind": f.kind,
                "magnitude": f.magnitude,
                "hard": f.hard,
                "scope": f.scope,
                "target": f.target,
                "shards": len(f.shards),
                "detected_shards": len(delays),
                "delay": min(delays) if delays else None,
                "shard_delays_median": median(delays),
            }
        )
        if f.kind in COMMON_MODE_KINDS:
            out["attribution"].append(_attribution(run, f))
    return c


def score(runs: list[dict[str, Any]], cfg: Config) -> dict[str, Any]:
    out: dict[str, Any] = {"per_fault": [], "per_case": [], "attribution": [], "false_examples": []}
    tot = Scored()
    for run in runs:
        c = _score_run(run, cfg.window.length_s, cfg.detector.warmup_max_windows, out)
        for k, v in dataclasses.asdict(c).items():
            setattr(tot, k, getattr(tot, k) + v)
        out["per_case"].append(
            {
                "case": run["case"],
                "group": run["group"],
                "kind": run["kind"],
                "magnitude": run["magnitude"],
                "tp_pairs": c.tp_pairs,
                "fp_pairs": c.fp_pairs,
                "positives": c.positives,
                "detected": c.detected_pos,
                "false_firings": c.false_firings,
                "event_conditional": c.event_conditional,
                "fleet_events": c.fleet_events,
                "clean_shard_windows": c.clean_shard_windows,
                "elapsed_s": run["elapsed_s"],
            }
        )
    return {"totals": dataclasses.asdict(tot), **out}


def _fleet_explained(fr: dict[str, Any], run: dict[str, Any], length_s: float) -> int:
    """A fleet_event firing is explained by a regime step or fleet_regime_change of its cohort before it."""
    w = fr["window"]
    for ts, cohort, _step in run["regime_steps"]:
        if cohort == fr["target"] and math.floor(ts / length_s) <= w:
            return 1
    for lab in run["labels"]:
        if (
            lab["kind"] == "fleet_regime_change"
            and lab["target"] == fr["target"]
            and math.floor(lab["start_ts"] / length_s) <= w
        ):
            return 1
    return 0


def _attribution(run: dict[str, Any], f: Fault) -> dict[str, Any]:
    """The node the pipeline settles on: of the group (common_mode) firings touching the fault's shards
    after onset, the one covering most of them (ties: the later); correct when it is the fault's node
    and holds no foreign shard. The first group firing is reported too."""
    groups = [
        fr
        for fr in run["firings"]
        if fr["classification"] == "common_mode"
        and fr["scope"] != "shard"
        and fr["window"] >= f.onset_w
        and set(fr["members"]) & f.shards
    ]
    first = min(groups, key=lambda fr: fr["window"]) if groups else None
    best = max(groups, key=lambda fr: (len(set(fr["members"]) & f.shards), fr["window"])) if groups else None
    return {
        "case": run["case"],
        "kind": f.kind,
        "magnitude": f.magnitude,
        "truth": f.target,
        "named": best["target"] if best else None,
        "window": best["window"] if best else None,
        "first_named": first["target"] if first else None,
        "correct": bool(best and best["target"] == f.target and set(best["members"]) <= f.shards),
    }
