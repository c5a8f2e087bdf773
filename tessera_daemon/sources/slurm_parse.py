"""Parsers for Slurm's outputs, pure functions: hostlists, topology.conf / ``scontrol show
topology``, GRES strings, and the ``sinfo --json`` / ``squeue --json`` documents in both layouts:

* 22.05 (``meta.plugin.type = openapi/v0.0.38``): ``nodes[]`` with ``state`` a string, numbers plain;
* 23.02+ (``meta.plugins.data_parser = v0.0.39 ...``): states are lists (``["RUNNING"]``), numbers
  may be ``{"set": true, "infinite": false, "number": N}``, and from 23.11 ``sinfo --json`` reports
  ``sinfo[]`` rows (``nodes.nodes`` names, ``node.state``, ``gres.total``, ``partition.name``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

_RANGE = re.compile(r"^(\d+)(?:-(\d+))?$")
_IDX = re.compile(r"\(IDX:([^)]*)\)")


def _split_top(text: str, sep: str = ",") -> list[str]:
    """Split on ``sep`` outside brackets; raises ValueError on unbalanced brackets."""
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "[":
            depth += 1
            if depth > 1:
                raise ValueError(f"hostlist {text!r}: nested brackets")
        elif ch == "]":
            depth -= 1
            if depth < 0:
                raise ValueError(f"hostlist {text!r}: unbalanced ']'")
        if ch == sep and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    if depth != 0:
        raise ValueError(f"hostlist {text!r}: unbalanced '['")
    out.append("".join(cur))
    return out


def _expand_ranges(body: str, where: str) -> list[str]:
    values: list[str] = []
    for item in body.split(","):
        m = _RANGE.match(item.strip())
        if not m:
            raise ValueError(f"hostlist {where!r}: bad range {item!r}")
        lo_s, hi_s = m.group(1), m.group(2) or m.group(1)
        lo, hi = int(lo_s), int(hi_s)
        if lo > hi:
            raise ValueError(f"hostlist {where!r}: range start {lo} > end {hi}")
        if hi - lo > 100_000:
            raise ValueError(f"hostlist {where!r}: range too large")
        width = len(lo_s) if lo_s.startswith("0") and len(lo_s) > 1 else 0
        values.extend(str(v).zfill(width) for v in range(lo, hi + 1))
    return values


def expand_hostlist(expr: str) -> list[str]:
    """``node[01-03,07],gpu-[1-2]`` -> node01 node02 node03 node07 gpu-1 gpu-2 (in order).

    Several bracket groups in one name expand as a product (``r[1-2]n[1-2]``). Zero padding
    follows the range's start token (``n[08-10]`` -> n08 n09 n10; ``n[8-10]`` -> n8 n9 n10).
    """
    names: list[str] = []
    for raw in _split_top(expr.strip()):
        part = raw.strip()
        if not part:
            if expr.strip():
                raise ValueError(f"hostlist {expr!r}: empty item")
            continue
        names.extend(_expand_one(part, expr))
    return names


def _expand_one(part: str, where: str) -> list[str]:
    start = part.find("[")
    if start < 0:
        if "]" in part:
            raise ValueError(f"hostlist {where!r}: unbalanced ']'")
        return [part]
    end = part.find("]", start)
    if end < 0:
        raise ValueError(f"hostlist {where!r}: unbalanced '['")
    prefix, body, rest = part[:start], part[start + 1 : end], part[end + 1 :]
    tails = _expand_one(rest, where) if rest else [""]
    return [f"{prefix}{v}{t}" for v in _expand_ranges(body, where) for t in tails]


# ----------------------------------------------------------------------------- topology tree


@dataclass(slots=True)
class Switch:
    name: str
    switches: list[str] = field(default_factory=list)
    nodes: list[str] = field(default_factory=list)
    level: int | None = None
    declared: bool = True


_SWITCH_KEYS = {"switchname", "switches", "nodes", "linkspeed", "level"}


def parse_topology(text: str) -> dict[str, Switch]:
    """topology.conf or ``scontrol show topology`` output -> switches by name, with levels.

    Strict: raises ValueError on a line that is not a ``SwitchName=`` line, an empty or duplicate
    switch name, an unknown clause or a bad hostlist. Switches referenced but never declared are
    created as placeholders (``declared=False``). Levels: ``Level=`` when given (scontrol), else
    0 for a switch without child switches and 1 + the highest child level otherwise.
    """
    switches: dict[str, Switch] = {}
    for lineno, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        clauses: dict[str, str] = {}
        for token in line.split():
            key, sep, value = token.partition("=")
            k = key.lower()
            if not sep or k not in _SWITCH_KEYS:
                raise ValueError(f"topology line {lineno}: unsupported clause {token!r}")
            if k in clauses:
                raise ValueError(f"topology line {lineno}: repeated {key}")
            clauses[k] = value
        name = clauses.get("switchname", "")
        if not name:
            raise ValueError(f"topology line {lineno}: missing or empty SwitchName")
        if name in switches and switches[name].declared:
            raise ValueError(f"topology line {lineno}: duplicate SwitchName {name!r}")
        sw = Switch(name)
        sw.switches = expand_hostlist(clauses["switches"]) if clauses.get("switches") else []
        sw.nodes = expand_hostlist(clauses["nodes"]) if clauses.get("nodes") else []
        if clauses.get("level", "").isdigit():
            sw.level = int(clauses["level"])
        switches[name] = sw
    for sw in list(switches.values()):
        for child in sw.switches:
            switches.setdefault(child, Switch(child, declared=False))
    both = {n for sw in switches.values() for n in sw.nodes} & set(switches)
    if both:
        raise ValueError(f"topology: {sorted(both)[0]!r} is both a switch and a node")
    _assign_levels(switches)
    return switches


def _assign_levels(switches: dict[str, Switch]) -> None:
    def level(name: str, stack: tuple[str, ...]) -> int:
        sw = switches[name]
        if sw.level is not None:
            return sw.level
        if name in stack:
            raise ValueError(f"topology: switch cycle through {name!r}")
        sw.level = 1 + max((level(c, (*stack, name)) for c in sw.switches), default=-1)
        return sw.level

    for name in sorted(switches):
        level(name, ())


# ---------------------------------------------------------------------------------- GRES, JSON


def gres_count(gres: str, name: str) -> tuple[int, str]:
    """``gpu:a100:4(S:0-1),nic:1`` -> (4, "a100") for name "gpu"; counts of several types add up."""
    total, model = 0, ""
    for item in _split_paren(gres):
        fields = item.split("(")[0].split(":")
        if not fields or fields[0] != name:
            continue
        if len(fields) >= 2 and fields[-1].isdigit():
            total += int(fields[-1])
            if len(fields) >= 3 and not model:
                model = fields[1]
        elif len(fields) == 2 and not fields[1].isdigit():
            total += 1
            model = model or fields[1]
        elif len(fields) == 1:
            total += 1
    return total, model


def _split_paren(text: str) -> list[str]:
    out: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text or "":
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur))
    return [s for s in (x.strip() for x in out) if s and s != "(null)"]


def gres_indexes(detail: str, name: str) -> list[int]:
    """``gpu:a100:2(IDX:1-2)`` -> [1, 2]; ``IDX:N/A`` -> []."""
    out: list[int] = []
    for item in _split_paren(detail):
        if item.split(":")[0] != name:
            continue
        m = _IDX.search(item)
        if not m or m.group(1) in ("N/A", ""):
            continue
        out.extend(int(v) for v in _expand_ranges(m.group(1), item))
    return out


def number(value: Any) -> int | None:
    """A plain number or the 23.02+ ``{"set": .., "infinite": .., "number": ..}`` object."""
    if isinstance(value, Mapping):
        if not value.get("set", True) or value.get("infinite"):
            return None
        value = value.get("number")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return int(value)


def states(value: Any) -> list[str]:
    if isinstance(value, str):
        return [s for s in re.split(r"[+,]", value.upper()) if s]
    if isinstance(value, list):
        return [str(s).upper() for s in value]
    return []


def check_errors(doc: Mapping[str, Any]) -> list[str]:
    """Messages of the JSON ``errors`` array (sinfo exits 0 with the controller down)."""
    out = []
    for e in doc.get("errors") or []:
        if isinstance(e, Mapping):
            msg = e.get("description") or e.get("error") or "error"
            code = e.get("error_number", e.get("errno"))
            out.append(f"{msg} (errno {code})" if code is not None else str(msg))
        else:
            out.append(str(e))
    return out


@dataclass(frozen=True, slots=True)
class SlurmNode:
    name: str
    state: str
    gres: str
    partitions: tuple[str, ...]


def sinfo_nodes(doc: Mapping[str, Any]) -> list[SlurmNode]:
    """Nodes of a ``sinfo --json`` (either layout) or ``scontrol show nodes --json`` document."""
    out: dict[str, SlurmNode] = {}
    for n in doc.get("nodes") or []:
        name = n.get("name") or n.get("hostname")
        if name:
            out[name] = SlurmNode(
                name, "+".join(states(n.get("state"))), str(n.get("gres") or ""), tuple(n.get("partitions") or ())
            )
    for row in doc.get("sinfo") or []:
        names = (row.get("nodes") or {}).get("nodes") or []
        state = "+".join(states((row.get("node") or {}).get("state")))
        gres = (row.get("gres") or {}).get("total") or ""
        part = (row.get("partition") or {}).get("name")
        for name in names:
            old = out.get(name)
            parts = tuple(sorted({*(old.partitions if old else ()), *([part] if part else [])}))
            out[name] = SlurmNode(
                name, (old.state if old else "") or state, (old.gres if old else "") or str(gres), parts
            )
    return [out[k] for k in sorted(out)]


@dataclass(frozen=True, slots=True)
class SlurmJob:
    job_id: int
    name: str
    user: str
    partition: str
    allocations: tuple[tuple[str, tuple[int, ...]], ...]  # (node, gres indexes)


def squeue_jobs(doc: Mapping[str, Any], gres: str) -> list[SlurmJob]:
    """Running jobs with the GRES indexes they hold on each node."""
    out = []
    for j in doc.get("jobs") or []:
        if "RUNNING" not in states(j.get("job_state")):
            continue
        job_id = number(j.get("job_id"))
        if job_id is None:
            continue
        nodes = expand_hostlist(str(j.get("nodes") or ""))
        details: Iterable[str] = j.get("gres_detail") or []
        allocs = tuple((node, tuple(gres_indexes(d, gres))) for node, d in zip(nodes, details, strict=False))
        out.append(
            SlurmJob(
                job_id,
                str(j.get("name") or ""),
                str(j.get("user_name") or ""),
                str(j.get("partition") or ""),
                tuple(a for a in allocs if a[1]),
            )
        )
    return out
