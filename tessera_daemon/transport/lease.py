"""Partition leases: SET NX PX, renewed by the worker's heartbeat, fenced by an epoch.

Acquiring a lease increments the partition's epoch and stores ``<worker>|<epoch>`` with a time to
live; every write a worker makes for a partition (window commits, checkpoints) runs in a Lua script
that first checks the lease still holds that exact value, so a worker that lost its lease (paused,
partitioned away) can never overwrite the work of its successor. Renewal, window commits and
checkpoints also re-take a lease that expired (Redis away, or the worker stalled past the time to live:
a long batch, a loaded machine) but only when nobody acquired it in between: the epoch is unchanged,
so no successor exists and the write is still the newest (``HOLD``). Without that a lone worker whose
every batch outlasts the lease would drop and re-acquire its partition forever, never committing.

Locally a lease is trusted only until ``renewed_at + 0.8 x ttl`` (monotonic clock), so a worker
stops reading a partition before Redis could give it to another worker.

Placement: each worker aims at ``ceil(partitions / live workers)`` partitions, takes free partitions
in rendezvous-hash order (stable, spreads without coordination), and hands back its surplus one per
heartbeat, so partitions spread over workers as they join and move when one dies.
"""

from __future__ import annotations

import hashlib
import math
import time
from dataclasses import dataclass
from typing import Any

from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.link import RedisLink

TRUST = 0.8

ACQUIRE = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local epoch = redis.call('INCR', KEYS[2])
redis.call('SET', KEYS[1], ARGV[1] .. '|' .. epoch, 'PX', ARGV[2])
return epoch
"""

# Lua prelude of every fenced write: KEYS[1] the lease, KEYS[2] the epoch counter; ARGV[1] the held
# value "<worker>|<epoch>", ARGV[2] the epoch, ARGV[3] the time to live (ms). hold() is 1 when the lease
# is still ours, 2 when it had expired with the epoch unchanged and is re-taken now, 0 when fenced.
HOLD = """
local function hold()
  local v = redis.call('GET', KEYS[1])
  if v == ARGV[1] then return 1 end
  if not v and redis.call('GET', KEYS[2]) == ARGV[2] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
    return 2
  end
  return 0
end
"""

RENEW = (
    HOLD
    + """
local held = hold()
if held == 1 then redis.call('PEXPIRE', KEYS[1], ARGV[3]) end
return held
"""
)

RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


@dataclass(slots=True)
class Lease:
    token: str
    value: str  # "<worker>|<epoch>"
    epoch: int
    valid_until: float  # monotonic

    def valid(self, now: float | None = None) -> bool:
        return (time.monotonic() if now is None else now) < self.valid_until

    def hold_args(self, ttl_ms: int) -> list[str | int]:
        """ARGV[1..3] of a script that starts with ``HOLD``."""
        return [self.value, str(self.epoch), ttl_ms]

    def held(self, outcome: int, started: float, ttl_ms: int) -> None:
        """After a fenced write that began at ``started`` (monotonic) found the lease ours (1) or re-took
        it (2): trust it locally again as a renewal would."""
        if outcome == 2:
            self.valid_until = max(self.valid_until, trust_until(started, ttl_ms))


def trust_until(started: float, ttl_ms: int) -> float:
    return started + TRUST * ttl_ms / 1000.0


def rendezvous(worker: str, token: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{worker}|{token}".encode()).digest()[:8], "big")


def fair_share(partitions: int, workers: int) -> int:
    return math.ceil(partitions / max(1, workers)) if partitions else 0


class LeaseKeeper:
    def __init__(self, link: RedisLink, keys: Keys, worker: str, ttl_ms: int) -> None:
        self.link = link
        self.keys = keys
        self.worker = worker
        self.ttl_ms = ttl_ms
        self.held: dict[str, Lease] = {}
        self.acquired_total = 0

    def valid(self, token: str) -> bool:
        lease = self.held.get(token)
        return lease is not None and lease.valid()

    def _trust_until(self, started: float) -> float:
        return trust_until(started, self.ttl_ms)

    async def acquire(self, token: str) -> Lease | None:
        started = time.monotonic()
        script = self.link.script("lease_acquire", ACQUIRE)
        epoch: Any = await self.link.call(
            lambda c: script(
                keys=[self.keys.lease(token), self.keys.epoch(token)], args=[self.worker, self.ttl_ms], client=c
            )
        )
        if not epoch:
            return None
        lease = Lease(token, f"{self.worker}|{int(epoch)}", int(epoch), self._trust_until(started))
        self.held[token] = lease
        self.acquired_total += 1
        return lease

    async def renew(self, token: str) -> bool:
        """Extend a held lease; False (and forgotten) when another worker has it now."""
        lease = self.held[token]
        started = time.monotonic()
        script = self.link.script("lease_renew", RENEW)
        ok: Any = await self.link.call(
            lambda c: script(
                keys=[self.keys.lease(token), self.keys.epoch(token)],
                args=lease.hold_args(self.ttl_ms),
                client=c,
            )
        )
        if int(ok):
            lease.valid_until = self._trust_until(started)
            return True
        del self.held[token]
        return False

    async def release(self, token: str) -> None:
        lease = self.held.pop(token, None)
        if lease is None:
            return
        script = self.link.script("lease_release", RELEASE)
        await self.link.call(lambda c: script(keys=[self.keys.lease(token)], args=[lease.value], client=c))

    async def holder(self, token: str) -> str | None:
        raw: Any = await self.link.call(lambda c: c.get(self.keys.lease(token)))
        if raw is None:
            return None
        return (raw.decode() if isinstance(raw, bytes) else str(raw)).rsplit("|", 1)[0]

    def acquire_order(self, partitions: list[str]) -> list[str]:
        free = [t for t in partitions if t not in self.held]
        return sorted(free, key=lambda t: rendezvous(self.worker, t), reverse=True)

    def surplus(self, share: int) -> list[str]:
        if len(self.held) <= share:
            return []
        ranked = sorted(self.held, key=lambda t: rendezvous(self.worker, t))
        return ranked[: len(self.held) - share]
