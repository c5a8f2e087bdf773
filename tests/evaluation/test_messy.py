"""The messy-fleet generator (sim/messy.py) and its evaluation (evaluation/messy.py), fast subset.

The generator's properties are asserted (cadence and jitter, nuisances present, the clean twin equal
to the faulted recording outside the faults, ground truth consistent with the frames and topology),
and one small recording pair runs end to end through the real ``replay``. The engine's acceptance
bounds (issue 14) are asserted separately, in an xfail test the lead flips once the engine meets them.
"""

from __future__ import annotations

import itertools
import json
import math
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from tessera_daemon.config import Config
from tessera_daemon.evaluation import messy as ev
from tessera_daemon.evaluation import run_matrix
from tessera_daemon.evaluation.report import MatrixResult
from tessera_daemon.model import ClusterEvent, Frame, Topology
from tessera_daemon.sim.messy import COMMON_MODE_KINDS, FleetShape, MessySpec, Nuisances, Recording, generate

SHAPE = FleetShape(zones=2, racks_per_zone=1, hosts_per_rack=4, gpus_per_host=2, second_job_share=0.5)
SPEC = MessySpec(
    shape=SHAPE,
    nuisances=Nuisances(cadence_mix="mixed", dropouts_per_host_day=40.0),
    duration_s=3600.0,
    seed=11,
    fault_kinds=("thermal_rack", "straggler", "xid79", "ecc_dbe", "silent_device"),
)


@pytest.fixture(scope="module")
def pair(tmp_path_factory: pytest.TempPathFactory) -> tuple[Recording, Recording]:
    base = tmp_path_factory.mktemp("messy")
    return generate(SPEC, base / "faulted"), generate(SPEC.twin(), base / "clean")


def _frames(rec: Recording) -> list[Frame]:
    return [Frame.from_json(line) for line in rec.frames_path.read_text(encoding="utf-8").splitlines()]


def _by_shard(frames: list[Frame]) -> dict[str, list[Frame]]:
    out: dict[str, list[Frame]] = defaultdict(list)
    for f in frames:
        out[f.shard].append(f)
    return out


def test_frames_follow_the_contracts(pair: tuple[Recording, Recording]) -> None:
    rec, _ = pair
    topo = Topology.from_json(rec.topology_path.read_bytes())
    frames = _frames(rec)  # Frame.from_json is the replay parser: every line must pass it
    assert len(frames) == rec.frames > 0
    assert {f.shard for f in frames} <= set(topo.shards)
    assert all(f.counters == {"nvlink_tx_bytes", "ecc_dbe"} for f in frames)
    assert {topo.cohort_of(s) for s in topo.shards} == {"llm-pretrain-a", "llm-pretrain-b"}
    kinds = {n.kind for n in topo.nodes.values()}
    assert {"fleet", "cooling_zone", "rack", "psu", "host", "nvlink_domain", "shard"} <= kinds
    for s in topo.shards:  # every shard reaches its PSU, NVLink domain, rack and cooling zone
        kinds_of = {topo.nodes[g].kind for g in topo.groups_of(s)}
        assert {"psu", "nvlink_domain", "rack", "cooling_zone", "host"} <= kinds_of
    events = [ClusterEvent.from_json(line) for line in rec.events_path.read_text().splitlines() if line]
    assert [e.kind for e in events] == ["firmware_push"] and all(n in topo.nodes for n in events[0].scope)


def test_cadence_jitter_and_skew(pair: tuple[Recording, Recording]) -> None:
    rec, _ = pair
    hosts = rec.truth["hosts"]
    by_shard = _by_shard(_frames(rec))
    assert len({h["cadence_s"] for h in hosts.values()}) >= 4  # the mixed cadence mix
    spread = 0
    for gid, frames in by_shard.items():
        host = hosts[rec.host_of_shard[gid]]
        c, j = host["cadence_s"], host["jitter"]
        assert 0 <= j <= 0.2
        gaps = np.diff([f.ts for f in frames])
        normal = gaps[gaps < c * 1.5]  # dropouts leave longer gaps
        assert normal.min() >= c * (1 - j) - 1e-3 and normal.max() <= c * (1 + j) + 1e-3
        assert abs(float(np.median(normal)) - c) <= j * c + 1e-3
        spread += int(normal.std() > 0.01 * c)
    assert spread > len(by_shard) // 2  # jitter is on
    skews = [h["skew_s"] for h in hosts.values()]
    assert np.std(skews) > 0.1


