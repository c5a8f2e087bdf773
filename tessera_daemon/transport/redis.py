"""Redis Streams transport: the ``Transport`` protocol over partition streams and a consumer group.

The agent uses ``publish`` (backed by :class:`~tessera_daemon.transport.producer.StreamProducer`:
bounded buffer, pipelined XADD, drain in order). A detector worker attaches the partitions it holds a
lease for and uses ``receive`` / ``ack``: each delivery is one host entry (decoded frames) whose token
names the partition, the entry id and its (source, sequence) for de-duplication. Malformed entries
never reach the caller: they are written to the dead-letter stream with the reason and acknowledged,
so they are counted once and never retried. Acknowledgement is the caller's decision (the worker acks
only entries covered by a committed checkpoint), so delivery is at least once and a replacement
worker re-reads whatever the last checkpoint does not hold.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from tessera_daemon.errors import TransportError
from tessera_daemon.model import Frame
from tessera_daemon.settings.transport import TransportConfig
from tessera_daemon.transport.base import Delivery, TransportStats
from tessera_daemon.transport.codec import EntryError, decode_entry
from tessera_daemon.transport.consumer import PartitionReader, RawEntry
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.link import RedisLink
from tessera_daemon.transport.producer import StreamProducer

PAYLOAD_LIMIT = 64 * 1024  # bytes of a malformed entry kept in the dead-letter stream
BadEntry = tuple[bytes, str, str, dict[bytes, bytes] | None]  # (id, reason, error, fields)


@dataclass(frozen=True, slots=True)
class EntryToken:
    partition: str
    id: bytes
    src: str
    seq: int
    # the raw stream fields, kept only until the entry is ingested (a poison entry is dead-lettered whole)
    fields: dict[bytes, bytes] | None = field(default=None, compare=False, repr=False)


class RedisTransport:
    def __init__(
        self,
        cfg: TransportConfig,
        link: RedisLink,
        *,
        consumer: str = "",
        producer: StreamProducer | None = None,
        readable: Callable[[str], bool] | None = None,
    ) -> None:
        self.cfg = cfg
        self.link = link
        self.keys = Keys(cfg.redis.prefix)
        self.consumer = consumer
        self.producer = producer
        self.readable = readable or (lambda _token: True)
        self.readers: dict[str, PartitionReader] = {}
        self.dead_letters: Counter[str] = Counter()
        self.delivered_frames = 0
        self.delivered_entries = 0
        self.trimmed_entries = 0
        self._rr = 0

    # ------------------------------------------------------------------------------ partitions

    def attach(self, token: str, cursor: bytes) -> PartitionReader:
        r = PartitionReader(
            self.link, self.keys, self.cfg.redis.group, self.consumer, token, cursor, self.cfg.detector.claim_idle_ms
        )
        self.readers[token] = r
        return r

    def detach(self, token: str) -> None:
        r = self.readers.pop(token, None)
        if r is not None:
            self.trimmed_entries += r.trimmed

    # --------------------------------------------------------------------------------- protocol

    async def publish(self, frames: Sequence[Frame]) -> None:
        if self.producer is None:
            raise TransportError("this Redis transport has no producer (detector side)")
        await self.producer.publish(frames)

    async def receive(self, max_frames: int, timeout_s: float) -> list[Delivery]:
        readers = [r for r in self.readers.values() if self.readable(r.token)]
        if not readers:
            await asyncio.sleep(timeout_s)
            return []
        self._rr = (self._rr + 1) % len(readers)
        readers = readers[self._rr :] + readers[: self._rr]
        count = self.cfg.detector.read_count
        out: list[Delivery] = []
        frames = 0
        blocking: list[PartitionReader] = []
        try:
            for r in readers:
                if r.mode == "claim" and not await r.claim(count):
                    continue
                raw = await r.read(count, None)
                got = await self._deliveries(r, raw)
                out.extend(got)
                frames += sum(len(d.frames) for d in got)
                if r.mode == "new" and not raw:
                    blocking.append(r)
                if frames >= max_frames:
                    return out
            if out or not blocking:
                if not out:
                    await asyncio.sleep(min(timeout_s, 0.05))
                return out
            block_ms = max(1, min(self.cfg.detector.block_ms, int(timeout_s * 1000)))
            results = await asyncio.gather(*(r.read(count, block_ms) for r in blocking), return_exceptions=True)
            for r, res in zip(blocking, results, strict=True):
                if isinstance(res, BaseException):
                    r.after_error()
                    if not isinstance(res, TransportError):
                        raise res
                    continue
                out.extend(await self._deliveries(r, res))
        except TransportError:
            for r in readers:
                r.after_error()
            if not out:
                await self.link.wait_allowed()
        return out

    async def ack(self, deliveries: Sequence[Delivery]) -> None:
        by_partition: dict[str, list[bytes]] = {}
        for d in deliveries:
            if isinstance(d.token, EntryToken):
                by_partition.setdefault(d.token.partition, []).append(d.token.id)
        for token, ids in by_partition.items():
            await self.ack_ids(token, ids)

    async def ack_ids(self, token: str, ids: Sequence[bytes]) -> None:
        r = self.readers.get(token)
        if r is not None and ids:
            await r.ack(ids)

    def stats(self) -> TransportStats:
        st = TransportStats(
            delivered_frames=self.delivered_frames,
            dead_lettered=sum(self.dead_letters.values()),
            queued_frames=sum(r.lag for r in self.readers.values()),
        )
        if self.producer is not None:
            p = self.producer.stats
            st.published_frames = p.published_frames
            st.dropped_frames = p.dropped_frames
            st.queued_frames += p.buffered_frames
        st.extra = {
            "delivered_entries": float(self.delivered_entries),
            "trimmed_entries": float(self.trimmed_entries + sum(r.trimmed for r in self.readers.values())),
        }
        return st

    async def close(self) -> None:
        self.readers.clear()

    # ---------------------------------------------------------------------------------- decoding

    async def _deliveries(self, r: PartitionReader, raw: list[RawEntry]) -> list[Delivery]:
        """Decode a batch; dead-letter what cannot be decoded; advance the reader's cursor."""
        if not raw:
            return []
        out: list[Delivery] = []
        bad: list[BadEntry] = []
        trimmed: list[bytes] = []
        for entry_id, fields in raw:
            if fields is None:
                trimmed.append(entry_id)
                continue
            try:
                e = decode_entry(fields)
            except EntryError as exc:
                bad.append((entry_id, exc.reason, str(exc), fields))
                continue
            except Exception as exc:  # a decoder bug must not stop the worker: the entry is poison
                bad.append((entry_id, "unprocessable", f"{type(exc).__name__}: {exc}", fields))
                continue
            out.append(Delivery(e.frames, EntryToken(r.token, entry_id, e.src, e.seq, fields)))
        if bad:
            await self._dead_letter(r.stream, r.group, bad)
        if trimmed:
            r.trimmed += len(trimmed)
            await r.ack(trimmed)
        r.cursor = raw[-1][0]
        self.delivered_entries += len(out)
        self.delivered_frames += sum(len(d.frames) for d in out)
        return out

    async def dead_letter(self, token: str, bad: Sequence[BadEntry]) -> None:
        """Dead-letter and acknowledge entries of partition ``token`` that were delivered but could not
        be processed (may raise TransportError; the caller retries or leaves them pending)."""
        if bad:
            await self._dead_letter(self.keys.stream(token), self.cfg.redis.group, bad)

    async def _dead_letter(self, stream: str, group: str, bad: Sequence[BadEntry]) -> None:
        maxlen = self.cfg.redis.deadletter_maxlen

        async def write(client: Any) -> None:
            pipe = client.pipeline(transaction=False)
            for entry_id, reason, error, fields in bad:
                record: dict[bytes, bytes] = {
                    b"stream": stream.encode(),
                    b"id": entry_id,
                    b"reason": reason.encode(),
                    b"error": error.encode()[:2048],
                    b"consumer": self.consumer.encode(),
                }
                for k, v in (fields or {}).items():
                    kb = k if isinstance(k, bytes) else str(k).encode()
                    vb = v if isinstance(v, bytes) else str(v).encode()
                    record[b"f:" + kb[:256]] = vb[:PAYLOAD_LIMIT]
                pipe.xadd(self.keys.deadletter, record, maxlen=maxlen, approximate=True)
            pipe.xack(stream, group, *[b[0] for b in bad])
            await pipe.execute()

        await self.link.call(write)
        for _id, reason, _e, _f in bad:
            self.dead_letters[reason] += 1
