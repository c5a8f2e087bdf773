"""Tessera's synthetic generators, re-implemented bit-exactly (tessera.md section 8.1).

* :class:`Lcg`: the 32-bit LCG every R72/R77/R78/R79 tool uses: ``s0 = seed mod 2**32``,
  ``s <- (1664525 s + 1013904223) mod 2**32``, ``u = s / 2**32`` (the state advances first).
* :func:`box_muller`: one normal per call from two uniforms, ``u1 = max(u, 1e-12)``,
  ``x = sqrt(-2 ln u1) cos(2 pi u2)`` (the pair's second value is discarded).
* :class:`LcgArray`: the same LCG for many independent seeds at once (one stream per row), so a
  matrix of trials is generated with NumPy; each row is the exact sequence :class:`Lcg` gives.
* :class:`Mulberry32Array` and :func:`scramble`: the generator of Tessera's calibration envelope
  (``tools/calibration-envelope.ts``), which uses mulberry32 on scramble-hashed seeds, not the LCG.

The integer states are exact. The normals go through ``log``/``cos``; Python's libm (and NumPy's
vectorised versions) can differ from V8 by one ulp on a few percent of draws, so comparisons with
Tessera's published numbers compare outcomes exactly and values with a tolerance.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

F64 = npt.NDArray[np.float64]
U64 = npt.NDArray[np.uint64]

LCG_A = 1664525
LCG_C = 1013904223
MASK32 = 0xFFFFFFFF
TWO32 = 4294967296.0
U_FLOOR = 1e-12
TWO_PI = 2.0 * math.pi


class Lcg:
    """Scalar LCG (pure Python integers), the reference for :class:`LcgArray`."""

    __slots__ = ("state",)

    def __init__(self, seed: int) -> None:
        self.state = seed & MASK32

    def uniform(self) -> float:
        self.state = (LCG_A * self.state + LCG_C) & MASK32
        return self.state / TWO32

    def normal(self) -> float:
        return box_muller(self.uniform(), self.uniform())


def box_muller(u1: float, u2: float) -> float:
    """One Box-Muller normal from two uniforms (Tessera's ``boxMullerGaussian``)."""
    return math.sqrt(-2.0 * math.log(max(u1, U_FLOOR))) * math.cos(TWO_PI * u2)


class LcgArray:
    """Independent LCG streams, one per seed, advanced together (row i = ``Lcg(seeds[i])``)."""

    def __init__(self, seeds: npt.ArrayLike) -> None:
        s = np.asarray(seeds, dtype=np.int64)
        self.state: U64 = (s & MASK32).astype(np.uint64)

    def __len__(self) -> int:
        return int(self.state.shape[0])

    def uniform(self) -> F64:
        self.state = (self.state * np.uint64(LCG_A) + np.uint64(LCG_C)) & np.uint64(MASK32)
        out: F64 = self.state.astype(np.float64) / TWO32
        return out

    def normal(self) -> F64:
        u1 = np.maximum(self.uniform(), U_FLOOR)
        u2 = self.uniform()
        out: F64 = np.sqrt(-2.0 * np.log(u1)) * np.cos(TWO_PI * u2)
        return out

    def normals(self, n: int) -> F64:
        """``n`` successive normals of every stream: ``[streams, n]``."""
        out = np.empty((len(self), n))
        for j in range(n):
            out[:, j] = self.normal()
        return out


def scramble(n: int) -> int:
    """Tessera's calibration-envelope seed hash (32-bit, JavaScript ``Math.imul`` semantics)."""
    z = (n + 0x9E3779B9) & MASK32
    z = ((z ^ (z >> 16)) * 0x21F0AAAD) & MASK32
    z = ((z ^ (z >> 15)) * 0x735A2D97) & MASK32
    return (z ^ (z >> 15)) & MASK32


class Mulberry32:
    """One mulberry32 stream in pure Python (fast for a single long stream); ``normal`` returns a
    length-1 array so it can stand in for :class:`Mulberry32Array`."""

    __slots__ = ("a",)

    def __init__(self, state: int) -> None:
        self.a = state & MASK32

    def __len__(self) -> int:
        return 1

    def uniform(self) -> float:
        self.a = (self.a + 0x6D2B79F5) & MASK32
        a = self.a
        t = ((a ^ (a >> 15)) * (a | 1)) & MASK32
        t = ((t + (((t ^ (t >> 7)) * (t | 61)) & MASK32)) & MASK32) ^ t
        return ((t ^ (t >> 14)) & MASK32) / TWO32

    def normal(self) -> F64:
        u1 = self.uniform()
        return np.array([box_muller(u1, self.uniform())])


class Mulberry32Array:
    """mulberry32 streams, one per 32-bit state (JavaScript semantics, uint32 arithmetic)."""

    def __init__(self, states: npt.ArrayLike) -> None:
        self.a = (np.asarray(states, dtype=np.int64) & MASK32).astype(np.uint32)

    def __len__(self) -> int:
        return int(self.a.shape[0])

    def uniform(self) -> F64:
        self.a = self.a + np.uint32(0x6D2B79F5)
        a = self.a
        t = (a ^ (a >> np.uint32(15))) * (a | np.uint32(1))
        t = (t + (t ^ (t >> np.uint32(7))) * (t | np.uint32(61))) ^ t
        out: F64 = (t ^ (t >> np.uint32(14))).astype(np.float64) / TWO32
        return out

    def normal(self) -> F64:
        u1 = np.maximum(self.uniform(), U_FLOOR)
        u2 = self.uniform()
        out: F64 = np.sqrt(-2.0 * np.log(u1)) * np.cos(TWO_PI * u2)
        return out


def window_major_draws(seeds: npt.ArrayLike, windows: int, shards: int) -> F64:
    """``[streams, windows, shards]`` normals in Tessera's draw order (for w: for s: one draw)."""
    rng = LcgArray(seeds)
    return rng.normals(windows * shards).reshape(len(rng), windows, shards)


def linear_ramp(windows: int, drift: float, start: int) -> F64:
    """Tessera's drift injection ``d (w - w0 + 1)`` for ``w >= w0`` (a ramp, not a step)."""
    w = np.arange(windows, dtype=np.float64)
    out: F64 = np.where(w >= start, drift * (w - start + 1.0), 0.0)
    return out
