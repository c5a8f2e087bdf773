"""Running the drill: the daemon in this process, the local alerting stack, the watch loop."""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import aiohttp

from tessera_daemon.config import (
    Config,
)
from tessera_daemon.daemon import Running
from tessera_daemon.daemon import run as run_daemon
from tessera_daemon.drill.observe import Observer
from tessera_daemon.drill.report import print_report, report_obj
from tessera_daemon.drill.scenario import (
    CLUSTER,
    JSON,
    POLL_S,
    RESOLVE_TICKS,
    ROUTING_KEY,
    SCENARIO_NAME,
    SETTLE_S,
    SLACK_WALL_S,
    TICK_S,
    TOPOLOGY,
    WINDOW_S,
    Case,
    drill_cases,
    drill_config,
    for_cap,
    registered,
)
from tessera_daemon.drill.verdict import CaseResult, Check, assess_case, case_checks, global_checks
from tessera_daemon.shipped import shipped_file
from tessera_daemon.sim import DEFAULT_START_TS, Scenario

if TYPE_CHECKING:
    from tessera_daemon.testing.receivers import PagerDutyReceiver

# ------------------------------------------------------------------------------------------ the run


async def _get_json(session: aiohttp.ClientSession, url: str) -> Any:
    async with session.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


async def _watch(
    obs: Observer, running: Running, prom: str, am: str, done: Callable[[], bool], deadline: float
) -> None:
    """Poll the daemon, Prometheus and Alertmanager until ``done()`` (then SETTLE_S more, so that late
    notifications and the alerts' disappearance are seen too) or ``deadline``."""
    timeout = aiohttp.ClientTimeout(total=2.0)
    settle_until = math.inf
    async with aiohttp.ClientSession(timeout=timeout) as session:
        n = 0
        while (now := time.time()) < min(deadline, settle_until):
            obs.watch_daemon(running.status.snapshot, now)
            try:
                answer = await _get_json(session, f"{prom}/api/v1/alerts")
                obs.watch_prometheus(answer["data"]["alerts"], time.time())
                if n % 3 == 0:
                    obs.watch_alertmanager(
                        await _get_json(session, f"{am}/api/v2/alerts?active=true&inhibited=true&silenced=true")
                    )
            except (aiohttp.ClientError, TimeoutError, KeyError, ValueError) as exc:
                obs.errors.append(f"{type(exc).__name__}: {exc}")
            n += 1
            if settle_until == math.inf and done():
                settle_until = time.time() + SETTLE_S
            await asyncio.sleep(POLL_S)


def _all_resolved(results: Callable[[], list[CaseResult]]) -> Callable[[], bool]:
    def done() -> bool:
        return all(r.moments["resolve_received"].wall is not None for r in results())

    return done


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


