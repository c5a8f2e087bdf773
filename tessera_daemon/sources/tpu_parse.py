"""Parsers for Google TPU inputs, pure functions.

Slice description (Tessera's JAX-style JSON): ``{"tpu_version": "v4"|"v5p"|"v5e"|"v6e",
"slice_shape": [x, y(, z)], "chips": [{"chip": "tpu-<N>", "ici_peers": ["tpu-<M>", ...]}],
"topology_type": "torus"|"mesh" (optional)}``. Strict, as Tessera's adapter: a missing or unknown
version, a bad shape, a missing or empty chip list, or a chip id not of the form ``tpu-<N>`` raises.

``tpu-info`` (static mode) prints titled tables, as Markdown pipes (``| Chip | ... |``) or as rich
box-drawing tables; both are read. Used: "TPU Chips" (Chip ``/dev/vfio/0`` or ``/dev/accel0``),
"TPU Runtime Utilization" (Chip or Device, ``HBM Usage (GiB)`` or ``Memory usage`` as
``used GiB / total GiB``, ``Duty cycle`` ``NN.NN%``), "TensorCore Utilization" (Core ID,
``NN.NN%``) and the ``--metric`` mode tables "TPU Duty Cycle" (Core ID, ``Duty Cycle (%)``) and
"TPU HBM Usage". Other tables (latencies, RTT) are skipped. An output with none of the chip tables raises ValueError.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

VERSIONS = ("v4", "v5p", "v5e", "v6e")
GIB = float(1 << 30)
_CHIP = re.compile(r"^tpu-(\d+)$")
_BORDER = set("-=+|:┃│┏┓┗┛┡┩┣┫╇╈┳┻━─┼╋┠┨┯┷┿╭╮╰╯└┘┌┐├┤┬┴ ")
_HBM = re.compile(r"([\d.]+)\s*GiB\s*/\s*([\d.]+)\s*GiB")
_PCT = re.compile(r"([\d.]+)\s*%")


@dataclass(frozen=True, slots=True)
class Slice:
    version: str
    shape: tuple[int, ...]
    topology_type: str
    peers: dict[int, tuple[int, ...]]


def chip_number(chip: Any) -> int:
    m = _CHIP.match(str(chip))
    if not m:
        raise ValueError(f"slice: chip id {chip!r} is not of the form tpu-<N>")
    return int(m.group(1))


def parse_slice(doc: Any) -> Slice:
    if not isinstance(doc, Mapping):
        raise ValueError("slice: expected a JSON object")
    version = doc.get("tpu_version")
    if not version:
        raise ValueError("slice: missing tpu_version")
    if version not in VERSIONS:
        raise ValueError(f"slice: unknown tpu_version {version!r} (one of {', '.join(VERSIONS)})")
    shape = doc.get("slice_shape")
    if (
        not isinstance(shape, list)
        or len(shape) not in (2, 3)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 1 for d in shape)
    ):
        raise ValueError(f"slice: invalid slice_shape {shape!r} (2 or 3 integers >= 1)")
    chips = doc.get("chips")
    if not isinstance(chips, list):
        raise ValueError("slice: missing chips")
    if not chips:
        raise ValueError("slice: no chips")
    peers: dict[int, tuple[int, ...]] = {}
    for c in chips:
        if not isinstance(c, Mapping):
            raise ValueError("slice: every chip must be an object")
        n = chip_number(c.get("chip"))
        peers[n] = tuple(chip_number(p) for p in c.get("ici_peers") or [] if chip_number(p) != n)
    return Slice(str(version), tuple(shape), str(doc.get("topology_type") or ""), peers)


# -------------------------------------------------------------------------------- tpu-info


def _cells(line: str) -> list[str] | None:
    s = line.strip()
    if not s or s[0] not in "|│┃":
        return None
    if set(s) <= _BORDER and not any(ch.isalnum() for ch in s):
        return []  # a border / separator row
    return [c.strip() for c in re.split(r"[|│┃]", s)[1:-1]]


def tables(text: str) -> dict[str, list[dict[str, str]]]:
    """Titled tables of a tpu-info output: title -> rows as {header: cell}."""
    out: dict[str, list[dict[str, str]]] = {}
    title = ""
    header: list[str] | None = None
    for line in text.splitlines():
        cells = _cells(line)
        if cells is None:
            stripped = line.strip()
            if stripped and not set(stripped) <= _BORDER:
                title, header = stripped.strip("╭─╮ "), None
            continue
        if not cells:
            continue
        if header is None:
            header = cells
            out.setdefault(title, [])
            continue
        out[title].append(dict(zip(header, cells, strict=False)))
    return out


def _find(row: Mapping[str, str], *prefixes: str) -> str | None:
    for key, value in row.items():
        if any(key.lower().startswith(p) for p in prefixes):
            return value
    return None


def _index(cell: str | None) -> int | None:
    m = re.search(r"(\d+)\s*$", cell or "")
    return int(m.group(1)) if m else None


def _pct(cell: str | None) -> float | None:
    m = _PCT.search(cell or "")
    return float(m.group(1)) / 100.0 if m else None


def parse_tpu_info(text: str) -> dict[int, dict[str, float | None]]:
    """chip number -> metrics (gpu_util = duty cycle, tensorcore_util, mem_used_bytes, mem_total_bytes)."""
    t = tables(text)
    chip_tables = ("TPU Chips", "TPU Runtime Utilization", "TPU HBM Usage", "TPU Duty Cycle")
    if not any(k in t for k in chip_tables):
        raise ValueError("tpu-info: no TPU Chips / TPU Runtime Utilization table in the output")
    chips: dict[int, dict[str, float | None]] = {}
    for row in t.get("TPU Chips", []):
        idx = _index(_find(row, "chip"))
        if idx is not None:
            chips.setdefault(idx, {})
    for title in ("TPU Runtime Utilization", "TPU HBM Usage"):
        for row in t.get(title, []):
            idx = _index(_find(row, "chip", "device"))
            if idx is None:
                continue
            m = chips.setdefault(idx, {})
            hbm = _HBM.search(_find(row, "hbm", "memory") or "")
            if hbm:
                m["mem_used_bytes"] = float(hbm.group(1)) * GIB
                m["mem_total_bytes"] = float(hbm.group(2)) * GIB
            duty = _pct(_find(row, "duty"))
            if duty is not None:
                m["gpu_util"] = duty
    for title, key, metric in (
        ("TensorCore Utilization", "tensorcore", "tensorcore_util"),
        ("TPU Duty Cycle", "duty", "gpu_util"),
    ):
        per_core = {}
        for row in t.get(title, []):
            core, value = _index(_find(row, "core")), _pct(_find(row, key))
            if core is not None and value is not None:
                per_core[core] = value
        _fold_cores(chips, per_core, metric)
    return chips


def _fold_cores(chips: dict[int, dict[str, float | None]], per_core: dict[int, float], metric: str) -> None:
    """Core -> chip: k cores per chip when the counts divide, else core i is chip i."""
    if not per_core:
        return
    order = sorted(chips) or sorted(per_core)
    k = len(per_core) // len(order) if order and len(per_core) % len(order) == 0 else 0
    groups: dict[int, list[float]] = {}
    for rank, core in enumerate(sorted(per_core)):
        chip = order[rank // k] if k else core
        groups.setdefault(chip, []).append(per_core[core])
    for chip, values in groups.items():
        m = chips.setdefault(chip, {})
        if metric not in m:
            m[metric] = sum(values) / len(values)
