"""Kubernetes topology source (the official client's asyncio flavour, ``kubernetes.aio``).

``open`` lists Nodes and Pods, then two background tasks watch them from the listed
``resourceVersion`` (server-side ``timeoutSeconds``; the watch is resumed from the last version it
saw). A ``410 Gone`` (an ERROR event or status: the version was compacted away) triggers a fresh
list, as the API conventions require. Connection errors are retried with doubling delays (from
``kubernetes.retry_s``, capped at 60 s) and a re-list.

This is a topology source: ``poll`` returns no frames; it raises SubstrateUnavailable while the
watches are failing, so the supervisor's staleness reflects a lost API server. ``topology`` builds
the part from the watched objects (see ``k8s_topology`` for the mapping).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp
from kubernetes.aio import client as kclient
from kubernetes.aio import config as kconfig
from kubernetes.aio import watch as kwatch
from kubernetes.aio.client.exceptions import ApiException

from tessera_daemon.errors import SubstrateFatal, SubstrateUnavailable
from tessera_daemon.log import get_logger
from tessera_daemon.model import Frame
from tessera_daemon.sources.base import TopologyPart
from tessera_daemon.sources.k8s_topology import build_part

if TYPE_CHECKING:
    from tessera_daemon.config import Config

log = get_logger(__name__)
MAX_RETRY_S = 60.0
# the client's config loaders and Watch are untyped; call them through Any
_load_incluster: Any = kconfig.load_incluster_config
_load_kube_config: Any = kconfig.load_kube_config
_Watch: Any = kwatch.Watch
PLURALS = ("nodes", "pods")


class KubernetesSource:
    name = "kubernetes"

    def __init__(self, cfg: Config) -> None:
        self.settings = cfg.sources.kubernetes
        self.timeout_s = cfg.sources.timeout_s
        self._api_client: Any = None
        self._core: Any = None
        self._objects: dict[str, dict[str, dict[str, Any]]] = {p: {} for p in PLURALS}
        self._rv: dict[str, str | None] = {p: None for p in PLURALS}
        self._error: dict[str, str | None] = {p: None for p in PLURALS}
        self._tasks: list[asyncio.Task[None]] = []
        self.relists: dict[str, int] = {p: 0 for p in PLURALS}

    # ---------------------------------------------------------------------------- client

    async def _configure(self) -> Any:
        conf = kclient.Configuration()
        s = self.settings
        if s.api_url:
            conf.host = s.api_url.rstrip("/")
            conf.verify_ssl = s.verify_tls
            if s.ca_file:
                conf.ssl_ca_cert = s.ca_file
            if s.token_file:
                try:
                    token = (await asyncio.to_thread(Path(s.token_file).read_text, encoding="utf-8")).strip()
                except OSError as exc:
                    raise SubstrateFatal(self.name, f"cannot read token file: {exc}") from exc
                conf.api_key = {"authorization": token}
                conf.api_key_prefix = {"authorization": "Bearer"}
        else:
            try:
                _load_incluster(client_configuration=conf)
            except kconfig.ConfigException:
                try:
                    await _load_kube_config(config_file=s.kubeconfig or None, client_configuration=conf)
                except (kconfig.ConfigException, OSError) as exc:
                    raise SubstrateUnavailable(self.name, f"no cluster configuration: {exc}") from exc
        conf.retries = None  # retries are ours (backoff), never hidden inside one poll
        return conf

    def _list_fn(self, plural: str) -> Callable[..., Awaitable[Any]]:
        fn: Callable[..., Awaitable[Any]] = (
            self._core.list_node if plural == "nodes" else self._core.list_pod_for_all_namespaces
        )
        return fn

    async def open(self) -> None:
        if self._api_client is None:
            conf = await self._configure()
            self._api_client = kclient.ApiClient(conf)
            self._core = kclient.CoreV1Api(self._api_client)
        for plural in PLURALS:
            if self._rv[plural] is None:
                await self._relist(plural)
        if not self._tasks:
            self._tasks = [asyncio.create_task(self._watch_loop(p), name=f"k8s-watch-{p}") for p in PLURALS]

    async def close(self) -> None:
        tasks, self._tasks = self._tasks, []
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        if self._api_client is not None:
            client, self._api_client, self._core = self._api_client, None, None
            with contextlib.suppress(Exception):
                await client.close()
        self._rv = {p: None for p in PLURALS}

    # ------------------------------------------------------------------------ list & watch

    def _kwargs(self, plural: str) -> dict[str, Any]:
        if plural == "nodes" and self.settings.node_selector:
            return {"label_selector": self.settings.node_selector}
        return {}

    async def _relist(self, plural: str) -> None:
        fn = getattr(self._core, f"{self._list_fn(plural).__name__}_without_preload_content")
        try:
            resp = await asyncio.wait_for(fn(**self._kwargs(plural)), self.timeout_s)
            try:
                body = json.loads(await resp.read())
            finally:
                resp.release()
        except ApiException as exc:
            if exc.status in (401, 403):
                raise SubstrateFatal(self.name, f"list {plural}: HTTP {exc.status} {exc.reason}") from exc
            raise SubstrateUnavailable(self.name, f"list {plural}: HTTP {exc.status} {exc.reason}") from exc
        except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
            raise SubstrateUnavailable(self.name, f"list {plural}: {exc or type(exc).__name__}") from exc
        items = body.get("items") or []
        self._objects[plural] = {self._key(o): o for o in items if isinstance(o, dict)}
        self._rv[plural] = str((body.get("metadata") or {}).get("resourceVersion") or "") or None
        self._error[plural] = None
        self.relists[plural] += 1

    @staticmethod
    def _key(obj: dict[str, Any]) -> str:
        meta = obj.get("metadata") or {}
        return f"{meta.get('namespace', '')}/{meta.get('name', '')}"

    def _apply(self, plural: str, event: dict[str, Any]) -> None:
        obj = event.get("raw_object")
        if not isinstance(obj, dict):
            return
        kind = event.get("type")
        if kind == "DELETED":
            self._objects[plural].pop(self._key(obj), None)
        elif kind in ("ADDED", "MODIFIED"):
            self._objects[plural][self._key(obj)] = obj
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            self._rv[plural] = str(rv)

    async def _watch_loop(self, plural: str) -> None:
        delay = self.settings.retry_s
        while True:
            try:
                if self._rv[plural] is None:
                    await self._relist(plural)
                started, events = time.monotonic(), 0
                async with _Watch(return_type=object) as w:
                    stream = w.stream(
                        self._list_fn(plural),
                        resource_version=self._rv[plural],
                        timeout_seconds=self.settings.watch_timeout_s,
                        allow_watch_bookmarks=True,
                        **self._kwargs(plural),
                    )
                    async for event in stream:
                        self._apply(plural, event)
                        self._error[plural] = None
                        events += 1
                delay = self.settings.retry_s
                if not events and time.monotonic() - started < 1.0:
                    await asyncio.sleep(delay)  # a watch that ends at once: do not spin on the API server
            except ApiException as exc:
                if exc.status == 410:
                    log.info("kubernetes.relist", plural=plural, reason="410 Gone")
                    self._rv[plural] = None
                    continue
                self._error[plural] = f"watch {plural}: HTTP {exc.status} {exc.reason}"
            except (SubstrateUnavailable, SubstrateFatal) as exc:
                self._error[plural] = str(exc)
            except (aiohttp.ClientError, OSError, TimeoutError, ValueError) as exc:
                self._error[plural] = f"watch {plural}: {exc or type(exc).__name__}"
                self._rv[plural] = None  # after a lost connection, re-list to catch up safely
            else:
                continue
            log.warning("kubernetes.watch_failed", plural=plural, error=self._error[plural], retry_s=delay)
            await asyncio.sleep(delay)
            delay = min(delay * 2, MAX_RETRY_S)

    # -------------------------------------------------------------------------- protocol

    async def poll(self, now: float) -> Sequence[Frame]:
        if self._api_client is None:
            await self.open()
        failing = [e for e in self._error.values() if e]
        if failing:
            raise SubstrateUnavailable(self.name, "; ".join(failing))
        for t in self._tasks:
            if t.done() and not t.cancelled() and t.exception() is not None:
                raise SubstrateUnavailable(self.name, f"watch task died: {t.exception()!r}")
        return []

    async def topology(self) -> TopologyPart:
        if self._api_client is None:
            await self.open()
        return build_part(self._objects["nodes"].values(), self._objects["pods"].values(), self.settings)
