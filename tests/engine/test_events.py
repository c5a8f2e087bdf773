"""EventBook: scoping, per-kind windows, interval events, ended_since / take_ended, attribution."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tessera_daemon.engine.events import EventBook, from_deploy_event
from tessera_daemon.errors import CodecError, ConfigError
from tessera_daemon.model import EVENT_KINDS, ClusterEvent, Topology, TopoNode
from tessera_daemon.settings.events import EventsConfig, FreezeWindows, Secret
from tessera_daemon.settings.load import build
from tests.event_helpers import SHARDS, cfg, event, firing, topology


def book(**kw: object) -> EventBook:
    return EventBook(topology(), cfg(**kw))


def test_scope_expands_to_member_shards() -> None:
    b = book()
    assert b.affected_shards(event("a")) == SHARDS
    assert b.affected_shards(event("a", scope=("r1",))) == ["h1/g0", "h1/g1", "h2/g0"]
    assert b.affected_shards(event("a", scope=("h3", "h1/g1"))) == ["h1/g1", "h3/g0"]
    # a label-declared group (psu) and a fleet node in the topology
    assert b.affected_shards(event("a", scope=("psu-a",))) == ["h1/g0", "h3/g0"]
    assert b.affected_shards(event("a", scope=("fleet", "h3"))) == SHARDS  # a fleet node of the topology
    res = b.add(event("a", scope=("r2",)))
    assert res.status == "added" and res.record is not None and res.record.shards == ("h3/g0",)


def test_unknown_scope_ids_are_rejected_with_a_reason() -> None:
    b = book()
    res = b.add(event("x", scope=("r1", "nope", "gone")))
    assert res.status == "rejected" and not res.ok
    assert "unknown topology nodes 'gone', 'nope'" in res.reason
    assert len(b) == 0 and b.get("x") is None


def test_dedupe_update_and_conflict() -> None:
    b = book()
    assert b.add(event("e1", kind="maintenance")).status == "added"
    assert b.add(event("e1", kind="maintenance")).status == "duplicate"
    # closing an interval: same identity, end_ts added
    up = b.add(event("e1", kind="maintenance", end_ts=1500.0))
    assert up.status == "updated" and up.record is not None and up.record.freeze_end_ts == 1500.0 + 120.0
    conflict = b.add(event("e1", kind="firmware_push"))
    assert conflict.status == "rejected" and "different kind, ts or scope" in conflict.reason
    assert len(b) == 1


@pytest.mark.parametrize(
    ("kind", "window"),
    [
        ("firmware_push", 1800.0),
        ("driver_update", 1800.0),
        ("model_redeploy", 600.0),
        ("config_change", 300.0),
        ("env_change", 600.0),
        ("capacity_change", 300.0),
        ("chaos_experiment", 900.0),
        ("maintenance", 3600.0),
    ],
)
def test_per_kind_default_windows(kind: str, window: float) -> None:
    b = book()
    assert b.freeze_bounds(event("e", kind=kind, ts=100.0)) == (100.0, 100.0 + window)


def test_every_event_kind_has_a_window_setting() -> None:
    w = FreezeWindows()
    for kind in EVENT_KINDS:
        assert w.for_kind(kind) >= 0


def test_interval_events_freeze_until_end_plus_settle() -> None:
    b = book(settle_s=60.0)
    rec = b.add(event("chaos", kind="chaos_experiment", ts=100.0, end_ts=5000.0, scope=("h1",))).record
    assert rec is not None and (rec.freeze_start_ts, rec.freeze_end_ts) == (100.0, 5060.0)
    assert b.frozen(5059.9) == {"h1/g0": "chaos", "h1/g1": "chaos"}
    assert b.frozen(5060.0) == {}
    assert b.frozen(99.9) == {}


def test_frozen_is_scoped_and_latest_started_event_wins() -> None:
    b = book()
    b.add(event("fw", ts=1000.0, scope=("r1",)))  # until 2800
    b.add(event("cfg", kind="config_change", ts=1100.0, scope=("h1",)))  # until 1400
    assert b.frozen(999.0) == {}
    assert b.frozen(1000.0) == {"h1/g0": "fw", "h1/g1": "fw", "h2/g0": "fw"}
    assert b.frozen(1200.0) == {"h1/g0": "cfg", "h1/g1": "cfg", "h2/g0": "fw"}
    assert b.frozen(1400.0) == {"h1/g0": "fw", "h1/g1": "fw", "h2/g0": "fw"}
    assert "h3/g0" not in b.frozen(1200.0)
    b.add(event("late", kind="env_change", ts=1150.0, scope=("h3",)))  # the cached map follows changes
    assert b.frozen(1200.0)["h3/g0"] == "late"
    assert [r.id for r in b.active(1200.0)] == ["fw", "cfg", "late"]


def test_ended_since_reports_each_end_once_and_skips_still_frozen_shards() -> None:
    b = book()
    b.add(event("fw", ts=1000.0, scope=("r1",)))  # ends 2800
    b.add(event("cfg", kind="config_change", ts=1100.0, scope=("h1", "h3")))  # ends 1400
    assert b.ended_since(0.0, 1399.0) == []
    ended = b.ended_since(1395.0, 1400.0)
    assert [(e.id, shards) for e, shards in ended] == [("cfg", ["h3/g0"])]  # h1 still frozen by fw
    assert b.ended_since(1400.0, 1405.0) == []
    assert [(e.id, s) for e, s in b.ended_since(2795.0, 2800.0)] == [("fw", ["h1/g0", "h1/g1", "h2/g0"])]
    # pure: the same question gives the same answer
    assert b.ended_since(2795.0, 2800.0) == b.ended_since(2795.0, 2800.0)
    # both in one step: ordered by end
    assert [e.id for e, _ in b.ended_since(0.0, 3000.0)] == ["cfg", "fw"]


def test_take_ended_returns_each_event_once_including_late_ones() -> None:
    b = book()
    b.add(event("fw", ts=1000.0, scope=("h3",)))  # ends 2800
    assert b.take_ended(2000.0) == []
    assert [e.id for e, _ in b.take_ended(2800.0)] == ["fw"]
    assert b.take_ended(2805.0) == []
    # announced late: its freeze was already over
    b.add(event("late", kind="config_change", ts=100.0, scope=("h1",)))
    assert [(e.id, s) for e, s in b.take_ended(2810.0)] == [("late", ["h1/g0", "h1/g1"])]
    # an interval whose end moves later is re-learned again at the new end
    b.add(event("m", kind="maintenance", ts=3000.0, end_ts=3100.0, scope=("h2",)))
    assert [e.id for e, _ in b.take_ended(3220.0)] == ["m"]
    b.add(event("m", kind="maintenance", ts=3000.0, end_ts=4000.0, scope=("h2",)))
    assert b.take_ended(3300.0) == []
    assert [e.id for e, _ in b.take_ended(4120.0)] == ["m"]


def test_event_for_and_attribution_label_what_starts_inside_the_window() -> None:
    b = book()
    b.add(event("fw", ts=1000.0, scope=("r1",)))  # [1000, 2800)
    assert b.event_for("h1/g0", 999.9) is None
    ev = b.event_for("h1/g0", 1000.0)
    assert ev is not None and ev.id == "fw"
    assert b.event_for("h3/g0", 1500.0) is None  # not in scope
    assert b.event_for("h1/g0", 2800.0) is None  # window over

    inside = firing("h2/g0", 1500.0)
    assert b.attribute(inside) is not None
    assert inside.classification == "event_conditional" and inside.event_id == "fw"
    assert inside.receipt["event"]["freeze_end_ts"] == 2800.0

    before = firing("h2/g0", 1500.0)
    assert b.attribute(before, start_ts=900.0) is None  # its change started before the event
    assert before.classification == "shard_fault" and before.event_id is None

    outside = firing("h3/g0", 1500.0)
    assert b.attribute(outside) is None and outside.classification == "shard_fault"

    hard = firing("h1/g1", 1200.0, detector="rule:xid", classification="hard_fault")
    assert b.attribute(hard) is not None
    assert hard.classification == "hard_fault" and hard.event_id == "fw"

    group = firing("r1", 1200.0, classification="common_mode", members=["h1/g0", "h2/g0"])
    assert b.attribute(group) is not None and group.classification == "event_conditional"


def test_history_is_bounded_and_forgotten_ids_stay_duplicates() -> None:
    b = book(history=3)
    for i in range(5):
        assert b.add(event(f"e{i}", ts=1000.0 + i)).status == "added"
    assert len(b) == 3
    assert [r.id for r in b.records()] == ["e2", "e3", "e4"]
    assert [r.id for r in b.recent(2)] == ["e4", "e3"]
    again = b.add(event("e0", ts=1000.0))
    assert again.status == "duplicate" and again.record is None
    assert len(b) == 3


def test_set_topology_re_expands_kept_events() -> None:
    b = book()
    b.add(event("fw", scope=("h1",)))
    t = topology()
    nodes = [*t.nodes.values(), TopoNode("h1/g2", "shard", "h1", {"cohort": "j"})]
    b.set_topology(Topology(nodes))
    rec = b.get("fw")
    assert rec is not None and rec.shards == ("h1/g0", "h1/g1", "h1/g2")
    assert b.frozen(1001.0)["h1/g2"] == "fw"


def test_record_to_obj_lists_window_and_shards() -> None:
    b = book()
    rec = b.add(event("fw", scope=("r2",)), metadata={"who": "ops"}).record
    assert rec is not None
    obj = rec.to_obj(1500.0)
    assert obj["freeze_start_ts"] == 1000.0 and obj["freeze_end_ts"] == 2800.0
    assert obj["affected_shards"] == 1 and obj["shards"] == ["h3/g0"] and obj["frozen_now"] is True
    assert obj["metadata"] == {"who": "ops"} and obj["scope"] == ["r2"] and obj["source"] == "api"
    assert rec.to_obj(3000.0)["frozen_now"] is False


def test_deploy_event_mapping() -> None:
    ev, meta = from_deploy_event(
        {
            "event_id": "d1",
            "event_class": "model_redeploy",
            "event_ts": 10,
            "event_window_end_ts": 20,
            "metadata": {"deploy_id": "dep-9"},
        }
    )
    assert ev == ClusterEvent("d1", "model_redeploy", 10.0, ("fleet",), 20.0) and meta == {"deploy_id": "dep-9"}
    ev, _ = from_deploy_event(
        {"event_id": "d2", "event_class": "env_change", "event_ts": 10, "metadata": {"scope": " r1, h3 ,r1"}}
    )
    assert ev.scope == ("r1", "h3") and ev.end_ts is None
    ev, _ = from_deploy_event(
        {
            "event_id": "d3",
            "event_class": "env_change",
            "event_ts": 10,
            "event_window_end_ts": None,
            "metadata": {"scope": "fleet"},
        }
    )
    assert ev.fleet_wide


@pytest.mark.parametrize(
    ("payload", "words"),
    [
        ([], "expected a JSON object"),
        ({"event_class": "env_change", "event_ts": 1}, "event_id"),
        ({"event_id": "x", "event_class": "reboot", "event_ts": 1}, "unknown class 'reboot'"),
        ({"event_id": "x", "event_class": "env_change"}, "missing field 'event_ts'"),
        ({"event_id": "x", "event_class": "env_change", "event_ts": "now"}, "event_ts: expected a finite"),
        ({"event_id": "x", "event_class": "env_change", "event_ts": 5, "event_window_end_ts": 4}, "before"),
        ({"event_id": "x", "event_class": "env_change", "event_ts": 5, "metadata": {"a": 1}}, "metadata"),
        ({"event_id": "x", "event_class": "env_change", "event_ts": 5, "metadata": {"scope": " , "}}, "scope"),
    ],
)
def test_deploy_event_mapping_rejects(payload: object, words: str) -> None:
    with pytest.raises(CodecError, match=words):
        from_deploy_event(payload)


def test_events_config_table_loads_and_validates() -> None:
    c = build(
        EventsConfig,
        {
            "settle_s": 30,
            "windows": {"firmware_push_s": 60},
            "deploysignal": {"ds_url": "http://ds:8080", "feed_max_attempts": 3},
        },
        "events",
    )
    assert c.settle_s == 30.0 and c.windows.firmware_push_s == 60.0 and c.deploysignal.feed_max_attempts == 3
    with pytest.raises(ConfigError, match=r"events.windows.firmware_push_s"):
        build(EventsConfig, {"windows": {"firmware_push_s": -1}}, "events")
    with pytest.raises(ConfigError, match="not both"):
        build(EventsConfig, {"deploysignal": {"token": "a", "token_file": "/x"}}, "events")
    with pytest.raises(ConfigError, match="unknown setting"):
        build(EventsConfig, {"windows": {"reboot_s": 1}}, "events")


def test_secret_reads_file_and_follows_rotation(tmp_path: Path) -> None:
    p = tmp_path / "tok"
    p.write_text("first\n")
    s = Secret("", str(p), setting_name="events.api_token_file")
    assert s.configured and s.get() == "first"
    p.write_text("second-token\n")
    os.utime(p, ns=(1, 10**18))
    assert s.get() == "second-token"
    p.unlink()
    assert s.get() == "second-token"  # unreadable later: keep the last good value
    assert not Secret("", "", setting_name="x").configured
    with pytest.raises(ConfigError, match="cannot read"):
        Secret("", str(p), setting_name="events.api_token_file")
    p.write_text("  \n")
    with pytest.raises(ConfigError, match="empty"):
        Secret("", str(p), setting_name="events.api_token_file")
