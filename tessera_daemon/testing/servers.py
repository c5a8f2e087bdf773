"""Server processes for drills and tests: real Prometheus and Alertmanager on free loopback ports, and the
process and HTTP helpers they need (the receivers are in ``receivers``, the config rewrites in ``alerting``).

Used by the end-to-end drill (:mod:`tessera_daemon.drill`, ``tessera-daemon drill``) and, through
``tests/ops/stack.py`` (which re-exports it and skips when a binary is missing), by the operations tests::

    from tessera_daemon.testing import (PagerDutyReceiver, alertmanager_server, drill_alert_rules,
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

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from tessera_daemon.shipped import CHECKOUT

ROOT = CHECKOUT

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
