"""Slurm topology source: ``sinfo --json``, ``squeue --json`` and the switch tree.

Nodes come from ``sinfo --json`` (both JSON layouts, see ``slurm_parse``); each node's GRES count
(``slurm.gres``, default ``gpu``) gives shards ``<node>/<shard_kind><index>``. Running jobs from
``squeue --json`` set the cohort of the shards they hold (``gres_detail`` ``IDX`` lists, one entry
per allocated node): cohort ``slurm/<job_id>``, with labels ``slurm_job`` (name) and ``slurm_user``.

The switch tree comes from ``scontrol show topology`` (or a topology.conf file): every switch keeps
its level; level-0 switches are racks (``rack:<name>``, kind rack, labels ``switch``, ``level=0``),
higher ones ``switch:<name>`` (kind switch, label ``level=N``); a host's parent is the lowest-level
switch that lists it. Referenced but undeclared switches become placeholders (``placeholder=true``).

Every command runs under our own timeout (killed on expiry) and its JSON ``errors`` array is checked:
``sinfo`` exits 0 with the controller down and only reports it there. ``poll`` returns no frames; it
re-reads sinfo/squeue when the last read is older than ``slurm.refresh_s`` and raises the typed
error when that fails.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tessera_daemon.errors import SubstrateFatal, SubstrateUnavailable
from tessera_daemon.model import Frame
from tessera_daemon.sources._util import PartBuilder, run_command, shard_id
from tessera_daemon.sources.base import TopologyPart
from tessera_daemon.sources.slurm_parse import (
    SlurmJob,
    SlurmNode,
    Switch,
    check_errors,
    gres_count,
    parse_topology,
    sinfo_nodes,
    squeue_jobs,
)

if TYPE_CHECKING:
    from tessera_daemon.config import Config


def switch_node_id(sw: Switch) -> str:
    return f"rack:{sw.name}" if (sw.level or 0) == 0 else f"switch:{sw.name}"


def build_part(
    nodes: Sequence[SlurmNode],
    jobs: Sequence[SlurmJob],
    tree: dict[str, Switch],
    gres: str,
    kind: str,
    notes: Sequence[str] = (),
) -> TopologyPart:
    b = PartBuilder()
    switch_parent: dict[str, Switch] = {}
    node_leaf: dict[str, Switch] = {}
    for sw in sorted(tree.values(), key=lambda s: (s.level or 0, s.name)):
        for child in sw.switches:
            switch_parent.setdefault(child, sw)
        for host in sw.nodes:
            node_leaf.setdefault(host, sw)  # the lowest-level switch listing the node wins
    for sw in tree.values():
        parent = switch_parent.get(sw.name)
        b.node(
            switch_node_id(sw),
            "rack" if (sw.level or 0) == 0 else "switch",
            switch_node_id(parent) if parent else None,
            switch=sw.name,
            level=str(sw.level or 0),
            placeholder="" if sw.declared else "true",
        )
    held: dict[tuple[str, int], SlurmJob] = {}
    for job in jobs:
        for host, idxs in job.allocations:
            for i in idxs:
                held[(host, i)] = job
    for n in nodes:
        leaf = node_leaf.get(n.name)
        b.node(
            n.name,
            "host",
            switch_node_id(leaf) if leaf else None,
            host=n.name,
            slurm_state=n.state,
            partitions=",".join(n.partitions),
        )
        count, model = gres_count(n.gres, gres)
        for i in range(count):
            holder = held.get((n.name, i))
            b.node(
                shard_id(n.name, kind, i),
                "shard",
                n.name,
                host=n.name,
                model=model,
                index=str(i),
                cohort=f"slurm/{holder.job_id}" if holder else "",
                slurm_job=holder.name if holder else "",
                slurm_user=holder.user if holder else "",
            )
    out_nodes, edges = b.result()
    return TopologyPart("slurm", out_nodes, edges, partial=not tree, notes=tuple(notes))


class SlurmSource:
    name = "slurm"

    def __init__(self, cfg: Config) -> None:
        self.settings = cfg.sources.slurm
        self._env = {"SLURM_CONF": self.settings.slurm_conf} if self.settings.slurm_conf else None
        self._nodes: list[SlurmNode] = []
        self._jobs: list[SlurmJob] = []
        self._read_at: float | None = None

    async def _json(self, argv: Sequence[str]) -> dict[str, Any]:
        rc, out, err = await run_command(
            [*argv, "--json"], substrate=self.name, timeout_s=self.settings.command_timeout_s, env=self._env
        )
        try:
            doc = json.loads(out) if out.strip() else None
        except ValueError:
            doc = None
        if not isinstance(doc, dict):
            detail = err.decode(errors="replace").strip() or f"exit code {rc}"
            if rc != 0:
                raise SubstrateUnavailable(self.name, f"{argv[0]} --json failed: {detail}")
            raise SubstrateFatal(self.name, f"{argv[0]} --json printed no JSON object: {detail}")
        errors = check_errors(doc)
        if errors:
            raise SubstrateUnavailable(self.name, f"{argv[0]}: {'; '.join(errors)}")
        if rc != 0:
            raise SubstrateUnavailable(self.name, f"{argv[0]} exited {rc}")
        return doc

    async def _refresh(self) -> None:
        results = await asyncio.gather(
            self._json(self.settings.sinfo), self._json(self.settings.squeue), return_exceptions=True
        )
        sinfo, squeue = results
        if isinstance(sinfo, BaseException):
            raise sinfo
        if isinstance(squeue, BaseException):
            raise squeue
        try:
            self._nodes = sinfo_nodes(sinfo)
            self._jobs = squeue_jobs(squeue, self.settings.gres)
        except (ValueError, TypeError, AttributeError) as exc:
            raise SubstrateFatal(self.name, f"unexpected sinfo/squeue JSON: {exc}") from exc
        self._read_at = time.monotonic()

    async def _tree(self) -> tuple[dict[str, Switch], list[str]]:
        s = self.settings
        if s.topology == "none":
            return {}, ["switch tree disabled (slurm.topology = none)"]
        if s.topology == "file":
            try:
                text = await asyncio.to_thread(Path(s.topology_file).read_text, encoding="utf-8")
            except OSError as exc:
                raise SubstrateFatal(self.name, f"cannot read topology file: {exc}") from exc
        else:
            rc, out, err = await run_command(
                [*s.scontrol, "show", "topology"], substrate=self.name, timeout_s=s.command_timeout_s, env=self._env
            )
            text = out.decode(errors="replace")
            if rc != 0:
                msg = err.decode(errors="replace").strip()
                if "contact" in msg.lower() or "connect" in msg.lower():
                    raise SubstrateUnavailable(self.name, f"scontrol show topology: {msg}")
                return {}, [f"no switch tree: {msg or f'exit code {rc}'}"]
            if not text.strip() or "no topology" in text.lower():
                return {}, ["no switch tree (TopologyPlugin not topology/tree?)"]
        try:
            return parse_topology(text), []
        except ValueError as exc:
            raise SubstrateFatal(self.name, f"switch tree: {exc}") from exc

    async def open(self) -> None:
        await self._refresh()

    async def poll(self, now: float) -> Sequence[Frame]:
        if self._read_at is None or time.monotonic() - self._read_at >= self.settings.refresh_s:
            await self._refresh()
        return []

    async def topology(self) -> TopologyPart:
        await self._refresh()
        tree, notes = await self._tree()
        return build_part(self._nodes, self._jobs, tree, self.settings.gres, self.settings.shard_kind, notes)

    async def close(self) -> None:
        self._read_at = None