def test_nuisances_are_present(pair: tuple[Recording, Recording]) -> None:
    _, rec = pair  # the clean twin: nuisances only
    frames = _frames(rec)
    by_shard = _by_shard(frames)
    truth = rec.truth
    assert truth["null_values"] > 0 and any(v is None for f in frames for v in f.metrics.values())
    lacking = [h for h, v in truth["hosts"].items() if v["lacks"]]
    assert lacking
    for gid, fs in by_shard.items():
        has_bw = any("mem_bw_util" in f.metrics for f in fs)
        assert has_bw is (rec.host_of_shard[gid] not in lacking)
    assert sum(len(v["dropouts"]) for v in truth["hosts"].values()) > 0
    wraps = resets = 0
    for fs in by_shard.values():
        nv = [f.metrics["nvlink_tx_bytes"] for f in fs if f.metrics.get("nvlink_tx_bytes") is not None]
        for a, b in itertools.pairwise(nv):
            if b is not None and a is not None and b < a:
                wraps += a > 0.9 * 2.0**64
                resets += a <= 0.9 * 2.0**64
    assert wraps >= 1 and resets >= 1
    assert all(f.metrics.get("gpu_util") is None or float(f.metrics["gpu_util"] or 0).is_integer() for f in frames)
    assert truth["events"] and any(h["fw_reboot"] for h in truth["hosts"].values())
    # job phases: the eval loop lowers the cohort's utilisation while it runs
    for job, kinds in truth["phase_intervals"].items():
        assert kinds["eval"] and kinds["checkpoint"]
        members = {g for g, h in rec.host_of_shard.items() if truth["hosts"][h]["job"] == job}
        iv = np.array(kinds["eval"])
        inside: list[float] = []
        outside: list[float] = []
        for f in frames:
            u = f.metrics.get("gpu_util")
            if f.shard in members and u is not None:
                on = bool(np.any((iv[:, 0] <= f.ts - 5) & (f.ts + 5 < iv[:, 1])))
                (inside if on else outside).append(u)
        if inside:
            assert np.mean(outside) - np.mean(inside) > 20


def test_clean_twin_differs_only_by_the_faults(pair: tuple[Recording, Recording]) -> None:
    faulted, clean = pair
    fault_shards = {s for f in faulted.faults for s in f["members"]}
    assert fault_shards
    lines_f = faulted.frames_path.read_text().splitlines()
    lines_c = clean.frames_path.read_text().splitlines()

    def keep(lines: list[str]) -> list[str]:
        return [ln for ln in lines if json.loads(ln)["shard"] not in fault_shards]

    assert keep(lines_f) == keep(lines_c)
    first = min(f["start_ts"] for f in faulted.faults)
    assert [ln for ln in lines_f if json.loads(ln)["ts"] < first - 5] == [
        ln for ln in lines_c if json.loads(ln)["ts"] < first - 5
    ]


def test_ground_truth_is_consistent(pair: tuple[Recording, Recording]) -> None:
    rec, clean = pair
    assert clean.faults == [] and clean.truth["faulted"] is False
    topo = Topology.from_json(rec.topology_path.read_bytes())
    groups = topo.members()
    by_shard = _by_shard(_frames(rec))
    kinds = sorted(f["kind"] for f in rec.faults)
    assert kinds == sorted(SPEC.fault_kinds)
    assert len({s for f in rec.faults for s in f["members"]}) == sum(len(f["members"]) for f in rec.faults)
    group_hosts = {h for f in rec.faults if f["scope"] != "shard" for h in f["hosts"]}
    assert not group_hosts & {h for f in rec.faults if f["scope"] == "shard" for h in f["hosts"]}
    for f in rec.faults:
        assert set(f["members"]) <= set(topo.shards)
        assert rec.truth["start_ts"] < f["start_ts"] < rec.truth["end_ts"]
        assert f["end_ts"] is None or f["end_ts"] > f["start_ts"]
        node = topo.nodes[f["target"]]
        assert node.kind == f["scope"]
        if f["kind"] in COMMON_MODE_KINDS:
            assert sorted(groups[f["target"]]) == f["members"]
        else:
            assert f["members"] == [f["target"]]
        shard = f["members"][0]
        after = [fr for fr in by_shard[shard] if fr.ts >= f["start_ts"] + 60]
        if f["kind"] == "silent_device":
            assert after == []
            assert any(
                fr.ts >= f["start_ts"] + 60
                for g in topo.children[rec.host_of_shard[shard]]
                for fr in by_shard[g]
                if g != shard
            )
        if f["kind"] == "xid79":
            hit = [fr for fr in by_shard[shard] if 79 in fr.xid]
            assert len(hit) == 1 and hit[0].ts >= f["start_ts"] - 10
            assert all(v is None for fr in after for v in fr.metrics.values())
        if f["kind"] == "ecc_dbe":
            before = [fr.metrics["ecc_dbe"] for fr in by_shard[shard] if fr.ts < f["start_ts"] - 10]
            last = before[-1]
            assert last is not None
            assert after and all(fr.metrics["ecc_dbe"] == last + 1 for fr in after)
        if f["kind"] == "thermal_rack":
            base = [
                t
                for g in f["members"]
                for fr in by_shard[g]
                if f["start_ts"] - 900 < fr.ts < f["start_ts"] and (t := fr.metrics.get("temp_c")) is not None
            ]
            hot = [
                t
                for g in f["members"]
                for fr in by_shard[g]
                if f["start_ts"] + 300 < fr.ts < f["start_ts"] + 1200 and (t := fr.metrics.get("temp_c")) is not None
            ]
            assert np.mean(hot) - np.mean(base) > 2.5  # +4 C, less what the room did meanwhile


