"""Checkpoints: exact resume at any cut, refusal of anything that does not validate (also in a worker)."""

from __future__ import annotations

import hashlib
import struct
import zlib

import msgpack
import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from tessera_daemon.config import Config, load_config
from tessera_daemon.engine import checkpoint
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.errors import CheckpointError
from tessera_daemon.model import Frame
from tessera_daemon.sim import ClusterSim
from tessera_daemon.transport.keys import Keys
from tests.transport.conftest import Server
from tests.transport.helpers import SIM, agent, all_committed, client_for, detector, make_cfg, reference, wait_for

TICKS = 900


def _cfg() -> Config:
    return load_config(None, SIM)


def _frames(cfg: Config) -> list[list[Frame]]:
    sim = ClusterSim(cfg.sim, scenario="mixed", start_ts=cfg.sim.start_ts)
    return [sim.step()[1] for _ in range(TICKS)]


def _run(p: Pipeline, ticks: list[list[Frame]], out: list[str]) -> None:
    for fr in ticks:
        p.ingest(fr)
        for r in p.advance():
            out += [f.to_json() for f in (*r.opened, *r.resolved)]


@pytest.fixture(scope="module")
def uninterrupted() -> tuple[Config, list[list[Frame]], Pipeline, list[str]]:
    cfg = _cfg()
    ticks = _frames(cfg)
    p = Pipeline(cfg, ClusterSim(cfg.sim, scenario="mixed").topology)
    out: list[str] = []
    _run(p, ticks, out)
    for r in p.flush():
        out += [f.to_json() for f in (*r.opened, *r.resolved)]
    assert len(out) >= 4  # the scenario fires (one incident per fault: groups, shards, rules)
    return cfg, ticks, p, out


@pytest.mark.parametrize("cut", [1, 37, 298, 451, 623, 777, 899])
def test_restore_then_continue_equals_uninterrupted(
    uninterrupted: tuple[Config, list[list[Frame]], Pipeline, list[str]], cut: int
) -> None:
    cfg, ticks, full, expected = uninterrupted
    p = Pipeline(cfg, ClusterSim(cfg.sim, scenario="mixed").topology)
    out: list[str] = []
    _run(p, ticks[:cut], out)
    blob = checkpoint.snapshot(p, partition="fleet", position=f"{cut}-0", extra={"k": [1, 2]})
    q, meta = checkpoint.restore(blob, cfg, partition="fleet")
    assert (meta.position, meta.extra, meta.partition) == (f"{cut}-0", {"k": [1, 2]}, "fleet")
    assert (
        checkpoint.snapshot(q, partition="fleet", position=f"{cut}-0", extra={"k": [1, 2]}, now=meta.created_ts) == blob
    )  # a restored pipeline saves the same bytes
    _run(q, ticks[cut:], out)
    for r in q.flush():
        out += [f.to_json() for f in (*r.opened, *r.resolved)]
    assert out == expected  # same firings, same receipts, byte for byte
    for a, b in zip(full.state.to_arrays().values(), q.state.to_arrays().values(), strict=True):
        assert np.array_equal(a, b, equal_nan=True)
    assert q.windows_processed == full.windows_processed
    assert q.book.opened_total == full.book.opened_total


def _blob(cfg: Config) -> bytes:
    p = Pipeline(cfg, ClusterSim(cfg.sim, scenario="mixed").topology)
    _run(p, _frames(cfg)[:120], [])
    return checkpoint.snapshot(p, partition="job-0", position="5-0")


def _reseal(body: dict[str, object]) -> bytes:
    packed = zlib.compress(msgpack.packb(body, use_bin_type=True))
    return struct.pack(">4sH32s", b"TSCK", checkpoint.SCHEMA_VERSION, hashlib.sha256(packed).digest()) + packed


