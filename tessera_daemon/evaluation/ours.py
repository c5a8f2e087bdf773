"""Our detectors, driven on the matrices' scalar streams (no estimation shortcuts of our own).

Two ways in:

* :func:`oracle_ville` - the matrices whose null is exactly N(0, 1) with oracle mu = 0, sigma = 1
  (R72 sdc-drift / FDR / hierarchical, R77): the draw itself is the standardised innovation, fed to
  our Family A kernel (``detect.kernels.family_a_update``) in Ville mode (``floor=-inf``: a mixture
  test martingale, so ``P(sup log M >= log(1/alpha)) <= alpha``), delta 0, v 1, our bet grid and clip.
* :func:`estimated_ville` - the misspecified nulls (R79, calibration envelope): our residual
  pipeline (``detect.residuals.residual_step``: offset, AR(1) phi and scale learned in an adaptive
  warm-up and followed online, never given) in front of the same kernel as a change-point mixture
  (``floor=-inf, renew=log(1/H)``: a test started at every window with mass 1/H, so
  ``P(sup M >= 1/alpha) <= alpha`` over the whole run, for a change at any window), with the
  composite-null margin ``delta`` and second-moment bound ``v`` that the residual step itself
  returns. ``EstimatedRun.warm_at`` says where each stream's warm-up ended.

  A matrix stream has no peers, so :func:`estimated_ville` runs the residual step with the cohort
  centre fixed at 0 (``residual_step(..., centre=0)``, as the pipeline does for its cohort-level
  streams): every stream is compared with its own learned offset, AR(1) and scale only. Streams with
  real peers (:func:`cohort_ville`) use the ordinary cohort median.

The learning gate mirrors ``engine.pipeline``: a stream's baseline stops learning once its e-CUSUM
evidence (the pipeline's own statistic, ``floor=0``, run alongside) reaches
``detector.learn_below_log``; the decision reads the change-point mixture.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from tessera_daemon.config import Config
from tessera_daemon.detect.kernels import family_a_state, family_a_update
from tessera_daemon.detect.residuals import ResidualParams, residual_step
from tessera_daemon.detect.state import DetectorState

F64 = npt.NDArray[np.float64]
I64 = npt.NDArray[np.int64]
VILLE_FLOOR = -math.inf


@dataclass(frozen=True, slots=True)
class OurSettings:
    """What our detector takes from the configuration (defaults: ``DetectorConfig``)."""

    bets: tuple[float, ...]
    clip: float
    params: ResidualParams
    learn_below_log: float

    @classmethod
    def from_config(cls, cfg: Config) -> OurSettings:
        d = cfg.detector
        return cls(
            bets=tuple(d.bets),
            clip=d.clip_sigma,
            # the matrices' columns are trials in sigma units, not metrics: no material margins
            params=dataclasses.replace(
                ResidualParams.from_config(d), material_abs=(), material_rel=(), material_log=()
            ),
            learn_below_log=d.learn_below_log,
        )

    @property
    def warmup(self) -> int:
        """Fewest warm-up windows (``detector.warmup_windows``)."""
        return self.params.warmup

    @property
    def warmup_max(self) -> int:
        """Most warm-up windows (``detector.warmup_max_windows``): the clean prefix the harness feeds."""
        return self.params.buffer


def oracle_ville(x: F64, s: OurSettings) -> F64:
    """Log evidence after every window, ``[streams, windows]``, for standardised draws ``x``."""
    n, n_w = x.shape
    bets = np.asarray(s.bets, np.float64)
    k = len(bets)
    e_state = family_a_state((n, 1), k)
    run_start = np.zeros((n, 1), np.int64)
    log_m = np.zeros((n, 1))
    side = np.zeros((n, 1), np.int64)
    delta = np.zeros((n, 1))
    v = np.ones((n, 1))
    out = np.empty((n, n_w))
    for w in range(n_w):
        xw = np.ascontiguousarray(x[:, w : w + 1])
        family_a_update(xw, delta, v, bets, s.clip, w, e_state, run_start, log_m, side, floor=VILLE_FLOOR)
        out[:, w] = log_m[:, 0]
    return out


@dataclass(slots=True)
class EstimatedRun:
    log_m: F64  # [rows, windows] log of the change-point mixture (the decision); 0 before it starts
    cusum: F64  # [rows, windows] the pipeline's e-CUSUM on the same innovations (the learning gate)
    phi: F64  # [rows] AR(1) coefficient at the end
    scale: F64  # [rows] innovation scale at the end
    warm_at: I64  # [rows] first window with an innovation (the stream's warm-up ended before it); -1: never


def _residual_ville(x: F64, s: OurSettings, *, centre_zero: bool, test_from: int | None) -> EstimatedRun:
    """Residual step + Family A over ``x`` ``[members, columns, windows]``.

    The rows of one column are one cohort (peers of each other); columns are independent (the
    state is ``[members, columns]``, the residual step's shard x metric layout), so many trials run
    as columns of one vectorised call. The state's warm-up buffer holds ``detector.warmup_max_windows``
    and each stream ends its (adaptive) warm-up when its own rule says.

    The decision statistic is the kernel's change-point mixture (``renew``): every window with an
    innovation from ``test_from`` on (None: from the start, i.e. from each stream's warm-up) starts a
    new test with mass ``1/H``, ``H`` the windows left from there to the end. ``M_t`` = the started
    tests' mixture + the mass not yet started is a test supermartingale (total mass <= 1), so
    ``P(sup M >= 1/alpha) <= alpha`` over the whole run, for a change at any window. The baseline and
    the learning gate carry on through ``test_from``.
    """
    n_s, n_c, n_w = x.shape
    start = 0 if test_from is None else test_from
    horizon = n_w - start
    log_pi = -math.log(horizon)
    bets = np.asarray(s.bets, np.float64)
    st = DetectorState.empty(n_s, n_c, s.warmup_max, len(bets))
    gate = DetectorState.empty(n_s, n_c, 1, len(bets))  # e-CUSUM state (floor 0), as in the pipeline
    cohort_of = np.zeros(n_s, np.int64)
    cohort_rows = [np.arange(n_s, dtype=np.int64)]
    zero = np.zeros((1, n_c)) if centre_zero else None
    out = np.zeros((n_s, n_c, n_w))
    cusum = np.empty((n_s, n_c, n_w))
    warm_at = np.full((n_s, n_c), -1, np.int64)
    started = np.zeros((n_s, n_c))  # tests started so far (windows with an innovation since ``start``)
    st.e_state[:] = family_a_state((n_s, n_c), len(bets), -math.inf)
    for w in range(n_w):
        xw = np.ascontiguousarray(x[:, :, w])
        frozen = gate.log_m >= s.learn_below_log
        res = residual_step(st, xw, cohort_of, cohort_rows, frozen, s.params, centre=zero)
        warm_at = np.where((warm_at < 0) & ~np.isnan(res.w), w, warm_at)
        if w >= start:
            family_a_update(
                res.w,
                res.delta,
                res.v,
                bets,
                s.clip,
                w,
                st.e_state,
                st.run_start,
                st.log_m,
                st.side,
                floor=VILLE_FLOOR,
                renew=log_pi,
            )
            started += ~np.isnan(res.w)
            rest = np.maximum(1.0 - started / horizon, 0.0)
            with np.errstate(divide="ignore"):
                out[:, :, w] = np.where(started > 0, np.logaddexp(st.log_m, np.log(rest)), 0.0)
        family_a_update(
            res.w,
            res.delta,
            res.v,
            bets,
            s.clip,
            w,
            gate.e_state,
            gate.run_start,
            gate.log_m,
            gate.side,
        )
        cusum[:, :, w] = gate.log_m
    return EstimatedRun(
        out.reshape(n_s * n_c, n_w),
        cusum.reshape(n_s * n_c, n_w),
        st.phi.reshape(-1).copy(),
        st.scale.reshape(-1).copy(),
        warm_at.reshape(-1),
    )


def estimated_ville(x: F64, s: OurSettings, *, test_from: int | None = None) -> EstimatedRun:
    """Lone streams ``x`` ``[streams, windows]`` (warm-up prefix included), centre fixed at 0."""
    return _residual_ville(x[None, :, :], s, centre_zero=True, test_from=test_from)


def cohort_ville(x: F64, s: OurSettings, *, test_from: int | None = None) -> EstimatedRun:
    """Cohorts ``x`` ``[trials, members, windows]``: each trial's members are peers of each other.

    Returns rows in member-major order (``member * trials + trial``).
    """
    return _residual_ville(np.ascontiguousarray(x.transpose(1, 0, 2)), s, centre_zero=False, test_from=test_from)


def first_crossing(log_m: F64, log_threshold: float) -> I64:
    """Index of the first window with ``log_m >= log_threshold`` per row (-1: never)."""
    hit = log_m >= log_threshold
    idx = np.argmax(hit, axis=1).astype(np.int64)
    out: I64 = np.where(hit.any(axis=1), idx, -1)
    return out
