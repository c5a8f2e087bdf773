"""OpenAPI entries of the web console's routes (``web/console_api.py``), merged into ``web/openapi.py``.

The examples are real answers of ``tessera-daemon demo straggler`` on a small simulated cluster (8
shards), shortened. docs/console.md explains the views; docs/api.md is generated from this table.
"""

from __future__ import annotations

from typing import Any

JSON = "application/json"
_TS = 1796687845.0
_INCIDENT: dict[str, Any] = {
    "id": "0812973ea16e98ff",
    "state": "open",
    "alert": "TesseraShardFault",
    "severity": "page",
    "classification": "shard_fault",
    "scope": "shard",
    "target": "z0-r00-h01-g0",
    "location": {"zone": "z0", "rack": "z0-r00", "host": "z0-r00-h01"},
    "detector": "A",
    "metric": "step_time_ms",
    "opened_ts": _TS - 40,
    "resolved_ts": None,
    "change_start_ts": _TS - 190,
    "direction": "up",
    "log_evidence": 28.41,
    "evidence_now": 28.41,
    "threshold_log": 16.75,
    "members": 1,
    "members_sample": ["z0-r00-h01-g0"],
    "event_id": None,
    "group": None,
    "runbook": "https://github.com/tessera-daemon/tessera-daemon/blob/main/docs/runbook.md#tesserashardfault",
}
_FIRING_ID = {
    "name": "firing_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
    "example": "0812973ea16e98ff",
}


def _json(description: str, example: Any) -> dict[str, Any]:
    return {"description": description, "content": {JSON: {"example": example}}}


def _text(description: str, example: str, media: str = "text/plain") -> dict[str, Any]:
    return {"description": description, "content": {media: {"example": example}}}


_NOT_FOUND = _text("no active or recently resolved firing with this id", "no active or recent firing 'x'")

