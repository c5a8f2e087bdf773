"""DeploySignal contract v1, producer side: the verdict-group feed (Tessera -> DS).

``POST {ds_url}/v1/tessera/verdict-groups`` with ``{"contract_version":"v1","verdict_group":
VerdictGroupPayload,"emitted_at_ts":<unix s>}`` and headers ``x-tessera-instance-id``,
``authorization: Bearer <token>`` (when one is configured) and ``Idempotency-Key`` (SHA-256 hex of
the group id: stable across retries and restarts, so the receiver can drop re-deliveries). The
envelope is fixed at submission, so every retry sends the same bytes.

:class:`VerdictFeed` is a bounded queue drained by one task: network errors, timeouts, 5xx and 429
are retried with capped exponential backoff and full jitter (``Retry-After`` honoured up to the
cap); other 4xx, and a 2xx answer that rejects the group or is not a v1 response, fail at once.
Outcomes are counted for metrics (:attr:`VerdictFeed.sent`, ``retried``, ``failed``, ``dropped``,
``failures`` by kind). :meth:`VerdictFeed.close` flushes the queue within a deadline; what is left
is counted as dropped.

:func:`build_verdict_group` and :func:`verdict_group_for_event` build the payload from our firings
(pure): ``firing_family_count`` is the number of distinct detector families among the firings
(A, C, D, E; every hard-fault rule counts as the one family ``rule``), ``confidence`` is
``min(1, families / 3)``, and ``correlational_not_causal`` is always true.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import random
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import aiohttp

from tessera_daemon.backoff import Backoff
from tessera_daemon.engine.events import EventRecord
from tessera_daemon.log import get_logger
from tessera_daemon.model import Firing
from tessera_daemon.settings.events import DeploySignalSettings, Secret

log = get_logger(__name__)

CONTRACT_VERSION = "v1"
FEED_PATH = "/v1/tessera/verdict-groups"
FAMILIES_FOR_FULL_CONFIDENCE = 3
RETRY_STATUSES = frozenset({429})


# ------------------------------------------------------------------------------ payload


@dataclass(frozen=True, slots=True)
class VerdictGroup:
    """``VerdictGroupPayload`` of contract v1."""

    group_id: str
    deploy_id: str
    window_start_ts: float
    window_end_ts: float
    firing_family_count: int
    confidence: float
    cluster_event_id: str | None = None
    correlational_not_causal: bool = True

    @property
    def idempotency_key(self) -> str:
        return hashlib.sha256(self.group_id.encode("utf-8")).hexdigest()

    def to_obj(self) -> dict[str, Any]:
        obj: dict[str, Any] = {
            "group_id": self.group_id,
            "deploy_id": self.deploy_id,
            "window_start_ts": self.window_start_ts,
            "window_end_ts": self.window_end_ts,
        }
        if self.cluster_event_id is not None:
            obj["cluster_event_id"] = self.cluster_event_id
        obj["firing_family_count"] = self.firing_family_count
        obj["confidence"] = self.confidence
        obj["correlational_not_causal"] = True
        return obj


def family(detector: str) -> str:
    """A firing's detector family: ``A``/``C``/``D``/``E``, or ``rule`` for every hard-fault rule."""
    return "rule" if detector.startswith("rule:") else detector


def group_id_for(cluster_event_id: str | None, window_start_ts: float, window_end_ts: float) -> str:
    """Deterministic group id: one group per (event, window)."""
    text = f"tessera-verdict-group|v1|{cluster_event_id or ''}|{window_start_ts!r}|{window_end_ts!r}"
    return "vg-" + hashlib.sha256(text.encode("utf-8")).hexdigest()[:24]


def build_verdict_group(
    firings: Iterable[Firing],
    *,
    window_start_ts: float,
    window_end_ts: float,
    cluster_event_id: str | None = None,
    deploy_id: str | None = None,
) -> VerdictGroup:
    """The verdict group of ``firings`` over one window (and, optionally, one cluster event).

    ``deploy_id`` defaults to the cluster event id (DeploySignal's own event id for its events),
    else to the group id.
    """
    families = {family(f.detector) for f in firings}
    k = len(families)
    gid = group_id_for(cluster_event_id, window_start_ts, window_end_ts)
    return VerdictGroup(
        group_id=gid,
        deploy_id=deploy_id or cluster_event_id or gid,
        window_start_ts=window_start_ts,
        window_end_ts=window_end_ts,
        firing_family_count=k,
        confidence=round(min(1.0, k / FAMILIES_FOR_FULL_CONFIDENCE), 6),
        cluster_event_id=cluster_event_id,
    )


