"""The detector worker's heartbeat: liveness, leases, placement, takeover loading, lag probes.

Every ``heartbeat_ms`` it registers the worker, renews its leases (a lease another worker now holds
is reported as lost), computes the fair share of partitions, marks its surplus for release (one per
beat) and acquires free partitions up to its share. For a newly acquired partition it loads the
checkpoint (refusing, loudly, one that fails validation) and the commit mark, or starts from the
partition's topology, replays the fleet event log into its event book (so a partition that changes
hands still freezes for events posted before), and hands the ready :class:`PartitionWork` to the
consumer loop through ``inbox``. Each beat it also reads the event log's new entries and, every
``transport.agent.topology_refresh_s``, the fleet topology (the union of every partition's slice),
both queued for the consumer loop (``take_events``). All pipeline work stays in the consumer loop;
this task only does Redis I/O.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

from tessera_daemon.config import Config
from tessera_daemon.engine.pipeline import Pipeline, threshold_log
from tessera_daemon.errors import CheckpointError, TransportError
from tessera_daemon.log import get_logger
from tessera_daemon.model import Topology
from tessera_daemon.split.eventlog import EventLog, LoggedEvent, apply_event
from tessera_daemon.split.partition import Committer, PartitionWork
from tessera_daemon.transport.exporter import WorkerCounters
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.lease import Lease, LeaseKeeper, fair_share
from tessera_daemon.transport.link import RedisLink
from tessera_daemon.transport.redis import RedisTransport
from tessera_daemon.transport.registry import (
    fleet_shards,
    merge_topologies,
    read_partitions,
    read_slices,
    read_topology,
    register_worker,
)

log = get_logger(__name__)


def fleet_threshold(cfg: Config, n_shards: int) -> float:
    """The shard detectors' threshold for a fleet of ``n_shards`` (as ``Pipeline.set_topology``)."""
    d = cfg.detector
    # an auto window is measured per partition; the fleet's budget is set at the configured poll interval
    window_s = cfg.window.length_s if not cfg.window.auto else cfg.sources.poll_interval_s
    return threshold_log(n_shards * len(d.metrics), window_s, d.false_pages_per_day, d.min_threshold_log)


