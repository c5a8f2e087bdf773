"""The monitoring stack for drills: real Prometheus and Alertmanager on free loopback ports, a local PagerDuty
Events API v2 receiver, a static exporter, and rewrites of the shipped configs for drills.

Used by the end-to-end drill (:mod:`tessera_daemon.drill`, ``tessera-daemon drill``) and, through
``tests/ops/stack.py`` (which re-exports it and skips when a binary is missing), by the operations tests::

    from tessera_daemon.drill_stack import (PagerDutyReceiver, alertmanager_server, drill_alert_rules,
                                            drill_alertmanager_config, prometheus_server)

    with PagerDutyReceiver() as pd:
        key = pd.write_routing_key(tmp_path)
        am_cfg = drill_alertmanager_config(pd.enqueue_url, key, ticket_url=pd.ticket_url)
        rules = [drill_alert_rules(tmp_path)]
        with alertmanager_server(tmp_path, am_cfg) as am_url, \\
             prometheus_server(tmp_path, ["127.0.0.1:9477"], rules, am_url) as prom_url:
            event = pd.wait_for(lambda e: e["event_action"] == "trigger", 60)

Servers are child processes on free loopback ports, stopped by PID (SIGTERM, then SIGKILL after a timeout).
A missing binary raises :class:`MissingBinaryError`. The shipped configs (``alert_rules.yml``,
``deploy/alertmanager/alertmanager.yml``) are the package data of an installed wheel, else the files of the
source checkout this package lives in, else of the current directory (:mod:`tessera_daemon.shipped`).
Reading them needs PyYAML (a dependency).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Collection, Iterator, Sequence
from pathlib import Path
from typing import Any

from aiohttp import web

from tessera_daemon.shipped import CHECKOUT, PACKAGE_ASSETS, shipped_file

ROOT = CHECKOUT


def _located(relative: str) -> Path:
    try:
        return shipped_file(relative)
    except FileNotFoundError:  # reported when used: shipped_file names every place it looked
        return PACKAGE_ASSETS / relative


ALERT_RULES = _located("alert_rules.yml")
ALERTMANAGER_YML = _located("deploy/alertmanager/alertmanager.yml")

JSON = dict[str, Any]


class MissingBinaryError(FileNotFoundError):
    """A server binary (prometheus, alertmanager, ...) is not installed."""


def _yaml() -> Any:
    try:
        import yaml  # noqa: PLC0415 - optional: a test dependency, needed only by drills
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the drill needs PyYAML to read alert_rules.yml: pip install pyyaml") from exc
    return yaml


# ------------------------------------------------------------------------------------------ processes


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def wait_port(port: int, timeout_s: float = 15.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before listening on {port}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.02)
    raise TimeoutError(f"nothing listening on 127.0.0.1:{port} after {timeout_s}s")


def find_exe(name: str, *alternatives: str) -> str:
    """Path of the first of ``name``, ``alternatives`` on PATH (or in /usr/sbin); MissingBinaryError if none."""
    for n in (name, *alternatives):
        path = shutil.which(n) or (f"/usr/sbin/{n}" if Path(f"/usr/sbin/{n}").exists() else None)
        if path:
            return path
    raise MissingBinaryError(f"{name} is not installed (apt-get install prometheus prometheus-alertmanager)")


def stop(proc: subprocess.Popen[bytes], timeout_s: float = 10.0) -> None:
    """Stop one child by PID: SIGTERM, then SIGKILL when it has not exited after ``timeout_s``."""
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        proc.wait(timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout_s)


@contextlib.contextmanager
def running(argv: Sequence[str], port: int, log: Path, timeout_s: float = 15.0) -> Iterator[subprocess.Popen[bytes]]:
    """Start ``argv``, wait until ``port`` accepts connections, yield the process, stop it by PID."""
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT)
        try:
            wait_port(port, timeout_s, proc)
            yield proc
        finally:
            stop(proc)


# ------------------------------------------------------------------------------------------ HTTP


def http_json(url: str, data: Any = None, timeout_s: float = 5.0) -> Any:
    """GET (or POST ``data`` as JSON) and decode the JSON answer; HTTP errors raise."""
    body = None if data is None else json.dumps(data).encode()
    req = urllib.request.Request(url, data=body, method="GET" if body is None else "POST")
    if body is not None:
        req.add_header("Content-Type", "application/json")
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:
        raw = resp.read()
    return json.loads(raw) if raw else None


def promql(base_url: str, expr: str, timeout_s: float = 5.0) -> JSON:
    """POST /api/v1/query; returns the decoded answer, also for 400 (bad PromQL), as Prometheus reports it."""
    data = urllib.parse.urlencode({"query": expr}).encode()
    req = urllib.request.Request(f"{base_url}/api/v1/query", data=data, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            answer: JSON = json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        with exc:
            answer = json.loads(exc.read())
    return answer


def wait_until(check: Callable[[], Any], timeout_s: float, interval_s: float = 0.1, what: str = "") -> Any:
    """Call ``check`` until it returns something truthy; return that, or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(OSError, ValueError):
            result = check()
            if result:
                return result
        if time.monotonic() >= deadline:
            raise TimeoutError(f"not true after {timeout_s}s: {what or check}")
        time.sleep(interval_s)


def _wait_ready(base_url: str, timeout_s: float = 15.0) -> None:
    def ready() -> bool:
        with urllib.request.urlopen(f"{base_url}/-/ready", timeout=1.0) as resp:
            return bool(resp.status == 200)

    wait_until(ready, timeout_s, 0.05, f"{base_url}/-/ready")


# ------------------------------------------------------------------------------------------ servers


