"""One partition held by a detector worker: its pipeline, position, commits and checkpoints.

Windows are idempotent by index. ``<p>:{t}:committed`` holds the last window whose results were
committed; a window at or below it (re-computed after a takeover, to rebuild state) produces no
output again. A window commit is one Lua script, fenced by the lease (``lease.HOLD``): set the mark,
append to the partition's window log and, with a standalone Redis, append the firings to
``tessera:firings`` in the same atomic step (exactly once). Under Redis Cluster the firings stream
lives in another slot: they are appended just before the script, so a crash in between can repeat them
(at least once; dedupe by firing id and state), never lose them.

Firings are serialised as each window is processed (not at commit time), so what is published does
not depend on how entries were batched: a firing opened in window w is published with its state and
evidence at w even when the same batch resolves it later.
"""

from __future__ import annotations

import copy
import json
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from tessera_daemon.config import Config
from tessera_daemon.engine import checkpoint
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.engine.window import WindowAssembler, snap_length
from tessera_daemon.log import get_logger
from tessera_daemon.model import Firing, FrameBlock
from tessera_daemon.split.scripts import COMMIT, SAVE
from tessera_daemon.transport.base import Delivery
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.lease import Lease
from tessera_daemon.transport.link import RedisLink

log = get_logger(__name__)


def open_view(f: Firing) -> dict[str, Any]:
    """The firing as it was when it opened (state open, no resolution fields)."""
    obj = f.to_obj()
    obj["state"] = "open"
    obj.pop("resolved_ts", None)
    obj.pop("resolved_window", None)
    receipt = dict(obj["receipt"])
    receipt.pop("resolved_reason", None)
    obj["receipt"] = receipt
    return obj


@dataclass(slots=True)
class WindowRecord:
    index: int
    end_ts: float
    frames: int
    firings: list[tuple[str, str, str]]  # (id, state, contract JSON)
    targets: dict[tuple[str, str], list[dict[str, Any]]]  # (scope, target) -> its active firings


