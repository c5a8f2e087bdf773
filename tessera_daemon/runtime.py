"""The process runtime shared by ``run``, ``agent`` and ``detector``: signals, systemd notification,
the watchdog, and the order of start-up and shutdown.

Every long-running subcommand follows the same life cycle through :class:`ProcessRuntime`:

1. ``start()``: SIGTERM / SIGINT set the process's stop event (a second signal forces exit 1).
2. the process builds its parts and starts serving HTTP, then ``ready()``: ``READY=1`` to systemd and,
   when systemd armed a watchdog (``WATCHDOG_USEC``, ``WatchdogSec=`` in the unit), a task that sends
   ``WATCHDOG=1`` every half watchdog period while the process is alive (its heartbeat is fresh).
3. the stop event is set (signal, end of simulation, caller), then ``stopping()``: ``STOPPING=1``; the
   process drains and closes its parts in its own fixed order (sources, then the detector, then HTTP).
4. ``close()``: the watchdog task ends and the signal handlers are removed.

``check_all_in_one`` holds what ``run`` refuses beyond the configuration's own validation, so that
``tessera-daemon run --check-config`` and ``run`` itself refuse the same things.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import socket
from collections.abc import Callable

from aiohttp import web

from tessera_daemon.aio import install_stop_signals
from tessera_daemon.config import Config
from tessera_daemon.errors import BindError, ConfigError
from tessera_daemon.log import get_logger
from tessera_daemon.notify import sd_notify, watchdog_interval_s
from tessera_daemon.web.server import GuardedRunner

log = get_logger(__name__)


def check_all_in_one(cfg: Config) -> None:
    """``run`` is the all-in-one process and uses the in-memory transport."""
    if cfg.transport.kind != "memory":
        raise ConfigError(
            "transport.kind",
            f"`run` is the all-in-one process and uses the in-memory transport; "
            f"for {cfg.transport.kind!r} run `tessera-daemon agent` and `tessera-daemon detector`",
        )


async def serve_http(app: web.Application, cfg: Config) -> tuple[web.AppRunner, int]:
    """Start ``app`` on http.host:http.port; return the runner and the bound port (http.port 0 picks one).

    An address that cannot be bound raises :class:`BindError` naming the setting to change (one line at
    the command line, exit 2) instead of a traceback.
    """
    runner = GuardedRunner(app, cfg.http)  # header timeout and connection cap (web/server.py)
    await runner.setup()
    host, port = cfg.http.host, cfg.http.port
    try:
        await web.TCPSite(runner, host, port).start()
    except (OSError, socket.gaierror) as exc:
        await runner.cleanup()
        if exc.errno == errno.EADDRINUSE:
            raise BindError(
                "http.port",
                f"{host}:{port} is already in use by another process; set another http.port (TESSERA_HTTP__PORT)",
            ) from exc
        if exc.errno == errno.EACCES:
            raise BindError(
                "http.port",
                f"not allowed to listen on {host}:{port} (ports below 1024 need privileges); set another http.port",
            ) from exc
        raise BindError("http.host", f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    bound = next((int(a[1]) for a in runner.addresses), port)
    return runner, bound


class ProcessRuntime:
    """Signals, ``READY`` / ``WATCHDOG`` / ``STOPPING`` and the watchdog task of one process.

    ``alive`` tells the watchdog whether the process is still making progress (its heartbeat is fresh);
    while it returns False no ``WATCHDOG=1`` is sent, so systemd restarts a process whose loops stalled
    even though its event loop still turns.
    """

    def __init__(
        self, name: str, stop: asyncio.Event, *, install_signals: bool = True, alive: Callable[[], bool] | None = None
    ) -> None:
        self.name = name
        self.stop = stop
        self.install_signals = install_signals
        self.alive = alive or (lambda: True)
        self.watchdog_s = watchdog_interval_s()
        self.pings = 0
        self._remove_signals: Callable[[], None] | None = None
        self._watchdog: asyncio.Task[None] | None = None
        self._stopping = False

    def start(self) -> None:
        if self.install_signals and self._remove_signals is None:
            self._remove_signals = install_stop_signals(self.stop)

    def ready(self) -> None:
        sd_notify("READY=1")
        if self.watchdog_s and self._watchdog is None:
            self._watchdog = asyncio.get_running_loop().create_task(
                self._ping(self.watchdog_s), name=f"{self.name}:watchdog"
            )

    def stopping(self) -> None:
        if not self._stopping:
            self._stopping = True
            sd_notify("STOPPING=1")

    async def _ping(self, interval_s: float) -> None:
        while True:
            if self.alive():
                sd_notify("WATCHDOG=1")
                self.pings += 1
            else:
                log.warning("not alive: watchdog ping withheld", process=self.name)
            await asyncio.sleep(interval_s)

    async def close(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        if self._remove_signals is not None:
            self._remove_signals()
            self._remove_signals = None
