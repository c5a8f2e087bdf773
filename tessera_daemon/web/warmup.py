"""Warm-up progress with an estimate of the time left, logged once a minute while it lasts."""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Any

from tessera_daemon.engine.snapshot import PipelineSnapshot
from tessera_daemon.log import get_logger
from tessera_daemon.web.status import READY_WARM_FRACTION

log = get_logger(__name__)

WARMUP_LOG_EVERY_S = 60.0


# ------------------------------------------------------------------------------------------ warm-up


@dataclass(slots=True)
class WarmupTracker:
    """Warm-up progress with an estimate of the time left; logged every minute while it lasts."""

    samples: deque[tuple[float, float, float]] = field(default_factory=lambda: deque(maxlen=64))
    last_log: float = 0.0
    done_logged: bool = False

    def sample(self, p: PipelineSnapshot, now: float) -> None:
        if p.windows_processed and (not self.samples or now - self.samples[-1][0] >= 1.0):
            self.samples.append((now, p.table.end_ts, p.warm_fraction()))

    def progress(self, p: PipelineSnapshot, length_s: float) -> dict[str, Any]:
        frac = p.warm_fraction() if p.windows_processed else 0.0
        st = p.states
        depth = st.depth
        fresh = st.missing_run == 0
        learning = fresh[:, None] & (st.n_warm > 0) & (st.n_warm < depth) if st.n_warm.shape[0] == fresh.size else None
        left = int((depth - st.n_warm[learning]).max()) if learning is not None and learning.any() else 0
        eta: float | None = None
        rate = self._event_rate()
        if left and rate:
            eta = left * length_s / rate  # at most: every stream still learning reaches the longest warm-up
            slope = self._slope()
            if slope and slope > 0 and frac < 1.0:
                eta = min(eta, (1.0 - frac) / slope)
        elif not left and p.windows_processed:
            eta = 0.0
        return {
            "fraction": round(frac, 4),
            "ready_fraction": READY_WARM_FRACTION,
            "learning_streams": int(learning.sum()) if learning is not None else 0,
            "windows_left_at_most": left,
            "eta_s": None if eta is None else round(eta, 1),
            "done": p.windows_processed > 0 and not left,
        }

    def _event_rate(self) -> float | None:
        """Event seconds per wall second over the recent samples (the simulator may run faster)."""
        if len(self.samples) < 2:
            return None
        (w0, e0, _), (w1, e1, _) = self.samples[max(0, len(self.samples) - 30)], self.samples[-1]
        return (e1 - e0) / (w1 - w0) if w1 > w0 and e1 > e0 else None

    def _slope(self) -> float | None:
        if len(self.samples) < 2:
            return None
        (w0, _, f0), (w1, _, f1) = self.samples[max(0, len(self.samples) - 30)], self.samples[-1]
        return (f1 - f0) / (w1 - w0) if w1 > w0 else None

    def maybe_log(self, p: PipelineSnapshot, length_s: float, now: float) -> None:
        if not p.windows_processed or self.done_logged:
            return
        prog = self.progress(p, length_s)
        if prog["done"]:
            self.done_logged = True
            log.info("warm-up complete", warm_fraction=prog["fraction"])
            return
        if now - self.last_log >= WARMUP_LOG_EVERY_S and len(self.samples) >= 3:  # with a rate for the estimate
            self.last_log = now
            eta = prog["eta_s"]
            log.info(
                "warm-up progress",
                message=f"{prog['fraction']:.0%} of shard-metrics have a baseline"
                + (f", about {_human(eta)} left" if eta is not None else ""),
                warm_fraction=prog["fraction"],
                eta_s=eta,
                learning_streams=prog["learning_streams"],
            )


def _human(seconds: float) -> str:
    if seconds < 90:
        return f"{max(1, round(seconds))} s"
    return f"{round(seconds / 60)} min"
