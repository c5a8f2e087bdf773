"""R72 coverage matrix: 6 failure types x 20 variations (tessera.md section 8.3), ours beside Tessera.

Inputs are re-generated bit-exactly (LCG seeds ``0x71C00 ^ v``, ``^ (0x400 + v)``, ``^ (0x800 + v)``,
window-major draws, linear-ramp drift) and Tessera's own rules are re-run on them to prove it: the
re-run must give Tessera's published detection windows, terminal wealths, e-BH selections and fleet
ticks. Ours, on the same inputs:

1. sdc-drift: our Family A per shard (oracle N(0,1), Ville mode, threshold log 200). Detected: the
   target crosses within the 30 windows; attribution correct: it is the only shard that crosses.
2. common-mode-rack / 6. topology-spanning: our attribution (``engine.attribution.attribute``) of
   the fired set on the same 2-rack (type 6: cooling zone over 2 racks) topology. Detected: a
   candidate (type 6: a cz-1 candidate); correct: exactly one candidate, the true node, with exactly
   the fired shards. Ours has no hop parameter: the 5 hop settings of type 6 give the same answer.
3. event-conditional: our ``EventBook`` fed the DeploySignal event. Detected: the shard is frozen
   at the sample time; correct: a shard_fault firing opened then is re-labelled
   ``event_conditional`` with the event's id.
4. fdr-multiple-testing: e-BH (``engine.ebh.e_bh``) at q on our terminal e-values (a test
   martingale at the fixed horizon is an e-value). Detected: K >= 1; correct: no null selected.
5. hierarchical-evalue: our cohort-level stream (the pipeline's fleet_event detector: the cohort's
   standardised cross-sectional mean sqrt(N) mean(x), exactly N(0, 1) under the oracle null) in
   Ville mode at alpha_fleet 0.05. Detected: it crosses log 20 within the 30 windows; attribution
   correct: it crosses no later than the first single-shard crossing (log 200), so the first alarm
   names the fleet rather than a shard. (Tessera's audit left type-5 attribution unmeasured.)
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from tessera_daemon.config import Config
from tessera_daemon.evaluation import reference
from tessera_daemon.evaluation.ours import F64, OurSettings
from tessera_daemon.evaluation.r72_cases import (
    ALPHA,
    FLEET_ALPHA,
    TESSERA_ATTRIBUTION_AFTER_AUDIT,
    TYPE_NAMES,
    Row,
    sid,
    type1_rows,
    type2_rows,
    type3_rows,
    type4_rows,
    type5_rows,
    type6_rows,
)
from tessera_daemon.evaluation.report import Check, MatrixResult, table
from tessera_daemon.evaluation.tessera_bettor import (
    TesseraFamilyA,
)
from tessera_daemon.evaluation.tessera_lcg import linear_ramp, window_major_draws

# ---------------------------------------------------------------------------------- reproduction


def _rel(a: float, b: float) -> float:
    return abs(a - b) / max(1.0, abs(b))


def _reproduction(rows: list[Row]) -> list[Check]:
    checks: list[Check] = []
    if rows[0].tessera is None:
        return [Check("R72 published JSON", "present", "reference data not found", None)]
    t1 = [r for r in rows if r.type_idx == 0]
    same = sum(
        1
        for r in t1
        if r.rerun
        and r.tessera
        and r.rerun["detection_window_index"] == r.tessera["detection_window_index"]
        and r.rerun["firing_shards"] == r.tessera["raw_terminal"]["firing_shards"]
    )
    worst = max(_rel(r.rerun["target_M"], r.tessera["raw_terminal"]["target_M"]) for r in t1 if r.rerun and r.tessera)
    checks.append(Check("type 1: detection windows and firing sets", "20/20 identical", f"{same}/20", same == 20))
    checks.append(
        Check("type 1: terminal target wealth (6 dp published)", "rel. diff <= 1e-6", f"max {worst:.2e}", worst <= 1e-6)
    )
    t4 = [r for r in rows if r.type_idx == 3]
    same = sum(
        1
        for r in t4
        if r.rerun
        and r.tessera
        and r.rerun["fdr_selected_indices"] == r.tessera["raw_terminal"]["fdr_selected_indices"]
        and r.rerun["detection_window_index"] == r.tessera["detection_window_index"]
        and r.rerun["firing_shards"] == r.tessera["raw_terminal"]["firing_shards"]
    )
    checks.append(Check("type 4: e-BH selections, K, detection windows", "20/20 identical", f"{same}/20", same == 20))
    t5 = [r for r in rows if r.type_idx == 4]
    same = sum(
        1
        for r in t5
        if r.rerun
        and r.tessera
        and r.rerun["fleet_tick_at_first_fire"] == r.tessera["raw_terminal"]["fleet_tick_at_first_fire"]
        and r.rerun["per_shard_first_fire_tick"] == r.tessera["raw_terminal"]["per_shard_first_fire_tick"]
    )
    checks.append(Check("type 5: fleet ticks and per-shard first fires", "20/20 identical", f"{same}/20", same == 20))
    checks += demo_reproduction()
    return checks


DEMO_SPECS: dict[str, tuple[str, str, str]] = {
    # demo -> (shard list param, start param, per-window param); "" = none / all shards
    "clean-baseline": ("", "", ""),
    "sdc-drift": ("sdc_target_shard", "sdc_drift_start_window", "sdc_drift_per_window"),
    "fdr-multiple-testing": ("fdr_drift_shards", "fdr_drift_start_window", "fdr_drift_per_window"),
    "hierarchical-evalue": ("*", "hier_drift_start_window", "hier_drift_per_window"),
}


def demo_wealths(params: dict[str, Any], shards_key: str, start_key: str, drift_key: str) -> F64:
    """Tessera's Family A wealth ``[windows, shards]`` for a canned Family-A demo's parameters."""
    n, n_w = int(params["shard_count"]), int(params["window_count"])
    x = window_major_draws([int(params["seed"])], n_w, n)[0]
    if shards_key:
        raw = params[shards_key] if shards_key != "*" else [sid(i) for i in range(n)]
        targets = [raw] if isinstance(raw, str) else list(raw)
        ramp = linear_ramp(n_w, float(params[drift_key]), int(params[start_key]))
        for t in targets:
            x[:, int(str(t).split("-")[1])] += ramp
    bettor = TesseraFamilyA(n)
    out = np.empty((n_w, n))
    for w in range(n_w):
        out[w] = bettor.update(x[w])
    return out


def demo_reproduction() -> list[Check]:
    checks = []
    for name, keys in DEMO_SPECS.items():
        d = reference.demo(name)
        if d is None:
            checks.append(Check(f"demo {name}", "per-window wealth", "reference data not found", None))
            continue
        m = demo_wealths(d["params"], *keys)
        pub = np.array([[p["M_t"] for p in win["per_shard"]] for win in d["windows"]], dtype=np.float64)
        worst = float(np.max(np.abs(m - pub) / np.maximum(1.0, np.abs(pub))))
        fired_pub = [[bool(p["fired"]) for p in win["per_shard"]] for win in d["windows"]]
        same_fire = fired_pub == (m >= float(d["params"]["threshold"])).tolist()
        ok = worst <= 1e-6 and same_fire
        checks.append(
            Check(
                f"demo {name}: per-window per-shard wealth (6 dp) and fired flags",
                "rel. diff <= 1e-6, flags identical",
                f"max {worst:.2e}, flags {'identical' if same_fire else 'DIFFER'}",
                ok,
            )
        )
    return checks


# ---------------------------------------------------------------------------------- assembly


def run(cfg: Config, *, fast: bool = False) -> MatrixResult:
    t0 = time.perf_counter()
    s = OurSettings.from_config(cfg)
    pub_doc = reference.load(reference.R72)
    pub = [t["variations"] for t in pub_doc["types"]] if pub_doc else [None] * 6
    rows = (
        type1_rows(s, pub[0])
        + type2_rows(cfg, pub[1])
        + type3_rows(cfg, pub[2])
        + type4_rows(s, pub[3])
        + type5_rows(s, pub[4])
        + type6_rows(cfg, pub[5])
    )
    res = MatrixResult("r72", "R72 coverage matrix: 6 failure types x 20 variations", fast)
    res.reproduction = _reproduction(rows)
    per_type = []
    tot = {"det": 0, "cor": 0, "tdet": 0, "tcor": 0}
    for ti, name in enumerate(TYPE_NAMES):
        rs = [r for r in rows if r.type_idx == ti]
        det = sum(r.ours.detected for r in rs)
        cor = sum(r.ours.correct is True for r in rs)
        fps = [r.ours.fp for r in rs if r.ours.fp is not None]
        tdet = sum(bool(r.tessera["detected"]) for r in rs if r.tessera) if pub_doc else None
        tcor = sum(r.tessera["attribution_correct"] is True for r in rs if r.tessera) if pub_doc and ti != 4 else None
        tot["det"] += det
        tot["cor"] += cor
        tot["tdet"] += tdet or 0
        tot["tcor"] += tcor or 0
        per_type.append(
            [
                name,
                f"{tdet}/20" if tdet is not None else "-",
                f"{tcor}/20" if tcor is not None else "not measured",
                f"{det}/20",
                f"{cor}/20",
                max(fps) if fps else "n/a",
            ]
        )
    t_det = tot["tdet"] if pub_doc else 114
    res.checks = [
        Check("detected", ">= 119/120 (Tessera 114)", f"{tot['det']}/120 (Tessera {t_det})", tot["det"] >= 119),
        Check(
            "attributed correctly",
            f">= 118/120 (Tessera {TESSERA_ATTRIBUTION_AFTER_AUDIT})",
            f"{tot['cor']}/120",
            tot["cor"] >= 118,
        ),
    ]
    res.sections.append(
        "## Per type\n\n"
        + table(
            ["type", "Tessera detected", "Tessera attributed", "ours detected", "ours attributed", "ours max FP"],
            per_type,
        )
        + f"\n\nTessera totals: {t_det}/120 detected; attribution "
        f"{TESSERA_ATTRIBUTION_AFTER_AUDIT}/120 as published after its 2026-07-02 audit made type-5 "
        "attribution 'not measured' (the JSON copy used here predates the audit and still says "
        f"{pub_doc['totals']['total_attribution_correct'] if pub_doc else '114'})."
    )
    res.sections.append(_detail_section(rows))
    res.data = {
        "alpha": ALPHA,
        "fleet_alpha": FLEET_ALPHA,
        "bets": list(s.bets),
        "clip": s.clip,
        "totals": {
            "ours_detected": tot["det"],
            "ours_attributed": tot["cor"],
            "tessera_detected": t_det,
            "tessera_attributed": TESSERA_ATTRIBUTION_AFTER_AUDIT,
        },
        "variations": [r.to_obj() for r in rows],
    }
    res.elapsed_s = time.perf_counter() - t0
    return res


def _fmt(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    return str(v)


def _detail_section(rows: list[Row]) -> str:
    out = ["## Per variation (detection window: first window the alarm is up)", ""]
    for ti, name in enumerate(TYPE_NAMES):
        rs = [r for r in rows if r.type_idx == ti]
        body = []
        for r in rs:
            t = r.tessera or {}
            body.append(
                [
                    r.idx,
                    ", ".join(f"{k}={v}" for k, v in r.params.items()),
                    _fmt(t.get("detected")),
                    _fmt(t.get("attribution_correct")),
                    _fmt(t.get("detection_window_index")),
                    _fmt(r.ours.detected),
                    _fmt(r.ours.correct),
                    _fmt(r.ours.window),
                    _fmt(r.ours.fp),
                ]
            )
        out += [
            f"### {ti + 1}. {name}",
            "",
            table(["v", "params", "T det", "T attr", "T win", "ours det", "ours attr", "ours win", "ours FP"], body),
            "",
        ]
    return "\n".join(out)
