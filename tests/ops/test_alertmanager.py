"""deploy/alertmanager/alertmanager.yml: amtool check-config, routing per severity, inhibition on a live
Alertmanager, and a Prometheus -> Alertmanager -> PagerDuty (Events API v2) run with the shipped rules."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.catalog import run
from tests.ops.stack import (
    ALERTMANAGER_YML,
    PagerDutyReceiver,
    StaticExporter,
    drill_alert_rules,
    http_json,
    prometheus_server,
    wait_until,
)
from tests.servers import find_exe

CONFIG = yaml.safe_load(ALERTMANAGER_YML.read_text())


def _amtool(*args: str) -> Any:
    return run([find_exe("amtool"), *args])


@pytest.mark.prometheus
def test_amtool_check_config() -> None:
    out = _amtool("check-config", str(ALERTMANAGER_YML))
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout


@pytest.mark.prometheus
@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        (["severity=page", "alertname=TesseraShardFault", "rack=r01"], "pagerduty"),
        (["severity=page", "alertname=TesseraHardFault"], "pagerduty"),
        (["severity=ticket", "alertname=TesseraFleetEvent"], "tessera-ticket"),
        (["severity=info", "alertname=TesseraEventConditional"], "null"),
        (["alertname=SomethingWithoutSeverity"], "tessera-ticket"),
    ],
)
def test_routes_by_severity(labels: list[str], receiver: str) -> None:
    out = _amtool(
        "config", "routes", "test", f"--config.file={ALERTMANAGER_YML}", f"--verify.receivers={receiver}", *labels
    )
    assert out.returncode == 0, out.stdout + out.stderr
    assert out.stdout.strip() == receiver


def test_pagerduty_receiver_uses_events_api_v2_with_a_key_file() -> None:
    receivers = {r["name"]: r for r in CONFIG["receivers"]}
    (pd,) = receivers["pagerduty"]["pagerduty_configs"]
    assert pd["routing_key_file"] == "/etc/alertmanager/pagerduty.key"
    assert "routing_key" not in pd
    assert "service_key" not in pd
    assert pd["url"] == "https://events.pagerduty.com/v2/enqueue"
    assert pd["send_resolved"] is True
    assert CONFIG["route"]["group_by"] == ["alertname", "cluster", "rack"]
    assert set(receivers) == {"pagerduty", "tessera-ticket", "null"}


def test_shard_alerts_are_inhibited_by_their_racks_common_mode_alert() -> None:
    rules = [r for r in CONFIG["inhibit_rules"] if 'alertname="TesseraShardFault"' in r["target_matchers"]]
    rack = [r for r in rules if "rack" in r["equal"]]
    assert rack, "no inhibition of shard alerts by the rack's common-mode alert"
    assert 'alertname="TesseraCommonModeRack"' in rack[0]["source_matchers"]


def _alert(name: str, **labels: str) -> dict[str, Any]:
    now = dt.datetime.now(dt.UTC)
    return {
        "labels": {"alertname": name, "cluster": "c1"} | labels,
        "annotations": {"summary": name},
        "startsAt": now.isoformat(),
        "endsAt": (now + dt.timedelta(minutes=10)).isoformat(),
    }


@pytest.mark.prometheus
def test_inhibition_on_a_live_alertmanager(drill_alertmanager: str) -> None:
    rack, shard, zone = "TesseraCommonModeRack", "TesseraShardFault", "TesseraCommonModeZone"
    alerts = [
        _alert(rack, severity="page", scope="rack", target="r01", rack="r01"),
        _alert(shard, severity="page", target="g-r01-1", host="r01-h1", rack="r01"),
        _alert(shard, severity="page", target="g-r02-1", host="r02-h1", rack="r02"),
        _alert(rack, severity="page", scope="host", target="r03-h2", host="r03-h2", rack="r03"),
        _alert(shard, severity="page", target="g-r03-h2-1", host="r03-h2", rack="r03"),
        _alert(shard, severity="page", target="g-r03-h5-1", host="r03-h5", rack="r03"),
        _alert(zone, severity="page", scope="cooling_zone", target="z9", cooling_zone="z9"),
        _alert(rack, severity="page", scope="rack", target="r90", rack="r90", cooling_zone="z9"),
        # Another cluster's rack r01 must not be inhibited by c1's rack r01.
        _alert(shard, cluster="c2", severity="page", target="g-x", rack="r01"),
    ]
    http_json(f"{drill_alertmanager}/api/v2/alerts", alerts)

    def states() -> dict[tuple[str, str, str], str] | None:
        got = http_json(f"{drill_alertmanager}/api/v2/alerts")
        if len(got) < len(alerts):
            return None
        return {
            (a["labels"]["alertname"], a["labels"]["cluster"], a["labels"]["target"]): a["status"]["state"] for a in got
        }

    state = wait_until(states, 10, what="all alerts registered")
    assert state[("TesseraShardFault", "c1", "g-r01-1")] == "suppressed"  # rack r01 common mode
    assert state[("TesseraShardFault", "c1", "g-r02-1")] == "active"  # other rack
    assert state[("TesseraShardFault", "c1", "g-r03-h2-1")] == "suppressed"  # host common mode
    assert state[("TesseraShardFault", "c1", "g-r03-h5-1")] == "active"  # same rack, other host
    assert state[("TesseraCommonModeRack", "c1", "r90")] == "suppressed"  # zone z9 common mode
    assert state[("TesseraShardFault", "c2", "g-x")] == "active"  # other cluster
    assert state[("TesseraCommonModeRack", "c1", "r01")] == "active"


FIRING = (
    'tessera_firing_active{id="f-1",target="gpu-r01-h03-2",scope="shard",classification="hard_fault",'
    'detector="rule:xid",metric="",host="r01-h03",rack="r01",cooling_zone="z1",cohort="job-a"} 1\n'
    'tessera_firing_active{id="f-2",target="gpu-r02-h01-0",scope="shard",classification="event_conditional",'
    'detector="A",metric="sm_clock_mhz",host="r02-h01",rack="r02",cooling_zone="z1",cohort="job-a"} 1\n'
)
QUIET = "tessera_ready 1\n"
SOURCE_DOWN = 'tessera_source_up{source="nvml"} 0\n'


@pytest.mark.prometheus
def test_page_reaches_pagerduty_and_resolves(
    tmp_path: Path, pagerduty_receiver: PagerDutyReceiver, drill_alertmanager: str
) -> None:
    """The shipped rules and Alertmanager config end to end, with a static exporter in place of the daemon:
    a hard fault pages (Events API v2 trigger with the key from routing_key_file), a source-down alert goes
    to the ticket webhook, an info alert goes nowhere, and the page resolves when the firing disappears."""
    pd = pagerduty_receiver
    with (
        StaticExporter(QUIET + FIRING + SOURCE_DOWN) as exporter,
        prometheus_server(tmp_path, [exporter.target], [drill_alert_rules(tmp_path)], drill_alertmanager),
    ):
        trigger = pd.wait_for(lambda e: e["event_action"] == "trigger", 30)
        assert trigger["routing_key"] == "0123456789abcdef0123456789abcdef"
        payload = trigger["payload"]
        assert payload["severity"] == "critical"
        assert "TesseraHardFault" in payload["summary"]
        assert "gpu-r01-h03-2" in payload["summary"]
        assert payload["class"] == "hard_fault"
        assert payload["group"] == "r01"
        assert payload["custom_details"]["runbook"].endswith("docs/runbook.md#tesserahardfault")
        assert payload["custom_details"]["cluster"] == "test"
        assert trigger["links"][0]["href"].endswith("#tesserahardfault")

        ticket = pd.wait_for(lambda t: t["commonLabels"].get("alertname") == "TesseraSourceDown", 30, tickets=True)
        assert ticket["receiver"] == "tessera-ticket"
        assert ticket["commonLabels"]["severity"] == "ticket"

        exporter.text = QUIET
        resolve = pd.wait_for(lambda e: e["event_action"] == "resolve", 30)
        assert resolve["dedup_key"] == trigger["dedup_key"]
    assert not pd.rejected, pd.rejected
    assert all("TesseraEventConditional" not in e.get("payload", {}).get("summary", "") for e in pd.events)
    assert all(t["commonLabels"].get("severity") == "ticket" for t in pd.tickets)
