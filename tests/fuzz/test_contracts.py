"""Fuzzed contract objects (frame, topology, cluster event, config) through the real decoders: a decoder only
ever raises its typed error (CodecError, ConfigError), never anything else; whatever decodes is well formed,
and frames that decode leave a running pipeline's state free of infinities with every frame counted.

Regression cases found by this fuzzing are kept explicit below (``REGRESSIONS``)."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tessera_daemon.config import Config, load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.errors import CodecError, ConfigError
from tessera_daemon.model import ClusterEvent, Frame, Topology
from tessera_daemon.sim import ClusterSim
from tessera_daemon.transport.codec import frame_from_json
from tests.fuzz.strategies import JSON, NUMBERS, mutated, nested

FAST = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])

FRAME = {
    "v": 1,
    "ts": 1000.0,
    "shard": "z0-r00-h00-g0",
    "metrics": {"gpu_util": 0.5, "nvlink_tx_bytes": 10.0},
    "counters": ["nvlink_tx_bytes"],
    "xid": [79],
}
EVENT = {"v": 1, "id": "e1", "kind": "firmware_push", "ts": 1000.0, "end_ts": 1100.0, "scope": ["r1"]}
TOPO = {
    "v": 1,
    "nodes": [
        {"id": "r1", "kind": "rack", "parent": None},
        {"id": "s1", "kind": "shard", "parent": "r1", "labels": {"cohort": "j"}},
    ],
    "edges": [{"a": "s1", "b": "s1", "kind": "nvlink"}],
}

REGRESSIONS: list[tuple[str, bytes]] = [  # each once raised something other than CodecError
    ("frame", b'{"v":1,"ts":1' + b"0" * 400 + b',"shard":"a"}'),  # OverflowError
    ("frame", nested(100_000)),  # RecursionError
    ("event", b'{"v":1,"id":"a","kind":"maintenance","ts":NaN,"scope":"fleet"}'),  # accepted a NaN time
    ("event", b'{"v":1,"id":"a","kind":"maintenance","ts":Infinity,"scope":"fleet"}'),
    ("event", b'{"v":1,"id":"a","kind":"maintenance","ts":-1,"scope":"fleet"}'),
    ("event", b'{"v":1,"id":"a","kind":"maintenance","ts":1' + b"0" * 400 + b',"scope":"fleet"}'),
    ("event", nested(100_000)),
    ("topology", nested(100_000)),
    ("topology", b'{"v":1,"nodes":[],"edges":0.0}'),  # TypeError: edges not a list
]
DECODERS: dict[str, Callable[[str | bytes], object]] = {
    "frame": Frame.from_json,
    "event": ClusterEvent.from_json,
    "topology": Topology.from_json,
    "mqtt-frame": lambda raw: frame_from_json(raw, shard="z0-r00-h00-g0"),
}


@pytest.mark.parametrize(("kind", "raw"), REGRESSIONS)
def test_regressions_are_codec_errors(kind: str, raw: bytes) -> None:
    with pytest.raises(CodecError):
        DECODERS[kind](raw)


def test_regression_an_integer_beyond_float_range_is_a_missing_value() -> None:
    f = Frame.from_json(b'{"v":1,"ts":5,"shard":"a","metrics":{"m":1' + b"0" * 400 + b"}}")  # was OverflowError
    assert f.metrics == {"m": None}


def _decode(kind: str, obj: Any) -> Any:
    try:
        text = json.dumps(obj)
    except (ValueError, OverflowError):
        return None
    try:
        return DECODERS[kind](text)
    except CodecError:
        return None


@FAST
@given(obj=mutated(FRAME, list(FRAME)))
def test_fuzzed_frames(obj: Any) -> None:
    for kind in ("frame", "mqtt-frame"):
        f = _decode(kind, obj)
        if f is not None:
            assert isinstance(f, Frame) and math.isfinite(f.ts) and f.ts >= 0 and f.shard
            assert all(v is None or math.isfinite(v) for v in f.metrics.values())
            assert all(isinstance(x, int) and not isinstance(x, bool) and 0 <= x < 2**31 for x in f.xid)


@FAST
@given(obj=mutated(EVENT, list(EVENT)))
def test_fuzzed_events(obj: Any) -> None:
    ev = _decode("event", obj)
    if ev is not None:
        assert math.isfinite(ev.ts) and ev.ts >= 0 and (ev.end_ts is None or ev.ts <= ev.end_ts < math.inf)
        assert ev.scope and all(isinstance(s, str) for s in ev.scope)


@FAST
@given(obj=st.one_of(mutated(TOPO, list(TOPO)), st.builds(lambda n: {**TOPO, "nodes": n}, JSON)))
def test_fuzzed_topologies(obj: Any) -> None:
    topo = _decode("topology", obj)
    if topo is not None:
        assert isinstance(topo, Topology)
        for s in topo.shards:
            topo.groups_of(s)  # a well-formed forest: no cycle, every parent known


SMALL = {
    "TESSERA_SIM__ZONES": "1",
    "TESSERA_SIM__RACKS_PER_ZONE": "1",
    "TESSERA_SIM__HOSTS_PER_RACK": "1",
    "TESSERA_SIM__COHORTS": "1",
    "TESSERA_DETECTOR__WARMUP_WINDOWS": "5",
    "TESSERA_DETECTOR__WARMUP_MAX_WINDOWS": "5",
}
_CFG = load_config(None, SMALL)
_SIM = ClusterSim(_CFG.sim, scenario="clean", seed=2)
_WARM: list[list[Frame]] = [_SIM.step()[1] for _ in range(60)]


def infinities(p: Pipeline) -> list[str]:
    from tests.detect.test_hostile_values import no_infinity  # noqa: PLC0415 - one walker for both suites

    return no_infinity(p)


metric_values = st.one_of(st.none(), NUMBERS.filter(lambda v: not isinstance(v, bool)))


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy reports overflows in sums of 1e308s; not failures
def test_fuzzed_frames_through_a_pipeline_leave_no_infinity_and_are_all_counted(data: st.DataObject) -> None:
    p = Pipeline(_CFG, _SIM.topology)
    shards = p.shards
    sent = 0
    for tick, normal in enumerate(_WARM):
        frames = list(normal)
        if tick >= 30:  # after warm-up: a few hostile frames among the normal ones
            for _ in range(data.draw(st.integers(0, 3))):
                obj = dict(json.loads(frames[0].to_json()))
                obj["shard"] = data.draw(st.sampled_from([*shards, "no-such-shard"]))
                obj["ts"] = frames[0].ts + data.draw(st.sampled_from([0.0, -30.0, 0.4, 4.0, 1e9]))
                obj["metrics"] = {m: data.draw(metric_values) for m in data.draw(st.sets(st.sampled_from(p.metrics)))}
                f = _decode("frame", obj)
                if f is not None:
                    frames = [*frames, f]
        p.ingest(frames)
        sent += len(frames)
        p.advance()
    p.flush()
    a = p.assembler.stats
    assert a.frames + a.late + a.unknown_shard + a.future == sent  # every frame counted somewhere
    assert infinities(p) == []
    assert np.isfinite(p.state.log_m).all()


@FAST
@given(
    path=st.sampled_from(
        [
            "window.length_s",
            "window.grace_s",
            "daemon.shutdown_grace_s",
            "detector.bets",
            "http.port",
            "events.max_age_s",
            "window.plausible",
            "transport.redis.url",
            "detector.metrics",
            "sources.poll_interval_s",
            "window.stall_windows",
        ]
    ),
    value=st.one_of(JSON, NUMBERS),
)
def test_fuzzed_config_values_only_raise_config_errors(path: str, value: Any) -> None:
    env_key = "TESSERA_" + "__".join(p.upper() for p in path.split("."))
    try:
        raw = json.dumps(value)
    except (ValueError, OverflowError):
        raw = str(value)
    for text in (raw, str(value)):
        try:
            cfg = load_config(None, {env_key: text})
        except ConfigError:
            continue
        assert isinstance(cfg, Config)
        for f in (
            cfg.window.length_s,
            cfg.window.grace_s,
            cfg.daemon.shutdown_grace_s,
            *cfg.detector.bets,
            cfg.events.max_age_s,
            cfg.sources.poll_interval_s,
        ):
            assert math.isfinite(f)