async def run_drill(cfg: Config, *, out: Path | None = None, speedup: float = 20.0) -> int:
    """Run the drill; print the timeline; write it as JSON to ``out``. 0 when every expectation held, else 1."""
    if not speedup > 0:
        print("drill: --speedup must be > 0", file=sys.stderr)
        return 1
    # the local servers (tessera_daemon.testing) are loaded only now that the drill starts them
    from tessera_daemon.testing.servers import MissingBinaryError  # noqa: PLC0415

    try:
        rules_src = shipped_file("alert_rules.yml")
        am_src = shipped_file("deploy/alertmanager/alertmanager.yml")
    except FileNotFoundError as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return 1
    start_ts = DEFAULT_START_TS  # fixed, window-aligned: the same seed gives the same firings in event time
    dcfg = drill_config(cfg, speedup, start_ts)
    cases = drill_cases(dcfg.detector.warmup_max_windows, speedup)
    scenario = Scenario(
        SCENARIO_NAME, "end-to-end alerting drill: shard, rack and hard fault", tuple(c.spec for c in cases)
    )
    last_clear = max(c.spec.start_tick + (c.spec.duration_ticks or 0) for c in cases)
    budget_s = (last_clear + RESOLVE_TICKS) * TICK_S / speedup + SLACK_WALL_S
    meta: JSON = {
        "speedup": speedup,
        "tick_s": TICK_S,
        "window_s": WINDOW_S,
        "topology": TOPOLOGY,
        "warmup_windows": dcfg.detector.warmup_max_windows,
        "for_cap_firings": for_cap(speedup),
        "poll_interval_s": dcfg.sources.poll_interval_s,
        "budget_s": round(budget_s, 1),
    }
    print(
        f"drill: speedup {speedup:g}, warm-up up to {dcfg.detector.warmup_max_windows} windows "
        f"({dcfg.detector.warmup_max_windows * WINDOW_S / speedup:.1f} s wall), faults at ticks "
        f"{[c.spec.start_tick for c in cases]} for {cases[0].spec.duration_ticks} ticks, "
        f"for: capped at {for_cap(speedup)}, budget {budget_s:.0f} s",
        flush=True,
    )
    try:
        with tempfile.TemporaryDirectory(prefix="tessera-drill-") as tmp, registered(scenario):
            results, checks, findings, obs, pd = await _run(
                dcfg, cases, Path(tmp), rules_src, am_src, speedup, start_ts, budget_s
            )
    except MissingBinaryError as exc:
        print(f"drill: {exc}", file=sys.stderr)
        return 1
    print_report(results, checks, findings, obs, sys.stdout)
    if out is not None:
        text = json.dumps(report_obj(results, checks, findings, obs, pd, meta), indent=2, default=str)
        await asyncio.to_thread(_write, out, text)
        print(f"drill: timeline written to {out}")
    return 0 if all(c.ok for c in checks) else 1


async def _run(
    dcfg: Config,
    cases: list[Case],
    tmp: Path,
    rules_src: Path,
    am_src: Path,
    speedup: float,
    start_ts: float,
    budget_s: float,
) -> tuple[list[CaseResult], list[Check], list[str], Observer, PagerDutyReceiver]:
    from tessera_daemon.testing import (  # noqa: PLC0415 - the local servers, only when the drill starts them
        PagerDutyReceiver,
        alertmanager_server,
        drill_alert_rules,
        drill_alertmanager_config,
        prometheus_server,
    )

    obs = Observer(start_ts=start_ts, speedup=speedup)
    stack = contextlib.ExitStack()
    daemon_task: asyncio.Task[int] | None = None
    running_fut: asyncio.Future[Running] = asyncio.get_running_loop().create_future()
    pd = PagerDutyReceiver()

    def current() -> list[CaseResult]:
        return [assess_case(c, obs, pd.snapshot(), start_ts) for c in cases]

    try:
        await asyncio.to_thread(stack.enter_context, pd)
        key = PagerDutyReceiver.write_routing_key(tmp, ROUTING_KEY)
        am_text = drill_alertmanager_config(pd.enqueue_url, key, ticket_url=pd.ticket_url, source=am_src)
        rules = drill_alert_rules(tmp, max_for=for_cap(speedup), source=rules_src, groups={"tessera-firings"})
        am = await asyncio.to_thread(stack.enter_context, alertmanager_server(tmp, am_text))

        def on_running(r: Running) -> None:
            if not running_fut.done():
                running_fut.set_result(r)

        daemon_task = asyncio.create_task(run_daemon(dcfg, on_running=on_running, install_signals=False))
        while not running_fut.done():
            if daemon_task.done():
                raise RuntimeError(f"the daemon exited before serving: {daemon_task.result()}")
            await asyncio.sleep(0.05)
        running = running_fut.result()
        prom = await asyncio.to_thread(
            stack.enter_context,
            prometheus_server(tmp, [f"127.0.0.1:{running.port}"], [rules], am, external_labels={"cluster": CLUSTER}),
        )
        deadline = time.time() + budget_s
        await _watch(obs, running, prom, am, _all_resolved(current), deadline)
    finally:
        await asyncio.to_thread(stack.close)  # Prometheus, Alertmanager, then the receiver
        if daemon_task is not None:
            if running_fut.done():
                running_fut.result().stop.set()
            else:
                daemon_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await daemon_task
    results = current()
    checks = [c for r in results for c in case_checks(r)]
    more, findings = global_checks(results, pd, obs)
    return results, checks + more, findings, obs, pd
