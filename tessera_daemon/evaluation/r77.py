"""R77 detection envelope (tessera.md section 8.4), ours beside Tessera's Family A and "Family C".

Grid: magnitude m (14) x window count W (6) x alpha (3) x family (A, C) = 504 cells, 5 trials;
cell index in that loop order; trial seed ``0x77E11 ^ (cell * 5 + trial)``; one shard,
``x_w = N(0, 1) + m (w + 1)``; detected = the threshold is reached at some window < W.
Tessera's two bettors are re-run on the re-generated draws (every published per-trial detection
window must come out identical). Ours runs on every cell's own inputs: our Family A, oracle
N(0, 1), Ville mode, threshold log(1/alpha).

Null cells (ours and Tessera's rules; Tessera published none): magnitude 0, 200 runs per
(W, alpha), seeds ``0x77E11 ^ (0x100000 + (alpha_index * 6 + W_index) * 200 + run)``.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import numpy.typing as npt

from tessera_daemon.config import Config
from tessera_daemon.evaluation import reference
from tessera_daemon.evaluation.ours import OurSettings, oracle_ville
from tessera_daemon.evaluation.report import Check, MatrixResult, fpr_check, table
from tessera_daemon.evaluation.scoring import median
from tessera_daemon.evaluation.tessera_bettor import TesseraFamilyA, TesseraOns
from tessera_daemon.evaluation.tessera_lcg import LcgArray

PREFIX = 0x77E11
MAGNITUDES = (0.050, 0.075, 0.100, 0.125, 0.150, 0.175, 0.200, 0.225, 0.250, 0.275, 0.300, 0.325, 0.350, 0.375)
WINDOW_COUNTS = (30, 50, 75, 100, 150, 200)
ALPHAS = (0.001, 0.005, 0.010)
FAMILIES = ("family-a", "family-c")
TRIALS = 5
NULL_OFFSET = 0x100000
NULL_RUNS = 200
NULL_RUNS_FAST = 200
I64 = npt.NDArray[np.int64]


def cells() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    for m in MAGNITUDES:
        for w in WINDOW_COUNTS:
            for a in ALPHAS:
                for f in FAMILIES:
                    out.append({"cell_idx": len(out), "drift_magnitude": m, "window_count": w, "alpha": a, "family": f})
    return out


def tessera_detection(
    draws: npt.NDArray[np.float64],
    mags: npt.NDArray[np.float64],
    alphas: npt.NDArray[np.float64],
    fam_a: npt.NDArray[np.bool_],
    windows: npt.NDArray[np.int64],
) -> I64:
    """Tessera's first detection window per stream (-1: none), Family A or C per row."""
    n, n_w = draws.shape
    a, c = TesseraFamilyA(n), TesseraOns(n)
    det = np.full(n, -1, np.int64)
    for w in range(n_w):
        x = draws[:, w] + mags * (w + 1)
        m = a.update(x)
        log_s = c.update(x)
        hit = np.where(fam_a, m >= 1.0 / alphas, log_s >= -np.log(alphas)) & (w < windows) & (det < 0)
        det[hit] = w
    return det


def ours_detection(
    draws: npt.NDArray[np.float64],
    mags: npt.NDArray[np.float64],
    alphas: npt.NDArray[np.float64],
    windows: npt.NDArray[np.int64],
    s: OurSettings,
) -> I64:
    n_w = draws.shape[1]
    x = draws + mags[:, None] * np.arange(1, n_w + 1)[None, :]
    log_m = oracle_ville(x, s)
    log_m = np.where(np.arange(n_w)[None, :] < windows[:, None], log_m, -np.inf)
    hit = log_m >= np.log(1.0 / alphas)[:, None]
    idx = np.argmax(hit, axis=1).astype(np.int64)
    out: I64 = np.where(hit.any(axis=1), idx, -1)
    return out


