"""The realistic evaluation's report: acceptance checks and the sections of docs/evaluation.md."""

from __future__ import annotations

import math
from typing import Any

from tessera_daemon.config import Config, SimConfig
from tessera_daemon.evaluation.realistic_cases import ONSET_TICK, Plan
from tessera_daemon.evaluation.report import Check, MatrixResult, table
from tessera_daemon.evaluation.scoring import median, ratio


def _stat(sc: dict[str, Any], pred: Any) -> list[dict[str, Any]]:
    return [f for f in sc["per_fault"] if pred(f)]


def checks(res: MatrixResult, sc: dict[str, Any], fast: bool, n_shards: int) -> None:
    tot = sc["totals"]
    stat_cases = [c for c in sc["per_case"] if c["group"] == "statistical"]
    pos = sum(c["positives"] for c in stat_cases)
    det = sum(c["detected"] for c in stat_cases)
    tp = sum(c["tp_pairs"] for c in sc["per_case"])
    fp = sum(c["fp_pairs"] for c in sc["per_case"])
    precision, recall = ratio(tp, tp + fp), ratio(det, pos)
    if not fast:
        res.checks.append(Check("fleet size", ">= 512 shards", f"{n_shards} shards", n_shards >= 512))
    res.checks.append(
        Check(
            "shard-level precision (all cases)",
            ">= 0.95",
            f"{precision:.4f} ({tp} true / {fp} false flagged shard pairs)" if precision is not None else "no flags",
            precision is not None and precision >= 0.95,
        )
    )
    res.checks.append(
        Check(
            "shard-level recall, statistical faults >= 1 sigma, sustained",
            ">= 0.95",
            f"{recall:.4f} ({det}/{pos} fault shards)" if recall is not None else "no faults",
            recall is not None and recall >= 0.95,
        )
    )
    two = [f["delay"] for f in _stat(sc, lambda f: not f["hard"] and f["magnitude"] == 2.0)]
    if two:
        d2 = median([float(d) if d is not None else math.inf for d in two])
        res.checks.append(
            Check(
                "median delay at 2 sigma (per fault; misses count as infinite)",
                "<= 10 windows",
                f"{d2:g} windows over {len(two)} faults",
                d2 is not None and d2 <= 10,
            )
        )
    hard = [f["delay"] for f in _stat(sc, lambda f: f["hard"])]
    dh = median([float(d) if d is not None else math.inf for d in hard])
    res.checks.append(
        Check(
            "median delay, hard faults",
            "<= 1 window",
            f"{dh:g} windows over {len(hard)} faults" if dh is not None else "no hard faults",
            dh is not None and dh <= 1,
        )
    )
    csw = tot["clean_shard_windows"]
    need = 1_000_000 if not fast else 0
    res.checks.append(
        Check(
            "false firings in clean shard-windows",
            f"0 in >= {need:,}",
            f"{tot['false_firings']} in {csw:,} ({tot['false_firings'] / csw * 1e6:.2f} per 10^6)",
            tot["false_firings"] == 0 and csw >= need,
        )
    )
    attr = sc["attribution"]
    named = [a for a in attr if a["named"] is not None]
    ok = sum(1 for a in named if a["correct"])
    res.checks.append(
        Check(
            "common modes attributed to the right node (of those the pipeline attributed)",
            ">= 95 % of cases",
            f"{ok}/{len(named)}; {len(attr) - len(named)} of {len(attr)} common-mode faults got no "
            "group firing (missed detections, counted in recall)"
            if attr
            else "no common-mode faults",
            (ok >= 0.95 * len(named)) if named else None,
        )
    )