class Coordinator:
    def __init__(
        self,
        cfg: Config,
        link: RedisLink,
        leases: LeaseKeeper,
        committer: Committer,
        transport: RedisTransport,
        counters: WorkerCounters,
        worker: str,
    ) -> None:
        self.cfg = cfg
        self.link = link
        self.keys = Keys(cfg.transport.redis.prefix)
        self.leases = leases
        self.committer = committer
        self.transport = transport
        self.counters = counters
        self.worker = worker
        self.inbox: list[PartitionWork] = []
        self.lost: list[str] = []
        self.release: list[str] = []
        self.partitions: dict[str, str] = {}
        self.workers = 1
        self.threshold_log: float | None = None
        self.topology_hash: dict[str, str] = {}
        self.topology_updates: list[tuple[str, Topology]] = []
        self._topology_checked = time.monotonic()
        # the fleet event log (None when events are disabled): new entries and the fleet topology
        self.eventlog = EventLog(link, self.keys, cfg.events.history, counters.events) if cfg.events.enabled else None
        self.events: list[LoggedEvent] = []
        self.fleet_topology: Topology | None = None
        self._fleet_hash: str | None = None
        self._fleet_tokens: frozenset[str] = frozenset()

    async def run(self, stop: asyncio.Event) -> None:
        period = self.cfg.transport.detector.heartbeat_ms / 1000.0
        while not stop.is_set():
            # a failure is logged by the link; leases keep their local deadline and lapse if it lasts
            with contextlib.suppress(TransportError):
                await self.tick(stop)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), period)

    async def tick(self, stop: asyncio.Event) -> None:
        w = self.cfg.transport.detector
        self.workers = await register_worker(self.link, self.keys, self.worker, w.lease_ms)
        self.partitions = await read_partitions(self.link, self.keys)
        refresh_s = self.cfg.transport.agent.topology_refresh_s
        n = w.fleet_shards or await fleet_shards(self.link, self.keys, max(3 * refresh_s, 300.0))
        if n:
            self.threshold_log = fleet_threshold(self.cfg, n)
        for token in list(self.leases.held):
            if not await self.leases.renew(token):
                log.warning("lease lost: another worker holds the partition now", partition=token)
                self.lost.append(token)
        share = fair_share(len(self.partitions), self.workers)
        surplus = [t for t in self.leases.surplus(share) if t not in self.release]
        if surplus and not stop.is_set():
            self.release.append(surplus[0])
        wanted = share - len(self.leases.held)
        for token in self.leases.acquire_order(sorted(self.partitions)):
            if wanted <= 0 or stop.is_set():
                break
            lease = await self.leases.acquire(token)
            if lease is None:
                continue
            try:
                work = await self.load(token, lease)
            except TransportError:  # hand the lease back rather than hold a partition nobody processes
                with contextlib.suppress(TransportError):
                    await self.leases.release(token)
                raise
            if work is None:
                await self.leases.release(token)
                continue
            self.inbox.append(work)
            wanted -= 1
        for r in list(self.transport.readers.values()):
            await r.probe()
        now = time.monotonic()
        due = now - self._topology_checked >= refresh_s
        tokens = frozenset(self.partitions)
        fleet_due = self.eventlog is not None and (due or self._fleet_hash is None or tokens != self._fleet_tokens)
        if due or fleet_due:  # one read of each slice serves both the held partitions and the fleet
            held = list(self.leases.held)
            slices = await read_slices(self.link, self.keys, tokens | set(held) if fleet_due else held)
            if due:
                self._topology_checked = now
                self.check_topologies(slices, held)
            if fleet_due:
                self.check_fleet_topology(tokens, slices)
        if self.eventlog is not None:
            self.events.extend(await self.eventlog.read_new())

    def check_fleet_topology(self, tokens: frozenset[str], slices: dict[str, Topology]) -> None:
        """The union of every partition's slice (validation of posted events); post it when it changed."""
        topo = merge_topologies(slices[t] for t in sorted(tokens) if t in slices)
        self._fleet_tokens = tokens
        if not topo.shards:
            return
        digest = topo.content_hash()
        if digest != self._fleet_hash:
            self._fleet_hash = digest
            self.fleet_topology = topo

    def check_topologies(self, slices: dict[str, Topology], held: list[str]) -> None:
        """Of the slices just read, post those of held partitions that changed."""
        for token in held:
            topo = slices.get(token)
            if topo is None or not topo.shards:
                continue
            digest = topo.content_hash()
            if self.topology_hash.get(token) not in (None, digest):
                log.info("partition topology changed", partition=token, shards=len(topo.shards))
                self.topology_updates.append((token, topo))
            self.topology_hash[token] = digest

    async def load(self, token: str, lease: Lease) -> PartitionWork | None:
        cohort = self.partitions.get(token, token)
        blob, committed = await self.committer.load(token)
        work: PartitionWork | None = None
        if blob is not None:
            try:
                work = PartitionWork.from_checkpoint(blob, self.cfg, token, cohort, lease, committed)
                self.counters.checkpoints["restored"] += 1
                log.info(
                    "partition acquired from checkpoint",
                    partition=token,
                    epoch=lease.epoch,
                    window=work.pipeline.assembler.last_closed,
                    position=work.position.decode(),
                    committed=committed,
                )
            except CheckpointError as exc:
                self.counters.checkpoints["refused"] += 1
                log.error(
                    "checkpoint refused: starting the partition without it",
                    partition=token,
                    error=str(exc),
                    bytes=len(blob),
                )
        if work is None:
            topo = await read_topology(self.link, self.keys, token)
            if topo is None or not topo.shards:
                log.warning("partition has no topology yet", partition=token)
                return None
            work = PartitionWork(
                token,
                cohort,
                Pipeline(self.cfg, topo),
                lease,
                committed,
                max_sources=self.cfg.transport.detector.max_dedupe_sources,
            )
            log.info(
                "partition acquired", partition=token, epoch=lease.epoch, shards=len(topo.shards), committed=committed
            )
        if self.threshold_log is not None:
            work.pipeline.threshold_log = self.threshold_log
        if self.eventlog is not None:  # before the first window, so the partition freezes what was posted
            applied = 0
            for item in await self.eventlog.read_all():
                res = apply_event(work.pipeline.events, item)
                applied += res is not None and res.status in ("added", "updated")
                work.events_replayed = max(work.events_replayed, item.position)
            self.counters.events["applied"] += applied
            work.changed = work.changed or applied > 0
        self.topology_hash[token] = work.pipeline.topology.content_hash()
        return work

    def take(self) -> tuple[list[PartitionWork], list[str], list[str], list[tuple[str, Topology]]]:
        """(newly loaded partitions, lost tokens, tokens to release, changed topologies) since the last call."""
        out = self.inbox, self.lost, self.release, self.topology_updates
        self.inbox, self.lost, self.release, self.topology_updates = [], [], [], []
        return out

    def take_events(self) -> tuple[list[LoggedEvent], Topology | None]:
        """(event log entries read, the fleet topology when it changed) since the last call."""
        out = self.events, self.fleet_topology
        self.events, self.fleet_topology = [], None
        return out
