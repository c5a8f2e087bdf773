"""Settings of cluster-event handling: the ``[events]`` table.

``[events]`` holds the freeze hook (per-kind freeze windows, settle margin, history bound), the bearer
token of ``POST /v1/events`` (required unless ``allow_unauthenticated`` on a loopback bind), the age
and rate bounds of accepted events; ``[events.windows]`` the per-kind windows;
``[events.deploysignal]`` the DeploySignal contract v1 (the inbound ``/v1/tessera/deploy-events``
route and the outbound verdict-group feed). A token may be given inline or as a file path (the
file is re-read when it changes, so a rotated Kubernetes secret needs no restart); not both.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field

from tessera_daemon.errors import ConfigError
from tessera_daemon.settings import setting

MIB = 1024 * 1024
WEEK_S = 7 * 86_400.0


def _one_token(path: str, token: str, token_file: str) -> None:
    if token and token_file:
        raise ConfigError(path, "set the token inline or as a file, not both")


@dataclass(frozen=True, slots=True)
class FreezeWindows:
    """How long an event without ``end_ts`` freezes its shards, per kind (from the event's ``ts``)."""

    firmware_push_s: float = setting(1800.0, lo=0.0, hi=WEEK_S, doc="firmware push: clocks and power move")
    driver_update_s: float = setting(1800.0, lo=0.0, hi=WEEK_S, doc="driver update")
    model_redeploy_s: float = setting(600.0, lo=0.0, hi=WEEK_S, doc="model redeploy: step times move")
    config_change_s: float = setting(300.0, lo=0.0, hi=WEEK_S, doc="configuration change")
    env_change_s: float = setting(600.0, lo=0.0, hi=WEEK_S, doc="environment change (libraries, images)")
    capacity_change_s: float = setting(300.0, lo=0.0, hi=WEEK_S, doc="capacity change (nodes in or out)")
    chaos_experiment_s: float = setting(900.0, lo=0.0, hi=WEEK_S, doc="chaos experiment without end_ts")
    maintenance_s: float = setting(3600.0, lo=0.0, hi=WEEK_S, doc="maintenance without end_ts")

    def for_kind(self, kind: str) -> float:
        value: float = getattr(self, f"{kind}_s")
        return value


@dataclass(frozen=True, slots=True)
class DeploySignalSettings:
    """DeploySignal contract v1: events in (``POST /v1/tessera/deploy-events``), verdict groups out."""

    enabled: bool = setting(True, doc="serve POST /v1/tessera/deploy-events")
    token: str = setting(
        "",
        doc="bearer token DeploySignal must present; empty (and no file): refused unless events.allow_unauthenticated",
    )
    token_file: str = setting("", doc="file holding the inbound bearer token (re-read when it changes)")
    ds_url: str = setting("", doc="DeploySignal base URL for the verdict-group feed; empty: feed off")
    instance_id: str = setting("", doc="x-tessera-instance-id sent to DeploySignal; empty: daemon.cluster")
    feed_token: str = setting("", doc="bearer token sent to DeploySignal with verdict groups")
    feed_token_file: str = setting("", doc="file holding the outbound bearer token (re-read when it changes)")
    feed_timeout_s: float = setting(5.0, lo=0.05, hi=300.0, doc="timeout of one feed request")
    feed_max_attempts: int = setting(6, lo=1, hi=100, doc="attempts per verdict group (first try included)")
    feed_backoff_base_s: float = setting(0.5, lo=0.0, hi=600.0, doc="first retry ceiling (full jitter)")
    feed_backoff_cap_s: float = setting(30.0, lo=0.0, hi=3600.0, doc="largest retry delay")
    feed_queue: int = setting(1000, lo=1, hi=1_000_000, doc="verdict groups waiting to be sent; more are dropped")
    feed_close_deadline_s: float = setting(5.0, lo=0.0, hi=300.0, doc="time allowed to flush the feed at shutdown")

    def __post_init__(self) -> None:
        _one_token("events.deploysignal.token", self.token, self.token_file)
        _one_token("events.deploysignal.feed_token", self.feed_token, self.feed_token_file)
        if self.feed_backoff_cap_s < self.feed_backoff_base_s:
            raise ConfigError("events.deploysignal.feed_backoff_cap_s", "must be >= feed_backoff_base_s")


@dataclass(frozen=True, slots=True)
class EventsConfig:
    enabled: bool = setting(True, doc="accept cluster events and apply the freeze hook")
    settle_s: float = setting(
        120.0, lo=0.0, hi=WEEK_S, doc="an interval event (end_ts set) freezes until end_ts plus this margin"
    )
    history: int = setting(1000, lo=1, hi=1_000_000, doc="events kept (for freezes, attribution and GET /v1/events)")
    max_body_bytes: int = setting(MIB, lo=1024, hi=64 * MIB, doc="largest event request body; larger: 413")
    api_token: str = setting(
        "",
        doc="bearer token required by POST /v1/events; empty (and no file): POST is "
        "refused unless allow_unauthenticated",
    )
    api_token_file: str = setting("", doc="file holding the POST /v1/events bearer token")
    allow_unauthenticated: bool = setting(
        False,
        doc="serve the event POST routes without a token where none is set (only on a loopback http.host; "
        "logged as a warning at start)",
    )
    max_age_s: float = setting(
        86_400.0,
        lo=1.0,
        hi=1e10,
        doc="refuse (400) events whose window ended (end_ts, else ts) longer ago than this, in event time "
        "(the last window's end; the wall clock before the first window)",
    )
    max_ahead_s: float = setting(
        WEEK_S,
        lo=1.0,
        hi=1e10,
        doc="refuse (400) events that start further ahead than this, in event time",
    )
    relearns_per_hour: int = setting(
        30,
        lo=1,
        hi=1_000_000,
        doc="events accepted per scope (the same node set) per hour, each of which makes its shards re-learn; "
        "more: 429",
    )
    windows: FreezeWindows = field(default_factory=FreezeWindows)
    deploysignal: DeploySignalSettings = field(default_factory=DeploySignalSettings)

    def __post_init__(self) -> None:
        _one_token("events.api_token", self.api_token, self.api_token_file)


class Secret:
    """A token given inline or as a file; the file is re-read when it changes (mtime or size).

    ``Secret("", "")`` is "not configured" (:attr:`configured` false, :meth:`get` returns "").
    A configured file that cannot be read or is empty raises :class:`ConfigError` at construction
    (fail at start-up, not at the first request); later read failures keep the last good value.
    """

    def __init__(self, inline: str, path: str, *, setting_name: str) -> None:
        self._inline = inline.strip()
        self._path = path
        self._name = setting_name
        self._stamp: tuple[int, int] | None = None
        self._value = self._inline
        if path:
            self._value = self._read(strict=True)

    @property
    def configured(self) -> bool:
        return bool(self._inline or self._path)

    def _read(self, *, strict: bool) -> str:
        try:
            st = os.stat(self._path)
            stamp = (st.st_mtime_ns, st.st_size)
            if stamp == self._stamp:
                return self._value
            with open(self._path, encoding="utf-8") as fh:
                value = fh.read().strip()
        except OSError as exc:
            if strict:
                raise ConfigError(self._name, f"cannot read token file {self._path}: {exc}") from exc
            return self._value
        if not value:
            if strict:
                raise ConfigError(self._name, f"token file {self._path} is empty")
            return self._value
        self._stamp = stamp
        return value

    def get(self) -> str:
        if self._path:
            self._value = self._read(strict=False)
        return self._value
