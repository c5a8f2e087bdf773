"""The monitoring stack as test helpers: real Prometheus and Alertmanager on free loopback ports, a local
PagerDuty Events API v2 receiver, a static exporter, and rewrites of the shipped configs for drills.

The implementation lives in the package (:mod:`tessera_daemon.testing`, used by ``tessera-daemon drill``);
this module re-exports it for the tests, the only difference being that the servers *skip* the test when
their binary is missing (the package raises ``MissingBinaryError`` instead)::

    from tests.ops.stack import (PagerDutyReceiver, alertmanager_server, drill_alert_rules,
                                 drill_alertmanager_config, prometheus_server)

    with PagerDutyReceiver() as pd:
        key = pd.write_routing_key(tmp_path)
        am_cfg = drill_alertmanager_config(pd.enqueue_url, key, ticket_url=pd.ticket_url)
        rules = [drill_alert_rules(tmp_path)]
        with alertmanager_server(tmp_path, am_cfg) as am_url, \\
             prometheus_server(tmp_path, ["127.0.0.1:9477"], rules, am_url) as prom_url:
            event = pd.wait_for(lambda e: e["event_action"] == "trigger", 60)
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from tessera_daemon import testing
from tessera_daemon.testing import (
    ALERT_RULES,
    ALERTMANAGER_YML,
    JSON,
    ROOT,
    PagerDutyReceiver,
    StaticExporter,
    drill_alert_rules,
    drill_alertmanager_config,
    http_json,
    promql,
    wait_until,
)
from tessera_daemon.testing import seconds as _seconds
from tests.servers import find_exe

__all__ = [
    "ALERTMANAGER_YML",
    "ALERT_RULES",
    "JSON",
    "ROOT",
    "PagerDutyReceiver",
    "StaticExporter",
    "_seconds",
    "alertmanager_server",
    "drill_alert_rules",
    "drill_alertmanager_config",
    "http_json",
    "prometheus_server",
    "promql",
    "wait_until",
]

P = ParamSpec("P")
T = TypeVar("T")


def _skip_without(*exes: str) -> Callable[[Callable[P, T]], Callable[P, T]]:
    """Skip the calling test (tests.servers.find_exe) when none of ``exes`` is installed."""

    def wrap(fn: Callable[P, T]) -> Callable[P, T]:
        @functools.wraps(fn)
        def call(*args: P.args, **kwargs: P.kwargs) -> T:
            find_exe(*exes)
            return fn(*args, **kwargs)

        return call

    return wrap


prometheus_server = _skip_without("prometheus")(testing.prometheus_server)
alertmanager_server = _skip_without("prometheus-alertmanager", "alertmanager")(testing.alertmanager_server)
