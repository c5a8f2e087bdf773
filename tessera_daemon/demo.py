"""``tessera-daemon demo [SCENARIO]``: the simulator fast-forwarded through warm-up, watched in the console.

The daemon runs on the built-in simulated cluster with the chosen scenario. Simulated time first
runs ``--fast-forward`` times faster than the wall clock until shortly before the scenario's first
fault (or, for a scenario without faults, through the longest warm-up), then at ``--speed`` so the
faults can be watched arriving. The console URL is printed; a browser is opened only when one is
available and ``--no-browser`` is not given. The scenario's announced events (the firmware push) are
added to the daemon's event book at start, as a change calendar would (``--unannounced``: not).
``--list`` prints the scenarios: what each injects and what the daemon should find.
"""

from __future__ import annotations

import asyncio
import dataclasses
import os
import sys
import time
import webbrowser

from tessera_daemon.config import Config
from tessera_daemon.log import get_logger

log = get_logger(__name__)

LEAD_TICKS = 60  # live speed starts this many simulated ticks before the first fault


def first_fault_tick(cfg: Config) -> int | None:
    from tessera_daemon.sim.scenarios import get_scenario  # noqa: PLC0415

    starts = [f.start_tick for f in get_scenario(cfg.sim.scenario).faults]
    return min(starts) if starts else None


def fast_forward_ticks(cfg: Config) -> int:
    """Simulated ticks to run at the fast-forward speed before slowing down."""
    window_s = cfg.window.length_s or cfg.sim.tick_s  # "auto" (0): the sources' cadence, the simulator's tick
    warmup_ticks = int(cfg.detector.warmup_max_windows * window_s / cfg.sim.tick_s)
    first = first_fault_tick(cfg)
    return warmup_ticks if first is None else max(0, first - LEAD_TICKS)


def browser_available() -> bool:
    if sys.platform in ("darwin", "win32"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def print_catalogue() -> None:
    from tessera_daemon.sim.catalogue import catalogue  # noqa: PLC0415 - the simulator only on demand

    for s in catalogue():
        print(f"{s['name']}\n    injects: {s['injects']}\n    expect:  {s['expect']}")


async def run_demo(cfg: Config, *, speed: float, fast_forward: float, open_browser: bool, announce: bool = True) -> int:
    """Run the daemon on the simulator with the demo's speed schedule; return its exit code."""
    from tessera_daemon.daemon import Running, run  # noqa: PLC0415
    from tessera_daemon.sources.synthetic import SyntheticSource  # noqa: PLC0415

    cfg = dataclasses.replace(
        cfg, sources=dataclasses.replace(cfg.sources, enabled=()), sim=dataclasses.replace(cfg.sim, speedup=speed)
    )
    ff_ticks = fast_forward_ticks(cfg)
    tasks: set[asyncio.Task[None]] = set()

    async def schedule(src: SyntheticSource) -> None:
        if ff_ticks <= 0:
            return
        t0 = time.monotonic()
        target = src.start_ts + ff_ticks * src.sim.tick_s
        src.set_speedup(fast_forward, until_ts=target)  # back to `speed` once the simulator reaches target
        while src.sim_ts < target:  # noqa: ASYNC110 - polls the simulator's clock, which sets no event
            await asyncio.sleep(0.2)
        log.info(
            "demo: fast-forward done, now at live speed",
            fast_forward_s=round(time.monotonic() - t0, 1),
            speed=speed,
            simulated_tick=src.sim.tick,
        )

    def on_running(r: Running) -> None:
        host = cfg.http.host if cfg.http.host not in ("0.0.0.0", "::") else "127.0.0.1"
        url = f"http://{host}:{r.port}/"
        print(f"tessera-daemon demo: scenario {cfg.sim.scenario!r}; console at {url}", flush=True)
        src = next((s for s in r.sources if isinstance(s, SyntheticSource)), None)
        if src is not None and announce:  # the scenario's announced events (a firmware push), as a change calendar
            for ev in src.events:
                res = r.add_event(ev, "simulator")
                log.info("demo: event announced", id=ev.id, kind=ev.kind, status=res.status, reason=res.reason)
        if src is not None:
            task = asyncio.get_running_loop().create_task(schedule(src))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
        if open_browser and browser_available():
            try:
                webbrowser.open(url + "#incidents")
            except webbrowser.Error as exc:
                log.info("no browser opened", error=str(exc))

    return await run(cfg, on_running=on_running)