@dataclass(slots=True)
class PartitionWork:
    token: str
    cohort: str
    pipeline: Pipeline
    lease: Lease
    committed: int
    position: bytes = b"0-0"
    dedupe: OrderedDict[str, int] = field(default_factory=OrderedDict)
    unacked: list[bytes] = field(default_factory=list)
    since_checkpoint: int = 0
    fed: bool = False  # entries ingested (or its reader catching up) since the last idle check
    quiet_since: float = field(default_factory=time.monotonic)  # the idle check after its last entries
    checked_at: float = field(default_factory=time.monotonic)  # the previous idle check
    duplicates: int = 0
    max_sources: int = 4096
    release: str = ""  # reason a release was requested ("rebalance", "shutdown")
    changed: bool = False  # state moved since the last checkpoint
    events_replayed: tuple[int, int] = (0, 0)  # last event log entry replayed at load (older ones are stale)
    window_errors: int = 0  # windows whose processing raised (committed without results)

    # ------------------------------------------------------------------------------------ ingest

    def ingest(self, deliveries: Sequence[Delivery]) -> list[Poison]:
        """De-duplicate by (src, seq), then hand the frames to the pipeline in delivery order. Runs of
        consecutive host entries that :meth:`FrameBlock.concat` can join (same metric names, same shared
        counter set) go in as one block: one vectorised window update per run instead of per entry,
        with the same result (``add_block`` follows frame order exactly; tests/split/test_partition.py).

        Poison never kills: a run that raises is rolled back (the window assembler is restored to its
        state before the run) and its entries go in again one at a time, each inside the same guard;
        an entry that still raises leaves no trace in the state and is returned with its exception, for
        the caller to dead-letter. Nothing a checkpoint could persist is half-applied."""
        failed: list[Poison] = []
        run: list[Delivery] = []
        for d in deliveries:
            tok = d.token
            self.unacked.append(tok.id)
            self.position = tok.id
            last = self.dedupe.get(tok.src)
            if last is not None and tok.seq <= last:
                self.duplicates += 1
                continue
            self.dedupe[tok.src] = tok.seq
            self.dedupe.move_to_end(tok.src)
            while len(self.dedupe) > self.max_sources:
                self.dedupe.popitem(last=False)
            frames = d.frames
            if isinstance(frames, FrameBlock):
                if run and not _block(run[0]).joinable(frames):
                    failed += self._ingest_run(run)
                    run = []
                run.append(d)
                continue
            if run:
                failed += self._ingest_run(run)
                run = []
            failed += self._ingest_run([d])
        if run:
            failed += self._ingest_run(run)
        if deliveries:
            self.fed = True
            self.changed = True
        return failed

    def _ingest_run(self, run: list[Delivery]) -> list[Poison]:
        asm = self.pipeline.assembler
        future = asm.stats.future
        saved = _save(asm)
        try:
            if len(run) == 1 or not isinstance(run[0].frames, FrameBlock):
                self.pipeline.ingest(run[0].frames)
            else:
                self.pipeline.ingest(FrameBlock.concat([_block(d) for d in run]))
            return self._skewed(run) if asm.stats.future != future else []
        except Exception as exc:
            _restore(asm, saved)
            if len(run) == 1:
                return [(run[0], "unprocessable", _error(exc))]
        failed: list[Poison] = []
        for d in run:  # one at a time: only the entries that fail on their own are poison
            saved = _save(asm)
            try:
                self.pipeline.ingest(d.frames)
            except Exception as exc:
                _restore(asm, saved)
                failed.append((d, "unprocessable", _error(exc)))
        if asm.stats.future != future:
            failed += self._skewed([d for d in run if all(d is not f[0] for f in failed)])
        return failed

    def _skewed(self, run: list[Delivery]) -> list[Poison]:
        """After frames of ``run`` were quarantined as too far ahead: label their shards' skews with the
        sending agent, and hand back the entries none of whose frames were taken (dead-lettered as
        ``clock_skew``: a host whose clock jumped ahead, kept for inspection)."""
        asm = self.pipeline.assembler
        limit = asm._now + asm.max_future_s
        out: list[Poison] = []
        for d in run:
            frames = d.frames
            ts = frames.ts if isinstance(frames, FrameBlock) else np.array([f.ts for f in frames], np.float64)
            ahead = ts > limit
            if not ahead.any():
                continue
            agent = d.token.src.partition("/")[0] or "unknown"
            for i in np.flatnonzero(ahead).tolist():
                sid = frames.shards[i] if isinstance(frames, FrameBlock) else frames[i].shard
                if sid in asm.skewed:
                    skew, seen, _src = asm.skewed[sid]
                    asm.skewed[sid] = (skew, seen, agent)
            if ahead.all():
                out.append(
                    (
                        d,
                        "clock_skew",
                        f"every frame is {float(ts.min()) - asm._now:.0f} s ahead of the "
                        f"receiver's clock (window.max_future_skew_s = {asm.max_future_s:g})",
                    )
                )
        return out

    def advance(self, watermark: float | None = None, *, targets: bool = False) -> list[WindowRecord]:
        """Close and process ready windows one at a time, serialising each window's firings."""
        out: list[WindowRecord] = []
        p = self.pipeline
        for w in p.assembler.close_ready(watermark):
            try:
                r = p.process(w)
            except Exception as exc:  # never seen with bounded values; must not stop the worker either
                self.window_errors += 1
                log.error(
                    "window processing failed: committed without results",
                    partition=self.token,
                    window=w.index,
                    error=f"{type(exc).__name__}: {exc}",
                    exc_info=True,
                )
                out.append(WindowRecord(w.index, w.end_ts, w.n_frames, [], {}))
                self.changed = True
                continue
            firings = [(f.id, "open", _dumps(open_view(f))) for f in r.opened]
            firings += [(f.id, "resolved", f.to_json()) for f in r.resolved]
            by_target: dict[tuple[str, str], list[dict[str, Any]]] = {}
            if targets and (r.opened or r.resolved):
                touched = {(f.scope, f.target) for f in (*r.opened, *r.resolved)}
                by_target = {k: [] for k in touched}
                for f in p.book.active():
                    if (f.scope, f.target) in by_target:
                        by_target[(f.scope, f.target)].append(f.to_obj())
            out.append(WindowRecord(r.index, r.end_ts, r.n_frames, firings, by_target))
            self.changed = True
        return out

    def idle_close(self, idle_s: float, *, targets: bool = False) -> list[WindowRecord]:
        """Close every open window once the partition has been silent for ``idle_s`` wall seconds.

        Called once per consumer round, after its receive. Silence runs from the check that followed
        the last entries (once they were processed) to the previous check: this round's receive came
        after that one and brought nothing, so the stream was quiet at least that long. The worker's own
        stalls (a long batch of another partition, a loaded machine) never pass for the partition's
        silence, which would close windows early with frames still unread in the stream."""
        now = time.monotonic()
        previous, self.checked_at = self.checked_at, now
        if self.fed:
            self.fed = False
            self.quiet_since = now
            return []
        asm = self.pipeline.assembler
        if idle_s <= 0 or not asm._open or previous - self.quiet_since < idle_s:
            return []
        cfg = self.pipeline.cfg.window
        if not asm.resolved:  # auto window: a partition gone quiet before its cadence was measured
            asm.resolve(snap_length(asm.probe.median_s()))
        return self.advance(asm.watermark + asm.length_s + cfg.grace_s, targets=targets)

    def snapshot(self) -> bytes:
        return checkpoint.snapshot(
            self.pipeline,
            partition=self.token,
            position=self.position.decode(),
            extra={"dedupe": [[k, v] for k, v in self.dedupe.items()]},
        )

    @classmethod
    def from_checkpoint(
        cls, blob: bytes, cfg: Config, token: str, cohort: str, lease: Lease, committed: int
    ) -> PartitionWork:
        """Restore (CheckpointError when the blob fails validation)."""
        pipeline, meta = checkpoint.restore(blob, cfg, partition=token)
        work = cls(
            token,
            cohort,
            pipeline,
            lease,
            committed,
            meta.position.encode(),
            max_sources=cfg.transport.detector.max_dedupe_sources,
        )
        for src, seq in meta.extra.get("dedupe", []):
            work.dedupe[str(src)] = int(seq)
        return work


