"""A fake Kubernetes API server (aiohttp) for the real ``kubernetes.aio`` client.

Serves ``GET /api/v1/nodes`` and ``GET /api/v1/pods`` as lists (``NodeList`` / ``PodList`` with
``metadata.resourceVersion``) and, with ``watch=true``, as newline-delimited watch events
(``{"type": "ADDED|MODIFIED|DELETED|ERROR", "object": ...}``) starting after the requested
``resourceVersion``. ``compact()`` forgets history, so a watch from an older version gets an
``ERROR`` event with a 410 Gone Status, as a real API server does after etcd compaction.
"""

from __future__ import annotations

import asyncio
import copy
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.servers import free_port

KINDS = {"nodes": ("Node", "NodeList"), "pods": ("Pod", "PodList")}


@dataclass
class Request:
    path: str
    query: dict[str, str]


@dataclass
class FakeKubeApi:
    objects: dict[str, dict[str, dict[str, Any]]] = field(default_factory=lambda: {"nodes": {}, "pods": {}})
    events: list[tuple[int, str, str, dict[str, Any]]] = field(default_factory=list)  # rv, plural, type, obj
    rv: int = 100
    compacted: int = 0
    requests: list[Request] = field(default_factory=list)
    port: int = 0
    _changed: asyncio.Condition | None = None
    _stopping: asyncio.Event | None = None
    _runner: web.AppRunner | None = None

    # ------------------------------------------------------------------------------ state

    @staticmethod
    def _key(obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return f"{meta.get('namespace', '')}/{meta['name']}"

    def load(self, plural: str, items: list[dict[str, Any]]) -> None:
        for item in items:
            self.rv += 1
            obj = copy.deepcopy(item)
            obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
            self.objects[plural][self._key(obj)] = obj

    async def change(self, plural: str, kind: str, obj: dict[str, Any]) -> None:
        """Apply an ADDED / MODIFIED / DELETED change and wake the watchers."""
        self.rv += 1
        obj = copy.deepcopy(obj)
        obj.setdefault("metadata", {})["resourceVersion"] = str(self.rv)
        if kind == "DELETED":
            self.objects[plural].pop(self._key(obj), None)
        else:
            self.objects[plural][self._key(obj)] = obj
        self.events.append((self.rv, plural, kind, obj))
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    async def compact(self) -> None:
        """Drop the event history: watches from older resource versions now get 410 Gone."""
        self.rv += 1
        self.compacted = self.rv
        self.events.clear()
        assert self._changed is not None
        async with self._changed:
            self._changed.notify_all()

    def watch_requests(self, plural: str) -> list[Request]:
        return [r for r in self.requests if r.path.endswith(plural) and r.query.get("watch") in ("true", "True", "1")]

    def list_requests(self, plural: str) -> list[Request]:
        return [r for r in self.requests if r.path.endswith(plural) and "watch" not in r.query]

    # ----------------------------------------------------------------------------- server

    async def start(self) -> str:
        self._changed = asyncio.Condition()
        self._stopping = asyncio.Event()
        app = web.Application()
        app.router.add_get("/api/v1/{plural:nodes|pods}", self._handle)
        self._runner = web.AppRunner(app, shutdown_timeout=0.5)
        await self._runner.setup()
        self.port = self.port or free_port()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()
        return f"http://127.0.0.1:{self.port}"

    async def stop(self) -> None:
        if self._runner is not None:
            assert self._stopping is not None and self._changed is not None
            self._stopping.set()
            async with self._changed:
                self._changed.notify_all()
            await self._runner.cleanup()
            self._runner = None

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        plural = request.match_info["plural"]
        query = dict(request.query)
        self.requests.append(Request(request.path, query))
        if query.get("watch") in ("true", "True", "1"):
            return await self._watch(request, plural, query)
        _kind, list_kind = KINDS[plural]
        items = [self.objects[plural][k] for k in sorted(self.objects[plural])]
        body = {"kind": list_kind, "apiVersion": "v1", "metadata": {"resourceVersion": str(self.rv)}, "items": items}
        return web.json_response(body)

    async def _watch(self, request: web.Request, plural: str, query: dict[str, str]) -> web.StreamResponse:
        assert self._changed is not None and self._stopping is not None
        resp = web.StreamResponse(headers={"Content-Type": "application/json"})
        await resp.prepare(request)
        since = int(query.get("resourceVersion") or 0)
        timeout = float(query.get("timeoutSeconds") or 30)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        if since < self.compacted:
            status = {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": f"too old resource version: {since} ({self.compacted})",
                "reason": "Expired",
                "code": 410,
            }
            await resp.write(json.dumps({"type": "ERROR", "object": status}).encode() + b"\n")
            return resp
        sent = since
        while not self._stopping.is_set() and loop.time() < deadline:
            for rv, pl, kind, obj in list(self.events):
                if pl == plural and rv > sent:
                    await resp.write(json.dumps({"type": kind, "object": obj}).encode() + b"\n")
                    sent = rv
            if sent < self.compacted:
                break  # history was compacted under this watch: end it, the client re-watches
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), max(0.01, deadline - loop.time()))
                except TimeoutError:
                    break
        return resp


async def _serve(port: int, nodelist: str, podlist: str) -> None:
    """Run the fake API server standalone (examples/kubernetes.toml)."""
    api = FakeKubeApi(port=port)
    api.load("nodes", json.loads(Path(nodelist).read_text(encoding="utf-8"))["items"])  # noqa: ASYNC240
    api.load("pods", json.loads(Path(podlist).read_text(encoding="utf-8"))["items"])  # noqa: ASYNC240
    print(f"fake Kubernetes API on {await api.start()}", flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await api.stop()


if __name__ == "__main__":
    import sys

    asyncio.run(_serve(int(sys.argv[1]), sys.argv[2], sys.argv[3]))
