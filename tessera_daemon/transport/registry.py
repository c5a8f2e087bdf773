"""Partitions and who feeds them: topology slices, routing, the agent and worker registries.

An agent knows its sources' topology; it routes each shard to its partition (the shard's cohort,
``Topology.cohort_of``) and host, and publishes, per partition, the slice of the topology that the
partition's detector needs: the cohort's shards, every group node containing them (with ancestors)
and the edges among those. Workers merge the slices of all agents feeding a partition.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from tessera_daemon.errors import CodecError
from tessera_daemon.log import get_logger
from tessera_daemon.model import Topology, TopoNode
from tessera_daemon.transport.keys import Keys, partition_token
from tessera_daemon.transport.link import RedisLink

log = get_logger(__name__)


def host_of(topology: Topology, shard: str) -> str:
    """The host a shard sits in: its nearest ``host`` ancestor, else its ``host`` label, else itself."""
    node = topology.nodes[shard]
    for anc in topology.ancestors(shard):
        if topology.nodes[anc].kind == "host":
            return anc
    return node.labels.get("host") or shard


def slice_topology(topology: Topology, shards: Iterable[str]) -> Topology:
    keep: set[str] = set()
    for s in shards:
        keep.add(s)
        for g in topology.groups_of(s):
            keep.add(g)
            keep.update(topology.ancestors(g))
    nodes = [topology.nodes[k] for k in sorted(keep)]
    edges = [e for e in topology.edges if e.a in keep and e.b in keep]
    return Topology(nodes, edges)


@dataclass(frozen=True, slots=True)
class Partition:
    token: str
    cohort: str
    topology: Topology


@dataclass
class Router:
    """Shard -> (partition token, host), and the partitions' topology slices."""

    topology: Topology

    def __post_init__(self) -> None:
        by_cohort: dict[str, list[str]] = {}
        self.route: dict[str, tuple[str, str]] = {}
        for s in self.topology.shards:
            cohort = self.topology.cohort_of(s)
            by_cohort.setdefault(cohort, []).append(s)
            self.route[s] = (partition_token(cohort), host_of(self.topology, s))
        self.partitions = {
            partition_token(c): Partition(partition_token(c), c, slice_topology(self.topology, shards))
            for c, shards in sorted(by_cohort.items())
        }

    @property
    def n_shards(self) -> int:
        return len(self.route)


async def publish_registry(link: RedisLink, keys: Keys, agent_id: str, router: Router, group: str) -> None:
    """Register the agent, its partitions and their topology slices; create the consumer groups."""
    agent = {"shards": router.n_shards, "partitions": sorted(router.partitions), "ts": time.time()}

    async def write(client: Any) -> None:
        pipe = client.pipeline(transaction=False)
        for p in router.partitions.values():
            pipe.hset(keys.topology(p.token), agent_id, p.topology.to_json())
            pipe.hset(keys.partitions, p.token, p.cohort)
        pipe.hset(keys.agents, agent_id, json.dumps(agent, sort_keys=True))
        await pipe.execute()
        for p in router.partitions.values():
            await ensure_group(client, keys.stream(p.token), group)

    await link.call(write)


async def ensure_group(client: Any, stream: str, group: str) -> None:
    """XGROUP CREATE <stream> <group> 0 MKSTREAM, tolerating BUSYGROUP (it exists)."""
    from redis.exceptions import ResponseError  # noqa: PLC0415

    try:
        await client.xgroup_create(stream, group, id="0", mkstream=True)
    except ResponseError as exc:
        if "BUSYGROUP" not in str(exc):
            raise


async def read_partitions(link: RedisLink, keys: Keys) -> dict[str, str]:
    raw: dict[Any, Any] = await link.call(lambda c: c.hgetall(keys.partitions))
    return {_s(k): _s(v) for k, v in raw.items()}


async def fleet_shards(link: RedisLink, keys: Keys, max_age_s: float) -> int:
    """Shards of every agent registered within ``max_age_s`` (agents re-register periodically)."""
    raw: dict[Any, Any] = await link.call(lambda c: c.hgetall(keys.agents))
    total = 0
    now = time.time()
    for v in raw.values():
        try:
            reg = json.loads(v)
            if now - float(reg.get("ts", 0.0)) <= max_age_s:
                total += int(reg.get("shards", 0))
        except (ValueError, AttributeError, TypeError):
            log.warning("ignoring a malformed agent registration")
    return total


async def read_topology(link: RedisLink, keys: Keys, token: str) -> Topology | None:
    """The union of every agent's slice of a partition (None when no agent published one)."""
    raw: dict[Any, Any] = await link.call(lambda c: c.hgetall(keys.topology(token)))
    if not raw:
        return None
    return merge_slices([_s(v) for _k, v in sorted(raw.items())])


def merge_slices(texts: list[str]) -> Topology:
    parts = []
    for text in texts:
        try:
            parts.append(Topology.from_json(text))
        except CodecError as exc:
            log.error("ignoring an unreadable topology slice", error=str(exc))
    return merge_topologies(parts)


def merge_topologies(parts: Iterable[Topology]) -> Topology:
    """The union of topologies: nodes by id and edges by (a, b, kind), later parts winning."""
    nodes: dict[str, TopoNode] = {}
    edges: dict[tuple[str, str, str], Any] = {}
    for t in parts:
        nodes.update(t.nodes)
        for e in t.edges:
            edges[(e.a, e.b, e.kind)] = e
    return Topology(nodes.values(), edges.values())


async def read_slices(link: RedisLink, keys: Keys, tokens: Iterable[str]) -> dict[str, Topology]:
    """The topology slice of each partition in ``tokens`` (partitions without one are left out)."""
    out: dict[str, Topology] = {}
    for token in sorted(tokens):
        topo = await read_topology(link, keys, token)
        if topo is not None:
            out[token] = topo
    return out


async def register_worker(link: RedisLink, keys: Keys, worker: str, ttl_ms: int) -> int:
    """Heartbeat the worker registry; the number of live workers (this one included)."""
    now_ms = int(time.time() * 1000)

    async def beat(client: Any) -> list[Any]:
        pipe = client.pipeline(transaction=False)
        pipe.zadd(keys.workers, {worker: now_ms + ttl_ms})
        pipe.zremrangebyscore(keys.workers, "-inf", now_ms)
        pipe.zcard(keys.workers)
        result: list[Any] = await pipe.execute()
        return result

    res = await link.call(beat)
    return max(1, int(res[2]))


async def live_workers(link: RedisLink, keys: Keys) -> list[str]:
    """Ids of the workers whose registry heartbeat has not expired (the registry holds no addresses)."""
    now_ms = int(time.time() * 1000)
    raw: list[Any] = await link.call(lambda c: c.zrangebyscore(keys.workers, now_ms, "+inf"))
    return sorted(_s(w) for w in raw)


async def unregister_worker(link: RedisLink, keys: Keys, worker: str) -> None:
    await link.call(lambda c: c.zrem(keys.workers, worker))


def _s(v: Any) -> str:
    return v.decode() if isinstance(v, bytes) else str(v)