def verdict_group_for_event(record: EventRecord, firings: Iterable[Firing]) -> VerdictGroup:
    """The group of the firings attributed to ``record``'s event (``event_id`` equal to its id)
    over its freeze window; ``deploy_id`` is ``metadata["deploy_id"]`` when DeploySignal sent
    one, else the event id."""
    mine = [f for f in firings if f.event_id == record.id]
    return build_verdict_group(
        mine,
        window_start_ts=record.freeze_start_ts,
        window_end_ts=record.freeze_end_ts,
        cluster_event_id=record.id,
        deploy_id=record.metadata.get("deploy_id") or record.id,
    )


# ------------------------------------------------------------------------------ client


@dataclass(frozen=True, slots=True)
class _Item:
    group: VerdictGroup
    body: bytes


class _Retry(Exception):
    def __init__(self, kind: str, detail: str, delay_floor_s: float = 0.0) -> None:
        super().__init__(detail)
        self.kind = kind
        self.delay_floor_s = delay_floor_s


class _Fail(Exception):
    def __init__(self, kind: str, detail: str) -> None:
        super().__init__(detail)
        self.kind = kind


def _retry_after(value: str | None) -> float:
    if not value:
        return 0.0
    try:
        return max(0.0, float(value))
    except ValueError:
        return 0.0  # an HTTP date: fall back to our own backoff


