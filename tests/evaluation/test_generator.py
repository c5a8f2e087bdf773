"""Tessera's generators and rules, re-implemented: bit-exact against its published data."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from tessera_daemon.evaluation import r77, r78
from tessera_daemon.evaluation.calibration import GENERATORS, SEED_PREFIX, baseline_fit
from tessera_daemon.evaluation.r72 import demo_wealths
from tessera_daemon.evaluation.tessera_bettor import tessera_e_bh
from tessera_daemon.evaluation.tessera_lcg import (
    Lcg,
    LcgArray,
    Mulberry32,
    Mulberry32Array,
    scramble,
    window_major_draws,
)


def _load(ref_dir: Path, rel: str) -> object:
    return json.loads((ref_dir / rel).read_text(encoding="utf-8"))


def test_lcg_integer_sequence_is_exact() -> None:
    rng = Lcg(0)
    states = []
    for _ in range(4):
        rng.uniform()
        states.append(rng.state)
    assert states == [1013904223, 1196435762, 3519870697, 2868466484]  # Numerical Recipes' ranqd1
    assert Lcg(2**32 + 5).state == 5  # s0 = seed mod 2**32


def test_vector_lcg_rows_are_the_scalar_streams() -> None:
    seeds = np.array([0, 1, 465920, 491025 ^ 77, 2**32 - 1], np.int64)
    arr = LcgArray(seeds)
    got = arr.normals(50)
    for i, s in enumerate(seeds.tolist()):
        rng = Lcg(s)
        want = [rng.normal() for _ in range(50)]
        np.testing.assert_allclose(got[i], want, rtol=1e-13, atol=1e-13)
        assert int(arr.state[i]) == rng.state  # integer states identical


def test_window_major_draw_order() -> None:
    x = window_major_draws([465920], 3, 4)[0]
    rng = Lcg(465920)
    flat = [rng.normal() for _ in range(12)]
    np.testing.assert_allclose(x.reshape(-1), flat, rtol=1e-13)  # for w: for s: one draw


def test_mulberry32_scalar_and_vector_agree() -> None:
    states = [scramble(n) for n in (0, 1, 0xCA11B, 123456789)]
    arr = Mulberry32Array(states)
    for _ in range(20):
        v = arr.uniform()
        assert len(v) == 4
    for i, st in enumerate(states):
        one = Mulberry32(st)
        for _ in range(19):
            one.uniform()
        assert one.uniform() == float(v[i])


@pytest.mark.parametrize("name", ["clean-baseline", "sdc-drift", "fdr-multiple-testing", "hierarchical-evalue"])
def test_demo_per_window_wealth_matches_published(ref_dir: Path, name: str) -> None:
    from tessera_daemon.evaluation.r72 import DEMO_SPECS  # noqa: PLC0415

    doc = _load(ref_dir, f"demos/scenarios/{name}.json")
    assert isinstance(doc, dict)
    m = demo_wealths(doc["params"], *DEMO_SPECS[name])
    pub = np.array([[p["M_t"] for p in w["per_shard"]] for w in doc["windows"]], dtype=np.float64)
    np.testing.assert_allclose(m, pub, rtol=1e-6, atol=5.1e-7)  # published with 6 decimals
    fired = [[bool(p["fired"]) for p in w["per_shard"]] for w in doc["windows"]]
    assert (m >= doc["params"]["threshold"]).tolist() == fired


def test_sdc_demo_figures_from_reference_text(ref_dir: Path) -> None:
    doc = _load(ref_dir, "demos/scenarios/sdc-drift.json")
    assert isinstance(doc, dict)
    m = demo_wealths(doc["params"], "sdc_target_shard", "sdc_drift_start_window", "sdc_drift_per_window")
    target = m[:, 4]
    first = int(np.argmax(target >= 200))
    assert first == 22 and math.isclose(target[22], 213.59843, rel_tol=1e-7)
    assert math.isclose(target[-1], 18900.41, rel_tol=1e-6)
    assert round(float(target[:10].min()), 2) == 0.33  # its wealth first falls to 0.33 at window 9
    assert [i for i in range(10) if m[-1, i] >= 200] == [4]


def test_r77_every_published_trial_reproduced(ref_dir: Path) -> None:
    doc = _load(ref_dir, "coverage-matrices/R77-detection-envelope-matrix.json")
    assert isinstance(doc, dict)
    grid = r77.cells()
    seeds, mags, alphas, windows, fam_a, want = [], [], [], [], [], []
    for c, pc in zip(grid, doc["cells"], strict=True):
        assert c["drift_magnitude"] == pc["params"]["drift_magnitude"] and c["family"] == pc["params"]["family"]
        for t in pc["trials"]:
            seeds.append(t["seed"])
            mags.append(c["drift_magnitude"])
            alphas.append(c["alpha"])
            windows.append(c["window_count"])
            fam_a.append(c["family"] == "family-a")
            want.append(-1 if t["detection_window_index"] is None else t["detection_window_index"])
    assert seeds == [(0x77E11 ^ i) & 0xFFFFFFFF for i in range(2520)]
    draws = LcgArray(np.array(seeds, np.int64)).normals(200)
    got = r77.tessera_detection(draws, np.array(mags), np.array(alphas), np.array(fam_a), np.array(windows))
    assert got.tolist() == want


def test_r78_fired_sets_reproduced(ref_dir: Path) -> None:
    doc = _load(ref_dir, "coverage-matrices/R78-topology-walk-tuning-matrix.json")
    assert isinstance(doc, dict)
    for cell in doc["cells"]:
        cls = cell["params"]["scenario_class"]
        for t in cell["trials"]:
            assert t["seed"] == (0x78A11 ^ (cell["cell_idx"] * 5 + t["trial_idx"]))
            assert r78.fired_set(cls, Lcg(t["seed"])) == t["fired_set"]


def test_calibration_generator_and_ar1_fit(ref_dir: Path) -> None:
    """mulberry32 + scramble + Box-Muller + Kendall-corrected fit give the published phi of one cell."""
    doc = _load(ref_dir, "coverage-matrices/calibration-envelope-matrix.json")
    assert isinstance(doc, dict)
    # cells in order: gaussian(2) t5(2) t3(2), then ar1 rho=0.30: raw 0.01 (cell 6), whiten 0.01 (cell 7)
    row = doc["type_i"][7]
    assert row["generator"] == "ar1 rho=0.30" and row["mode"] == "whiten"
    phi = baseline_fit(GENERATORS[3], SEED_PREFIX + 7 * 5_000_000)
    assert abs(phi - row["phi"]) <= 5e-7


def test_tessera_e_bh_rule() -> None:
    assert tessera_e_bh([1.0] * 5, 0.1) == []
    assert tessera_e_bh([100.0, 1.0, 100.0], 0.1) == [0, 2]  # 2 * 100 >= 3 / 0.1
    assert tessera_e_bh([5.0, 5.0, 5.0, 5.0], 0.8) == [0, 1, 2, 3]  # ties kept, 4 * 5 >= 4 / 0.8
