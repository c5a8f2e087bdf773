"""Settings of the substrate sources: the ``[sources]`` table and one sub-table per source."""

from __future__ import annotations

from dataclasses import dataclass

from tessera_daemon.schema import setting


@dataclass(frozen=True, slots=True)
class SourcesConfig:
    enabled: tuple[str, ...] = setting((), doc="sources to run; empty: the built-in simulator")
    poll_interval_s: float = setting(1.0, lo=0.01, hi=3600.0)
    timeout_s: float = setting(2.0, lo=0.01, hi=600.0, doc="per-poll timeout of each source")
    stale_after_s: float = setting(30.0, lo=0.1, hi=86_400.0, doc="a source with no success this long is stale")
    topology_refresh_s: float = setting(60.0, lo=1.0, hi=86_400.0, doc="how often topology is re-read")
