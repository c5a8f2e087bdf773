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
    full = np.concatenate([dgp.prefix(prng, init, s.warmup), x], axis=1)
    assert full[:, s.warmup - 1].tolist() == init.tolist()  # the prefix ends on the stream's initial state
    run = estimated_ville(full, s)
    assert abs(float(np.median(run.phi)) - 0.6) < 0.1
    assert np.all(run.log_m[:, : s.warmup] == 0.0)  # warm-up gives no evidence
    assert int((run.log_m >= math.log(200)).any(axis=1).sum()) <= 3


def test_cohort_peers_cancel_a_shared_step(cfg: Config) -> None:
    s = OurSettings.from_config(cfg)
    gauss = Dgp("g", "gauss")
    trials, members, n_w = 40, 6, s.warmup + 120
    x = LcgArray(np.arange(trials * members, dtype=np.int64) * 13 + 1).normals(n_w).reshape(trials, members, n_w)
    x[:, :, s.warmup + 40:] += 2.0  # every member steps together
    run = cohort_ville(x, s)
    assert not (run.log_m >= math.log(200)).any()
    x[:, 0, s.warmup + 40:] += 3.0  # and member 0 a further 3 sigma on its own
    run = cohort_ville(x, s)
    fired = (run.log_m >= math.log(200)).any(axis=1).reshape(members, trials)
    assert fired[0].sum() >= 0.9 * trials and fired[1:].sum() == 0
    assert gauss.kind == "gauss"
