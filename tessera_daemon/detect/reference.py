"""NumPy twins of the numba kernels in ``detect.kernels``: same signatures, same results.

Written for clarity (vectorised, no loops over shards), used by the agreement tests and by the
benchmark as the baseline the kernel is compared against. Family A's twin runs the recursion in log
space (the form the kernel's docstring states it in) on the kernel's linear-space state: it reads
``W = L + log E``, updates W and writes ``E = exp(W - L)`` back with the kernel's rescaling rule, so
the two are checked against each other, not against a copy of the same arithmetic.
"""

from __future__ import annotations

import numpy as np

from tessera_daemon.detect.kernels import F64, I64, RESCALE_HI, RESCALE_LO


def family_a_update(
    x: F64,
    delta: F64,
    v: F64,
    bets: F64,
    clip: float,
    window: int,
    e_state: F64,
    run_start: I64,
    log_m: F64,
    side: I64,
    floor: float = 0.0,
    renew: float = -np.inf,
    margin: F64 | None = None,
    threads: int = 1,
) -> None:
    del threads  # one NumPy pass
    obs = ~np.isnan(x)
    if not obs.any():
        return
    c0 = np.zeros_like(x) if margin is None else margin
    cl = np.maximum(clip, delta + 0.5 * clip)
    x0 = np.where(obs, x, 0.0)
    xc = np.clip(x0, -cl, cl)
    centred = c0 > 0.0
    y_up = np.where(centred, np.clip(x0 - c0, -clip, clip), xc)  # s x - c0 per side (c0 = 0: s x)
    y_dn = np.where(centred, np.clip(-x0 - c0, -clip, clip), -xc)
    scale = e_state[..., -1]
    with np.errstate(divide="ignore"):
        w_state = np.log(e_state[..., :-1]) + scale[..., None]  # W = L + log E
    prev_max = w_state.max(axis=2)
    run_start[obs & (prev_max <= floor)] = window
    n_k = bets.shape[0]
    lam = bets[None, None, :]  # [1, 1, K]
    norm = np.log1p(lam * delta[..., None] + 0.5 * lam * lam * v[..., None])  # [S, M, K]
    ys = np.stack([y_up, y_dn], axis=-1)[:, :, None, :]  # [S, M, 1, 2]
    y = lam[..., None] * ys  # [S, M, K, 2]
    phi = np.sign(y) * np.log1p(np.abs(y) + 0.5 * y * y)
    inc = (phi - norm[..., None]).reshape(x.shape[0], x.shape[1], 2 * n_k)
    carried = np.maximum(w_state, floor)
    if renew > -np.inf:
        carried = np.logaddexp(carried, renew)
    new_w = carried + inc
    w_state[obs] = new_w[obs]
    best_j = np.argmax(w_state, axis=2)
    best = np.take_along_axis(w_state, best_j[..., None], axis=2)[..., 0]
    with np.errstate(invalid="ignore"):  # unobserved streams of a change-point mixture still at -inf
        lm = best + np.log(np.exp(w_state - best[..., None]).sum(axis=2)) - np.log(2.0 * n_k)
    log_m[obs] = lm[obs]
    side[obs] = np.where(best_j[obs] % 2 == 0, 1, -1)
    # back to linear space, rescaled where the strongest component left [RESCALE_LO, RESCALE_HI]
    with np.errstate(invalid="ignore"):
        rel = best - scale
        out = (rel > np.log(RESCALE_HI)) | ((rel < np.log(RESCALE_LO)) & np.isfinite(best))
    new_scale = np.where(obs & out, best, scale)
    with np.errstate(invalid="ignore"):
        e_new = np.exp(w_state - new_scale[..., None])
    e_state[obs, :-1] = e_new[obs]
    e_state[obs, -1] = new_scale[obs]
