"""Verdict-group feed against real local aiohttp DeploySignal receivers; group building."""

from __future__ import annotations

import asyncio
import hashlib
import json
import random
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tessera_daemon.engine.events import EventBook
from tessera_daemon.outputs.verdict_feed import (
    VerdictFeed,
    VerdictGroup,
    build_verdict_group,
    verdict_group_for_event,
)
from tessera_daemon.settings.events import DeploySignalSettings
from tests.event_helpers import cfg, event, firing, topology
from tests.servers import free_port
from tests.web.servers import serve_app


@dataclass
class Receiver:
    """A DeploySignal stand-in: answers from ``script`` in turn (the last one repeats)."""

    script: list[tuple[int, dict[str, str]]]
    seen: list[tuple[dict[str, str], bytes]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.read()
        self.seen.append((dict(request.headers), body))
        status, headers = self.script[min(len(self.seen), len(self.script)) - 1]
        if status == 202:
            env = json.loads(body)
            answer = {
                "contract_version": "v1",
                "status": "accepted",
                "correlation_key": env["verdict_group"]["group_id"],
            }
            return web.json_response(answer, status=202, headers=headers)
        return web.json_response(
            {"contract_version": "v1", "status": "rejected", "reason": "nope"}, status=status, headers=headers
        )

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_post("/v1/tessera/verdict-groups", self.handle)
        return app


def group(eid: str = "fw") -> VerdictGroup:
    return build_verdict_group(
        [firing("h1/g0", 1500.0), firing("h1/g1", 1510.0, detector="rule:xid")],
        window_start_ts=1000.0,
        window_end_ts=2800.0,
        cluster_event_id=eid,
    )


def feed(url: str, **kw: Any) -> VerdictFeed:
    opts: dict[str, Any] = {
        "instance_id": "tessera-a",
        "token": "feed-tok",
        "timeout_s": 2.0,
        "max_attempts": 4,
        "backoff_base_s": 0.01,
        "backoff_cap_s": 0.05,
        "rng": random.Random(1),
        "clock": lambda: 4242.0,
        **kw,
    }
    return VerdictFeed(url, **opts)


async def test_retries_503_then_accepts_with_a_stable_idempotency_key() -> None:
    rx = Receiver([(503, {}), (503, {"Retry-After": "0"}), (202, {})])
    async with serve_app(rx.app()) as base:
        f = feed(base + "/")
        await f.start()
        g = group()
        assert f.submit(g)
        await f.close(deadline_s=5.0)
    assert (f.sent, f.retried, f.failed, f.dropped) == (1, 2, 0, 0)
    assert len(rx.seen) == 3
    keys = {h["Idempotency-Key"] for h, _ in rx.seen}
    assert keys == {hashlib.sha256(g.group_id.encode()).hexdigest()}
    assert len({b for _, b in rx.seen}) == 1  # every retry sends the same bytes
    headers, body = rx.seen[0]
    assert headers["x-tessera-instance-id"] == "tessera-a" and headers["Authorization"] == "Bearer feed-tok"
    env = json.loads(body)
    assert env["contract_version"] == "v1" and env["emitted_at_ts"] == 4242.0
    vg = env["verdict_group"]
    assert vg["group_id"] == g.group_id and vg["cluster_event_id"] == "fw" and vg["deploy_id"] == "fw"
    assert vg["firing_family_count"] == 2 and vg["confidence"] == round(2 / 3, 6)
    assert vg["correlational_not_causal"] is True
    assert (vg["window_start_ts"], vg["window_end_ts"]) == (1000.0, 2800.0)


async def test_400_is_not_retried_and_is_counted() -> None:
    rx = Receiver([(400, {})])
    async with serve_app(rx.app()) as base:
        f = feed(base)
        await f.start()
        f.submit(group("a"))
        f.submit(group("b"))
        await f.close(deadline_s=5.0)
    assert len(rx.seen) == 2
    assert (f.sent, f.retried, f.failed, f.dropped) == (0, 0, 2, 0)
    assert f.failures == {"http_4xx": 2} and "HTTP 400" in f.last_error


async def test_429_retried_and_attempts_exhausted_count_one_failure() -> None:
    rx = Receiver([(429, {"Retry-After": "0.01"})])
    async with serve_app(rx.app()) as base:
        f = feed(base, max_attempts=3)
        await f.start()
        f.submit(group())
        await f.close(deadline_s=5.0)
    assert len(rx.seen) == 3 and (f.sent, f.retried, f.failed) == (0, 2, 1)
    assert f.failures == {"http_429": 1}


async def test_network_errors_are_retried_then_fail() -> None:
    f = feed(f"http://127.0.0.1:{free_port()}", max_attempts=3)
    await f.start()
    f.submit(group())
    await f.close(deadline_s=5.0)
    assert (f.sent, f.retried, f.failed) == (0, 2, 1) and f.failures == {"network_error": 1}


async def test_2xx_rejection_and_invalid_answer_fail_without_retry() -> None:
    answers = iter(
        [web.json_response({"contract_version": "v1", "status": "rejected", "reason": "dup"}), web.Response(text="ok")]
    )

    async def handle(request: web.Request) -> web.Response:
        await request.read()
        return next(answers)

    app = web.Application()
    app.router.add_post("/v1/tessera/verdict-groups", handle)
    async with serve_app(app) as base:
        f = feed(base)
        await f.start()
        f.submit(group("a"))
        f.submit(group("b"))
        await f.close(deadline_s=5.0)
    assert f.failed == 2 and f.retried == 0 and f.failures == {"rejected": 1, "invalid_response": 1}


async def test_bounded_queue_and_close_deadline_drop_what_cannot_be_sent() -> None:
    release = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        await request.read()
        await release.wait()
        return web.json_response({"contract_version": "v1", "status": "accepted"}, status=202)

    app = web.Application()
    app.router.add_post("/v1/tessera/verdict-groups", slow)
    async with serve_app(app) as base:
        f = feed(base, queue_max=2, timeout_s=10.0)
        await f.start()
        assert f.submit(group("a"))
        await asyncio.sleep(0.05)  # "a" is in flight
        assert f.submit(group("b")) and f.submit(group("c"))
        assert not f.submit(group("d"))  # queue full
        assert f.pending == 2 and f.dropped == 1
        await f.close(deadline_s=0.1)
        release.set()
    assert f.sent == 0 and f.dropped == 4  # d (full) + a (in flight) + b, c (queued)
    assert not f.submit(group("e")) and f.dropped == 5  # closed


def test_build_verdict_group() -> None:
    fs = [
        firing("h1/g0", 1.0, detector="A"),
        firing("h1/g1", 2.0, detector="A"),
        firing("h2/g0", 3.0, detector="rule:xid"),
        firing("h2/g0", 4.0, detector="rule:ecc_dbe"),
        firing("h3/g0", 5.0, detector="D"),
        firing("h3/g0", 6.0, detector="E"),
    ]
    g = build_verdict_group(fs, window_start_ts=0.0, window_end_ts=10.0)
    assert g.firing_family_count == 4 and g.confidence == 1.0 and g.cluster_event_id is None
    assert g.deploy_id == g.group_id and g.group_id.startswith("vg-")
    assert build_verdict_group(fs[:1], window_start_ts=0.0, window_end_ts=10.0).confidence == round(1 / 3, 6)
    assert build_verdict_group([], window_start_ts=0.0, window_end_ts=10.0).firing_family_count == 0
    # deterministic: one group per (event, window)
    again = build_verdict_group(list(reversed(fs)), window_start_ts=0.0, window_end_ts=10.0)
    assert again == g
    assert build_verdict_group(fs, window_start_ts=0.0, window_end_ts=10.0, cluster_event_id="x").group_id != g.group_id
    assert "cluster_event_id" not in g.to_obj()


def test_verdict_group_for_event_uses_attributed_firings_and_deploy_id() -> None:
    b = EventBook(topology(), cfg())
    rec = b.add(event("ds-9", kind="model_redeploy", scope=("r1",)), metadata={"deploy_id": "dep-1"}).record
    assert rec is not None
    fs = [
        firing("h1/g0", 1100.0, detector="A"),
        firing("h2/g0", 1200.0, detector="C"),
        firing("h3/g0", 1200.0, detector="D"),
    ]
    for f in fs:
        b.attribute(f)
    g = verdict_group_for_event(rec, fs)
    assert g.cluster_event_id == "ds-9" and g.deploy_id == "dep-1" and g.firing_family_count == 2
    assert (g.window_start_ts, g.window_end_ts) == (1000.0, 1600.0)


def test_feed_from_settings() -> None:
    assert VerdictFeed.from_settings(DeploySignalSettings(), cluster="c") is None
    f = VerdictFeed.from_settings(DeploySignalSettings(ds_url="http://ds:1/", feed_max_attempts=2), cluster="c1")
    assert f is not None and f.url == "http://ds:1/v1/tessera/verdict-groups"
    assert f.instance_id == "c1" and f.max_attempts == 2