Poison = tuple[Delivery, str, str]  # an entry to dead-letter: (delivery, reason, error)


def _error(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _block(d: Delivery) -> FrameBlock:
    assert isinstance(d.frames, FrameBlock)
    return d.frames


def _save(asm: WindowAssembler) -> dict[str, Any]:
    """What ingesting frames can change in the assembler: its attributes, the open windows' accumulators
    copied deeply (updated in place), every other container shallowly (their values are replaced,
    never mutated: counter positions are tuples, statistics plain numbers)."""
    return {k: copy.deepcopy(v) if k == "_open" else copy.copy(v) for k, v in vars(asm).items()}


def _restore(asm: WindowAssembler, saved: dict[str, Any]) -> None:
    vars(asm).update(saved)


def _dumps(obj: dict[str, Any]) -> str:
    return json.dumps(obj, separators=(",", ":"), allow_nan=False)


class Committer:
    """The Redis writes of a partition: window commits, checkpoints, and reading them back."""

    def __init__(self, link: RedisLink, cfg: Config, worker: str) -> None:
        self.link = link
        self.cfg = cfg
        self.keys = Keys(cfg.transport.redis.prefix)
        self.worker = worker

    async def load(self, token: str) -> tuple[bytes | None, int]:
        """(checkpoint blob or None, committed window mark or -1)."""

        async def get(client: Any) -> list[Any]:
            pipe = client.pipeline(transaction=False)
            pipe.get(self.keys.checkpoint(token))
            pipe.get(self.keys.committed(token))
            res: list[Any] = await pipe.execute()
            return res

        blob, mark = await self.link.call(get)
        return blob, int(mark) if mark is not None else -1

    async def commit(self, work: PartitionWork, rec: WindowRecord) -> Literal["committed", "skipped", "lost"]:
        r = self.cfg.transport.redis
        k = self.keys
        t = work.token
        ttl_ms = self.cfg.transport.detector.lease_ms
        keys = [k.lease(t), k.epoch(t), k.committed(t), k.windows(t)]
        args: list[Any] = [
            *work.lease.hold_args(ttl_ms),
            rec.index,
            rec.frames,
            self.worker,
            r.windows_maxlen,
            r.firings_maxlen,
            len(rec.firings),
            t,
        ]
        if self.link.cluster:
            if rec.firings:
                await self._append_firings(t, rec)
        else:
            keys.append(k.firings)
            for fid, state, text in rec.firings:
                args.extend([fid, state, text])
        script = self.link.script("commit_window", COMMIT)
        started = time.monotonic()
        res: Any = await self.link.call(lambda c: script(keys=keys, args=args, client=c))
        out = int(res)
        if out < 0:
            return "lost"
        work.lease.held(out % 10, started, ttl_ms)
        if out >= 10:
            return "skipped"
        work.committed = rec.index
        return "committed"

    async def _append_firings(self, token: str, rec: WindowRecord) -> None:
        maxlen = self.cfg.transport.redis.firings_maxlen

        async def write(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for fid, state, text in rec.firings:
                pipe.xadd(
                    self.keys.firings,
                    {"partition": token, "window": rec.index, "id": fid, "state": state, "firing": text},
                    maxlen=maxlen,
                    approximate=True,
                )
            await pipe.execute()

        await self.link.call(write)

    async def save(self, work: PartitionWork, blob: bytes) -> bool:
        """Write a checkpoint if the lease still holds; False when it does not (lease lost)."""
        script = self.link.script("save_checkpoint", SAVE)
        t = work.token
        ttl_ms = self.cfg.transport.detector.lease_ms
        keys = [self.keys.lease(t), self.keys.epoch(t), self.keys.checkpoint(t)]
        started = time.monotonic()
        res: Any = await self.link.call(
            lambda c: script(keys=keys, args=[*work.lease.hold_args(ttl_ms), blob], client=c)
        )
        work.lease.held(int(res), started, ttl_ms)
        return int(res) > 0