def test_generation_is_deterministic(tmp_path: Path) -> None:
    spec = MessySpec(shape=SHAPE, duration_s=900.0, seed=5, fault_kinds=("straggler",))
    a, b = generate(spec, tmp_path / "a"), generate(spec, tmp_path / "b")
    assert a.frames_path.read_bytes() == b.frames_path.read_bytes()
    assert a.topology_path.read_bytes() == b.topology_path.read_bytes()


# ------------------------------------------------------------------------------------------- scoring


def _fake_run(firings: list[dict[str, Any]], faults: list[dict[str, Any]], faulted: bool) -> dict[str, Any]:
    hosts = {
        "h1": {"cadence_s": 10.0, "dropouts": [], "job": "j"},
        "h2": {"cadence_s": 10.0, "dropouts": [], "job": "j"},
    }
    return {
        "mix": "10s",
        "seed": 1,
        "faulted": faulted,
        "frames": 1000,
        "window_s": 10.0,
        "warm_end_ts": 100.0,
        "clean_shard_windows": 2_000_000,
        "firings": firings,
        "faults": faults,
        "events": ["ev1"],
        "event_windows": [[5000.0, 5100.0]],
        "hosts": hosts,
        "host_of_shard": {"a1": "h1", "a2": "h1", "b1": "h2", "b2": "h2"},
        "phase_intervals": {"j": {"eval": [[3000.0, 3100.0]]}},
        "start_ts": 0.0,
        "end_ts": 10_000.0,
        "group_sets": [["a1", "a2"], ["b1", "b2"]],
        "elapsed_s": 1.0,
        "replay": {},
    }


