"""A simulated NVML at the library boundary: a module object shaped like ``pynvml``.

It starts as a copy of the installed nvidia-ml-py module, so every constant, ctypes structure and the
real ``NVMLError`` class hierarchy (``NVMLError(code)`` returns the ``NVMLError_<Name>`` subclass)
are the genuine ones; only the functions the source calls are replaced by a small device model.
A function left unreplaced is the real one, which raises NVMLError_Uninitialized here (no driver).
"""

from __future__ import annotations

import re
import types
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import pynvml as real

NVMLError = real.NVMLError


@dataclass
class FakeGpu:
    index: int
    uuid: str
    name: str = "NVIDIA H100 80GB HBM3"
    bus_id: str = ""
    util: tuple[int, int] = (87, 41)  # gpu %, memory %
    sm_clock: int = 1980
    mem_clock: int = 2619
    temp: int = 61
    mem_used: int = 52_000_000_000
    reasons: int = 0
    fields: dict[int, int | float] = field(default_factory=dict)
    unsupported_fields: set[int] = field(default_factory=set)
    links: dict[int, tuple[str, int]] = field(default_factory=dict)  # link -> ("gpu", peer) / ("switch", 0)
    lost: bool = False


class FakeNvml:
    """State of the simulated driver; ``module`` is what the source imports as ``pynvml``."""

    def __init__(self, n_gpus: int = 4, *, nvlink: str = "mesh") -> None:
        self.gpus = [self._gpu(i) for i in range(n_gpus)]
        if nvlink == "mesh":
            for g in self.gpus:
                peers = [p for p in range(n_gpus) if p != g.index]
                g.links = {link: ("gpu", peer) for link, peer in enumerate(peers)}
        elif nvlink == "switch":
            for g in self.gpus:
                g.links = {link: ("switch", 0) for link in range(4)}
        self.handles = [types.SimpleNamespace(gpu=g) for g in self.gpus]
        self.loaded = True
        self.initialised = 0
        self.events: deque[tuple[int, int]] = deque()  # (gpu index, xid)
        self.event_sets = 0
        self.module = self._build_module()

    @classmethod
    def from_nvlink_status(cls, text: str) -> FakeNvml:
        """GPUs, names, UUIDs and NVLink wiring from ``nvidia-smi nvlink --status`` text; a link shown
        as ``Active`` without a peer is an active link whose remote end NVML cannot name."""
        gpus: list[tuple[str, str, dict[int, tuple[str, int]]]] = []
        for line in text.splitlines():
            head = re.match(r"^GPU (\d+): (.+?) \(UUID: ([^)]+)\)", line)
            link = re.match(r"^\s+Link (\d+): .*?(?:Peer GPU (\d+)|Active)", line)
            if head:
                gpus.append((head.group(2), head.group(3), {}))
            elif link and gpus:
                peer = link.group(2)
                gpus[-1][2][int(link.group(1))] = ("gpu", int(peer)) if peer is not None else ("unknown", -1)
        fake = cls(len(gpus), nvlink="none")
        for gpu, (name, uuid, links) in zip(fake.gpus, gpus, strict=True):
            gpu.name, gpu.uuid, gpu.links = name, uuid, links
        return fake

    @staticmethod
    def _gpu(i: int) -> FakeGpu:
        fields: dict[int, int | float] = {
            real.NVML_FI_DEV_ECC_SBE_VOL_TOTAL: 3 + i,
            real.NVML_FI_DEV_ECC_DBE_VOL_TOTAL: 0,
            real.NVML_FI_DEV_REMAPPED_COR: 1,
            real.NVML_FI_DEV_REMAPPED_UNC: 0,
            real.NVML_FI_DEV_REMAPPED_PENDING: 0,
            real.NVML_FI_DEV_REMAPPED_FAILURE: 0,
            real.NVML_FI_DEV_PCIE_REPLAY_COUNTER: 12,
            real.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX: 1_000_000 * (i + 1),
            real.NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX: 900_000 * (i + 1),
            real.NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL: 2,
            real.NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL: 1,
            real.NVML_FI_DEV_POWER_INSTANT: 612_000,  # mW
            real.NVML_FI_DEV_ENERGY: 8_000_000_000,  # mJ
            real.NVML_FI_DEV_MEMORY_TEMP: 70,
        }
        return FakeGpu(
            i, f"GPU-{i:08x}-1111-2222-3333-444455556666", bus_id=f"00000000:{0x18 + 0x10 * i:02X}:00.0", fields=fields
        )

    # ------------------------------------------------------------------------ test controls

    def xid(self, index: int, code: int) -> None:
        self.events.append((index, code))

    def lose(self, index: int) -> None:
        self.gpus[index].lost = True

    def unload(self) -> None:
        """The driver goes away (with all its state): every call fails as without a loaded driver."""
        self.loaded = False
        self.initialised = 0
        self.event_sets = 0

    def reload(self) -> None:
        self.loaded = True

    # ------------------------------------------------------------------------------- module

    def _check(self) -> None:
        if not self.loaded:
            raise NVMLError(real.NVML_ERROR_DRIVER_NOT_LOADED)
        if self.initialised <= 0:
            raise NVMLError(real.NVML_ERROR_UNINITIALIZED)

    def _dev(self, handle: Any) -> FakeGpu:
        self._check()
        gpu: FakeGpu = handle.gpu
        if gpu.lost:
            raise NVMLError(real.NVML_ERROR_GPU_IS_LOST)
        return gpu

    def _build_module(self) -> types.ModuleType:  # noqa: C901 - one closure per faked NVML function
        mod = types.ModuleType("pynvml")
        mod.__dict__.update({k: v for k, v in vars(real).items() if not k.startswith("__")})
        fake = self

        def nvmlInit() -> None:
            if not fake.loaded:
                raise NVMLError(real.NVML_ERROR_DRIVER_NOT_LOADED)
            fake.initialised += 1

        def nvmlShutdown() -> None:
            fake._check()
            fake.initialised -= 1

        def nvmlDeviceGetCount() -> int:
            fake._check()
            return len(fake.gpus)

        def nvmlDeviceGetHandleByIndex(index: int) -> Any:
            fake._check()
            if not 0 <= index < len(fake.gpus):
                raise NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
            return fake.handles[index]

        def nvmlDeviceGetUUID(h: Any) -> str:
            return fake._dev(h).uuid

        def nvmlDeviceGetName(h: Any) -> str:
            return fake._dev(h).name

        def nvmlDeviceGetPciInfo(h: Any) -> Any:
            info = real.nvmlPciInfo_t()
            info.busId = fake._dev(h).bus_id.encode()
            return info

        def nvmlDeviceGetFieldValues(h: Any, field_ids: list[Any]) -> Any:
            gpu = fake._dev(h)
            values = (real.c_nvmlFieldValue_t * len(field_ids))()
            for i, requested in enumerate(field_ids):
                fid, scope = requested if isinstance(requested, tuple) else (requested, 0)
                values[i].fieldId, values[i].scopeId = fid, scope
                if fid in gpu.unsupported_fields or fid not in gpu.fields:
                    values[i].nvmlReturn = real.NVML_ERROR_NOT_SUPPORTED
                    continue
                values[i].nvmlReturn = real.NVML_SUCCESS
                values[i].valueType = real.NVML_VALUE_TYPE_UNSIGNED_LONG_LONG
                values[i].value.ullVal = int(gpu.fields[fid])
            return values

        def nvmlDeviceGetUtilizationRates(h: Any) -> Any:
            u = real.c_nvmlUtilization_t()
            u.gpu, u.memory = fake._dev(h).util
            return u

        def nvmlDeviceGetClockInfo(h: Any, kind: int) -> int:
            gpu = fake._dev(h)
            return gpu.sm_clock if kind == real.NVML_CLOCK_SM else gpu.mem_clock

        def nvmlDeviceGetTemperature(h: Any, sensor: int) -> int:
            return fake._dev(h).temp

        def nvmlDeviceGetMemoryInfo(h: Any, version: Any = None) -> Any:
            gpu = fake._dev(h)
            m = real.c_nvmlMemory_t()
            m.total, m.used, m.free = 85_000_000_000, gpu.mem_used, 85_000_000_000 - gpu.mem_used
            return m

        def nvmlDeviceGetCurrentClocksEventReasons(h: Any) -> int:
            return fake._dev(h).reasons

        def nvmlDeviceGetPowerUsage(h: Any) -> int:
            return int(fake._dev(h).fields.get(real.NVML_FI_DEV_POWER_INSTANT, 0))

        def nvmlEventSetCreate() -> Any:
            fake._check()
            fake.event_sets += 1
            return types.SimpleNamespace(registered=set())

        def nvmlDeviceRegisterEvents(h: Any, types_: int, es: Any) -> None:
            es.registered.add(fake._dev(h).index)

        def nvmlEventSetWait(es: Any, timeout_ms: int) -> Any:
            fake._check()
            while fake.events:
                index, code = fake.events.popleft()
                if index in es.registered:
                    return types.SimpleNamespace(
                        device=fake.handles[index],
                        eventType=real.nvmlEventTypeXidCriticalError,
                        eventData=code,
                        gpuInstanceId=0,
                        computeInstanceId=0,
                    )
            raise NVMLError(real.NVML_ERROR_TIMEOUT)

        def nvmlEventSetFree(es: Any) -> None:
            fake._check()
            fake.event_sets -= 1

        def nvmlDeviceGetNvLinkState(h: Any, link: int) -> int:
            gpu = fake._dev(h)
            if link >= 18:
                raise NVMLError(real.NVML_ERROR_INVALID_ARGUMENT)
            return 1 if link in gpu.links else 0

        def nvmlDeviceGetNvLinkRemoteDeviceType(h: Any, link: int) -> int:
            kind, _peer = fake._dev(h).links[link]
            types_of: dict[str, int] = {
                "switch": real.NVML_NVLINK_DEVICE_TYPE_SWITCH,
                "gpu": real.NVML_NVLINK_DEVICE_TYPE_GPU,
            }
            unknown: int = real.NVML_NVLINK_DEVICE_TYPE_UNKNOWN
            return types_of.get(kind, unknown)

        def nvmlDeviceGetNvLinkRemotePciInfo(h: Any, link: int) -> Any:
            _kind, peer = fake._dev(h).links[link]
            if peer < 0:
                raise NVMLError(real.NVML_ERROR_NOT_FOUND)
            info = real.nvmlPciInfo_t()
            info.busId = fake.gpus[peer].bus_id.lower().replace("00000000:", "0000:").encode()
            return info

        for fn in (
            nvmlInit,
            nvmlShutdown,
            nvmlDeviceGetCount,
            nvmlDeviceGetHandleByIndex,
            nvmlDeviceGetUUID,
            nvmlDeviceGetName,
            nvmlDeviceGetPciInfo,
            nvmlDeviceGetFieldValues,
            nvmlDeviceGetUtilizationRates,
            nvmlDeviceGetClockInfo,
            nvmlDeviceGetTemperature,
            nvmlDeviceGetMemoryInfo,
            nvmlDeviceGetCurrentClocksEventReasons,
            nvmlDeviceGetPowerUsage,
            nvmlEventSetCreate,
            nvmlDeviceRegisterEvents,
            nvmlEventSetWait,
            nvmlEventSetFree,
            nvmlDeviceGetNvLinkState,
            nvmlDeviceGetNvLinkRemoteDeviceType,
            nvmlDeviceGetNvLinkRemotePciInfo,
        ):
            setattr(mod, fn.__name__, fn)
        return mod
