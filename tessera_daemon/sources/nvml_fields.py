"""What the NVML source reads, and how NVML errors are classified.

Batched reads go through ``nvmlDeviceGetFieldValues`` (one call per GPU per poll); the rest are the
classic per-metric getters NVML has no field id for (utilisation, clocks, GPU temperature, memory,
clock-event reasons). Metric names match the simulator's where they mean the same thing.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

# scopeId UINT_MAX asks NVML for the sum over all links of an NVLink throughput field
ALL_LINKS = 0xFFFFFFFF


@dataclass(frozen=True, slots=True)
class FieldSpec:
    metric: str
    constant: str  # pynvml constant name, resolved against the loaded module
    scope: int | None = None
    scale: float = 1.0
    counter: bool = False


FIELD_SPECS: tuple[FieldSpec, ...] = (
    FieldSpec("ecc_sbe", "NVML_FI_DEV_ECC_SBE_VOL_TOTAL", counter=True),
    FieldSpec("ecc_dbe", "NVML_FI_DEV_ECC_DBE_VOL_TOTAL", counter=True),
    FieldSpec("row_remap_correctable", "NVML_FI_DEV_REMAPPED_COR", counter=True),
    FieldSpec("row_remap_uncorrectable", "NVML_FI_DEV_REMAPPED_UNC", counter=True),
    FieldSpec("row_remap_pending", "NVML_FI_DEV_REMAPPED_PENDING"),
    FieldSpec("row_remap_failure", "NVML_FI_DEV_REMAPPED_FAILURE"),
    FieldSpec("pcie_replay", "NVML_FI_DEV_PCIE_REPLAY_COUNTER", counter=True),
    # KiB counters -> bytes
    FieldSpec("nvlink_tx_bytes", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_TX", ALL_LINKS, 1024.0, True),
    FieldSpec("nvlink_rx_bytes", "NVML_FI_DEV_NVLINK_THROUGHPUT_DATA_RX", ALL_LINKS, 1024.0, True),
    # summed into nvlink_crc_errors
    FieldSpec("nvlink_crc_flit", "NVML_FI_DEV_NVLINK_CRC_FLIT_ERROR_COUNT_TOTAL", counter=True),
    FieldSpec("nvlink_crc_data", "NVML_FI_DEV_NVLINK_CRC_DATA_ERROR_COUNT_TOTAL", counter=True),
    FieldSpec("power_w", "NVML_FI_DEV_POWER_INSTANT", scale=0.001),  # mW -> W
    FieldSpec("energy_j", "NVML_FI_DEV_ENERGY", scale=0.001, counter=True),  # mJ -> J
    FieldSpec("mem_temp_c", "NVML_FI_DEV_MEMORY_TEMP"),
)
CRC_PARTS = ("nvlink_crc_flit", "nvlink_crc_data")

COUNTERS: frozenset[str] = frozenset(
    {s.metric for s in FIELD_SPECS if s.counter and s.metric not in CRC_PARTS} | {"nvlink_crc_errors", "xid_total"}
)

_VALUE_MEMBERS = (
    ("NVML_VALUE_TYPE_DOUBLE", "dVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_INT", "uiVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG", "ulVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_LONG_LONG", "ullVal"),
    ("NVML_VALUE_TYPE_SIGNED_LONG_LONG", "sllVal"),
    ("NVML_VALUE_TYPE_SIGNED_INT", "siVal"),
    ("NVML_VALUE_TYPE_UNSIGNED_SHORT", "usVal"),
)

# error classes (by NVML return code name)
LIB_GONE = (
    "NVML_ERROR_UNINITIALIZED",
    "NVML_ERROR_DRIVER_NOT_LOADED",
    "NVML_ERROR_LIBRARY_NOT_FOUND",
    "NVML_ERROR_LIB_RM_VERSION_MISMATCH",
)
DEVICE_LOST = ("NVML_ERROR_GPU_IS_LOST", "NVML_ERROR_RESET_REQUIRED")
NOT_AVAILABLE = (
    "NVML_ERROR_NOT_SUPPORTED",
    "NVML_ERROR_NO_PERMISSION",
    "NVML_ERROR_NOT_FOUND",
    "NVML_ERROR_INVALID_ARGUMENT",
    "NVML_ERROR_FUNCTION_NOT_FOUND",
)


class Codes:
    """NVML return codes grouped by what the source does about them, read from the loaded module."""

    def __init__(self, lib: ModuleType) -> None:
        def codes(names: tuple[str, ...]) -> frozenset[int]:
            return frozenset(int(getattr(lib, n)) for n in names if hasattr(lib, n))

        self.lib_gone = codes(LIB_GONE)
        self.lost = codes(DEVICE_LOST)
        self.not_available = codes(NOT_AVAILABLE)
        self.success = int(getattr(lib, "NVML_SUCCESS", 0))
        self.timeout = int(getattr(lib, "NVML_ERROR_TIMEOUT", 10))
        self.value_members = {int(getattr(lib, name)): member for name, member in _VALUE_MEMBERS if hasattr(lib, name)}


class LibraryGone(Exception):
    """NVML itself is unusable (driver unloaded, library missing): the whole poll fails."""


class DeviceLost(Exception):
    """This GPU answered GPU_IS_LOST / RESET_REQUIRED: report it as a lost frame."""


def error_code(exc: BaseException) -> int | None:
    value = getattr(exc, "value", None)
    return value if isinstance(value, int) else None


def field_value(codes: Codes, fv: Any) -> float | None:
    """The numeric value of one ``c_nvmlFieldValue_t`` (None for an unknown value type)."""
    member = codes.value_members.get(int(fv.valueType))
    if member is None:
        return None
    return float(getattr(fv.value, member))


def bus_key(bus_id: Any) -> str:
    """Normalise a PCI bus id (``00000000:3B:00.0`` or ``0000:3b:00.0``) to ``0000:3b:00.0``."""
    text = bus_id.decode() if isinstance(bus_id, bytes) else str(bus_id)
    text = text.strip().lower()
    parts = text.split(":")
    if len(parts) == 3:
        try:
            return f"{int(parts[0], 16):04x}:{parts[1]}:{parts[2]}"
        except ValueError:
            return text
    return text


def text(value: Any) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else str(value)


def handle_key(handle: Any) -> object:
    """What identifies a device handle: the C pointer value for pynvml's ``c_nvmlDevice_t`` (every
    call returns a new Python object for the same device), the object's identity otherwise."""
    try:
        value = ctypes.cast(handle, ctypes.c_void_p).value
    except (TypeError, ctypes.ArgumentError):
        return ("object", id(handle))
    return value if value else ("object", id(handle))


@dataclass(slots=True)
class Gpu:
    """One GPU as the NVML source knows it: index, handle, identity, and the metrics it does not support."""

    index: int
    handle: Any
    uuid: str = ""
    model: str = ""
    bus: str = ""
    unsupported: set[str] = field(default_factory=set)
