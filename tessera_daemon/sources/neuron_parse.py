"""Parsers for AWS Neuron tools, pure functions.

``neuron-ls --json-output`` is accepted in two shapes: the tool's own JSON (a list of devices with
``neuron_device``, ``bdf``, ``connected_to``, ``nc_count``, ``memory_size``) and Tessera's offline
form (``{"instance_type": ..., "neuron_devices": [{"neuron_device", "connected_to"}]}``).

``neuron-monitor`` writes one JSON report per line: ``neuron_runtime_data[]`` (per runtime:
``report.neuroncore_counters.neuroncores_in_use{core: {neuroncore_utilization (percent)}}``,
``report.memory_used.neuron_runtime_used_bytes.usage_breakdown.neuroncore_memory_usage{core: {...}}``,
``report.execution_stats`` (``error_summary``, ``execution_summary``, ``latency_stats``)),
``system_data.neuron_hw_counters.neuron_devices[]`` (``mem_ecc_corrected`` ...), ``instance_info``
and ``neuron_hardware_info``. Event counts (errors, ECC, executions) are per report period; the
source accumulates them into monotone counters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tessera_daemon.sources._util import finite

FAMILIES = {"trn": "trainium", "inf": "inferentia"}
HW_COUNTERS = ("mem_ecc_corrected", "mem_ecc_uncorrected", "sram_ecc_corrected", "sram_ecc_uncorrected")


@dataclass(frozen=True, slots=True)
class NeuronDevice:
    index: int
    peers: tuple[int, ...]
    cores: int = 0
    bdf: str = ""
    memory_size: int = 0


def accelerator_model(instance_type: str) -> str:
    """``trn1.32xlarge`` -> ``trainium1``, ``inf2.xlarge`` -> ``inferentia2``; ValueError otherwise."""
    m = re.match(r"^(trn|inf)(\d*)", instance_type.strip().lower())
    if not m:
        raise ValueError(f"unknown Neuron instance type {instance_type!r} (expected trn* or inf*)")
    return f"{FAMILIES[m.group(1)]}{m.group(2) or '1'}"


def parse_neuron_ls(doc: Any) -> tuple[str, list[NeuronDevice]]:
    """(instance type or "", devices); raises ValueError on anything else."""
    instance_type = ""
    if isinstance(doc, Mapping):
        instance_type = str(doc.get("instance_type") or "")
        raw = doc.get("neuron_devices")
        if not isinstance(raw, list):
            raise ValueError("neuron-ls JSON: missing neuron_devices list")
    elif isinstance(doc, list):
        raw = doc
    else:
        raise ValueError("neuron-ls JSON: expected an object or a list of devices")
    devices: dict[int, NeuronDevice] = {}
    for d in raw:
        if (
            not isinstance(d, Mapping)
            or isinstance(d.get("neuron_device"), bool)
            or not isinstance(d.get("neuron_device"), int)
        ):
            raise ValueError("neuron-ls JSON: every device needs an integer neuron_device")
        idx = int(d["neuron_device"])
        peers = tuple(int(p) for p in (d.get("connected_to") or []) if isinstance(p, int) and p != idx)
        devices[idx] = NeuronDevice(
            idx, peers, int(d.get("nc_count") or 0), str(d.get("bdf") or ""), int(d.get("memory_size") or 0)
        )
    if not devices:
        raise ValueError("neuron-ls JSON: no Neuron devices")
    return instance_type, [devices[k] for k in sorted(devices)]


@dataclass(slots=True)
class DeviceSample:
    util: list[float] = field(default_factory=list)
    mem_used: float = 0.0
    mem_seen: bool = False
    hw: dict[str, float] = field(default_factory=dict)
    exec_errors: float = 0.0
    exec_completed: float = 0.0
    exec_seen: bool = False
    latency_p50_ms: float | None = None
    latency_p99_ms: float | None = None


def _num(value: Any) -> float:
    v = finite(value)
    return 0.0 if v is None else v


def parse_monitor_report(report: Mapping[str, Any], cores_per_device: int) -> dict[int, DeviceSample]:
    """One neuron-monitor report -> per Neuron device sample (only devices the report mentions)."""
    hwinfo = report.get("neuron_hardware_info") or {}
    per = int(finite(hwinfo.get("neuroncore_per_device_count")) or cores_per_device or 1)
    out: dict[int, DeviceSample] = {}
    for rt in report.get("neuron_runtime_data") or []:
        rep = (rt or {}).get("report") or {}
        in_use = (rep.get("neuroncore_counters") or {}).get("neuroncores_in_use") or {}
        devices: set[int] = set()
        for core, counters in in_use.items():
            if not str(core).isdigit():
                continue
            dev = int(core) // per
            devices.add(dev)
            u = finite((counters or {}).get("neuroncore_utilization"))
            if u is not None:
                out.setdefault(dev, DeviceSample()).util.append(u / 100.0)
        used = (rep.get("memory_used") or {}).get("neuron_runtime_used_bytes") or {}
        per_core = (used.get("usage_breakdown") or {}).get("neuroncore_memory_usage") or {}
        for core, cats in per_core.items():
            if str(core).isdigit() and isinstance(cats, Mapping):
                s = out.setdefault(int(core) // per, DeviceSample())
                s.mem_used += sum(_num(v) for v in cats.values())
                s.mem_seen = True
                devices.add(int(core) // per)
        stats = rep.get("execution_stats") or {}
        if stats:
            errors = sum(_num(v) for v in (stats.get("error_summary") or {}).values())
            done = _num((stats.get("execution_summary") or {}).get("completed"))
            lat = (stats.get("latency_stats") or {}).get("total_latency") or {}
            for dev in devices:
                s = out.setdefault(dev, DeviceSample())
                s.exec_errors += errors
                s.exec_completed += done
                s.exec_seen = True
                for key, attr in (("p50", "latency_p50_ms"), ("p99", "latency_p99_ms")):
                    v = finite(lat.get(key))
                    if v is not None:
                        old = getattr(s, attr)
                        setattr(s, attr, v * 1000.0 if old is None else max(old, v * 1000.0))
    hw = ((report.get("system_data") or {}).get("neuron_hw_counters") or {}).get("neuron_devices") or []
    for d in hw:
        idx = finite((d or {}).get("neuron_device_index"))
        if idx is None:
            continue
        s = out.setdefault(int(idx), DeviceSample())
        for key in HW_COUNTERS:
            s.hw[key] = _num(d.get(key))
    return out