def _firing(
    i: int, ts: float, target: str, members: list[str], cls: str = "shard_fault", event: str | None = None
) -> dict[str, Any]:
    return {
        "id": f"f{i}",
        "opened_ts": ts,
        "window": int(ts // 10),
        "scope": "host" if len(members) > 1 else "shard",
        "target": target,
        "members": members,
        "detector": "A",
        "metric": "temp_c",
        "classification": cls,
        "event_id": event,
        "log_evidence": 10.0,
    }


def test_scoring_definitions(cfg: Config) -> None:
    faults = [
        {
            "id": "F1",
            "kind": "thermal_rack",
            "target": "h1",
            "members": ["a1", "a2"],
            "start_ts": 1000.0,
            "end_ts": 2000.0,
            "hard": False,
            "cadence_s": 10.0,
        },
        {
            "id": "F2",
            "kind": "xid79",
            "target": "b1",
            "members": ["b1"],
            "start_ts": 4000.0,
            "end_ts": None,
            "hard": True,
            "cadence_s": 10.0,
            "first_poll_ts": 4004.0,
        },
        {
            "id": "F3",
            "kind": "straggler",
            "target": "b2",
            "members": ["b2"],
            "start_ts": 6000.0,
            "end_ts": 7000.0,
            "hard": False,
            "cadence_s": 10.0,
        },
    ]
    fired = [
        _firing(1, 50.0, "a1", ["a1"]),  # warm-up: false
        _firing(2, 1040.0, "a1", ["a1"]),  # F1, first: names a shard, not the node -> not attributed
        _firing(3, 1060.0, "h1", ["a1", "a2"], "common_mode"),  # F1 again: a second incident
        _firing(4, 2500.0, "a2", ["a2"]),  # after end + grace: false
        _firing(5, 4010.0, "b1", ["b1"], "hard_fault"),  # F2 within one window of its first poll
        _firing(6, 5050.0, "b1", ["b1"], "event_conditional", "ev1"),  # announced: not counted
        _firing(7, 3050.0, "fleet", ["a1", "a2", "b1", "b2", "x", "y"], "fleet_event"),  # too broad: false
    ]
    sc = ev.score([_fake_run(fired, faults, True), _fake_run(fired[:2], [], False)], cfg)
    assert sc["counted_firings"] == 6 and sc["true_firings"] == 3
    assert sc["precision"] == pytest.approx(0.5)
    assert sc["recall"] == pytest.approx(2 / 3)
    pf = {p["id"]: p for p in sc["per_fault"]}
    assert pf["F1"]["firings"] == 2 and pf["F1"]["delay_s"] == 40.0 and pf["F1"]["attributed"] is False
    assert pf["F2"]["hard_delay_windows"] == pytest.approx(0.6) and pf["F2"]["attributed"] is None
    assert pf["F3"]["detected"] is False
    assert sc["median_delay_windows"] == math.inf  # F1 at 4 windows, F3 missed
    clean = sc["clean"][0]
    assert clean["firings"] == 2 and clean["per_million"] == pytest.approx(1.0)
    assert clean["by_nuisance"] == {"during warm-up": 1, "none identified": 1}
    assert sc["faulted"][0]["false_by_nuisance"]["job phase (eval)"] == 1


def test_window_length_for_auto_cadence(cfg: Config) -> None:
    if cfg.window.length_s > 0:
        assert ev.window_s(cfg, [10.0, 30.0]) == cfg.window.length_s
    else:  # "auto" is stored as 0
        assert ev.window_s(cfg, [10.0, 30.0]) == 20.0

    class Auto:
        class window:  # mimics cfg.window
            length_s = "auto"

    assert ev.window_s(Auto(), [10.0, 15.0, 30.0]) == 15.0  # type: ignore[arg-type]
    Auto.window.length_s = 0.0  # type: ignore[assignment]
    assert ev.window_s(Auto(), [10.0, 15.0, 30.0]) == 15.0  # type: ignore[arg-type]


# ------------------------------------------------------------------------------------- end to end


@pytest.fixture(scope="module")
def fast_result(cfg: Config) -> MatrixResult:
    return ev.run(cfg, fast=True, workers=1)


def test_fast_subset_runs_through_replay(fast_result: MatrixResult) -> None:
    res = fast_result
    data = res.data
    assert [c["mix"] for c in data["clean"]] == ["10s"]
    clean = data["clean"][0]
    assert clean["clean_shard_windows"] > 10_000 and clean["frames"] > clean["clean_shard_windows"]
    assert clean["replay"]["frames"] == clean["frames"] and clean["replay"]["dead_letters"] == 0
    assert sorted(p["kind"] for p in data["per_fault"]) == sorted(ev.FAST.fault_kinds)
    assert data["precision"] is None or 0.0 <= data["precision"] <= 1.0
    assert 0.0 <= data["recall"] <= 1.0
    names = [c.name for c in res.checks]
    assert any("false pages" in n for n in names) and any("precision" in n for n in names)
    assert any("attributed" in n for n in names) and any("hard faults" in n for n in names)
    md = res.markdown()
    assert "## Faults" in md and "## Clean twins: false pages and tickets" in md


def test_evaluate_messy_is_dispatched(cfg: Config, monkeypatch: pytest.MonkeyPatch, fast_result: MatrixResult) -> None:
    monkeypatch.setattr(ev, "run", lambda _cfg, *, fast=False: fast_result)
    summary = run_matrix("messy", cfg, None, fast=True)
    assert summary["matrix"] == "messy" and summary["checks"]


def test_messy_acceptance_bounds(fast_result: MatrixResult) -> None:
    """Issue 14's bounds on the fast subset with the default configuration: no false page or ticket on
    the clean twin, precision and recall, every common mode named at its node, hard faults within one
    window. The median delay is reported, not asserted: the fast subset's thermal ramp and straggler
    take 12 to 20 windows (docs/evaluation.md has the full run's figures)."""
    failing = {c.name: c.measured for c in fast_result.checks if c.ok is not True and "delay" not in c.name}
    assert failing == {}
    assert fast_result.data["recall"] == 1.0


def test_module_cli_writes_a_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from tessera_daemon.sim.messy import main  # noqa: PLC0415

    assert main(["--out", str(tmp_path), "--hours", "0.05", "--mix", "30s", "--clean"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["faults"] == 0 and out["frames"] > 0
    assert {p.name for p in tmp_path.iterdir()} == {"frames.jsonl", "topology.json", "events.jsonl", "truth.json"}
