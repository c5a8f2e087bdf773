"""The detector's side of one partition stream: read in order, take over, acknowledge, dead-letter.

A reader is in one of three modes:

- ``claim``: just attached (a new lease). XAUTOCLAIM moves the pending entries of the previous
  owner (idle for ``claim_idle_ms``) to this consumer; entries at or before the restored checkpoint's
  position are acknowledged at once (the checkpoint already holds them). The reader stays in this
  mode until no other consumer has pending entries, so nothing newer is read before them.
- ``history``: re-read this consumer's own pending entries after ``cursor`` (XREADGROUP with an id).
  Used after claiming and after any connection failure, because Redis may have delivered a batch
  whose reply was lost: it is in our pending list, not in our pipeline.
- ``new``: XREADGROUP ``>``.

``cursor`` is the id of the last entry handed to the pipeline, so every entry is ingested once and in
stream order, whatever happened to connections or owners.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Literal

from redis.exceptions import ResponseError

from tessera_daemon.log import get_logger
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.link import RedisLink
from tessera_daemon.transport.registry import ensure_group

log = get_logger(__name__)

Mode = Literal["claim", "history", "new"]
RawEntry = tuple[bytes, dict[bytes, bytes] | None]
ACK_CHUNK = 10_000


def parse_id(entry_id: bytes | str) -> tuple[int, int]:
    s = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    ms, _, seq = s.partition("-")
    return int(ms), int(seq or 0)


LAG_COUNT_CAP = 10_000  # entries counted exactly when Redis reports no group lag


def _b(v: Any) -> bytes:
    return v if isinstance(v, bytes) else str(v).encode()


class PartitionReader:
    def __init__(
        self, link: RedisLink, keys: Keys, group: str, consumer: str, token: str, cursor: bytes, claim_idle_ms: int
    ) -> None:
        self.link = link
        self.keys = keys
        self.group = group
        self.consumer = consumer
        self.token = token
        self.stream = keys.stream(token)
        self.cursor = cursor
        self.claim_idle_ms = claim_idle_ms
        self.mode: Mode = "claim"
        self.lag = 0
        self.pending = 0
        self.trimmed = 0
        self.claimed = 0

    # ---------------------------------------------------------------------------------- takeover

    async def claim(self, count: int) -> bool:
        """One takeover pass; True once no other consumer holds pending entries of this stream."""
        await self.link.call(lambda c: ensure_group(c, self.stream, self.group))
        start: bytes = b"0-0"
        while True:
            res = await self.link.call(self._autoclaim(start, count))
            start = _b(res[0])
            ids = [_b(entry[0]) for entry in res[1]]
            deleted = res[2] if len(res) > 2 else []
            self.claimed += len(ids)
            self.trimmed += len(deleted)
            cur = parse_id(self.cursor)
            covered = [i for i in ids if parse_id(i) <= cur]
            if covered:
                await self.ack(covered)
            if start in (b"0-0", b"0"):
                break
        summary: dict[str, Any] = await self.link.call(lambda c: c.xpending(self.stream, self.group))
        me = self.consumer.encode()
        others = sum(int(c["pending"]) for c in summary.get("consumers") or [] if _b(c["name"]) != me)
        if others:
            return False
        self.mode = "history"
        await self._forget_idle_consumers()
        if self.claimed:
            log.info("took over pending entries", partition=self.token, claimed=self.claimed, trimmed=self.trimmed)
        return True

    def _autoclaim(self, start: bytes, count: int) -> Callable[[Any], Awaitable[Any]]:
        async def run(client: Any) -> Any:
            # not JUSTID: redis-py then drops the cursor; the entries' data is ignored here (re-read in order)
            return await client.xautoclaim(
                self.stream, self.group, self.consumer, self.claim_idle_ms, start, count=count
            )

        return run

    async def _forget_idle_consumers(self) -> None:
        """Delete consumers of previous owners that hold nothing (worker ids are unique per process)."""
        consumers: list[dict[str, Any]] = await self.link.call(lambda c: c.xinfo_consumers(self.stream, self.group))
        me = self.consumer.encode()
        for info in consumers:
            name = _b(info.get("name", b""))
            if name != me and not int(info.get("pending") or 0) and int(info.get("idle") or 0) >= self.claim_idle_ms:

                async def forget(client: Any, n: bytes = name) -> Any:
                    return await client.xgroup_delconsumer(self.stream, self.group, n)

                await self.link.call(forget)

    # -------------------------------------------------------------------------------------- read

    async def read(self, count: int, block_ms: int | None) -> list[RawEntry]:
        """The next entries after ``cursor`` (history) or never delivered (new); may raise TransportError."""
        history = self.mode == "history"
        sid: bytes = self.cursor if history else b">"
        block = None if history else block_ms
        try:
            res = await self.link.call(
                lambda c: c.xreadgroup(self.group, self.consumer, {self.stream: sid}, count=count, block=block)
            )
        except ResponseError as exc:
            if "NOGROUP" not in str(exc):
                raise
            log.warning("consumer group missing: re-creating it", stream=self.stream, group=self.group)
            await self.link.call(lambda c: ensure_group(c, self.stream, self.group))
            return []
        except BaseException:
            if self.mode == "new":
                self.mode = "history"
            raise
        entries = _entries(res)
        if history and not entries:
            self.mode = "new"
        return entries

    def after_error(self) -> None:
        if self.mode == "new":
            self.mode = "history"

    # ------------------------------------------------------------------------------- ack, probe

    async def ack(self, ids: Sequence[bytes]) -> None:
        for i in range(0, len(ids), ACK_CHUNK):
            chunk = list(ids[i : i + ACK_CHUNK])

            async def run(client: Any, ch: list[bytes] = chunk) -> Any:
                return await client.xack(self.stream, self.group, *ch)

            await self.link.call(run)

    async def probe(self) -> None:
        """Refresh ``lag`` (entries not yet delivered to the group) and ``pending`` (delivered, unacked)."""
        groups: list[dict[str, Any]] = await self.link.call(lambda c: c.xinfo_groups(self.stream))
        for g in groups:
            if _b(g.get("name", b"")) == self.group.encode():
                self.pending = int(g.get("pending") or 0)
                lag = g.get("lag")
                self.lag = int(lag) if lag is not None else await self._count_undelivered(g)
                return

    async def _count_undelivered(self, group: dict[str, Any]) -> int:
        """Redis reports no lag once the group's read counter is invalid (deletions, trimming, takeovers):
        count the entries after the group's last-delivered id instead (0 when it is the stream's last;
        XLEN, an upper bound, beyond LAG_COUNT_CAP entries)."""
        last = _b(group.get("last-delivered-id") or b"0-0")
        after = b"(" + last
        res: Any = await self.link.call(lambda c: c.xrange(self.stream, min=after, max="+", count=LAG_COUNT_CAP))
        if len(res) < LAG_COUNT_CAP:
            return len(res)
        n: Any = await self.link.call(lambda c: c.xlen(self.stream))
        return int(n)


def _entries(res: Any) -> list[RawEntry]:
    """XREADGROUP reply (RESP2: [[stream, [(id, fields), ...]]]) -> [(id, fields or None)]."""
    if not res:
        return []
    return [(_b(i), f if f else None) for i, f in res[0][1]]
