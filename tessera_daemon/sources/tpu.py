"""Google TPU source: counters from ``tpu-info``, topology from the slice description.

Each poll runs ``tpu-info`` (static mode; ``tpu.command``) under the poll timeout and reads its
tables (see ``tpu_parse``): per chip ``gpu_util`` (the duty cycle, ratio), ``tensorcore_util``
(ratio, TensorCores folded per chip), ``mem_used_bytes`` / ``mem_total_bytes`` (HBM). Shards are
``<host>/tpu<chip>`` with the chip number tpu-info prints.

Topology: the slice file (``tpu.slice_file``) gives every chip ``tpu-<N>`` of the slice and its ICI
peers (``ici`` edges). Global chip N lives on worker ``N // tpu.chips_per_host`` of ``tpu.hosts``
(shard ``<that host>/tpu<N mod chips_per_host>``); with no ``tpu.hosts`` the whole slice is on this
host (shard ``<host>/tpu<N>``). The slice is a node ``slice:<tpu.slice_name>`` (kind pod, labels
tpu_version, slice_shape, topology_type) named by each shard's ``pod`` label. GKE's TPU node labels
(accelerator, topology, node pool) come from the Kubernetes source, which names its shards the
same way (``<node>/tpu<i>``). Without a slice file the part has this host's chips only (partial).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from tessera_daemon.errors import SubstrateFatal, SubstrateUnavailable
from tessera_daemon.model import Frame
from tessera_daemon.sources._util import PartBuilder, host_name, run_command, shard_id
from tessera_daemon.sources.base import TopologyPart
from tessera_daemon.sources.tpu_parse import Slice, parse_slice, parse_tpu_info

if TYPE_CHECKING:
    from tessera_daemon.config import Config


class TpuSource:
    name = "tpu"

    def __init__(self, cfg: Config) -> None:
        self.settings = cfg.sources.tpu
        self.timeout_s = cfg.sources.timeout_s
        self.host = host_name(self.settings.host)
        self._slice: Slice | None = None
        self._chips: set[int] = set()

    def _load_slice(self) -> Slice | None:
        path = self.settings.slice_file
        if not path:
            return None
        try:
            return parse_slice(json.loads(Path(path).read_text(encoding="utf-8")))
        except OSError as exc:
            raise SubstrateUnavailable(self.name, f"cannot read slice file: {exc}") from exc
        except ValueError as exc:
            raise SubstrateFatal(self.name, f"{path}: {exc}") from exc

    async def open(self) -> None:
        self._slice = self._load_slice()
        await self._read()

    async def close(self) -> None:
        self._chips = set()

    async def _read(self) -> dict[int, dict[str, float | None]]:
        rc, out, err = await run_command(self.settings.command, substrate=self.name, timeout_s=self.timeout_s)
        text = out.decode(errors="replace")
        if rc != 0:
            raise SubstrateUnavailable(self.name, f"tpu-info exited {rc}: {err.decode(errors='replace').strip()}")
        if "no tpu chips found" in text.lower():
            raise SubstrateUnavailable(self.name, "tpu-info: No TPU chips found")
        try:
            chips = parse_tpu_info(text)
        except ValueError as exc:
            raise SubstrateFatal(self.name, str(exc)) from exc
        self._chips = set(chips)
        return chips

    async def poll(self, now: float) -> Sequence[Frame]:
        chips = await self._read()
        return [Frame(now, shard_id(self.host, "tpu", c), chips[c]) for c in sorted(chips)]

    def _place(self, n: int) -> tuple[str, int]:
        hosts, k = self.settings.hosts, self.settings.chips_per_host
        if not hosts:
            return self.host, n
        worker = n // k
        if worker >= len(hosts):
            raise SubstrateFatal(self.name, f"chip tpu-{n} is on worker {worker}; tpu.hosts names {len(hosts)}")
        return hosts[worker], n % k

    async def topology(self) -> TopologyPart:
        if self._slice is None:
            self._slice = self._load_slice()
        b = PartBuilder()
        sl = self._slice
        if sl is None:
            b.node(self.host, "host", None, host=self.host)
            for c in sorted(self._chips):
                b.node(
                    shard_id(self.host, "tpu", c),
                    "shard",
                    self.host,
                    host=self.host,
                    model=self.settings.accelerator,
                    index=str(c),
                )
            nodes, edges = b.result()
            return TopologyPart(self.name, nodes, edges, partial=True, notes=("no slice file",))
        slice_id = b.node(
            f"slice:{self.settings.slice_name}",
            "pod",
            None,
            tpu_version=sl.version,
            slice_shape="x".join(map(str, sl.shape)),
            topology_type=sl.topology_type,
        )
        model = self.settings.accelerator or f"tpu-{sl.version}"
        for n in sorted(sl.peers):
            host, local = self._place(n)
            b.node(host, "host", None, host=host, pod=slice_id)
            b.node(
                shard_id(host, "tpu", local),
                "shard",
                host,
                host=host,
                model=model,
                index=str(local),
                slice_chip=f"tpu-{n}",
                pod=slice_id,
            )
        for n, peers in sl.peers.items():
            a_host, a_local = self._place(n)
            for p in peers:
                if p in sl.peers:
                    b_host, b_local = self._place(p)
                    b.edge(shard_id(a_host, "tpu", a_local), shard_id(b_host, "tpu", b_local), "ici")
        nodes, edges = b.result()
        # a sub-cube slice (any dimension < 4) is a mesh without wrap-around: a property, not a gap
        notes = ("sub-cube mesh (a dimension < 4)",) if any(d < 4 for d in sl.shape) else ()
        return TopologyPart(self.name, nodes, edges, partial=False, notes=notes)