def _tamper(blob: bytes, edit: str) -> bytes:
    body = checkpoint.read_body(blob)
    st = body["pipeline"]
    if edit == "class":
        st["book"]["c"] = "os:system"
    elif edit == "dtype":
        st["missing_run"]["d"] = "|O"
    elif edit == "shape":
        st["missing_run"]["s"] = [3]
        st["missing_run"]["b"] = b"\0" * 24
    elif edit == "fields":
        del st["book"]["f"]["recent"]
    elif edit == "attribute":
        del st["windows_processed"]
    elif edit == "config":
        body["config"]["warmup"] = 7
    elif edit == "tag":
        st["row"] = {"~": "pickle", "i": 999_999, "v": b"cos\nsystem\n"}
    return _reseal(body)


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda b: b[:-10], "checksum"),
        (lambda b: b[:40] + bytes([b[40] ^ 0x01]) + b[41:], "checksum"),
        (lambda b: b"XXXX" + b[4:], "magic"),
        (lambda b: b[:4] + b"\x00\x09" + b[6:], "schema version"),
        (lambda b: b"", "too short"),
        (lambda b: _tamper(b, "class"), "not allowed"),
        (lambda b: _tamper(b, "dtype"), "not allowed"),
        (lambda b: _tamper(b, "shape"), "missing_run"),
        (lambda b: _tamper(b, "fields"), "another version"),
        (lambda b: _tamper(b, "attribute"), "another version"),
        (lambda b: _tamper(b, "config"), "different detector configuration"),
        (lambda b: _tamper(b, "tag"), "unknown tag"),
    ],
    ids=[
        "truncated",
        "bit-flip",
        "magic",
        "version",
        "empty",
        "class",
        "dtype",
        "shape",
        "fields",
        "attribute",
        "config",
        "tag",
    ],
)
def test_invalid_checkpoints_are_refused(mangle: object, message: str) -> None:
    cfg = _cfg()
    blob = _blob(cfg)
    checkpoint.restore(blob, cfg, partition="job-0")  # the original is fine
    with pytest.raises(CheckpointError, match=message):
        checkpoint.restore(mangle(blob), cfg, partition="job-0")  # type: ignore[operator]


def test_checkpoint_of_another_partition_is_refused() -> None:
    cfg = _cfg()
    with pytest.raises(CheckpointError, match="belongs to partition"):
        checkpoint.restore(_blob(cfg), cfg, partition="job-1")


def test_state_of_unknown_type_fails_the_snapshot_loudly() -> None:
    cfg = _cfg()
    p = Pipeline(cfg, ClusterSim(cfg.sim, scenario="mixed").topology)
    p.assembler.stats.frames = print  # type: ignore[assignment]  # a callable is never state
    with pytest.raises(CheckpointError, match="cannot save"):
        checkpoint.snapshot(p, partition="x", position="0-0")


@pytest.mark.redis
async def test_worker_refuses_a_corrupted_checkpoint_loudly_and_keeps_working(redis_server: Server) -> None:
    cfg = make_cfg(redis_server.url, TESSERA_SIM__DURATION_S="400")
    ref = reference(cfg)
    keys = Keys(cfg.transport.redis.prefix)
    client = client_for(redis_server.url)
    try:
        async with detector(cfg) as (_w, _t), agent(cfg) as (_a, at):
            await wait_for(lambda: client.exists(keys.checkpoint("job-0")), 30, "a first checkpoint")
            await wait_for(at.done, 30, "the agent")
            await wait_for(lambda: all_committed(client, cfg, ref), 30, "every window committed")
        blob = await client.get(keys.checkpoint("job-0"))
        await client.set(keys.checkpoint("job-0"), blob[:100] + bytes([blob[100] ^ 0xFF]) + blob[101:])
        firings_before = await client.xlen(keys.firings)
        with capture_logs() as logs:
            async with detector(cfg) as (worker, _t):
                await wait_for(lambda: len(worker.detector.parts) == 2, 15, "both partitions")
                async with agent(cfg) as (_a, at):  # the same frames again: job-0 starts from scratch
                    await wait_for(at.done, 30, "the agent")
                c = worker.detector.counters
                await wait_for(
                    lambda: c.checkpoints["written"] >= 1 and c.windows["skipped"] > 0,
                    15,
                    "job-0 processed and checkpointed again",
                )
                worker.detector.refresh_view()
                text = worker.status.metrics_bytes.decode()
        assert worker.detector.counters.checkpoints["refused"] == 1
        assert worker.detector.counters.checkpoints["restored"] == 1  # job-1's checkpoint was fine
        refused = [e for e in logs if e["event"].startswith("checkpoint refused")]
        assert len(refused) == 1 and refused[0]["log_level"] == "error" and "checksum" in refused[0]["error"]
        assert refused[0]["partition"] == "job-0"
        fams = {f.name: f for f in text_string_to_metric_families(text)}
        refused_sample = [s for s in fams["tessera_checkpoints"].samples if s.labels.get("outcome") == "refused"]
        assert refused_sample[0].value == 1
        # the refused blob was never loaded: the new one was written from a fresh state; windows already
        # committed produced no second output (idempotent by window index)
        assert await client.get(keys.checkpoint("job-0")) != blob
        assert await client.xlen(keys.firings) == firings_before
    finally:
        await client.aclose()
