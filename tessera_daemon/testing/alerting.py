"""The shipped alerting configs, rewritten for a drill: Alertmanager pointed at local receivers, rules
evaluated every second with their ``for:`` capped."""

from __future__ import annotations

import re
from collections.abc import Collection
from pathlib import Path

from tessera_daemon.shipped import PACKAGE_ASSETS, shipped_file
from tessera_daemon.testing.servers import JSON, _yaml


def _located(relative: str) -> Path:
    try:
        return shipped_file(relative)
    except FileNotFoundError:  # reported when used: shipped_file names every place it looked
        return PACKAGE_ASSETS / relative


ALERT_RULES = _located("alert_rules.yml")
ALERTMANAGER_YML = _located("deploy/alertmanager/alertmanager.yml")

# ------------------------------------------------------------------------------------------ config rewrites


def drill_alertmanager_config(
    pagerduty_url: str,
    routing_key_file: Path,
    *,
    ticket_url: str | None = None,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    source: Path = ALERTMANAGER_YML,
) -> str:
    """deploy/alertmanager/alertmanager.yml with every PagerDuty ``url:`` pointed at ``pagerduty_url``
    (e.g. ``PagerDutyReceiver.enqueue_url``), ``routing_key_file`` replaced, the ticket webhooks pointed at
    ``ticket_url`` (when given) and the routing tree's timers shortened for a drill. Routes, receivers,
    templates and inhibitions stay as shipped."""
    yaml = _yaml()
    cfg = yaml.safe_load(source.read_text())
    for receiver in cfg.get("receivers", []):
        for pd in receiver.get("pagerduty_configs", []):
            pd["url"] = pagerduty_url
            pd.pop("routing_key", None)
            pd["routing_key_file"] = str(routing_key_file)
        if ticket_url is not None:
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = ticket_url

    def shorten(route: JSON) -> None:
        route["group_wait"], route["group_interval"], route["repeat_interval"] = (
            group_wait,
            group_interval,
            repeat_interval,
        )
        for child in route.get("routes", []):
            shorten(child)

    shorten(cfg["route"])
    return str(yaml.safe_dump(cfg, sort_keys=False, width=1000))


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    """A Prometheus duration (``1m30s``, ``500ms``) in seconds."""
    return sum(int(n) * _UNIT_S[u] for n, u in _DURATION.findall(duration))


def drill_alert_rules(
    tmp_path: Path,
    *,
    max_for: str = "0s",
    interval: str = "1s",
    source: Path = ALERT_RULES,
    groups: Collection[str] | None = None,
) -> Path:
    """A copy of alert_rules.yml in ``tmp_path`` with every group evaluated each ``interval`` and every
    ``for:`` capped at ``max_for`` (only in the rule groups named in ``groups``; None: all of them), so a
    drill does not wait minutes; expressions, labels and annotations are unchanged."""
    yaml = _yaml()
    cfg = yaml.safe_load(source.read_text())
    cap = seconds(max_for)
    for group in cfg["groups"]:
        group["interval"] = interval
        if groups is not None and group["name"] not in groups:
            continue
        for rule in group["rules"]:
            if "for" in rule and seconds(rule["for"]) > cap:
                rule["for"] = max_for
    out = tmp_path / "alert_rules.drill.yml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False, width=1000))
    return out
