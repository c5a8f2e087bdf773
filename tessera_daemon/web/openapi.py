"""``GET /v1/openapi.json``: the HTTP API of the process answering, as an OpenAPI 3.1 document.

The paths are read from the application's own router at request time, so the document lists exactly the
routes this process serves (``run``, ``detector`` and ``agent`` differ); their descriptions, parameters,
request and response examples come from :data:`OPERATIONS` (``web/openapi_operations.py``). A route
without an entry there is listed with ``x-undocumented: true`` (a test keeps that from happening).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from tessera_daemon import __version__
from tessera_daemon.web.console_openapi import CONSOLE_SERVED_BY
from tessera_daemon.web.openapi_operations import ERROR_SCHEMA, JSON, OPENAPI_PATH, OPERATIONS

SCHEMAS: dict[str, Any] = {
    "Error": ERROR_SCHEMA,
    "Firing": {
        "type": "object",
        "description": "A firing (contract 4): an alarm on a shard, a group or the fleet.",
        "required": [
            "v",
            "id",
            "state",
            "opened_ts",
            "window",
            "scope",
            "target",
            "members",
            "detector",
            "log_evidence",
            "threshold_log",
            "classification",
            "receipt",
        ],
        "properties": {
            "v": {"const": 1},
            "id": {"type": "string"},
            "state": {"enum": ["open", "resolved"]},
            "opened_ts": {"type": "number"},
            "window": {"type": "integer"},
            "scope": {"type": "string", "description": "shard, host, rack, cooling_zone, ... or fleet"},
            "target": {"type": "string"},
            "members": {"type": "array", "items": {"type": "string"}},
            "detector": {"type": "string", "description": "A, C, D, E or rule:<name>"},
            "metric": {"type": ["string", "null"]},
            "log_evidence": {"type": "number"},
            "threshold_log": {"type": "number"},
            "classification": {
                "enum": ["shard_fault", "common_mode", "fleet_event", "event_conditional", "hard_fault"]
            },
            "event_id": {"type": "string"},
            "resolved_ts": {"type": "number"},
            "resolved_window": {"type": "integer"},
            "receipt": {"type": "object", "description": "the evidence: windows, residuals, bets"},
        },
    },
    "ClusterEvent": {
        "type": "object",
        "description": "An announced change (contract 3); its scope's shards are frozen.",
        "required": ["v", "id", "kind", "ts"],
        "properties": {
            "v": {"const": 1},
            "id": {"type": "string", "description": "re-posting the same id is a duplicate"},
            "kind": {
                "enum": [
                    "firmware_push",
                    "driver_update",
                    "model_redeploy",
                    "config_change",
                    "env_change",
                    "capacity_change",
                    "chaos_experiment",
                    "maintenance",
                ]
            },
            "ts": {"type": "number", "description": "start, unix seconds"},
            "end_ts": {"type": "number", "description": "end of an interval event (>= ts)"},
            "scope": {
                "oneOf": [{"const": "fleet"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}],
                "description": '"fleet" (default) or topology node ids',
            },
        },
    },
}


def _path(route: web.AbstractRoute) -> str:
    info = route.resource.get_info() if route.resource is not None else {}
    return str(info.get("path") or info.get("formatter") or "")


def routes_of(app: web.Application) -> list[tuple[str, str]]:
    """(method, path) of every route ``app`` serves (HEAD, added beside each GET, left out)."""
    out = {(r.method.lower(), _path(r)) for r in app.router.routes() if r.method.upper() != "HEAD"}
    return sorted(out)


def openapi_document(app: web.Application) -> dict[str, Any]:
    paths: dict[str, dict[str, Any]] = {}
    for method, path in routes_of(app):
        op = OPERATIONS.get((method, path)) or {
            "summary": "undocumented",
            "x-undocumented": True,
            "responses": {"default": {"description": "-"}},
        }
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tessera-daemon",
            "version": __version__,
            "description": "HTTP API of this tessera-daemon process (run, agent or detector).",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def openapi_route() -> web.RouteDef:
    async def handler(request: web.Request) -> web.Response:
        return web.json_response(openapi_document(request.app))

    return web.get(OPENAPI_PATH, handler)


SERVED_BY: dict[str, str] = {
    "/v1/partitions": "detector",
    "/v1/agent": "agent",
    "/v1/firings": "run, detector",
    "/v1/shards/{shard_id}": "run, detector",
    "/v1/events": "run, detector",
    "/v1/tessera/deploy-events": "run, detector",
    **CONSOLE_SERVED_BY,
}


def full_document() -> dict[str, Any]:
    """Every documented operation (what `tessera-daemon openapi` prints): the union of the three processes."""
    paths: dict[str, dict[str, Any]] = {}
    for (method, path), op in OPERATIONS.items():
        paths.setdefault(path, {})[method] = op
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "tessera-daemon",
            "version": __version__,
            "description": "HTTP API of tessera-daemon: run, agent and detector (each serves a part; "
            "GET /v1/openapi.json of a process lists what it serves).",
        },
        "paths": paths,
        "components": {"schemas": SCHEMAS, "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}}},
    }


def _example_block(media: dict[str, Any]) -> list[str]:
    import json  # noqa: PLC0415

    example = media.get("example")
    if example is None:
        return []
    if isinstance(example, str):
        return ["```", example.rstrip("\n"), "```"]
    return ["```json", json.dumps(example, indent=2), "```"]


def markdown() -> str:
    """docs/api.md: every endpoint with its parameters, request and response examples."""
    lines = [
        "# HTTP API",
        "",
        "Generated by `tessera-daemon openapi --markdown` from the same table as `GET /v1/openapi.json`; do not",
        "edit by hand (`tessera-daemon openapi --markdown > docs/api.md`, checked by a test). Every process",
        "(`run`, `agent`, `detector`) serves `/metrics`, `/healthz`, `/readyz` and `/v1/openapi.json` on",
        "`http.host:http.port`; the other routes are marked with the processes that serve them. Bodies are JSON.",
        "",
    ]
    for (method, path), op in sorted(OPERATIONS.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        lines += [f"## {method.upper()} {path}", "", f"**{op['summary']}.** {op.get('description', '')}".rstrip(), ""]
        if path in SERVED_BY:
            lines += [f"Served by: {SERVED_BY[path]}.", ""]
        if op.get("security"):
            lines += ["Authorization: `Bearer <token>` when a token is configured.", ""]
        for p in op.get("parameters", []):
            schema = p.get("schema", {})
            extra = f", default {schema['default']}" if "default" in schema else ""
            choices = f", one of {', '.join(map(str, schema['enum']))}" if "enum" in schema else ""
            lines.append(f"- `{p['name']}` ({p['in']}{', required' if p.get('required') else ''}{choices}{extra})")
        if op.get("parameters"):
            lines.append("")
        body = op.get("requestBody", {}).get("content", {}).get(JSON)
        if body:
            lines += ["Request:", "", *_example_block(body), ""]
        for code, resp in op["responses"].items():
            lines.append(f"**{code}**: {resp['description']}")
            content = resp.get("content", {})
            media = next(iter(content.values()), None) if content else None
            block = _example_block(media) if media else []
            lines += ["", *block, ""] if block else [""]
    return "\n".join(lines).rstrip("\n") + "\n"
