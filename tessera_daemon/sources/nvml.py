"""NVIDIA NVML source (the official ``nvidia-ml-py`` bindings, module ``pynvml``).

Per GPU and poll: one ``nvmlDeviceGetFieldValues`` batch (ECC volatile totals, row-remap counts /
pending / failure, PCIe replays, NVLink data throughput and CRC errors, instant power, energy,
memory temperature) plus the getters NVML has no field id for (utilisation, SM / memory clocks, GPU
temperature, memory used, clock-event reasons). Every NVML call runs in a worker thread with the
poll timeout (``OffLoop``).

XIDs come from an NVML event set (``nvmlEventTypeXidCriticalError``) drained at each poll: the codes
seen since the previous poll go into ``Frame.xid``; per-code cumulative counts are counters
``xid_<code>_total`` (present once the code was seen) plus ``xid_total`` (always present), so a
repeated XID is never lost the way a last-value gauge loses it.

Errors: NVML absent / driver not loaded -> SubstrateUnavailable (the next poll re-initialises);
a GPU answering GPU_IS_LOST or RESET_REQUIRED -> a frame with ``lost=True`` while the other GPUs
report normally; a metric a GPU does not support is left out of its frames; fewer GPUs visible than
``nvml.expected_devices`` -> lost frames for the missing indexes. Shards are ``<host>/gpu<index>``.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from functools import partial
from types import ModuleType
from typing import TYPE_CHECKING, Any

from tessera_daemon.errors import SubstrateUnavailable
from tessera_daemon.log import get_logger
from tessera_daemon.model import Frame
from tessera_daemon.sources._util import OffLoop, PartBuilder, host_name, shard_id
from tessera_daemon.sources.base import TopologyPart
from tessera_daemon.sources.nvml_fields import (
    COUNTERS,
    CRC_PARTS,
    FIELD_SPECS,
    Codes,
    DeviceLost,
    FieldSpec,
    Gpu,
    LibraryGone,
    bus_key,
    error_code,
    field_value,
    handle_key,
    text,
)

if TYPE_CHECKING:
    from tessera_daemon.config import Config

log = get_logger(__name__)
MAX_EVENTS_PER_POLL = 4096


class NvmlSource:
    name = "nvml"

    def __init__(self, cfg: Config, nvml: ModuleType | None = None) -> None:
        self.settings = cfg.sources.nvml
        self.timeout_s = cfg.sources.timeout_s
        self.host = host_name(self.settings.host)
        self._module = nvml
        self._lib: ModuleType | None = None
        self._codes: Codes | None = None
        self._gpus: list[Gpu] = []
        self._xid_counts: dict[int, dict[int, int]] = {}  # per GPU index, kept across re-initialisation
        self._events: Any = None
        self._initialised = False
        self._specs: list[tuple[FieldSpec, Any]] = []
        self._part = TopologyPart(self.name)
        self._off = OffLoop(self.name)

    # ------------------------------------------------------------------------------ lifecycle

    async def open(self) -> None:
        lib = self._load()
        await self._off.call(self.settings.init_timeout_s, self._open_sync, lib)

    def _load(self) -> ModuleType:
        if self._lib is None:
            try:
                self._lib = self._module or importlib.import_module("pynvml")
            except ImportError as exc:
                raise SubstrateUnavailable(self.name, f"pynvml is not importable: {exc}") from exc
            self._codes = Codes(self._lib)
        return self._lib

    def _nvml_error(self) -> type[BaseException]:
        err = getattr(self._lib, "NVMLError", None)
        return err if isinstance(err, type) and issubclass(err, BaseException) else RuntimeError

    def _open_sync(self, lib: ModuleType) -> None:
        nvml_error = self._nvml_error()
        self._close_sync()
        try:
            lib.nvmlInit()
            self._initialised = True
            count = int(lib.nvmlDeviceGetCount())
            gpus = [Gpu(i, self._meta(partial(lib.nvmlDeviceGetHandleByIndex, i), None)) for i in range(count)]
            for gpu in gpus:
                if gpu.handle is None:
                    continue  # this GPU does not even give a handle: reported lost at every poll
                gpu.uuid = text(self._meta(partial(lib.nvmlDeviceGetUUID, gpu.handle), ""))
                gpu.model = text(self._meta(partial(lib.nvmlDeviceGetName, gpu.handle), ""))
                pci = self._meta(partial(lib.nvmlDeviceGetPciInfo, gpu.handle), None)
                gpu.bus = bus_key(pci.busId) if pci is not None else ""
        except (nvml_error, LibraryGone) as exc:
            self._close_sync()
            raise SubstrateUnavailable(self.name, f"NVML initialisation failed: {exc}") from exc
        self._gpus = gpus
        self._specs = [(s, getattr(lib, s.constant)) for s in FIELD_SPECS if hasattr(lib, s.constant)]
        if self.settings.xid_events:
            self._events = self._register_events(lib, gpus)
        self._part = self._build_topology(lib)

    def _register_events(self, lib: ModuleType, gpus: list[Gpu]) -> Any:
        try:
            events = lib.nvmlEventSetCreate()
        except self._nvml_error() as exc:
            log.warning("nvml.events_unavailable", error=str(exc))
            return None
        for gpu in gpus:
            if gpu.handle is None:
                continue
            try:
                lib.nvmlDeviceRegisterEvents(gpu.handle, lib.nvmlEventTypeXidCriticalError, events)
            except self._nvml_error() as exc:
                log.info("nvml.xid_events_unsupported", gpu=gpu.index, error=str(exc))
        return events

    async def close(self) -> None:
        if self._off.busy:
            log.warning("nvml.close_skipped", reason="an NVML call is still running")
            return
        self._close_sync()

    def _close_sync(self) -> None:
        lib = self._lib
        if lib is None:
            return
        if self._events is not None:
            try:
                lib.nvmlEventSetFree(self._events)
            except Exception as exc:  # close must not raise
                log.debug("nvml.event_free_failed", error=str(exc))
            self._events = None
        if self._initialised:
            try:
                lib.nvmlShutdown()
            except Exception as exc:
                log.debug("nvml.shutdown_failed", error=str(exc))
            self._initialised = False

    # ---------------------------------------------------------------------------------- poll

    async def poll(self, now: float) -> Sequence[Frame]:
        lib = self._load()
        return await self._off.call(self.timeout_s, self._poll_sync, lib, now)

    def _poll_sync(self, lib: ModuleType, now: float) -> list[Frame]:
        if not self._initialised:
            self._open_sync(lib)
        try:
            xids = self._drain_events(lib)
            frames = []
            for gpu in self._gpus:
                sid = shard_id(self.host, "gpu", gpu.index)
                codes = tuple(xids.get(gpu.index, ()))
                counts = self._xid_counts.setdefault(gpu.index, {})
                for code in codes:
                    counts[code] = counts.get(code, 0) + 1
                try:
                    if gpu.handle is None:
                        raise DeviceLost("no handle")
                    metrics = self._read(lib, gpu)
                except DeviceLost:
                    frames.append(Frame(now, sid, {}, lost=True, xid=codes))
                    continue
                metrics["xid_total"] = float(sum(counts.values()))
                xid_names = set()
                for code, n in counts.items():
                    metrics[f"xid_{code}_total"] = float(n)
                    xid_names.add(f"xid_{code}_total")
                counters = frozenset((COUNTERS & metrics.keys()) | xid_names)
                frames.append(Frame(now, sid, metrics, counters, codes))
        except LibraryGone as exc:
            self._close_sync()
            raise SubstrateUnavailable(self.name, f"NVML became unusable: {exc}") from exc
        for missing in range(len(self._gpus), self.settings.expected_devices):
            frames.append(Frame(now, shard_id(self.host, "gpu", missing), {}, lost=True))
        return frames

    def _guard(self, exc: BaseException) -> int | None:
        """Raise for library-wide and device-lost errors; return the code for the others."""
        code = error_code(exc)
        if code in self.codes.lib_gone:
            raise LibraryGone(str(exc)) from exc
        if code in self.codes.lost:
            raise DeviceLost(str(exc)) from exc
        return code

    def _meta(self, fn: Callable[[], Any], default: Any) -> Any:
        """Descriptive data (UUID, name, bus id): a lost or odd GPU just leaves it empty."""
        try:
            return fn()
        except self._nvml_error() as exc:
            if error_code(exc) in self.codes.lib_gone:
                raise LibraryGone(str(exc)) from exc
            return default

    @property
    def codes(self) -> Codes:
        if self._codes is None:
            raise SubstrateUnavailable(self.name, "pynvml is not loaded")
        return self._codes

    def _get(self, gpu: Gpu, metric: str, fn: Callable[[], Any]) -> Any:
        """One getter: None when unavailable this time; remembered when never supported."""
        if metric in gpu.unsupported:
            return None
        try:
            return fn()
        except self._nvml_error() as exc:
            code = self._guard(exc)
            if code in self.codes.not_available:
                gpu.unsupported.add(metric)
            return None

    def _read(self, lib: ModuleType, gpu: Gpu) -> dict[str, float | None]:
        h = gpu.handle
        m: dict[str, float | None] = self._read_fields(lib, gpu)
        util = self._get(gpu, "gpu_util", lambda: lib.nvmlDeviceGetUtilizationRates(h))
        if util is not None:
            m["gpu_util"] = util.gpu / 100.0
            m["mem_bw_util"] = util.memory / 100.0
        sm = self._get(gpu, "sm_clock_mhz", lambda: lib.nvmlDeviceGetClockInfo(h, lib.NVML_CLOCK_SM))
        mem = self._get(gpu, "mem_clock_mhz", lambda: lib.nvmlDeviceGetClockInfo(h, lib.NVML_CLOCK_MEM))
        temp = self._get(gpu, "temp_c", lambda: lib.nvmlDeviceGetTemperature(h, lib.NVML_TEMPERATURE_GPU))
        meminfo = self._get(gpu, "mem_used_bytes", lambda: lib.nvmlDeviceGetMemoryInfo(h))
        reasons = self._get(gpu, "clock_event_reasons", lambda: self._clock_reasons(lib, h))
        for name, value in (
            ("sm_clock_mhz", sm),
            ("mem_clock_mhz", mem),
            ("temp_c", temp),
            ("clock_event_reasons", reasons),
        ):
            if value is not None:
                m[name] = float(value)
        if meminfo is not None:
            m["mem_used_bytes"] = float(meminfo.used)
        if m.get("power_w") is None:
            mw = self._get(gpu, "power_usage", lambda: lib.nvmlDeviceGetPowerUsage(h))
            if mw is not None:
                m["power_w"] = mw / 1000.0
        return m

    @staticmethod
    def _clock_reasons(lib: ModuleType, h: Any) -> Any:
        getter = getattr(lib, "nvmlDeviceGetCurrentClocksEventReasons", None)
        if getter is None:
            getter = lib.nvmlDeviceGetCurrentClocksThrottleReasons
        return getter(h)

    def _read_fields(self, lib: ModuleType, gpu: Gpu) -> dict[str, float | None]:
        specs = [(s, fid) for s, fid in self._specs if s.metric not in gpu.unsupported]
        if not specs:
            return {}
        ids = [fid if s.scope is None else (fid, s.scope) for s, fid in specs]
        values = self._get(gpu, "_fields", lambda: lib.nvmlDeviceGetFieldValues(gpu.handle, ids))
        if values is None:
            return {}
        codes = self.codes
        out: dict[str, float | None] = {}
        for (spec, _fid), fv in zip(specs, values, strict=False):
            ret = int(fv.nvmlReturn)
            if ret == codes.success:
                v = field_value(codes, fv)
                out[spec.metric] = None if v is None else v * spec.scale
            elif ret in codes.lost:
                raise DeviceLost(f"field {spec.constant} returned {ret}")
            elif ret in codes.not_available:
                gpu.unsupported.add(spec.metric)
            else:
                out[spec.metric] = None
        parts = [out.pop(p) for p in CRC_PARTS if p in out]
        if parts:
            out["nvlink_crc_errors"] = None if None in parts else sum(p for p in parts if p is not None)
        return out

    def _drain_events(self, lib: ModuleType) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {}
        if self._events is None:
            return out
        by_uuid = {g.uuid: g.index for g in self._gpus if g.uuid}
        by_handle = {handle_key(g.handle): g.index for g in self._gpus if g.handle is not None}
        xid_type = int(lib.nvmlEventTypeXidCriticalError)
        for _ in range(MAX_EVENTS_PER_POLL):
            try:
                data = lib.nvmlEventSetWait(self._events, 0)
            except self._nvml_error() as exc:
                if error_code(exc) in self.codes.lib_gone:
                    raise LibraryGone(str(exc)) from exc
                break  # NVML_ERROR_TIMEOUT: nothing pending (other errors: try again next poll)
            if not int(data.eventType) & xid_type:
                continue
            index = by_handle.get(handle_key(data.device))
            if index is None:  # a lost GPU may not answer nvmlDeviceGetUUID: the handle comes first
                try:
                    index = by_uuid.get(text(lib.nvmlDeviceGetUUID(data.device)))
                except self._nvml_error():
                    index = None
            if index is not None:
                out.setdefault(index, []).append(int(data.eventData))
        return out

    # ------------------------------------------------------------------------------ topology

    async def topology(self) -> TopologyPart:
        return self._part

    def _build_topology(self, lib: ModuleType) -> TopologyPart:
        b = PartBuilder()
        expected = self.settings.expected_devices
        b.node(
            self.host,
            "host",
            None,
            host=self.host,
            devices_visible=str(len(self._gpus)),
            devices_expected=str(expected) if expected else "",
        )
        by_bus = {g.bus: g.index for g in self._gpus if g.bus}
        domain = f"{self.host}/nvlink"
        in_domain: set[int] = set()
        for gpu in self._gpus:
            if gpu.handle is None:
                continue
            for peer in self._nvlink_peers(lib, gpu, by_bus):
                in_domain.add(gpu.index)
                if peer is not None:
                    in_domain.add(peer)
                    b.edge(shard_id(self.host, "gpu", gpu.index), shard_id(self.host, "gpu", peer), "nvlink")
        if in_domain:
            b.node(domain, "nvlink_domain", self.host)
        for gpu in self._gpus:
            b.node(
                shard_id(self.host, "gpu", gpu.index),
                "shard",
                self.host,
                host=self.host,
                model=gpu.model,
                gpu_uuid=gpu.uuid,
                index=str(gpu.index),
                pci_bus_id=gpu.bus,
                nvlink_domain=domain if gpu.index in in_domain else "",
            )
        for missing in range(len(self._gpus), expected):
            b.node(
                shard_id(self.host, "gpu", missing),
                "shard",
                self.host,
                host=self.host,
                index=str(missing),
                missing="true",
            )
        nodes, edges = b.result()
        partial = bool(self._gpus) and not in_domain
        notes = ("no active NVLink found",) if partial else ()
        return TopologyPart(self.name, nodes, edges, partial=partial, notes=notes)

    def _nvlink_peers(self, lib: ModuleType, gpu: Gpu, by_bus: dict[str, int]) -> list[int | None]:
        """Local GPU indexes this GPU's active links reach; None for a link to an NVSwitch."""
        peers: list[int | None] = []
        switch = int(getattr(lib, "NVML_NVLINK_DEVICE_TYPE_SWITCH", 2))
        for link in range(self.settings.nvlink_links):
            try:
                if not lib.nvmlDeviceGetNvLinkState(gpu.handle, link):
                    continue
            except self._nvml_error():
                break  # no such link (or no NVLink at all)
            try:
                kind = int(lib.nvmlDeviceGetNvLinkRemoteDeviceType(gpu.handle, link))
            except (self._nvml_error(), AttributeError):
                kind = 0
            if kind == switch:
                peers.append(None)
                continue
            try:
                remote = bus_key(lib.nvmlDeviceGetNvLinkRemotePciInfo(gpu.handle, link).busId)
            except self._nvml_error():
                continue
            if remote in by_bus and by_bus[remote] != gpu.index:
                peers.append(by_bus[remote])
        return peers
