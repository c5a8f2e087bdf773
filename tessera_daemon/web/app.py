"""aiohttp application: /metrics, /healthz, /readyz, /v1/firings, /v1/shards/{id}, /v1/openapi.json, and the
web console (``/``).

Handlers read the daemon ``Status`` only (the detector as an immutable ``PipelineSnapshot``); they never
call a source, run the detector or touch a live pipeline.
"""

from __future__ import annotations

import math
import time
from typing import Any

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from tessera_daemon.web.console_api import add_console
from tessera_daemon.web.openapi import openapi_route
from tessera_daemon.web.status import Status

STATUS_KEY: web.AppKey[Status] = web.AppKey("status", Status)
FIRING_STATES = ("open", "resolved", "all")


async def metrics(request: web.Request) -> web.Response:
    st = request.app[STATUS_KEY]
    return web.Response(body=st.metrics_bytes, headers={"Content-Type": CONTENT_TYPE_LATEST})


async def healthz(request: web.Request) -> web.Response:
    st = request.app[STATUS_KEY]
    now = time.time()
    body = {
        "status": "ok" if st.alive(now) else "stalled",
        "heartbeat_age_s": round(now - st.heartbeat_ts, 3),
        "uptime_s": round(now - st.started_ts, 3),
    }
    return web.json_response(body, status=200 if st.alive(now) else 503)


async def readyz(request: web.Request) -> web.Response:
    st = request.app[STATUS_KEY]
    reasons = st.not_ready_reasons()
    p = st.snapshot
    body: dict[str, Any] = {
        "ready": not reasons,
        "reasons": reasons,
        "windows_processed": p.windows_processed,
        "warm_fraction": round(p.warm_fraction(), 4),
        "sources": {
            n: {"up": h.up, "last_success_ts": h.last_success_ts, "last_error": h.last_error}
            for n, h in sorted(st.health.items())
        },
    }
    return web.json_response(body, status=200 if not reasons else 503)


async def firings(request: web.Request) -> web.Response:
    st = request.app[STATUS_KEY]
    state = request.query.get("state", "all")
    if state not in FIRING_STATES:
        raise web.HTTPBadRequest(text=f"state must be one of {', '.join(FIRING_STATES)}")
    p = st.snapshot
    out: list[dict[str, Any]] = []
    if state in ("open", "all"):
        out.extend(f.to_obj() for f in p.active)
    if state in ("resolved", "all"):
        out.extend(f.to_obj() for f in reversed(p.recent))
    return web.json_response({"v": 1, "state": state, "count": len(out), "firings": out})


def _num(v: float) -> float | None:
    return round(float(v), 6) if math.isfinite(v) else None


async def shard(request: web.Request) -> web.Response:
    st = request.app[STATUS_KEY]
    p = st.snapshot
    sid = request.match_info["shard_id"]
    i = p.row.get(sid)
    if i is None:
        raise web.HTTPNotFound(text=f"unknown shard {sid!r}")
    t = p.table
    metrics: dict[str, Any] = {}
    if t.window >= 0 and i < t.log_m.shape[0]:
        for j, m in enumerate(p.metrics):
            metrics[m] = {
                "log_evidence": _num(t.log_m[i, j]),
                "innovation_z": _num(t.last_w[i, j]),
                "value": _num(t.last_x[i, j]),
                "warm": bool(t.warm[i, j]),
            }
    node = p.topology.nodes[sid]
    active = [f.to_obj() for f in p.active if sid in f.members]
    body = {
        "v": 1,
        "shard": sid,
        "window": t.window,
        "window_end_ts": t.end_ts,
        "labels": dict(node.labels),
        "groups": p.topology.groups_of(sid),
        "stale": bool(t.stale[i]) if t.window >= 0 and i < t.stale.size else False,
        "threshold_log": p.threshold_log,
        "metrics": metrics,
        "active_firings": active,
    }
    if st.console is not None:  # the web console's history: recent values, cohort band, baseline, events
        body.update(st.console.shard_extra(p, sid, i))
    return web.json_response(body)


def make_app(status: Status, *, extra_routes: list[web.RouteDef] | None = None) -> web.Application:
    app = web.Application(client_max_size=1024 * 1024)
    app[STATUS_KEY] = status
    app.router.add_get("/metrics", metrics)
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/v1/firings", firings)
    app.router.add_get("/v1/shards/{shard_id:.+}", shard)
    add_console(app, status)  # GET / (the web console) and its JSON: web/console_api.py
    if extra_routes:
        app.router.add_routes(extra_routes)
    app.router.add_routes([openapi_route()])
    return app
