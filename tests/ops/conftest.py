"""Fixtures of the operations tests (tests/ops), reusable by the end-to-end drill.

The context managers live in :mod:`tests.ops.stack` (importable from anywhere) and are re-exported here:

* ``prometheus_server(tmp_path, scrape_targets, rule_files, alertmanager_url=None, ...)`` -> base URL
* ``alertmanager_server(tmp_path, config_text)`` -> base URL
* ``PagerDutyReceiver`` (Events API v2 stand-in, records ``POST /v2/enqueue``), ``StaticExporter``
* ``drill_alertmanager_config(pagerduty_url, routing_key_file, ticket_url=...)``: the shipped
  deploy/alertmanager/alertmanager.yml pointed at the local receiver, timers shortened
* ``drill_alert_rules(tmp_path, max_for="0s")``: alert_rules.yml with ``for:`` capped for a drill
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.ops.stack import (
    PagerDutyReceiver,
    StaticExporter,
    alertmanager_server,
    drill_alert_rules,
    drill_alertmanager_config,
    prometheus_server,
)

__all__ = [
    "PagerDutyReceiver",
    "StaticExporter",
    "alertmanager_server",
    "drill_alert_rules",
    "drill_alertmanager_config",
    "prometheus_server",
]


@pytest.fixture
def pagerduty_receiver() -> Iterator[PagerDutyReceiver]:
    """A running local PagerDuty Events API v2 receiver (``.enqueue_url``, ``.events``, ``.wait_for``)."""
    with PagerDutyReceiver() as receiver:
        yield receiver


@pytest.fixture
def drill_alertmanager(tmp_path: Path, pagerduty_receiver: PagerDutyReceiver) -> Iterator[str]:
    """The shipped Alertmanager config, running, notifying ``pagerduty_receiver``; yields its base URL."""
    key = PagerDutyReceiver.write_routing_key(tmp_path)
    text = drill_alertmanager_config(pagerduty_receiver.enqueue_url, key, ticket_url=pagerduty_receiver.ticket_url)
    with alertmanager_server(tmp_path, text) as url:
        yield url


@pytest.fixture(scope="session")
def empty_prometheus(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real Prometheus with nothing to scrape and no rules: a PromQL parser/evaluator for the session."""
    with prometheus_server(tmp_path_factory.mktemp("promql")) as url:
        yield url
