"""What the ops artefacts may refer to: the daemon's metric families and the shipped files."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]

RUNBOOK_BASE = "https://github.com/tessera-daemon/tessera-daemon/blob/main/docs/runbook.md#"
SEVERITIES = {"page", "ticket", "info"}

# The metric families tessera-daemon exports (the contract the rules and dashboards are written against).
COUNTERS = {
    "tessera_windows_processed_total",
    "tessera_frames_ingested_total",
    "tessera_frames_late_total",
    "tessera_frames_dropped_total",
    "tessera_samples_missing_total",
    "tessera_dead_letters_total",
    "tessera_source_polls_total",
    "tessera_firings_opened_total",
    "tessera_firings_resolved_total",
    "tessera_redis_reconnects_total",
    "tessera_checkpoints_total",
}
GAUGES = {
    "tessera_build_info",
    "tessera_ready",
    "tessera_window_index",
    "tessera_window_lag_seconds",
    "tessera_source_up",
    "tessera_source_last_success_timestamp_seconds",
    "tessera_shards",
    "tessera_threshold_log",
    "tessera_firings_active",
    "tessera_firing_active",
    "tessera_top_shard_evidence_log",
    "tessera_group_evidence_log",
    "tessera_transport_queued_frames",
    "tessera_redis_up",
    "tessera_stream_lag_entries",
    "tessera_stream_pending_entries",
    "tessera_breaker_open",
    "tessera_checkpoint_last_success_timestamp_seconds",
    "tessera_kernel_backend",
    "tessera_clock_skew_seconds",
}
HISTOGRAMS = {
    "tessera_window_duration_seconds",
    "tessera_source_poll_duration_seconds",
    "tessera_shard_evidence_log",
}
KNOWN_METRICS = (
    COUNTERS
    | GAUGES
    | {f"{h}_{suffix}" for h in HISTOGRAMS for suffix in ("bucket", "sum", "count")}
    # Prometheus' own and prometheus_client's standard process collector.
    | {"up", "process_resident_memory_bytes", "process_cpu_seconds_total"}
)

_METRIC = re.compile(r"\b(tessera_[a-z0-9_]+|process_[a-z0-9_]+)\b")


def metric_names(expr: str) -> set[str]:
    """tessera_* / process_* names referenced by a PromQL expression (label values are stripped first)."""
    without_strings = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    names = set(_METRIC.findall(without_strings))
    if re.search(r"\bup\b", without_strings):
        names.add("up")
    return names


def github_anchor(heading: str) -> str:
    """The anchor GitHub generates for a Markdown heading."""
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


def run(argv: list[str], cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run a tool, capture its text output, never raise on a non-zero exit (tests assert on it)."""
    return subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, cwd=cwd)
