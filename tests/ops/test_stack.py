"""The drill helpers of tests/ops/stack.py produce configs the real tools accept, and the PagerDuty
stand-in checks events the way PagerDuty does."""

from __future__ import annotations

import urllib.error
from pathlib import Path

import pytest
import yaml

from tests.ops.catalog import ROOT, run
from tests.ops.stack import PagerDutyReceiver, drill_alert_rules, drill_alertmanager_config, http_json
from tests.servers import find_exe


@pytest.mark.prometheus
def test_drill_alert_rules(tmp_path: Path) -> None:
    path = drill_alert_rules(tmp_path, max_for="5s")
    out = run([find_exe("promtool"), "check", "rules", str(path)])
    assert out.returncode == 0, out.stdout + out.stderr
    shipped = yaml.safe_load((ROOT / "alert_rules.yml").read_text())["groups"]
    drill = yaml.safe_load(path.read_text())["groups"]
    for old_group, new_group in zip(shipped, drill, strict=True):
        assert new_group["interval"] == "1s"
        for old, new in zip(old_group["rules"], new_group["rules"], strict=True):
            assert (old["expr"], old["labels"], old["annotations"]) == (new["expr"], new["labels"], new["annotations"])
            assert new.get("for", "0s") in {"0s", "5s"} or new.get("for") == old.get("for")


@pytest.mark.prometheus
def test_drill_alertmanager_config(tmp_path: Path) -> None:
    key = PagerDutyReceiver.write_routing_key(tmp_path)
    text = drill_alertmanager_config("http://127.0.0.1:1/v2/enqueue", key, ticket_url="http://127.0.0.1:1/ticket")
    (tmp_path / "am.yml").write_text(text)
    out = run([find_exe("amtool"), "check-config", str(tmp_path / "am.yml")])
    assert out.returncode == 0, out.stdout + out.stderr
    cfg = yaml.safe_load(text)
    receivers = {r["name"]: r for r in cfg["receivers"]}
    (pd,) = receivers["pagerduty"]["pagerduty_configs"]
    assert pd["url"] == "http://127.0.0.1:1/v2/enqueue"
    assert pd["routing_key_file"] == str(key)
    assert receivers["tessera-ticket"]["webhook_configs"][0]["url"] == "http://127.0.0.1:1/ticket"
    assert (
        cfg["inhibit_rules"]
        == yaml.safe_load((ROOT / "deploy/alertmanager/alertmanager.yml").read_text())["inhibit_rules"]
    )


def test_pagerduty_receiver_accepts_valid_and_rejects_invalid_events(pagerduty_receiver: PagerDutyReceiver) -> None:
    good = {
        "routing_key": "0" * 32,
        "event_action": "trigger",
        "dedup_key": "k",
        "payload": {"summary": "s", "source": "tessera", "severity": "critical"},
    }
    answer = http_json(pagerduty_receiver.enqueue_url, good)
    assert answer["status"] == "success"
    assert pagerduty_receiver.wait_for(lambda e: e["dedup_key"] == "k", 5) == good
    bad = {"routing_key": "short", "event_action": "trigger", "payload": {"summary": "s", "severity": "page"}}
    with pytest.raises(urllib.error.HTTPError) as err:
        http_json(pagerduty_receiver.enqueue_url, bad)
    assert err.value.code == 400
    err.value.close()
    assert pagerduty_receiver.rejected == [bad]
