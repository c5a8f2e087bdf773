"""asyncio plumbing shared by every process: stop signals, waiting on several events, a ticker."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable

from tessera_daemon.log import get_logger

log = get_logger(__name__)


def install_stop_signals(stop: asyncio.Event) -> Callable[[], None]:
    """SIGTERM / SIGINT set ``stop`` (finish the current window, then exit 0); a second one forces
    exit. Returns the function that removes the handlers again."""
    loop = asyncio.get_running_loop()
    seen = 0

    def on_signal(sig: signal.Signals) -> None:
        nonlocal seen
        seen += 1
        if seen > 1:
            log.warning("second signal: forcing exit", signal=sig.name)
            raise SystemExit(1)
        log.info("stopping", signal=sig.name)
        stop.set()

    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)

    def remove() -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)

    return remove


async def wait_any(*events: asyncio.Event) -> None:
    """Return as soon as any of ``events`` is set."""
    waiters = [asyncio.ensure_future(e.wait()) for e in events]
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for w in waiters:
            w.cancel()


async def ticker(interval_s: float) -> AsyncIterator[float]:
    """Yield the loop time every ``interval_s``, compensating for drift; skip ticks that were missed."""
    loop = asyncio.get_running_loop()
    next_at = loop.time()
    while True:
        yield next_at
        next_at += interval_s
        now = loop.time()
        if next_at < now:  # we fell behind: skip missed ticks instead of bursting
            next_at = now + interval_s - ((now - next_at) % interval_s)
        await asyncio.sleep(next_at - now)