class VerdictFeed:
    """Bounded, retrying sender of verdict groups to DeploySignal. Use from one event loop."""

    def __init__(
        self,
        ds_url: str,
        *,
        instance_id: str,
        token: Callable[[], str] | str = "",
        timeout_s: float = 5.0,
        max_attempts: int = 6,
        backoff_base_s: float = 0.5,
        backoff_cap_s: float = 30.0,
        queue_max: int = 1000,
        clock: Callable[[], float] = time.time,
        rng: random.Random | None = None,
    ) -> None:
        if not instance_id:
            raise ValueError("instance_id must not be empty")
        self.url = ds_url.rstrip("/") + FEED_PATH
        self.instance_id = instance_id
        self._token: Callable[[], str] = (lambda: token) if isinstance(token, str) else token
        self.timeout_s = timeout_s
        self.max_attempts = max(1, max_attempts)
        self.backoff_base_s = backoff_base_s
        self.backoff_cap_s = backoff_cap_s
        self.clock = clock
        self.rng = rng or random.Random()
        self._queue: asyncio.Queue[_Item] = asyncio.Queue(maxsize=queue_max)
        self._session: aiohttp.ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._closing = False
        self._inflight = 0
        self.sent = 0  # groups DeploySignal accepted
        self.retried = 0  # retry attempts (not groups)
        self.failed = 0  # groups given up on (non-retryable answer, or attempts exhausted)
        self.dropped = 0  # groups never finished: queue full, submitted after close, or left at close
        self.failures: Counter[str] = Counter()  # failed groups by kind
        self.last_error = ""

    @classmethod
    def from_settings(cls, s: DeploySignalSettings, *, cluster: str) -> VerdictFeed | None:
        """The feed configured by ``[events.deploysignal]``; None when ``ds_url`` is empty."""
        if not s.ds_url:
            return None
        secret = Secret(s.feed_token, s.feed_token_file, setting_name="events.deploysignal.feed_token_file")
        return cls(
            s.ds_url,
            instance_id=s.instance_id or cluster,
            token=secret.get,
            timeout_s=s.feed_timeout_s,
            max_attempts=s.feed_max_attempts,
            backoff_base_s=s.feed_backoff_base_s,
            backoff_cap_s=s.feed_backoff_cap_s,
            queue_max=s.feed_queue,
        )

    @property
    def pending(self) -> int:
        return self._queue.qsize()

    async def start(self) -> None:
        if self._task is not None:
            return
        self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))
        self._task = asyncio.create_task(self._run(), name="verdict-feed")

    def envelope(self, group: VerdictGroup, emitted_at_ts: float) -> dict[str, Any]:
        return {"contract_version": CONTRACT_VERSION, "verdict_group": group.to_obj(), "emitted_at_ts": emitted_at_ts}

    def submit(self, group: VerdictGroup, *, emitted_at_ts: float | None = None) -> bool:
        """Queue ``group``; False (counted as dropped) when the queue is full or the feed closed."""
        if self._closing:
            self.dropped += 1
            return False
        ts = self.clock() if emitted_at_ts is None else emitted_at_ts
        body = json.dumps(self.envelope(group, ts), separators=(",", ":"), allow_nan=False).encode()
        try:
            self._queue.put_nowait(_Item(group, body))
        except asyncio.QueueFull:
            self.dropped += 1
            log.warning("verdict feed queue full: group dropped", group_id=group.group_id)
            return False
        return True

    async def _run(self) -> None:
        while True:
            item = await self._queue.get()
            self._inflight = 1
            try:
                await self._deliver(item)
            except Exception as exc:  # a bug: count and log it loudly, keep the feed alive
                log.exception("verdict feed internal error", group_id=item.group.group_id)
                self._give_up(item, "internal_error", repr(exc))
            finally:
                self._inflight = 0
                self._queue.task_done()

    def _headers(self, item: _Item) -> dict[str, str]:
        headers = {
            "Content-Type": "application/json",
            "x-tessera-instance-id": self.instance_id,
            "Idempotency-Key": item.group.idempotency_key,
        }
        tok = self._token()
        if tok:
            headers["Authorization"] = f"Bearer {tok}"
        return headers

    async def _attempt(self, item: _Item) -> None:
        assert self._session is not None
        try:
            async with self._session.post(self.url, data=item.body, headers=self._headers(item)) as resp:
                text = await resp.text()
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise _Retry("network_error", f"{type(exc).__name__}: {exc}") from exc
        if status >= 500 or status in RETRY_STATUSES:
            raise _Retry("http_5xx" if status >= 500 else "http_429", f"HTTP {status}", retry_after)
        if status >= 400:
            raise _Fail("http_4xx", f"HTTP {status}: {text[:200]}")
        if status >= 300:
            raise _Fail("invalid_response", f"unexpected HTTP {status}")
        try:
            answer = json.loads(text)
        except ValueError as exc:
            raise _Fail("invalid_response", "answer is not JSON") from exc
        if not isinstance(answer, dict) or answer.get("status") not in ("accepted", "rejected"):
            raise _Fail("invalid_response", "answer is not a v1 feed response")
        if answer["status"] == "rejected":
            raise _Fail("rejected", f"rejected: {answer.get('reason', '')}")

    async def _deliver(self, item: _Item) -> None:
        backoff = Backoff(self.backoff_base_s, self.backoff_cap_s, rng=self.rng)
        for attempt in range(1, self.max_attempts + 1):
            try:
                await self._attempt(item)
            except _Fail as exc:
                self._give_up(item, exc.kind, str(exc))
                return
            except _Retry as exc:
                self.last_error = f"{exc.kind}: {exc}"
                if attempt == self.max_attempts:
                    self._give_up(item, exc.kind, f"{exc} (after {attempt} attempts)")
                    return
                delay = min(self.backoff_cap_s, max(backoff.next_delay(), exc.delay_floor_s))
                self.retried += 1
                log.info(
                    "verdict feed retry",
                    group_id=item.group.group_id,
                    attempt=attempt,
                    error=self.last_error,
                    retry_in_s=round(delay, 3),
                )
                await asyncio.sleep(delay)
            else:
                self.sent += 1
                return

    def _give_up(self, item: _Item, kind: str, detail: str) -> None:
        self.failed += 1
        self.failures[kind] += 1
        self.last_error = f"{kind}: {detail}"
        log.warning("verdict group not delivered", group_id=item.group.group_id, kind=kind, error=detail)

    async def close(self, deadline_s: float = 5.0) -> None:
        """Stop accepting groups, send what is queued within ``deadline_s``, drop the rest."""
        self._closing = True
        if self._task is not None:
            try:
                async with asyncio.timeout(deadline_s):
                    await self._queue.join()
            except TimeoutError:
                pass
            busy = self._queue.qsize() + self._inflight
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
            if busy:
                self.dropped += busy
                log.warning("verdict feed closed with groups unsent", dropped=busy)
        else:
            self.dropped += self._queue.qsize()
        while not self._queue.empty():
            self._queue.get_nowait()
        if self._session is not None:
            await self._session.close()
            self._session = None