def sections(sc: dict[str, Any], plan: Plan, sim_cfg: SimConfig, cfg: Config, n_shards: int) -> list[str]:
    tot = sc["totals"]
    out = []
    desc = (
        f"Fleet: {n_shards} shards ({sim_cfg.zones} zones x {sim_cfg.racks_per_zone} racks x "
        f"{sim_cfg.hosts_per_rack} hosts x {sim_cfg.shards_per_host} GPUs, {sim_cfg.cohorts} jobs); "
        f"AR(1) rho {sim_cfg.rho} per tick, Student-t({sim_cfg.tail_df}) innovations, diurnal "
        f"{sim_cfg.diurnal_amplitude} sigma / {sim_cfg.diurnal_period_s:g} s, regime steps every "
        f"{sim_cfg.regime_every_s:g} s per job; tick {sim_cfg.tick_s:g} s, window {cfg.window.length_s:g} s, "
        f"warm-up {cfg.detector.warmup_windows}-{cfg.detector.warmup_max_windows} windows (adaptive); "
        f"faults start at tick {ONSET_TICK}; clean shard-windows counted from window "
        f"{cfg.detector.warmup_max_windows}; "
        f"seeds {list(plan.seeds)}; {plan.fault_ticks} ticks per fault case, {plan.clean_ticks} per clean case."
    )
    out.append("## Setup\n\n" + desc)
    body = []
    for kind in plan.stat_kinds:
        for m in plan.magnitudes:
            fs = _stat(sc, lambda f, k=kind, mm=m: f["kind"] == k and f["magnitude"] == mm)
            if not fs:
                continue
            shards = sum(f["shards"] for f in fs)
            dshards = sum(f["detected_shards"] for f in fs)
            delays = [float(f["delay"]) for f in fs if f["delay"] is not None]
            body.append(
                [
                    kind,
                    f"{m:g}",
                    f"{sum(f['delay'] is not None for f in fs)}/{len(fs)}",
                    f"{dshards}/{shards}",
                    median(delays),
                    max(delays) if delays else None,
                ]
            )
    out.append(
        "## Statistical faults: detection and delay (windows after onset)\n\n"
        + table(["kind", "sigma", "faults detected", "fault shards detected", "median delay", "max delay"], body)
    )
    hard = []
    for kind in plan.hard_kinds:
        fs = _stat(sc, lambda f, k=kind: f["kind"] == k)
        delays = [float(f["delay"]) for f in fs if f["delay"] is not None]
        hard.append([kind, f"{len(delays)}/{len(fs)}", median(delays), max(delays) if delays else None])
    out.append("## Hard faults\n\n" + table(["kind", "detected", "median delay", "max delay"], hard))
    attr = sc["attribution"]
    if attr:
        ab = [
            [
                a["case"],
                a["truth"],
                a["named"] or "-",
                a["window"],
                a["first_named"] or "-",
                "yes" if a["correct"] else "no",
            ]
            for a in attr
        ]
        out.append(
            "## Common-mode attribution (the group firing covering most of the fault's shards)\n\n"
            + table(["case", "true node", "named", "window", "first group firing", "correct"], ab)
        )
    cases_b = [
        [
            c["case"],
            c["positives"],
            c["detected"],
            c["fp_pairs"],
            c["false_firings"],
            c["event_conditional"],
            c["fleet_events"],
            f"{c['clean_shard_windows']:,}",
            c["elapsed_s"],
        ]
        for c in sc["per_case"]
    ]
    out.append(
        "## Per case\n\n"
        + table(
            [
                "case",
                "fault shards",
                "detected",
                "false shard flags",
                "false firings",
                "event_conditional",
                "fleet_event",
                "clean shard-windows",
                "seconds",
            ],
            cases_b,
        )
    )
    mt = tot["metric_total"]
    out.append(
        "## Other figures\n\n"
        f"- Shard pages naming one of the fault's metrics: {tot['metric_ok']}/{mt}"
        + (f" ({tot['metric_ok'] / mt:.3f})" if mt else "")
        + "\n"
        f"- fleet_event firings (the whole job moved): {tot['fleet_events']}, of which "
        f"{tot['fleet_explained']} follow a simulated regime step or fleet_regime_change of that job\n"
        f"- event_conditional firings (inside an announced firmware push): {tot['event_conditional']}\n"
        f"- rule:device_missing on the shards of a sparse reporting gap (a GPU silent while its host "
        f"reports; expected, not counted as false): {tot.get('expected_silence', 0)}\n"
        f"- clean shard-windows: {tot['clean_shard_windows']:,}; false firings: {tot['false_firings']}"
    )
    if sc["false_examples"]:
        fe = [
            [e["case"], e["window"], e["target"], e["metric"], e["classification"], e["log_evidence"]]
            for e in sc["false_examples"]
        ]
        out.append(
            "## False firings (first 25)\n\n"
            + table(["case", "window", "target", "metric", "class", "log evidence"], fe)
        )
    return out
