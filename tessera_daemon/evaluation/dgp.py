"""Null data-generating processes of Tessera's R79 and calibration-envelope tools, vectorised.

Each process advances many independent streams at once (one per row) and reproduces Tessera's
per-stream draw order exactly: an optional initial state draw, then per window the draws the tool
makes (``tools/mismatched-dgp-envelope.ts``, ``tools/calibration-envelope.ts``).

Our detector also needs a *warm-up prefix*: windows of the same null process before Tessera's
window 0, from which it learns offset, AR(1) and scale. :meth:`Dgp.prefix` draws them from a
separate generator and joins them to the stream without a seam: an AR(1) prefix runs backwards
from the stream's initial state (a Gaussian AR(1) is time-reversible, so prefix + stream is one
stationary path); periodic and block processes continue their phase to negative windows;
i.i.d. processes take fresh draws. Tessera's 200 windows are left untouched.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]


class NormalSource(Protocol):
    def normal(self) -> F64: ...

    def __len__(self) -> int: ...


@dataclass(frozen=True, slots=True)
class Dgp:
    """One null process. ``kind``: gauss | t | ar1 | step | sine | blocks."""

    name: str
    kind: str
    rho: float = 0.0  # ar1
    innov: float = 0.0  # ar1 innovation scale, as the tool writes it (sqrt(1 - 0.81) vs sqrt(1 - rho^2))
    df: int = 0  # t
    t_form: str = "calibration"  # t: "calibration" (z / sqrt(chi/df) * sqrt((df-2)/df)) | "r79"
    amp: float = 0.0  # sine amplitude / step height
    period: float = 24.0  # sine period
    at: int = 0  # step: first window of the step
    lo: float = 0.5  # blocks: sd of even blocks
    hi: float = 1.5  # blocks: sd of odd blocks
    block: int = 10
    init_draw: bool = False  # one normal drawn before window 0 (R79 always; calibration: ar1 only)
    true_mean: float = 0.0  # Tessera's oracle baseline for this process
    true_var: float = 1.0

    def init(self, rng: NormalSource) -> F64:
        if self.init_draw or self.kind == "ar1":
            return rng.normal()
        return np.zeros(len(rng))

    def _t(self, rng: NormalSource) -> F64:
        z = rng.normal()
        chi = np.zeros(len(rng))
        for _ in range(self.df):
            g = rng.normal()
            chi = chi + g * g
        if self.t_form == "r79":
            out: F64 = (z / np.sqrt(chi / self.df)) / math.sqrt(self.df)
            return out
        scaled: F64 = (z / np.sqrt(chi / self.df)) * math.sqrt((self.df - 2) / self.df)
        return scaled

    def step(self, rng: NormalSource, state: F64, w: int) -> tuple[F64, F64]:
        """(value of window ``w``, new state)."""
        k = self.kind
        if k == "ar1":
            state = self.rho * state + self.innov * rng.normal()
            return state, state
        if k == "t":
            return self._t(rng), state
        if k == "step":
            return rng.normal() + (self.amp if w >= self.at else 0.0), state
        if k == "sine":
            return self.amp * math.sin((2.0 * math.pi * w) / self.period) + rng.normal(), state
        if k == "blocks":
            sd = self.lo if math.floor(w / self.block) % 2 == 0 else self.hi
            return sd * rng.normal(), state
        return rng.normal(), state

    def generate(self, rng: NormalSource, windows: int, drift: float = 0.0) -> tuple[F64, F64]:
        """(``[streams, windows]`` values with ``drift (w + 1)`` added, initial state)."""
        state = self.init(rng)
        init = state.copy()
        out = np.empty((len(rng), windows))
        for w in range(windows):
            v, state = self.step(rng, state, w)
            out[:, w] = v + drift * (w + 1) if drift else v
        return out, init

    def prefix(self, prng: NormalSource, init: F64, length: int) -> F64:
        """``[streams, length]`` null windows ``-length .. -1`` joined to a stream starting at ``init``."""
        out = np.empty((len(prng), length))
        if self.kind == "ar1":
            cur = init.copy()
            for j in range(length - 1, -1, -1):
                out[:, j] = cur
                cur = self.rho * cur + self.innov * prng.normal()
            return out
        for j in range(length):
            w = j - length
            if self.kind == "t":
                out[:, j] = self._t(prng)
            elif self.kind == "sine":
                out[:, j] = self.amp * math.sin((2.0 * math.pi * w) / self.period) + prng.normal()
            elif self.kind == "blocks":
                sd = self.lo if math.floor(w / self.block) % 2 == 0 else self.hi
                out[:, j] = sd * prng.normal()
            else:  # gauss, and step before its onset
                out[:, j] = prng.normal()
        return out


def ar1(name: str, rho: float, innov: float | None = None, *, init_draw: bool = False) -> Dgp:
    """An AR(1) process; ``innov`` defaults to ``sqrt(1 - rho * rho)`` (calibration-envelope form)."""
    return Dgp(name, "ar1", rho=rho, innov=math.sqrt(1.0 - rho * rho) if innov is None else innov, init_draw=init_draw)