CONSOLE_OPERATIONS: dict[tuple[str, str], dict[str, Any]] = {
    ("get", "/"): {
        "summary": "The web console",
        "description": "A read-only page (vanilla JS and canvas, shipped in the package; its Content-Security-"
        "Policy allows nothing but this daemon): fleet map, incidents, shard pages, events, "
        "sources and warm-up, live over /v1/stream. docs/console.md.",
        "responses": {"200": _text("the page", "<!doctype html>...", "text/html")},
    },
    ("get", "/static/{name}"): {
        "summary": "The console's script and style",
        "description": "console.js and console.css (nothing else is served from here).",
        "parameters": [
            {"name": "name", "in": "path", "required": True, "schema": {"enum": ["console.js", "console.css"]}}
        ],
        "responses": {
            "200": _text("the file", "/* tessera-daemon web console ... */", "text/javascript"),
            "404": _text("any other name", "no asset 'x'"),
        },
    },
    ("get", "/v1/topology"): {
        "summary": "The fleet map's layout",
        "description": "The shards in the order every per-shard array of the console API uses, and their "
        "arrangement: cooling zones > racks > hosts (with the host's PSU and NVLink domain) > "
        'shard indices. A shard without a rack or zone is placed under "-". key changes when '
        "the shard set or its placement changes. Serialised and gzip-compressed once per topology.",
        "responses": {
            "200": _json(
                "the layout",
                {
                    "v": 1,
                    "key": "6013f8b0211958ca",
                    "shards": ["z0-r00-h00-g0", "z0-r00-h00-g1", "z0-r00-h01-g0", "z0-r00-h01-g1"],
                    "zones": [
                        {
                            "id": "z0",
                            "racks": [
                                {
                                    "id": "z0-r00",
                                    "hosts": [
                                        {
                                            "id": "z0-r00-h00",
                                            "psu": "z0-r00-psu-a",
                                            "nvlink_domain": "z0-r00-h00-nvl",
                                            "shards": [0, 1],
                                        },
                                        {
                                            "id": "z0-r00-h01",
                                            "psu": "z0-r00-psu-b",
                                            "nvlink_domain": "z0-r00-h01-nvl",
                                            "shards": [2, 3],
                                        },
                                    ],
                                }
                            ],
                        }
                    ],
                    "counts": {
                        "fleet": 1,
                        "cohort": 1,
                        "cooling_zone": 1,
                        "rack": 1,
                        "psu": 2,
                        "host": 2,
                        "nvlink_domain": 2,
                        "shard": 4,
                    },
                    "cohorts": ["job-0"],
                },
            )
        },
    },
    ("get", "/v1/fleet"): {
        "summary": "State of every shard, per metric and detector",
        "description": "For each selector a string with one digit per shard (in /v1/topology order): 0 warming, "
        "1 healthy, 2 evidence building (log-evidence >= building_fraction x threshold), 3 firing "
        "(member of an active firing of that metric or detector; a rule firing counts for all), "
        "4 frozen by an announced event, 5 stale or lost, 6 no data this window. Selectors: any "
        "(the worst: firing, stale, frozen, building, no data, warming, healthy), each metric "
        "(Family A), and C, D, E (D: the largest over its metrics; a split-mode worker holds no "
        "family state, so there they show warm-up and firings only). 10k shards x 11 selectors "
        "are 110 KB of JSON, about 1 KB compressed.",
        "responses": {
            "200": _json(
                "the codes",
                {
                    "v": 1,
                    "window": 359337568,
                    "end_ts": _TS,
                    "topology_key": "6013f8b0211958ca",
                    "count": 4,
                    "states": [
                        "warming",
                        "healthy",
                        "evidence building",
                        "firing",
                        "frozen by event",
                        "stale or lost",
                        "no data",
                    ],
                    "selectors": ["any", "power_w", "step_time_ms", "C", "D", "E"],
                    "building_fraction": 0.3,
                    "codes": {
                        "any": "1131",
                        "power_w": "1111",
                        "step_time_ms": "1131",
                        "C": "1121",
                        "D": "1111",
                        "E": "1111",
                    },
                },
            )
        },
    },
    ("get", "/v1/summary"): {
        "summary": "The daemon at a glance",
        "description": "Windows, lag (as tessera_window_lag_seconds), threshold, readiness; warm-up: the readiness "
        "fraction, and eta_s, the time until every stream still learning has its baseline (at most "
        "windows_left_at_most windows at the observed pace of event time, sooner when the "
        "fraction's rise says so; null until it can be estimated); sources with up/down, last "
        "poll and errors; frames, late and dropped frames, dead letters; active incidents by "
        "severity and classification; the 50 latest events with their freeze windows; on the "
        'simulator the scenario with its faults. A detector worker adds mode "detector" and '
        "split: its worker id, partitions (as /v1/partitions) and live peers (ids: the worker "
        "registry holds no addresses).",
        "responses": {
            "200": _json(
                "the summary",
                {
                    "v": 1,
                    "version": "0.1.0",
                    "mode": "run",
                    "now": _TS - 505,
                    "started_ts": _TS - 517,
                    "window": 359337568,
                    "window_end_ts": _TS,
                    "window_length_s": 5.0,
                    "windows_processed": 104,
                    "lag_s": 0.474,
                    "threshold_log": 16.7512,
                    "resolve_fraction": 0.5,
                    "shards": 4,
                    "metrics": ["power_w", "step_time_ms"],
                    "selectors": ["any", "power_w", "step_time_ms", "C", "D", "E"],
                    "ready": True,
                    "not_ready": [],
                    "warmup": {
                        "fraction": 1.0,
                        "ready_fraction": 0.8,
                        "learning_streams": 0,
                        "windows_left_at_most": 0,
                        "eta_s": 0.0,
                        "done": True,
                    },
                    "sources": [
                        {
                            "name": "synthetic",
                            "up": True,
                            "last_success_ts": _TS - 506,
                            "last_error": "",
                            "polls": {"success": 12, "error": 0, "timeout": 0},
                            "frames": 4168,
                        }
                    ],
                    "frames": 4168,
                    "late_frames": 0,
                    "dropped_frames": 0,
                    "dead_letters": 0,
                    "incidents": {"active": 1, "by_severity": {"page": 1}, "by_classification": {"shard_fault": 1}},
                    "events": [],
                    "frozen_shards": 0,
                    "scenario": {
                        "name": "straggler",
                        "injects": "one shard's step_time_ms steps up 4 sigma (log scale) at tick 400",
                        "expect": "A shard_fault on step_time_ms for the slow shard within a few windows of the step.",
                        "faults": [
                            {
                                "kind": "straggler",
                                "scope": "shard",
                                "target": "z0-r00-h01-g0",
                                "metric": "step_time_ms",
                                "start_ts": _TS - 118,
                                "end_ts": None,
                                "event_id": None,
                            }
                        ],
                    },
                },
            )
        },
    },
    ("get", "/v1/incidents"): {
        "summary": "Incidents, grouped as the alert rules group them",
        "description": "Active firings, then the 40 latest resolved, grouped by the alert rule of alert_rules.yml "
        "that fires on them (groups with active firings first, then page, ticket, info). A shard's "
        'own firing inside a common-mode incident matches no rule: it is grouped as "common-mode '
        "members (not paged)\", group naming its incident's node. log_evidence is the peak, "
        "evidence_now the current value; change_start_ts the receipt's change window (else the "
        "opening window's start).",
        "responses": {
            "200": _json(
                "the incidents",
                {
                    "v": 1,
                    "window": 359337568,
                    "active": 1,
                    "groups": [
                        {
                            "alert": "TesseraShardFault",
                            "severity": "page",
                            "runbook": _INCIDENT["runbook"],
                            "active": 1,
                            "firings": [_INCIDENT],
                        }
                    ],
                },
            )
        },
    },
    ("get", "/v1/firings/{firing_id}"): {
        "summary": "One firing",
        "description": "An active or recently resolved firing, the same object as in /v1/firings (contract 4).",
        "parameters": [_FIRING_ID],
        "responses": {
            "200": _json(
                "the firing",
                {
                    "v": 1,
                    "id": "0812973ea16e98ff",
                    "state": "open",
                    "opened_ts": _TS - 40,
                    "window": 359337561,
                    "scope": "shard",
                    "target": "z0-r00-h01-g0",
                    "members": ["z0-r00-h01-g0"],
                    "detector": "A",
                    "metric": "step_time_ms",
                    "log_evidence": 28.41,
                    "threshold_log": 16.75,
                    "classification": "shard_fault",
                    "receipt": {"change_window": 359337531, "direction": "up"},
                },
            ),
            "404": _NOT_FOUND,
        },
    },
    ("get", "/v1/firings/{firing_id}/evidence"): {
        "summary": "Why a firing fired",
        "description": "The log-evidence of the statistic that opened it, one point per window (up to 720; the "
        "shard stream, the pooled group detector, the log mean of the members' e-values for a "
        "co-firing common mode, or the family's own evidence; a rule is drawn at its threshold), "
        "seeded when it opens with the windows the history holds, so the climb to the crossing "
        "shows; the resolve level; for an open firing on a metric, up to 12 members (highest "
        "evidence first) against the cohort centre, each member's baseline (centre plus its learnt "
        "offset, current value) and the material margin around it, on the metric's own scale; and "
        "the receipt.",
        "parameters": [_FIRING_ID],
        "responses": {
            "200": _json(
                "the evidence",
                {
                    "v": 1,
                    "incident": _INCIDENT,
                    "evidence": {
                        "window": [359337558, 359337559, 359337560, 359337561],
                        "ts": [_TS - 50, _TS - 45, _TS - 40, _TS - 35],
                        "log_evidence": [9.8, 13.1, 17.2, 21.0],
                        "threshold_log": 16.75,
                    },
                    "resolve_below_log": 8.38,
                    "members_history": {
                        "metric": "step_time_ms",
                        "ts": [_TS - 10, _TS - 5],
                        "cohort": "job-0",
                        "cohort_centre": [351.2, 350.8],
                        "members_total": 1,
                        "delta_min_sigma": 0.1,
                        "members": [
                            {
                                "shard": "z0-r00-h01-g0",
                                "value": [402.7, 398.1],
                                "baseline": [352.0, 351.6],
                                "margin_low": [351.0, 350.6],
                                "margin_high": [353.0, 352.6],
                            }
                        ],
                    },
                    "receipt": {"change_window": 359337531, "direction": "up"},
                },
            ),
            "404": _NOT_FOUND,
        },
    },
    ("get", "/v1/scenarios"): {
        "summary": "The simulator's scenarios",
        "description": "What each scenario injects and what the daemon should find (tessera-daemon demo "
        "SCENARIO runs one); current: the running one, null with real sources.",
        "responses": {
            "200": _json(
                "the scenarios",
                {
                    "v": 1,
                    "current": None,
                    "scenarios": [
                        {
                            "name": "straggler",
                            "injects": "one shard's step_time_ms steps up 4 sigma (log scale) at tick 400",
                            "expect": "A shard_fault on step_time_ms for the slow shard within a few windows of "
                            "the step.",
                            "faults": ["straggler"],
                            "command": "tessera-daemon demo straggler",
                        }
                    ],
                },
            )
        },
    },
    ("get", "/v1/stream"): {
        "summary": "Live updates (Server-Sent Events)",
        "description": "event: hello on connect; then one event: window per batch of windows: fleet (per selector "
        "the changed cells as [index, code, ...]) or fleet_full (over 4,096 changed cells: refetch "
        "/v1/fleet), incidents_changed (refetch /v1/incidents), evidence (current log-evidence of "
        "every active firing), summary (as /v1/summary), sent_ms (when the daemon recorded the "
        "window). event: resync when this client fell 32 events behind (refetch everything; a slow "
        "client is never waited for); a comment every 15 s keeps proxies from closing it.",
        "responses": {
            "200": _text(
                "the stream",
                'event: window\ndata: {"window":359337576,"end_ts":1796687885.0,'
                '"fleet":{"step_time_ms":[2,3],"any":[2,3]},'
                '"incidents_changed":false,"evidence":{"0812973ea16e98ff":34.6},'
                '"summary":{"v":1}}\n',
                "text/event-stream",
            )
        },
    },
}

CONSOLE_SERVED_BY = {path: "run, detector" for _method, path in CONSOLE_OPERATIONS}
