"""OpenAPI entries of the daemon's own routes: schemas, and per (method, path) the description,
parameters and examples (the console's routes come from ``web/console_openapi.py``). ``web/openapi.py``
builds the documents and docs/api.md from this table.
"""

from __future__ import annotations

from typing import Any

from tessera_daemon.web.console_openapi import CONSOLE_OPERATIONS

OPENAPI_PATH = "/v1/openapi.json"
JSON = "application/json"
METRICS_TYPE = "text/plain; version=0.0.4; charset=utf-8"

ERROR_SCHEMA = {"type": "object", "properties": {"error": {"type": "string"}}, "required": ["error"]}
_FIRING_EXAMPLE: dict[str, Any] = {
    "v": 1,
    "id": "3f1c0d5e9a7b2c44",
    "state": "open",
    "opened_ts": 1765152000.0,
    "window": 412,
    "scope": "shard",
    "target": "z0-r01-h03-g5",
    "members": ["z0-r01-h03-g5"],
    "detector": "A",
    "metric": "power_w",
    "log_evidence": 21.4,
    "threshold_log": 19.46,
    "classification": "shard_fault",
    "receipt": {"windows": [401, 412], "residual_sigma": 3.2},
}
_EVENT_EXAMPLE: dict[str, Any] = {
    "v": 1,
    "id": "fw-2026-12-07-rack1",
    "kind": "firmware_push",
    "ts": 1765152000.0,
    "end_ts": 1765153800.0,
    "scope": ["z0-r01"],
}


