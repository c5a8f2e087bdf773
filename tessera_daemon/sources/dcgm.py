"""dcgm-exporter source: scrape ``/metrics`` and turn DCGM fields into per-GPU frames.

The text is parsed with prometheus_client's parser and keyed on the DCGM field name (the family
name), in both naming generations (see ``dcgm_fields``); units are normalised (percent -> ratio,
Hz -> MHz, mJ -> J counters, MiB -> bytes). Shards are ``<host>/gpu<gpu>`` (``<host>/gpu<gpu>-mig<id>``
for a MIG instance), where host is ``dcgm.host``, else the ``Hostname`` label, else the URL's host.

XIDs: ``DCGM_FI_DEV_XID_ERRORS`` only holds the last code, so the source emits an XID (in
``Frame.xid``, and counted in ``xid_<code>_total`` / ``xid_total``) when that value changes to a new
non-zero code between scrapes; a repeat of the same code is invisible in that gauge. When the
exporter also exposes ``DCGM_EXP_XID_ERRORS_TOTAL{xid=...}``, its increases are used instead.

Several URLs are scraped concurrently; a poll fails only if every URL fails. A GPU that was in the
previous scrape of a URL and is missing from the current one gets a ``lost=True`` frame.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from tessera_daemon.errors import SubstrateError, SubstrateFatal, SubstrateTimeout, SubstrateUnavailable
from tessera_daemon.model import Frame
from tessera_daemon.sources._util import PartBuilder, shard_id
from tessera_daemon.sources.base import TopologyPart
from tessera_daemon.sources.dcgm_fields import BLANK_AT, COUNTERS, CRC_PARTS, FIELDS, XID_LAST, XID_TOTAL

if TYPE_CHECKING:
    from tessera_daemon.config import Config


@dataclass(slots=True)
class GpuSeries:
    """Everything one scrape says about one GPU (or MIG instance)."""

    host: str
    gpu: str
    labels: dict[str, str] = field(default_factory=dict)
    metrics: dict[str, float | None] = field(default_factory=dict)
    legacy: set[str] = field(default_factory=set)  # metrics currently taken from a legacy name
    xid_last: float | None = None
    xid_totals: dict[int, float] = field(default_factory=dict)

    @property
    def shard(self) -> str:
        return shard_id(self.host, "gpu", self.gpu)


KEPT_LABELS = ("UUID", "modelName", "device", "pod", "namespace", "container", "GPU_I_PROFILE")


def _value(v: float) -> float | None:
    return v if math.isfinite(v) and abs(v) < BLANK_AT else None


def parse_exposition(text: str, host: str, *, host_label: bool = True) -> dict[str, GpuSeries]:
    """DCGM samples grouped per shard id. ``host`` is used when a series has no Hostname label
    (always, with ``host_label=False``).

    Raises ValueError when the text is not Prometheus exposition format.
    """
    out: dict[str, GpuSeries] = {}
    for family in text_string_to_metric_families(text):
        name = family.name
        spec = FIELDS.get(name)
        if spec is None and name not in XID_LAST and name != XID_TOTAL:
            continue
        for sample in family.samples:
            labels = sample.labels
            gpu = labels.get("gpu")
            if gpu is None:
                continue
            if labels.get("GPU_I_ID"):
                gpu = f"{gpu}-mig{labels['GPU_I_ID']}"
            series_host = (labels.get("Hostname") if host_label else None) or host
            key = shard_id(series_host, "gpu", gpu)
            s = out.get(key)
            if s is None:
                s = out[key] = GpuSeries(series_host, gpu)
            for key in KEPT_LABELS:
                if labels.get(key):
                    s.labels.setdefault(key, labels[key])
            _take(s, name, labels, _value(float(sample.value)))
    for s in out.values():
        parts = [s.metrics.pop(p) for p in CRC_PARTS if p in s.metrics]
        if parts and "nvlink_crc_errors" not in s.metrics:
            s.metrics["nvlink_crc_errors"] = None if None in parts else sum(p for p in parts if p is not None)
    return out


def _take(s: GpuSeries, name: str, labels: dict[str, str], value: float | None) -> None:
    if name in XID_LAST:
        s.xid_last = value
        return
    if name == XID_TOTAL:
        code = labels.get("xid") or labels.get("err_code") or ""
        if code.isdigit() and value is not None:
            s.xid_totals[int(code)] = value
        return
    spec = FIELDS[name]
    if spec.metric in s.metrics and spec.legacy and spec.metric not in s.legacy:
        return  # the newer field name already gave this metric
    s.metrics[spec.metric] = None if value is None else value * spec.scale
    if spec.legacy:
        s.legacy.add(spec.metric)
    else:
        s.legacy.discard(spec.metric)


class DcgmSource:
    name = "dcgm"

    def __init__(self, cfg: Config) -> None:
        self.settings = cfg.sources.dcgm
        self.timeout_s = cfg.sources.timeout_s
        self._session: aiohttp.ClientSession | None = None
        self._seen: dict[str, set[str]] = {}  # url -> shards in its last good scrape
        self._xid_last: dict[str, float | None] = {}
        self._xid_prev_totals: dict[str, dict[int, float]] = {}
        self._xid_counts: dict[str, dict[int, float]] = {}
        self._series: dict[str, GpuSeries] = {}

    async def open(self) -> None:
        if not self.settings.urls:
            raise SubstrateFatal(self.name, "sources.dcgm.urls is empty")
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout_s))

    async def close(self) -> None:
        if self._session is not None:
            session, self._session = self._session, None
            await session.close()

    async def _scrape(self, url: str) -> dict[str, GpuSeries]:
        if self._session is None:
            await self.open()
        assert self._session is not None
        try:
            async with self._session.get(url) as resp:
                if resp.status != 200:
                    raise SubstrateUnavailable(self.name, f"{url}: HTTP {resp.status}")
                body = await resp.text()
        except TimeoutError as exc:
            raise SubstrateTimeout(self.name, f"{url}: no answer within {self.timeout_s:g}s") from exc
        except aiohttp.ClientError as exc:
            raise SubstrateUnavailable(self.name, f"{url}: {exc}") from exc
        host = self.settings.host or urlsplit(url).hostname or "unknown"
        try:
            return parse_exposition(body, host, host_label=not self.settings.host)
        except ValueError as exc:
            raise SubstrateFatal(self.name, f"{url}: not Prometheus text exposition ({exc})") from exc

    async def poll(self, now: float) -> Sequence[Frame]:
        urls = self.settings.urls
        results = await asyncio.gather(*(self._scrape(u) for u in urls), return_exceptions=True)
        frames: list[Frame] = []
        errors: list[BaseException] = []
        for url, result in zip(urls, results, strict=True):
            if isinstance(result, BaseException):
                if not isinstance(result, SubstrateError | SubstrateFatal):
                    raise result
                errors.append(result)
                continue
            for sid in sorted(self._seen.get(url, set()) - result.keys()):
                frames.append(Frame(now, sid, {}, lost=True))
            self._seen[url] = set(result)
            for sid in sorted(result):
                self._series[sid] = result[sid]
                frames.append(self._frame(now, result[sid]))
        if errors and len(errors) == len(urls):
            fatal = [e for e in errors if isinstance(e, SubstrateFatal)]
            raise fatal[0] if fatal else errors[0]
        return frames

    def _frame(self, now: float, s: GpuSeries) -> Frame:
        sid = s.shard
        codes: list[int] = []
        counts = self._xid_counts.setdefault(sid, {})
        if s.xid_totals:
            prev = self._xid_prev_totals.get(sid)
            for code, total in sorted(s.xid_totals.items()):
                if prev is not None and total > prev.get(code, 0.0):
                    codes.extend([code] * int(min(total - prev.get(code, 0.0), 64)))
                counts[code] = total
            self._xid_prev_totals[sid] = dict(s.xid_totals)
        elif s.xid_last is not None:
            # the first scrape only sets the baseline: that XID happened at some unknown time
            if sid in self._xid_last and s.xid_last and s.xid_last != self._xid_last[sid]:
                code = int(s.xid_last)
                codes.append(code)
                counts[code] = counts.get(code, 0.0) + 1
            self._xid_last[sid] = s.xid_last
        metrics = dict(s.metrics)
        xid_names = set()
        if s.xid_last is not None or s.xid_totals:
            metrics["xid_total"] = float(sum(counts.values()))
            xid_names.add("xid_total")
            for code, n in counts.items():
                metrics[f"xid_{code}_total"] = n
                xid_names.add(f"xid_{code}_total")
        counters = frozenset((COUNTERS & metrics.keys()) | xid_names)
        return Frame(now, sid, metrics, counters, tuple(codes))

    async def topology(self) -> TopologyPart:
        if not self._series:  # scrape without touching the XID / lost-GPU state of poll
            results = await asyncio.gather(*(self._scrape(u) for u in self.settings.urls), return_exceptions=True)
            for result in results:
                if isinstance(result, dict):
                    self._series.update(result)
            if not self._series:
                errors = [r for r in results if isinstance(r, SubstrateError | SubstrateFatal)]
                if errors:
                    raise errors[0]
        b = PartBuilder()
        for sid in sorted(self._series):
            s = self._series[sid]
            pod = f"{s.labels.get('namespace', '')}/{s.labels['pod']}" if s.labels.get("pod") else ""
            b.node(s.host, "host", None, host=s.host)
            b.node(
                sid,
                "shard",
                s.host,
                host=s.host,
                model=s.labels.get("modelName", ""),
                gpu_uuid=s.labels.get("UUID", ""),
                device=s.labels.get("device", ""),
                index=s.gpu,
                k8s_pod=pod,
                mig_profile=s.labels.get("GPU_I_PROFILE", ""),
            )
        nodes, edges = b.result()
        return TopologyPart(self.name, nodes, edges, partial=True, notes=("no containment above host",))
