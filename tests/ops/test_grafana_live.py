"""The dashboards against a live daemon: a real Prometheus scrapes `tessera-daemon run` on the
simulator, and every panel and variable query returns data, except those built only for the
agent / detector split (series documented with mode "redis" in docs/metrics.md)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from tessera_daemon.testing import free_port, prometheus_server, promql, wait_port
from tests.ops.catalog import ROOT
from tests.ops.test_grafana import _VAR, BUILTINS, DASHBOARD_FILES, _expressions, _load

pytestmark = pytest.mark.prometheus


def redis_only_series() -> set[str]:
    names = set()
    for line in (ROOT / "docs" / "metrics.md").read_text().splitlines():
        m = re.match(r"\| (tessera_[a-z_]+) \| (\w+) \|[^|]*\| redis \|", line)
        if m:
            base = m.group(1)
            names.add(base.removesuffix("_total"))
            names.add(base)
    return names


def test_every_run_mode_panel_returns_data(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "TESSERA_HTTP__PORT": str(port),
        "TESSERA_SIM__SCENARIO": "mixed",
        "TESSERA_SIM__SPEEDUP": "100",
        "TESSERA_SIM__ZONES": "1",
        "TESSERA_SIM__RACKS_PER_ZONE": "4",
        "TESSERA_SIM__HOSTS_PER_RACK": "2",
        "TESSERA_LOG__LEVEL": "error",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "tessera_daemon", "run"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        wait_port(port, 60, proc)
        with prometheus_server(tmp_path, [f"127.0.0.1:{port}"]) as base:
            deadline = time.monotonic() + 90
            top: list[dict[str, Any]] = []
            while time.monotonic() < deadline:  # firings, top shards and enough samples for rate()
                top = promql(base, "topk(1, tessera_top_shard_evidence_log)")["data"]["result"]
                active = promql(base, "tessera_firing_active")["data"]["result"]
                rated = promql(base, "rate(tessera_windows_processed_total[1m])")["data"]["result"]
                if top and active and rated and float(top[0]["value"][1]) > 0:
                    break
                time.sleep(1.0)
            labels = top[0]["metric"]
            values = {
                "cluster": ".*",
                "job": "tessera.*",
                "instance": ".+",
                "shard": labels["shard"],
                "host": labels["host"],
                "rack": labels["rack"],
            }
            skip = redis_only_series()
            queries = []
            for path in DASHBOARD_FILES:
                for name, expr in _expressions(_load(path)):
                    used = set(re.findall(r"tessera_[a-z_]+", expr))
                    if used and all(u in skip or u.removesuffix("_total") in skip for u in used):
                        continue  # agent / detector only
                    query = _VAR.sub(
                        lambda m: BUILTINS.get(m.group(1) or m.group(2)) or values.get(m.group(1) or m.group(2), "x"),
                        expr,
                    )
                    queries.append((f"{path.stem}: {name}", query))
            empty: list[str] = []
            while True:  # counters need two samples before increase() has data: poll until all do
                empty = []
                for name, query in queries:
                    answer = promql(base, query)
                    assert answer["status"] == "success", (name, answer)
                    if not answer["data"]["result"]:
                        empty.append(f"{name}: {query}")
                if not empty or time.monotonic() > deadline:
                    break
                time.sleep(2.0)
            assert empty == [], "panels with no data against a live daemon:\n" + "\n".join(empty)
    finally:
        proc.terminate()
        proc.wait(20)
