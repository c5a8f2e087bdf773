"""Local servers for the drill and the tests: real Prometheus and Alertmanager on free loopback ports, a
PagerDuty Events API v2 stand-in, a static exporter, and the shipped alerting configs rewritten for drills.

Not on the daemon's runtime path: ``run``, ``agent`` and ``detector`` never import it (an import
contract in pyproject.toml says so); ``tessera-daemon drill`` imports it when it starts its stack, and
tests/ops uses it through tests/ops/stack.py. ``servers`` starts processes and talks HTTP,
``receivers`` serves aiohttp apps from a thread, ``alerting`` rewrites the shipped configs.
"""

from tessera_daemon.testing.alerting import (
    ALERT_RULES,
    ALERTMANAGER_YML,
    drill_alert_rules,
    drill_alertmanager_config,
    seconds,
)
from tessera_daemon.testing.receivers import PagerDutyReceiver, StaticExporter
from tessera_daemon.testing.servers import (
    JSON,
    ROOT,
    MissingBinaryError,
    alertmanager_server,
    find_exe,
    free_port,
    http_json,
    prometheus_server,
    promql,
    running,
    stop,
    wait_port,
    wait_until,
)

__all__ = [
    "ALERTMANAGER_YML",
    "ALERT_RULES",
    "JSON",
    "ROOT",
    "MissingBinaryError",
    "PagerDutyReceiver",
    "StaticExporter",
    "alertmanager_server",
    "drill_alert_rules",
    "drill_alertmanager_config",
    "find_exe",
    "free_port",
    "http_json",
    "prometheus_server",
    "promql",
    "running",
    "seconds",
    "stop",
    "wait_port",
    "wait_until",
]