@contextlib.contextmanager
def prometheus_server(
    tmp_path: Path,
    scrape_targets: Sequence[str] = (),
    rule_files: Sequence[Path] = (),
    alertmanager_url: str | None = None,
    *,
    job: str = "tessera",
    scrape_interval: str = "1s",
    evaluation_interval: str = "1s",
    external_labels: dict[str, str] | None = None,
) -> Iterator[str]:
    """A real Prometheus on a free loopback port; yields its base URL (``http://127.0.0.1:PORT``).

    ``scrape_targets`` are ``host:port`` of one job ``job`` (empty: nothing is scraped);
    ``rule_files`` are loaded as they are; ``alertmanager_url`` (``http://host:port``) receives alerts.
    The first scraped sample becomes queryable about 5 s after start (service discovery tick).
    """
    exe = find_exe("prometheus")
    port = free_port()
    d = tmp_path / f"prometheus-{port}"
    d.mkdir(parents=True)
    config: JSON = {
        "global": {
            "scrape_interval": scrape_interval,
            "scrape_timeout": scrape_interval,
            "evaluation_interval": evaluation_interval,
            "external_labels": external_labels or {"cluster": "test"},
        },
        "rule_files": [str(Path(p).resolve()) for p in rule_files],
        "scrape_configs": [],
    }
    if scrape_targets:
        config["scrape_configs"].append({"job_name": job, "static_configs": [{"targets": list(scrape_targets)}]})
    if alertmanager_url:
        am = urllib.parse.urlsplit(alertmanager_url)
        config["alerting"] = {
            "alertmanagers": [
                {
                    "scheme": am.scheme or "http",
                    "path_prefix": am.path or "/",
                    "static_configs": [{"targets": [am.netloc]}],
                }
            ]
        }
    # JSON is YAML: no YAML library needed to write the configuration
    (d / "prometheus.yml").write_text(json.dumps(config, indent=2))
    argv = [
        exe,
        f"--config.file={d / 'prometheus.yml'}",
        f"--storage.tsdb.path={d / 'tsdb'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--log.level=warn",
    ]
    with running(argv, port, d / "prometheus.log"):
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base)
        yield base


@contextlib.contextmanager
def alertmanager_server(tmp_path: Path, config_text: str) -> Iterator[str]:
    """A real Alertmanager (gossip off) with ``config_text`` on a free loopback port; yields its base URL."""
    exe = find_exe("prometheus-alertmanager", "alertmanager")
    port = free_port()
    d = tmp_path / f"alertmanager-{port}"
    d.mkdir(parents=True)
    (d / "alertmanager.yml").write_text(config_text)
    argv = [
        exe,
        f"--config.file={d / 'alertmanager.yml'}",
        f"--storage.path={d / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
        "--log.level=warn",
    ]
    with running(argv, port, d / "alertmanager.log"):
        base = f"http://127.0.0.1:{port}"
        _wait_ready(base)
        yield base


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


# ------------------------------------------------------------------------------------------ config rewrites


def drill_alertmanager_config(
    pagerduty_url: str,
    routing_key_file: Path,
    *,
    ticket_url: str | None = None,
    group_wait: str = "1s",
    group_interval: str = "1s",
    repeat_interval: str = "1h",
    source: Path = ALERTMANAGER_YML,
) -> str:
    """deploy/alertmanager/alertmanager.yml with every PagerDuty ``url:`` pointed at ``pagerduty_url``
    (e.g. ``PagerDutyReceiver.enqueue_url``), ``routing_key_file`` replaced, the ticket webhooks pointed at
    ``ticket_url`` (when given) and the routing tree's timers shortened for a drill. Routes, receivers,
    templates and inhibitions stay as shipped."""
    yaml = _yaml()
    cfg = yaml.safe_load(source.read_text())
    for receiver in cfg.get("receivers", []):
        for pd in receiver.get("pagerduty_configs", []):
            pd["url"] = pagerduty_url
            pd.pop("routing_key", None)
            pd["routing_key_file"] = str(routing_key_file)
        if ticket_url is not None:
            for hook in receiver.get("webhook_configs", []):
                hook["url"] = ticket_url

    def shorten(route: JSON) -> None:
        route["group_wait"], route["group_interval"], route["repeat_interval"] = (
            group_wait,
            group_interval,
            repeat_interval,
        )
        for child in route.get("routes", []):
            shorten(child)

    shorten(cfg["route"])
    return str(yaml.safe_dump(cfg, sort_keys=False, width=1000))


_DURATION = re.compile(r"(\d+)(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    """A Prometheus duration (``1m30s``, ``500ms``) in seconds."""
    return sum(int(n) * _UNIT_S[u] for n, u in _DURATION.findall(duration))


_seconds = seconds  # the name tests/ops used


def drill_alert_rules(
    tmp_path: Path,
    *,
    max_for: str = "0s",
    interval: str = "1s",
    source: Path = ALERT_RULES,
    groups: Collection[str] | None = None,
) -> Path:
    """A copy of alert_rules.yml in ``tmp_path`` with every group evaluated each ``interval`` and every
    ``for:`` capped at ``max_for`` (only in the rule groups named in ``groups``; None: all of them), so a
    drill does not wait minutes; expressions, labels and annotations are unchanged."""
    yaml = _yaml()
    cfg = yaml.safe_load(source.read_text())
    cap = seconds(max_for)
    for group in cfg["groups"]:
        group["interval"] = interval
        if groups is not None and group["name"] not in groups:
            continue
        for rule in group["rules"]:
            if "for" in rule and seconds(rule["for"]) > cap:
                rule["for"] = max_for
    out = tmp_path / "alert_rules.drill.yml"
    out.write_text(yaml.safe_dump(cfg, sort_keys=False, width=1000))
    return out
