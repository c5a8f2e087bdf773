"""Firing lifecycle: open when evidence crosses, resolve with hysteresis, re-arm after resolve.

A firing is keyed by (target, detector, metric). It opens when its detector crosses the threshold
(or a rule hits), stays open while evidence stays above ``resolve_fraction x threshold``, and resolves
after ``resolve_windows`` consecutive quiet windows (rules: ``clear_windows`` without recurrence).
The caller re-arms the detector (resets its evidence) when a firing resolves, so a recurrence opens a
new firing with fresh evidence instead of riding on old wealth.
"""

from __future__ import annotations

from collections import Counter, deque
from collections.abc import Iterable
from dataclasses import dataclass, field

from tessera_daemon.model import Firing

Key = tuple[str, str, str | None]  # (target, detector, metric)


@dataclass(slots=True)
class _Track:
    firing: Firing
    quiet: int = 0
    last_hit_window: int = 0


@dataclass(slots=True)
class FiringBook:
    recent_limit: int = 500
    _active: dict[Key, _Track] = field(default_factory=dict)
    recent: deque[Firing] = field(default_factory=deque)
    opened_total: Counter[tuple[str, str]] = field(default_factory=Counter)  # (classification, detector)
    resolved_total: Counter[str] = field(default_factory=Counter)  # classification

    @staticmethod
    def key(f: Firing) -> Key:
        return (f.target, f.detector, f.metric)

    def get(self, key: Key) -> Firing | None:
        t = self._active.get(key)
        return t.firing if t else None

    def is_active(self, key: Key) -> bool:
        return key in self._active

    def open(self, firing: Firing) -> None:
        k = self.key(firing)
        if k in self._active:
            raise ValueError(f"firing already active for {k}")
        self._active[k] = _Track(firing, 0, firing.window)
        self.opened_total[(firing.classification, firing.detector)] += 1

    def observe(self, key: Key, *, above: bool, quiet: bool, evidence: float, window: int) -> None:
        """Record one window of an active firing: ``above`` refreshes it, ``quiet`` counts toward resolve."""
        t = self._active[key]
        t.firing.log_evidence = max(t.firing.log_evidence, evidence)
        if above:
            t.last_hit_window = window
        t.quiet = t.quiet + 1 if quiet else 0

    def quiet_windows(self, key: Key) -> int:
        return self._active[key].quiet

    def last_hit(self, key: Key) -> int:
        return self._active[key].last_hit_window

    def resolve(self, key: Key, *, ts: float, window: int, reason: str) -> Firing:
        t = self._active.pop(key)
        f = t.firing
        f.state = "resolved"
        f.resolved_ts = ts
        f.resolved_window = window
        f.receipt = {**f.receipt, "resolved_reason": reason}
        self.resolved_total[f.classification] += 1
        if self.recent_limit:
            self.recent.append(f)
            while len(self.recent) > self.recent_limit:
                self.recent.popleft()
        return f

    def withdraw(self, key: Key) -> Firing:
        """Take back a firing opened in the window being processed, before anyone saw it (another
        incident took it over in the same window): it is neither counted as opened nor as resolved."""
        t = self._active.pop(key)
        f = t.firing
        self.opened_total[(f.classification, f.detector)] -= 1
        if self.opened_total[(f.classification, f.detector)] <= 0:
            del self.opened_total[(f.classification, f.detector)]
        return f

    def active(self) -> list[Firing]:
        return sorted((t.firing for t in self._active.values()), key=lambda f: (f.window, f.id))

    def active_keys(self) -> list[Key]:
        return sorted(self._active, key=lambda k: (k[0], k[1], k[2] or ""))

    def restore(self, firings: Iterable[Firing]) -> None:
        for f in firings:
            self._active[self.key(f)] = _Track(f, 0, f.window)