def _json(description: str, example: Any, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    media: dict[str, Any] = {"example": example}
    if schema is not None:
        media["schema"] = schema
    return {"description": description, "content": {JSON: media}}


def _error(description: str, example: str) -> dict[str, Any]:
    return _json(description, {"error": example}, ERROR_SCHEMA)


_BEARER: list[dict[str, list[str]]] = [{"bearer": []}]

OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/metrics"): {
        "summary": "Prometheus metrics",
        "description": "Every series of docs/metrics.md, in the Prometheus text format.",
        "responses": {
            "200": {
                "description": "the exposition",
                "content": {
                    METRICS_TYPE: {
                        "example": "tessera_ready 1.0\n"
                        'tessera_build_info{python="3.11.7",'
                        'revision="unknown",version="0.1.0"} 1.0\n'
                    }
                },
            }
        },
    },
    ("get", "/healthz"): {
        "summary": "Liveness",
        "description": "200 while the main loop beats; 503 when it stalled (restart the process).",
        "responses": {
            "200": _json("alive", {"status": "ok", "heartbeat_age_s": 0.41, "uptime_s": 3600.2}),
            "503": _json("stalled", {"status": "stalled", "heartbeat_age_s": 42.0, "uptime_s": 3600.2}),
        },
    },
    ("get", "/readyz"): {
        "summary": "Readiness",
        "description": "200 when the process does its job; 503 with the reasons otherwise (warming up, a "
        "source never polled, Redis away, shutting down).",
        "responses": {
            "200": _json(
                "ready", {"ready": True, "reasons": [], "windows_processed": 812, "warm_fraction": 1.0, "sources": {}}
            ),
            "503": _json(
                "not ready",
                {
                    "ready": False,
                    "reasons": ["warming up: 12% of streams warm"],
                    "windows_processed": 20,
                    "warm_fraction": 0.12,
                    "sources": {},
                },
            ),
        },
    },
    ("get", "/v1/firings"): {
        "summary": "Firings",
        "description": "Open firings, then the recently resolved ones (newest first).",
        "parameters": [
            {
                "name": "state",
                "in": "query",
                "required": False,
                "schema": {"enum": ["open", "resolved", "all"], "default": "all"},
            }
        ],
        "responses": {
            "200": _json(
                "the firings",
                {"v": 1, "state": "open", "count": 1, "firings": [_FIRING_EXAMPLE]},
                {
                    "type": "object",
                    "properties": {
                        "v": {"const": 1},
                        "state": {"type": "string"},
                        "count": {"type": "integer"},
                        "firings": {"type": "array", "items": {"$ref": "#/components/schemas/Firing"}},
                    },
                },
            ),
            "400": {
                "description": "unknown state",
                "content": {"text/plain": {"example": "state must be one of open, resolved, all"}},
            },
        },
    },
    ("get", "/v1/shards/{shard_id}"): {
        "summary": "One shard",
        "description": "Its labels and groups, per-metric evidence, innovation and last value, and the open "
        "firings it belongs to.",
        "parameters": [
            {
                "name": "shard_id",
                "in": "path",
                "required": True,
                "schema": {"type": "string"},
                "example": "z0-r01-h03-g5",
            }
        ],
        "responses": {
            "200": _json(
                "the shard",
                {
                    "v": 1,
                    "shard": "z0-r01-h03-g5",
                    "window": 412,
                    "window_end_ts": 1765152060.0,
                    "labels": {"host": "z0-r01-h03", "rack": "z0-r01"},
                    "groups": {"rack": "z0-r01"},
                    "stale": False,
                    "threshold_log": 19.46,
                    "metrics": {"power_w": {"log_evidence": 21.4, "innovation_z": 3.1, "value": 402.5, "warm": True}},
                    "active_firings": [_FIRING_EXAMPLE],
                },
            ),
            "404": {"description": "unknown shard", "content": {"text/plain": {"example": "unknown shard 'x'"}}},
        },
    },
    ("post", "/v1/events"): {
        "summary": "Announce cluster events",
        "description": "One event or a list of them, all or nothing: every event is checked (scope node ids "
        "known, no conflicting re-use of an id) before any is added. The affected shards are "
        "frozen for the event's window. A detector worker makes the events durable in Redis "
        "first (503 while Redis is away: retry).",
        "security": _BEARER,
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "schema": {
                        "oneOf": [
                            {"$ref": "#/components/schemas/ClusterEvent"},
                            {"type": "array", "items": {"$ref": "#/components/schemas/ClusterEvent"}},
                        ]
                    },
                    "example": {
                        "v": 1,
                        "id": "driver-550-fleet",
                        "kind": "driver_update",
                        "ts": 1765152000.0,
                        "scope": "fleet",
                    },
                }
            },
        },
        "responses": {
            "202": _json(
                "accepted",
                {
                    "v": 1,
                    "accepted": ["driver-550-fleet"],
                    "affected_shards": 128,
                    "events": [
                        {
                            "id": "driver-550-fleet",
                            "status": "added",
                            "affected_shards": 128,
                            "freeze_start_ts": 1765152000.0,
                            "freeze_end_ts": 1765152900.0,
                        }
                    ],
                },
            ),
            "400": _error("invalid event", "event.kind: unknown kind 'reboot' (one of [...])"),
            "401": {"description": "events.api_token is set and the bearer token is missing or wrong"},
            "408": _error("body not received in time", "request body not received in time"),
            "413": _error("body over events.max_body_bytes", "request body exceeds 1048576 bytes"),
            "503": _error(
                "not ready, or (split mode) the event log is unavailable: retry", "event log unavailable, retry"
            ),
        },
    },
    ("get", "/v1/events"): {
        "summary": "Kept cluster events",
        "description": "The kept events, newest first, with their freeze windows and affected shard counts.",
        "parameters": [
            {
                "name": "limit",
                "in": "query",
                "required": False,
                "schema": {"type": "integer", "minimum": 1, "default": 100},
            }
        ],
        "responses": {
            "200": _json(
                "the events",
                {
                    "v": 1,
                    "now_ts": 1765152100.0,
                    "kept": 1,
                    "count": 1,
                    "events": [
                        {
                            **_EVENT_EXAMPLE,
                            "source": "api",
                            "freeze_start_ts": 1765152000.0,
                            "freeze_end_ts": 1765153920.0,
                            "affected_shards": 8,
                            "shards": ["z0-r01-h00-g0", "z0-r01-h00-g1"],
                            "frozen_now": True,
                        }
                    ],
                },
            ),
            "400": _error("bad limit", "limit must be a positive integer"),
            "503": _error("not ready", "event handling is not ready"),
        },
    },
    ("post", "/v1/tessera/deploy-events"): {
        "summary": "DeploySignal v1 inbound events",
        "description": "A DeploySignal DeployEventPayload in its v1 envelope, mapped to a cluster event (scope "
        "fleet unless metadata.scope lists node ids). Header x-ds-instance-id is required.",
        "security": _BEARER,
        "parameters": [{"name": "x-ds-instance-id", "in": "header", "required": True, "schema": {"type": "string"}}],
        "requestBody": {
            "required": True,
            "content": {
                JSON: {
                    "example": {
                        "contract_version": "v1",
                        "emitted_at_ts": 1765152001.0,
                        "event": {
                            "event_id": "ds-7781",
                            "event_class": "model_redeploy",
                            "event_ts": 1765152000.0,
                            "metadata": {"scope": "z0-r01,z0-r02"},
                        },
                    }
                }
            },
        },
        "responses": {
            "202": _json(
                "accepted",
                {
                    "contract_version": "v1",
                    "status": "accepted",
                    "freeze_hook_activated": True,
                    "freeze_hook_activated_at_ts": 1765152000.0,
                },
            ),
            "400": _json(
                "rejected",
                {"contract_version": "v1", "status": "rejected", "reason": "event.event_class: unknown class 'reboot'"},
            ),
            "401": {"description": "missing x-ds-instance-id, or missing / wrong bearer token"},
            "413": {"description": "body over events.max_body_bytes"},
            "503": {"description": "not ready, or (split mode) the event log is unavailable: retried by DeploySignal"},
        },
    },
    ("get", "/v1/partitions"): {
        "summary": "Partitions of this detector worker",
        "description": "The partitions (cohorts) this worker holds the lease of, with their stream positions.",
        "responses": {
            "200": _json(
                "the partitions",
                {
                    "v": 1,
                    "worker": "det-a-4711-9f2c",
                    "partitions": [
                        {
                            "partition": "job-0",
                            "cohort": "job-0",
                            "epoch": 3,
                            "committed_window": 411,
                            "position": "1765152055000-0",
                            "shards": 64,
                            "lag_entries": 0,
                            "pending_entries": 0,
                            "mode": "live",
                            "lease_valid": True,
                        }
                    ],
                },
            )
        },
    },
    ("get", "/v1/agent"): {
        "summary": "This agent",
        "description": "Its Redis link, circuit breaker, buffer and publication counters, and why it is not ready.",
        "responses": {
            "200": _json(
                "the agent",
                {
                    "v": 1,
                    "agent": "gpu-node-17",
                    "src": "gpu-node-17:4711",
                    "redis_up": True,
                    "breaker": "closed",
                    "reconnects": 0,
                    "buffered_frames": 0,
                    "dropped_frames": 0,
                    "published_frames": 288000,
                    "published_entries": 36000,
                    "unrouted_frames": 0,
                    "partitions": ["job-0"],
                    "ready_reasons": [],
                },
            )
        },
    },
    ("get", OPENAPI_PATH): {
        "summary": "This document",
        "description": "The OpenAPI document of the routes this process serves.",
        "responses": {"200": {"description": "OpenAPI 3.1", "content": {JSON: {}}}},
    },
}


OPERATIONS.update(CONSOLE_OPERATIONS)  # the web console's routes: web/console_openapi.py
OPERATIONS[("get", "/v1/shards/{shard_id}")]["description"] += (
    " The web console's fields: history (the last 60 windows per metric: value, cohort centre, baseline, a one "
    "sigma band and evidence, on the metric's own scale), warmup per metric, family_log_evidence, events that "
    "touched the shard, recent_firings, cohort and location."
)