def run(cfg: Config, *, fast: bool = False) -> MatrixResult:
    t0 = time.perf_counter()
    s = OurSettings.from_config(cfg)
    grid = cells()
    n = len(grid) * TRIALS
    seeds = np.array([(PREFIX ^ i) & 0xFFFFFFFF for i in range(n)], np.int64)
    mags = np.repeat([c["drift_magnitude"] for c in grid], TRIALS).astype(np.float64)
    alphas = np.repeat([c["alpha"] for c in grid], TRIALS).astype(np.float64)
    windows = np.repeat([c["window_count"] for c in grid], TRIALS).astype(np.int64)
    fam_a = np.repeat([c["family"] == "family-a" for c in grid], TRIALS)
    draws = LcgArray(seeds).normals(max(WINDOW_COUNTS))
    t_det = tessera_detection(draws, mags, alphas, fam_a, windows)
    o_det = ours_detection(draws, mags, alphas, windows, s)

    pub = reference.load(reference.R77)
    res = MatrixResult("r77", "R77 detection envelope: magnitude x window count x alpha x family, 5 trials", fast)
    if pub is None:
        res.reproduction.append(Check("R77 published JSON", "present", "reference data not found", None))
        pub_det = None
    else:
        pub_det = np.array(
            [
                -1 if t["detection_window_index"] is None else t["detection_window_index"]
                for c in pub["cells"]
                for t in c["trials"]
            ],
            np.int64,
        )
        pub_seeds = np.array([t["seed"] for c in pub["cells"] for t in c["trials"]], np.int64)
        same = int(np.sum(pub_det == t_det))
        res.reproduction += [
            Check(
                "trial seeds",
                "2520/2520 identical",
                f"{int(np.sum(pub_seeds == seeds))}/2520",
                bool(np.array_equal(pub_seeds, seeds)),
            ),
            Check("Tessera A/C re-run: per-trial detection window", "2520/2520 identical", f"{same}/2520", same == n),
        ]

    rows: list[dict[str, Any]] = []
    w30_ok, w50_ok = True, True
    w30_bad: list[str] = []
    w50_bad: list[str] = []
    for ci, c in enumerate(grid):
        sl = slice(ci * TRIALS, (ci + 1) * TRIALS)
        ours_k = int(np.sum(o_det[sl] >= 0))
        tess_k = int(np.sum((pub_det if pub_det is not None else t_det)[sl] >= 0))
        ow = [int(v) for v in o_det[sl] if v >= 0]
        tw = [int(v) for v in t_det[sl] if v >= 0]
        rows.append(
            {
                **c,
                "tessera_count": tess_k,
                "ours_count": ours_k,
                "tessera_median_window": median(tw),
                "ours_median_window": median(ow),
                "ours_windows": [int(v) for v in o_det[sl]],
                "tessera_windows": [int(v) for v in t_det[sl]],
            }
        )
        label = f"{c['family']} m={c['drift_magnitude']:.3f} W={c['window_count']} a={c['alpha']}"
        if c["window_count"] >= 50 and ours_k < TRIALS:
            w50_ok = False
            w50_bad.append(f"{label}: {ours_k}/5")
        if c["window_count"] == 30 and ours_k < tess_k:
            w30_ok = False
            w30_bad.append(f"{label}: ours {ours_k} < Tessera {tess_k}")

    null = _null_cells(s, NULL_RUNS_FAST if fast else NULL_RUNS)
    res.checks = [
        Check(
            "W >= 50: every cell 5/5",
            "420/420 cells",
            f"{420 - len(w50_bad)}/420 cells" + (f"; misses: {', '.join(w50_bad[:6])}" if w50_bad else ""),
            w50_ok,
        ),
        Check(
            "W = 30: ours >= Tessera in every cell",
            "84/84 cells",
            f"{84 - len(w30_bad)}/84 cells" + (f"; short: {', '.join(w30_bad[:6])}" if w30_bad else ""),
            w30_ok,
        ),
    ]
    for a in ALPHAS:
        fires = sum(r["ours_fires"] for r in null if r["alpha"] == a)
        runs = sum(r["runs"] for r in null if r["alpha"] == a)
        worst = max((r for r in null if r["alpha"] == a), key=lambda r: r["ours_fires"])
        chk = fpr_check(f"null cells alpha={a}: no cell above alpha", int(worst["ours_fires"]), int(worst["runs"]), a)
        res.checks.append(
            Check(
                chk.name,
                chk.bound,
                f"worst cell W={worst['window_count']}: {chk.measured}; all W: {fires}/{runs}",
                chk.ok,
            )
        )

    res.sections += [_heatmaps(rows), _null_table(null), _medians(rows)]
    res.data = {
        "alphas": list(ALPHAS),
        "magnitudes": list(MAGNITUDES),
        "window_counts": list(WINDOW_COUNTS),
        "bets": list(s.bets),
        "clip": s.clip,
        "cells": rows,
        "null_cells": null,
    }
    res.elapsed_s = time.perf_counter() - t0
    return res


