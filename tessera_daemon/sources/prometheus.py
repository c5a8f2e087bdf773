"""Prometheus query source: per-shard values pulled from an existing Prometheus with PromQL.

Each poll runs every ``prometheus.queries`` entry (``metric_name=PromQL``) as an instant query,
``GET <url>/api/v1/query?query=...&time=<now>``, concurrently. Every series of a vector result
becomes one value of shard ``<host>/<shard_kind><device>``, host and device read from the series
labels ``prometheus.host_label`` / ``device_label`` (series without them are skipped). Metrics named
in ``prometheus.counters`` are flagged as counters. One frame per shard joins all queries.

A query Prometheus rejects (``status: error``, e.g. a PromQL syntax error) only drops its metric;
the poll fails when every query fails: SubstrateFatal when they were all rejected as bad queries,
SubstrateUnavailable / SubstrateTimeout when Prometheus could not be reached.
"""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import aiohttp

from tessera_daemon.errors import (
    ConfigError,
    SubstrateError,
    SubstrateFatal,
    SubstrateTimeout,
    SubstrateUnavailable,
)
from tessera_daemon.log import get_logger
from tessera_daemon.model import Frame
from tessera_daemon.sources._util import PartBuilder, parse_pairs, shard_id
from tessera_daemon.sources.base import TopologyPart

if TYPE_CHECKING:
    from tessera_daemon.config import Config

log = get_logger(__name__)


@dataclass(slots=True)
class _Series:
    host: str
    device: str
    model: str = ""
    uuid: str = ""


def _sample(value: Any) -> float | None:
    try:
        v = float(value[1])
    except (TypeError, ValueError, IndexError):
        return None
    return v if math.isfinite(v) else None


class PrometheusSource:
    name = "prometheus"

    def __init__(self, cfg: Config) -> None:
        self.settings = cfg.sources.prometheus
        self.timeout_s = cfg.sources.timeout_s
        try:
            self.queries = parse_pairs(self.settings.queries, "sources.prometheus.queries")
        except ValueError as exc:
            raise ConfigError("sources.prometheus.queries", str(exc)) from exc
        if not self.queries:
            raise ConfigError("sources.prometheus.queries", "at least one metric_name=PromQL query is needed")
        self._session: aiohttp.ClientSession | None = None
        self._series: dict[str, _Series] = {}

    async def open(self) -> None:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _query(self, promql: str, now: float) -> list[dict[str, Any]]:
        if self._session is None:
            await self.open()
        assert self._session is not None
        url = self.settings.url.rstrip("/") + "/api/v1/query"
        try:
            async with self._session.get(url, params={"query": promql, "time": f"{now:.3f}"}) as resp:
                text = await resp.text()
                status = resp.status
        except TimeoutError as exc:
            raise SubstrateTimeout(self.name, f"no answer within {self.timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise SubstrateUnavailable(self.name, f"{url}: {exc}") from exc
        try:
            body = json.loads(text)
        except ValueError:
            raise SubstrateUnavailable(self.name, f"{url}: HTTP {status}, not JSON") from None
        if body.get("status") != "success":
            msg = f"query {promql!r}: {body.get('errorType')}: {body.get('error')}"
            if status in (400, 422) or body.get("errorType") == "bad_data":
                raise SubstrateFatal(self.name, msg)
            raise SubstrateUnavailable(self.name, msg)
        data = body.get("data") or {}
        if data.get("resultType") != "vector":
            return []
        result = data.get("result") or []
        return [r for r in result if isinstance(r, dict)]

    async def poll(self, now: float) -> Sequence[Frame]:
        results = await asyncio.gather(*(self._query(q, now) for _m, q in self.queries), return_exceptions=True)
        s = self.settings
        per_shard: dict[str, dict[str, float | None]] = {}
        errors: list[BaseException] = []
        for (metric, _q), result in zip(self.queries, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, SubstrateError | SubstrateFatal):
                    raise result
                errors.append(result)
                log.warning("prometheus.query_failed", metric=metric, error=str(result))
                continue
            for series in result:
                labels = series.get("metric") or {}
                host, dev = labels.get(s.host_label), labels.get(s.device_label)
                if not host or dev is None:
                    continue
                sid = shard_id(host, s.shard_kind, dev)
                per_shard.setdefault(sid, {})[metric] = _sample(series.get("value"))
                self._series[sid] = _Series(
                    host,
                    str(dev),
                    labels.get(s.model_label, "") if s.model_label else "",
                    labels.get(s.uuid_label, "") if s.uuid_label else "",
                )
        if errors and len(errors) == len(self.queries):
            unavailable = [e for e in errors if not isinstance(e, SubstrateFatal)]
            raise unavailable[0] if unavailable else errors[0]
        counters = frozenset(s.counters)
        return [Frame(now, sid, m, counters & m.keys()) for sid, m in sorted(per_shard.items())]

    async def topology(self) -> TopologyPart:
        b = PartBuilder()
        for sid in sorted(self._series):
            ser = self._series[sid]
            b.node(ser.host, "host", None, host=ser.host)
            b.node(sid, "shard", ser.host, host=ser.host, model=ser.model, gpu_uuid=ser.uuid, index=ser.device)
        nodes, edges = b.result()
        return TopologyPart(self.name, nodes, edges, partial=True, notes=("hosts and shards only",))
