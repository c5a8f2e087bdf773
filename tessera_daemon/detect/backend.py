"""Which implementation of the detector kernels runs: numba (compiled) or the NumPy twins.

``detector.backend``: ``"numba"`` compiles the kernels and fails the start if that or the self-check
fails; ``"numpy"`` runs the twins (``detect.reference``, ``detect.reference_cde``) without compiling;
``"auto"`` (the default) compiles, runs every kernel and its twin on the same random windows
(the self-check) and, when compiling raises or a result differs, runs on the twins: the reason is
logged once, ``tessera_kernel_backend{backend}`` shows it and ``TesseraKernelFallback`` opens a ticket.
The twins give the same results, only slower (see bench/detector.py).

The typed wrappers in the kernel modules call their compiled function through a module global
(``kernels._family_a_update``, ``family_c._family_c_update``, ...); :func:`install_twins` rebinds
those globals to the twins, so every caller (pipeline, groups, families) follows without a change.

``TESSERA_KERNEL_FAULT=compile|selfcheck`` (environment) makes the start behave as if compiling
failed or the self-check disagreed: how tests and drills exercise the fallback.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
from prometheus_client.core import GaugeMetricFamily, Metric

from tessera_daemon.detect import family_c, family_d, family_e, kernels, reference, reference_cde
from tessera_daemon.errors import KernelError
from tessera_daemon.log import get_logger

log = get_logger(__name__)

BACKENDS = ("numba", "numpy", "auto")
FAULT_ENV = "TESSERA_KERNEL_FAULT"
_COMPILED: dict[tuple[Any, str], Any] = {
    (kernels, "_family_a_update"): kernels._family_a_update,
    (family_c, "_family_c_update"): family_c._family_c_update,
    (family_d, "_family_d_update"): family_d._family_d_update,
    (family_e, "_family_e_update"): family_e._family_e_update,
}


@dataclass(frozen=True, slots=True)
class BackendChoice:
    backend: str  # "numba" | "numpy": what runs
    reason: str  # why the twins run ("" on numba)


class BackendCollector:
    """``tessera_kernel_backend{backend}``: 1 for the implementation in use, 0 for the other."""

    def __init__(self, choice: BackendChoice) -> None:
        self.choice = choice

    def collect(self) -> Iterator[Metric]:
        g = GaugeMetricFamily(
            "tessera_kernel_backend",
            "Detector kernel implementation in use (numba: compiled; numpy: the twins, after a fallback).",
            labels=["backend"],
        )
        for b in ("numba", "numpy"):
            g.add_metric([b], 1.0 if b == self.choice.backend else 0.0)
        yield g


def _a_twin(
    x: Any, delta: Any, v: Any, bets: Any, clip: float, window: int, floor: float, renew: float, *rest: Any
) -> None:
    w_state, run_start, log_m, side, margin = rest
    reference.family_a_update(x, delta, v, bets, clip, window, w_state, run_start, log_m, side, floor, renew, margin)


def _e_twin(w: Any, cohort: Any, n_cohorts: int, kappas: Any, clip: float, window: int, seed: Any, *rest: Any) -> None:
    reference_cde.family_e_update(w, cohort, n_cohorts, kappas, clip, window, int(seed), *rest)


_TWINS: dict[tuple[Any, str], Callable[..., None]] = {
    (kernels, "_family_a_update"): _a_twin,
    (family_c, "_family_c_update"): reference_cde.family_c_update,
    (family_d, "_family_d_update"): reference_cde.family_d_update,
    (family_e, "_family_e_update"): _e_twin,
}


def install_twins() -> None:
    """Every kernel wrapper runs its NumPy twin from now on (this process)."""
    for (mod, name), fn in _TWINS.items():
        setattr(mod, name, fn)


def install_compiled() -> None:
    for (mod, name), fn in _COMPILED.items():
        setattr(mod, name, fn)


def current() -> str:
    return "numpy" if kernels._family_a_update is _a_twin else "numba"


def _compile() -> None:
    if os.environ.get(FAULT_ENV) == "compile":
        raise KernelError(f"compilation failed ({FAULT_ENV}=compile)")
    kernels.warm_up()
    family_c.warm_up()
    family_d.warm_up()
    family_e.warm_up()


def _cases(seed: int = 19) -> list[tuple[str, tuple[Any, ...], int, int]]:
    """(kernel, inputs, index of the window argument, index of the first in/out state argument)."""
    rng = np.random.default_rng(seed)
    s, m = 6, 3
    x = rng.normal(0.0, 1.5, (s, m))
    x[0, 1] = np.nan
    delta, v = np.full((s, m), 0.1), np.full((s, m), 1.2)
    bets_a, bets_c, bets_d = np.array([0.1, 0.5, 1.0]), np.array(family_c.DEFAULT_BETS), np.array(family_d.DEFAULT_BETS)
    kappas = np.array(family_e.DEFAULT_KAPPAS)
    cohort = np.array([0, 0, 0, 1, 1, 1], np.int64)
    e_a = kernels.family_a_state((s, m), bets_a.size)
    a = (x, delta, v, bets_a, 4.0, 0, 0.0, -math.inf, e_a, np.zeros((s, m), np.int64),
         np.zeros((s, m)), np.zeros((s, m), np.int64), np.full((s, m), 0.2))  # fmt: skip
    c = (x, delta, v, bets_c, 4.0, 0, *family_c.family_c_state(s, m, bets_c.size))
    d = (x, delta, v, bets_d, family_d.DEFAULT_LAG_MIN, 4.0, 0, *family_d.family_d_state(s, m, bets_d.size))
    e = (x, cohort, 2, kappas, 4.0, 0, np.uint64(12345), *family_e.family_e_state(s, kappas.size))
    return [("A", a, 5, 8), ("C", c, 5, 6), ("D", d, 6, 7), ("E", e, 5, 7)]


def _self_check() -> None:
    """Each compiled kernel against its twin over a few windows; KernelError on a difference."""
    fault = os.environ.get(FAULT_ENV) == "selfcheck"
    for (label, base, win, first), key in zip(_cases(), list(_COMPILED), strict=True):
        ours = [a.copy() if isinstance(a, np.ndarray) else a for a in base]
        twin = [a.copy() if isinstance(a, np.ndarray) else a for a in base]
        for window in range(5):
            ours[win] = twin[win] = window
            _COMPILED[key](*ours)
            _TWINS[key](*twin)
        if fault:
            ours[first] = ours[first] + 1.0
        for i in range(first, len(base)):
            if not np.allclose(ours[i], twin[i], rtol=1e-9, atol=1e-12, equal_nan=True):
                raise KernelError(f"self-check: family {label} disagrees with its NumPy twin (state argument {i})")


def select(setting: str) -> BackendChoice:
    """Pick and install the kernels' implementation for ``detector.backend = setting``."""
    if setting not in BACKENDS:
        raise KernelError(f"detector.backend: expected one of {BACKENDS}, got {setting!r}")
    if setting == "numpy":
        install_twins()
        choice = BackendChoice("numpy", "detector.backend = numpy")
        log.info("detector kernels: NumPy twins", reason=choice.reason)
        return choice
    install_compiled()
    try:
        _compile()
        _self_check()
    except Exception as exc:  # numba raises assorted types (TypingError, LoweringError, OSError, ...)
        reason = f"{type(exc).__name__}: {exc}"
        if setting == "numba":
            raise KernelError(f"detector.backend = numba, but the kernels are unusable ({reason})") from exc
        install_twins()
        log.warning(
            "numba kernels unavailable: running on the NumPy twins (slower, same results)",
            reason=reason,
            setting="detector.backend",
        )
        return BackendChoice("numpy", reason)
    return BackendChoice("numba", "")