def _null_cells(s: OurSettings, runs: int) -> list[dict[str, Any]]:
    combos = [(ai, wi) for ai in range(len(ALPHAS)) for wi in range(len(WINDOW_COUNTS))]
    seeds = np.array(
        [
            (PREFIX ^ (NULL_OFFSET + (ai * len(WINDOW_COUNTS) + wi) * NULL_RUNS + r)) & 0xFFFFFFFF
            for ai, wi in combos
            for r in range(runs)
        ],
        np.int64,
    )
    alphas = np.repeat([ALPHAS[ai] for ai, _ in combos], runs).astype(np.float64)
    windows = np.repeat([WINDOW_COUNTS[wi] for _, wi in combos], runs).astype(np.int64)
    zeros = np.zeros(len(seeds))
    draws = LcgArray(seeds).normals(max(WINDOW_COUNTS))
    o = ours_detection(draws, zeros, alphas, windows, s)
    ta = tessera_detection(draws, zeros, alphas, np.ones(len(seeds), np.bool_), windows)
    tc = tessera_detection(draws, zeros, alphas, np.zeros(len(seeds), np.bool_), windows)
    out = []
    for k, (ai, wi) in enumerate(combos):
        sl = slice(k * runs, (k + 1) * runs)
        out.append(
            {
                "alpha": ALPHAS[ai],
                "window_count": WINDOW_COUNTS[wi],
                "runs": runs,
                "ours_fires": int(np.sum(o[sl] >= 0)),
                "tessera_a_fires": int(np.sum(ta[sl] >= 0)),
                "tessera_c_fires": int(np.sum(tc[sl] >= 0)),
            }
        )
    return out


def _heatmaps(rows: list[dict[str, Any]]) -> str:
    out = ["## Detections out of 5, Tessera / ours (same inputs)", ""]
    for fam in FAMILIES:
        for a in ALPHAS:
            body = []
            for m in MAGNITUDES:
                line: list[object] = [f"{m:.3f}"]
                for w in WINDOW_COUNTS:
                    r = next(
                        r
                        for r in rows
                        if r["family"] == fam
                        and r["alpha"] == a
                        and r["drift_magnitude"] == m
                        and r["window_count"] == w
                    )
                    mark = "" if r["ours_count"] >= r["tessera_count"] else " ▼"
                    line.append(f"{r['tessera_count']} / {r['ours_count']}{mark}")
                body.append(line)
            out += [
                f"### Inputs of Tessera's {fam} cells, alpha = {a}",
                "",
                table(["m \\ W", *[str(w) for w in WINDOW_COUNTS]], body),
                "",
            ]
    out.append("▼: ours detects fewer than Tessera on the same inputs.")
    return "\n".join(out)


def _null_table(null: list[dict[str, Any]]) -> str:
    body = [
        [r["alpha"], r["window_count"], r["runs"], r["ours_fires"], r["tessera_a_fires"], r["tessera_c_fires"]]
        for r in null
    ]
    return (
        "## Null cells (magnitude 0): false fires\n\nTessera published no null cells; its columns here are its "
        "rules re-run on our null draws.\n\n"
        + table(["alpha", "W", "runs", "ours", "Tessera A (re-run)", "Tessera C (re-run)"], body)
    )


def _medians(rows: list[dict[str, Any]]) -> str:
    body = []
    for m in MAGNITUDES:
        r = next(
            r
            for r in rows
            if r["family"] == "family-a"
            and r["alpha"] == 0.005
            and r["drift_magnitude"] == m
            and r["window_count"] == 200
        )
        body.append([f"{m:.3f}", r["tessera_median_window"], r["ours_median_window"]])
    return "## Median detection window, alpha 0.005, W 200 (Family A cells' inputs)\n\n" + table(
        ["m", "Tessera A", "ours"], body
    )
