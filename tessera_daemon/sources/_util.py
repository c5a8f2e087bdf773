"""Helpers shared by the substrate sources: host names, shard ids, bounded subprocess runs,
off-loop calls with a timeout, and a small builder for topology parts."""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
import socket
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, TypeVar

from tessera_daemon.errors import SubstrateTimeout, SubstrateUnavailable
from tessera_daemon.model import TopoEdge, TopoNode

T = TypeVar("T")


def host_name(configured: str) -> str:
    """The configured host name, else what the OS reports (Kubernetes node names usually match)."""
    return configured or socket.gethostname()


def shard_id(host: str, kind: str, index: int | str) -> str:
    """Stable, globally unique shard id: ``<host>/<kind><index>`` (``node7/gpu3``)."""
    return f"{host}/{kind}{index}"


def finite(value: Any) -> float | None:
    """A float for a finite number, None for anything else (NaN, inf, None, strings)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    v = float(value)
    return v if math.isfinite(v) else None


def parse_pairs(items: Iterable[str], where: str) -> list[tuple[str, str]]:
    """``("a=b", "c=d=e")`` -> ``[("a", "b"), ("c", "d=e")]``; raises ValueError naming ``where``."""
    out: list[tuple[str, str]] = []
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip() or not value.strip():
            raise ValueError(f"{where}: expected key=value, got {item!r}")
        out.append((key.strip(), value.strip()))
    return out


async def run_command(
    argv: Sequence[str],
    *,
    substrate: str,
    timeout_s: float,
    env: Mapping[str, str] | None = None,
) -> tuple[int, bytes, bytes]:
    """Run ``argv`` to completion with our own timeout; the child is killed on timeout or cancel.

    Raises SubstrateUnavailable when the program cannot be started, SubstrateTimeout when it runs
    past ``timeout_s``. Returns (exit code, stdout, stderr) otherwise. The child runs in its own
    process group, so a wrapper's children (``sh -c``, ``srun``) are killed with it.
    """
    full_env = None if env is None else {**os.environ, **env}
    if not argv:
        raise SubstrateUnavailable(substrate, "empty command")
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=full_env,
            start_new_session=True,
        )
    except OSError as exc:
        raise SubstrateUnavailable(substrate, f"cannot run {argv[0]!r}: {exc}") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(), timeout_s)
    except TimeoutError as exc:
        raise SubstrateTimeout(substrate, f"{argv[0]} did not finish within {timeout_s:g}s") from exc
    finally:
        if proc.returncode is None:
            kill_group(proc.pid)
            with contextlib.suppress(Exception):
                await asyncio.wait_for(asyncio.shield(proc.wait()), 5.0)
    return proc.returncode if proc.returncode is not None else -1, out, err


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (a child we started with start_new_session)."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)


class OffLoop:
    """Runs blocking library calls in a worker thread (``asyncio.to_thread``) with a timeout.

    A thread cannot be interrupted, so after a timeout the call keeps running; while it does,
    further calls fail fast with SubstrateTimeout instead of piling threads up behind a hung driver.
    """

    def __init__(self, substrate: str) -> None:
        self.substrate = substrate
        self._pending: asyncio.Task[Any] | None = None

    @property
    def busy(self) -> bool:
        return self._pending is not None and not self._pending.done()

    async def call(self, timeout_s: float, fn: Callable[..., T], *args: Any) -> T:
        if self.busy:
            raise SubstrateTimeout(self.substrate, "a previous call is still running in its thread")
        task: asyncio.Task[T] = asyncio.ensure_future(asyncio.to_thread(fn, *args))
        task.add_done_callback(_consume)
        self._pending = task
        try:
            return await asyncio.wait_for(asyncio.shield(task), timeout_s)
        except TimeoutError as exc:
            raise SubstrateTimeout(self.substrate, f"call did not return within {timeout_s:g}s") from exc


def _consume(task: asyncio.Task[Any]) -> None:
    """Retrieve a finished task's exception so an abandoned call never logs 'never retrieved'."""
    if not task.cancelled():
        task.exception()


class PartBuilder:
    """Collects nodes (first definition wins, later labels fill gaps) and undirected edges."""

    def __init__(self) -> None:
        self.nodes: dict[str, TopoNode] = {}
        self.edges: set[tuple[str, str, str]] = set()

    def node(self, node_id: str, kind: str, parent: str | None = None, **labels: str) -> str:
        old = self.nodes.get(node_id)
        clean = {k: v for k, v in labels.items() if v}
        if old is None:
            self.nodes[node_id] = TopoNode(node_id, kind, parent, clean)
        else:
            merged = {**clean, **old.labels}
            self.nodes[node_id] = TopoNode(node_id, old.kind, old.parent or parent, merged)
        return node_id

    def edge(self, a: str, b: str, kind: str) -> None:
        if a != b:
            lo, hi = sorted((a, b))
            self.edges.add((lo, hi, kind))

    def result(self) -> tuple[list[TopoNode], list[TopoEdge]]:
        nodes = [self.nodes[k] for k in sorted(self.nodes)]
        edges = [TopoEdge(a, b, k) for a, b, k in sorted(self.edges)]
        return nodes, edges
