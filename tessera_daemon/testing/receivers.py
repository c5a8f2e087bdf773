"""Local HTTP receivers served from a thread: a PagerDuty Events API v2 stand-in, a static exporter."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from pathlib import Path

from aiohttp import web

from tessera_daemon.testing.servers import JSON, free_port

# ---------------------------------------------------------------------------------- aiohttp in a thread


class _ThreadedApp:
    """An aiohttp application served from its own event loop in a daemon thread, usable from sync and async
    code alike. Use as a context manager; ``url`` is ``http://127.0.0.1:PORT``."""

    def __init__(self) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    def make_app(self) -> web.Application:
        raise NotImplementedError

    def _serve(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        runner = web.AppRunner(self.make_app(), access_log=None)
        try:
            loop.run_until_complete(runner.setup())
            loop.run_until_complete(web.TCPSite(runner, "127.0.0.1", self.port).start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
            loop.run_until_complete(runner.cleanup())
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(runner.cleanup())
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def __enter__(self) -> _ThreadedApp:
        self._thread = threading.Thread(target=self._serve, name=type(self).__name__, daemon=True)
        self._thread.start()
        self._started.wait(15)
        if self._error is not None:
            raise RuntimeError(f"{type(self).__name__} did not start") from self._error
        return self

    def __exit__(self, *exc: object) -> None:
        if self._loop is not None and self._thread is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(15)


_PD_ACTIONS = {"trigger", "acknowledge", "resolve"}
_PD_SEVERITIES = {"critical", "error", "warning", "info"}


class PagerDutyReceiver(_ThreadedApp):
    """A local stand-in for PagerDuty's Events API v2 (``POST /v2/enqueue``) that records what it gets.

    Events are checked the way PagerDuty checks them (routing_key, event_action; for triggers
    payload.summary, payload.source and payload.severity); valid ones are answered 202 and appended to
    ``events`` (with the wall-clock time of arrival at the same index of ``event_times``), invalid ones
    answered 400 and appended to ``rejected``. ``POST /ticket`` records Alertmanager webhook payloads in
    ``tickets`` (and ``ticket_times``; point the ticket receiver there).
    """

    def __init__(self) -> None:
        super().__init__()
        self.enqueue_url = f"{self.url}/v2/enqueue"
        self.ticket_url = f"{self.url}/ticket"
        self.events: list[JSON] = []
        self.event_times: list[float] = []
        self.rejected: list[JSON] = []
        self.tickets: list[JSON] = []
        self.ticket_times: list[float] = []
        self._cond = threading.Condition()

    def __enter__(self) -> PagerDutyReceiver:
        super().__enter__()
        return self

    @staticmethod
    def problems(event: JSON) -> list[str]:
        errors = []
        if not isinstance(event.get("routing_key"), str) or len(event["routing_key"]) != 32:
            errors.append("routing_key must be a 32-character string")
        if event.get("event_action") not in _PD_ACTIONS:
            errors.append("event_action must be trigger, acknowledge or resolve")
        if event.get("event_action") == "trigger":
            payload = event.get("payload") or {}
            for key in ("summary", "source", "severity"):
                if not payload.get(key):
                    errors.append(f"payload.{key} is missing")
            if payload.get("severity") and payload["severity"] not in _PD_SEVERITIES:
                errors.append("payload.severity must be critical, error, warning or info")
            if len(str(payload.get("summary", ""))) > 1024:
                errors.append("payload.summary is longer than 1024 characters")
        elif not event.get("dedup_key"):
            errors.append("dedup_key is required to acknowledge or resolve")
        return errors

    def make_app(self) -> web.Application:
        async def enqueue(request: web.Request) -> web.Response:
            try:
                event = await request.json()
            except ValueError:
                return web.json_response({"status": "invalid event", "errors": ["not JSON"]}, status=400)
            errors = self.problems(event) if isinstance(event, dict) else ["not an object"]
            with self._cond:
                if errors:
                    self.rejected.append(event)
                else:
                    self.events.append(event)
                    self.event_times.append(time.time())
                self._cond.notify_all()
            if errors:
                return web.json_response(
                    {"status": "invalid event", "message": "Event object is invalid", "errors": errors}, status=400
                )
            return web.json_response(
                {"status": "success", "message": "Event processed", "dedup_key": event.get("dedup_key", "")}, status=202
            )

        async def ticket(request: web.Request) -> web.Response:
            body = await request.json()
            with self._cond:
                self.tickets.append(body)
                self.ticket_times.append(time.time())
                self._cond.notify_all()
            return web.json_response({"status": "ok"})

        app = web.Application()
        app.router.add_post("/v2/enqueue", enqueue)
        app.router.add_post("/ticket", ticket)
        return app

    def snapshot(self) -> list[tuple[float, JSON]]:
        """(arrival wall time, event) of every valid event so far, thread-safely."""
        with self._cond:
            return list(zip(self.event_times, self.events, strict=True))

    def wait_for(self, match: Callable[[JSON], bool], timeout_s: float = 30.0, *, tickets: bool = False) -> JSON:
        """Block until a recorded event (or ticket payload) satisfies ``match``; return it."""
        deadline = time.monotonic() + timeout_s
        with self._cond:
            while True:
                for item in self.tickets if tickets else self.events:
                    if match(item):
                        return item
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(
                        f"no matching {'ticket' if tickets else 'PagerDuty event'} after {timeout_s}s; "
                        f"got {len(self.events)} events, {len(self.rejected)} rejected, "
                        f"{len(self.tickets)} tickets"
                    )
                self._cond.wait(left)

    @staticmethod
    def write_routing_key(directory: Path, key: str = "0123456789abcdef0123456789abcdef") -> Path:
        path = directory / "pagerduty.key"
        path.write_text(key + "\n")
        return path


class StaticExporter(_ThreadedApp):
    """Serves ``text`` (Prometheus text format, mutable attribute) at /metrics: a stand-in scrape target for
    alert plumbing tests that need no daemon."""

    def __init__(self, text: str = "") -> None:
        super().__init__()
        self.text = text
        self.target = f"127.0.0.1:{self.port}"

    def __enter__(self) -> StaticExporter:
        super().__enter__()
        return self

    def make_app(self) -> web.Application:
        async def metrics(_: web.Request) -> web.Response:
            return web.Response(text=self.text, content_type="text/plain", charset="utf-8")

        app = web.Application()
        app.router.add_get("/metrics", metrics)
        return app
