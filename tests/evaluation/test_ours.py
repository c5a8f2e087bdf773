"""Our detectors as the harness drives them: Ville validity on exact nulls, estimation on lone streams."""

from __future__ import annotations

import math

import numpy as np

from tessera_daemon.config import Config
from tessera_daemon.evaluation.dgp import Dgp, ar1
from tessera_daemon.evaluation.ours import OurSettings, cohort_ville, estimated_ville, first_crossing, oracle_ville
from tessera_daemon.evaluation.tessera_lcg import LcgArray


def test_oracle_ville_is_a_test_martingale_on_the_exact_null(cfg: Config) -> None:
    s = OurSettings.from_config(cfg)
    x = LcgArray(np.arange(2000, dtype=np.int64) * 7 + 11).normals(100)
    log_m = oracle_ville(x, s)
    assert log_m.shape == (2000, 100)
    assert np.mean(np.exp(log_m[:, -1])) < 1.1  # E[M_T] <= 1 up to Monte-Carlo error
    fires = int((first_crossing(log_m, math.log(1 / 0.01)) >= 0).sum())
    assert fires <= 40  # Ville: <= 1 % of 2000 (+ Monte-Carlo slack)


def test_first_crossing() -> None:
    lm = np.array([[0.0, 6.0, 1.0], [0.0, 0.0, 0.0]])
    assert first_crossing(lm, 5.0).tolist() == [1, -1]


def test_estimated_streams_learn_phi_and_stay_quiet(cfg: Config) -> None:
    s = OurSettings.from_config(cfg)
    dgp = ar1("ar", 0.6, init_draw=True)
    rng, prng = LcgArray(np.arange(300, dtype=np.int64) + 5), LcgArray(np.arange(300, dtype=np.int64) + 9)
    x, init = dgp.generate(rng, 150)
    pre = s.warmup_max
    full = np.concatenate([dgp.prefix(prng, init, pre), x], axis=1)
    assert full[:, pre - 1].tolist() == init.tolist()  # the prefix ends on the stream's initial state
    run = estimated_ville(full, s)
    assert abs(float(np.median(run.phi)) - 0.6) < 0.1
    assert np.all(run.log_m[:, : s.warmup] == 0.0)  # warm-up gives no evidence
    assert int((run.log_m >= math.log(200)).any(axis=1).sum()) <= 3
    # the warm-up is the stream's own: longer than the minimum for phi 0.6, within the prefix
    assert (run.warm_at >= s.warmup).all() and (run.warm_at <= pre).all()
    assert float(np.median(run.warm_at)) > s.warmup
    cols = np.arange(full.shape[1])[None, :]
    assert np.all(run.log_m[cols < run.warm_at[:, None]] == 0.0)


def test_warm_up_length_follows_persistence(cfg: Config) -> None:
    """White streams are warm after the minimum, near-unit-root ones learn up to the whole prefix."""
    s = OurSettings.from_config(cfg)
    assert (s.warmup, s.warmup_max) == (cfg.detector.warmup_windows, cfg.detector.warmup_max_windows)
    white = LcgArray(np.arange(100, dtype=np.int64) * 3 + 1).normals(s.warmup_max)
    assert np.all(estimated_ville(white, s).warm_at == s.warmup)
    dgp = ar1("ar", 0.95, init_draw=True)
    x, init = dgp.generate(LcgArray(np.arange(100, dtype=np.int64) + 77), 10)
    full = np.concatenate([dgp.prefix(LcgArray(np.arange(100, dtype=np.int64) + 99), init, s.warmup_max), x], axis=1)
    wa = estimated_ville(full, s).warm_at
    assert (wa > s.warmup).all() and (wa <= s.warmup_max).all() and float(np.median(wa)) == s.warmup_max


def test_cohort_peers_cancel_a_shared_step(cfg: Config) -> None:
    s = OurSettings.from_config(cfg)
    gauss = Dgp("g", "gauss")
    trials, members, n_w = 40, 6, s.warmup + 120
    x = LcgArray(np.arange(trials * members, dtype=np.int64) * 13 + 1).normals(n_w).reshape(trials, members, n_w)
    x[:, :, s.warmup + 40 :] += 2.0  # every member steps together
    run = cohort_ville(x, s)
    assert not (run.log_m >= math.log(200)).any()
    x[:, 0, s.warmup + 40 :] += 3.0  # and member 0 a further 3 sigma on its own
    run = cohort_ville(x, s)
    fired = (run.log_m >= math.log(200)).any(axis=1).reshape(members, trials)
    assert fired[0].sum() >= 0.9 * trials and fired[1:].sum() == 0
    assert gauss.kind == "gauss"
