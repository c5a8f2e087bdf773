"""deploy/compose/compose.yaml and deploy/prometheus/prometheus.yml: there is no container engine here, so
the compose file is checked as YAML (services, mounts that exist, wiring between the services), and the
Prometheus configuration with `promtool check config`."""

from __future__ import annotations

import fnmatch
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.ops.catalog import ROOT, run
from tests.servers import find_exe

COMPOSE_DIR = ROOT / "deploy" / "compose"
COMPOSE = yaml.safe_load((COMPOSE_DIR / "compose.yaml").read_text())
SERVICES: dict[str, Any] = COMPOSE["services"]
PROMETHEUS_YML = ROOT / "deploy" / "prometheus" / "prometheus.yml"
OPERATOR_CREATED = {"pagerduty.key"}  # secrets the operator writes before `up` (documented in compose.yaml)


def _mounts(service: str) -> dict[str, str]:
    """container path -> host source of a service's volumes."""
    out = {}
    for volume in SERVICES[service].get("volumes", []):
        source, target = volume.split(":")[:2]
        out[target] = source
    return out


def test_expected_services() -> None:
    assert set(SERVICES) == {"redis", "tessera-agent", "tessera-detector", "prometheus", "alertmanager", "grafana"}


@pytest.mark.parametrize(("service", "mode"), [("tessera-agent", "agent"), ("tessera-detector", "detector")])
def test_tessera_services_build_the_image_and_run_their_mode(service: str, mode: str) -> None:
    svc = SERVICES[service]
    assert (COMPOSE_DIR / svc["build"]["context"]).resolve() == ROOT
    assert (ROOT / svc["build"]["dockerfile"]).exists()
    assert svc["command"][0] == mode  # the whole command line runs: tests/ops/test_command_lines.py
    assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    assert svc["read_only"] is True
    assert "/var/cache/tessera" in _mounts(service), "numba cache on a writable volume"
    config = tomllib.loads((COMPOSE_DIR / _mounts(service)["/etc/tessera/tessera.toml"]).read_text())
    assert config["transport"]["kind"] == "redis"
    assert config["transport"]["redis"]["url"].startswith("redis://redis:6379")


def test_redis_uses_aof() -> None:
    command = SERVICES["redis"]["command"]
    assert command[command.index("--appendonly") + 1] == "yes"
    assert _mounts("redis")["/data"] in COMPOSE["volumes"]


def test_bind_mounts_exist() -> None:
    for name in SERVICES:
        for target, source in _mounts(name).items():
            if source.startswith((".", "/")):
                path = (COMPOSE_DIR / source).resolve()
                assert path.exists() or path.name in OPERATOR_CREATED, f"{name}: {source} -> {target}"
            else:
                assert source in COMPOSE["volumes"], f"{name}: undeclared volume {source}"


def test_monitoring_services_get_the_shipped_configs() -> None:
    prom = _mounts("prometheus")
    assert (COMPOSE_DIR / prom["/etc/prometheus/prometheus.yml"]).resolve() == PROMETHEUS_YML
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    rules = [t for t, s in prom.items() if (COMPOSE_DIR / s).resolve() == ROOT / "alert_rules.yml"]
    assert rules
    assert any(fnmatch.fnmatch(rules[0], pattern) for pattern in config["rule_files"])
    am = _mounts("alertmanager")
    assert (COMPOSE_DIR / am["/etc/alertmanager/alertmanager.yml"]).resolve() == (
        ROOT / "deploy" / "alertmanager" / "alertmanager.yml"
    )
    assert "/etc/alertmanager/pagerduty.key" in am, "routing_key_file of the PagerDuty receiver"
    grafana = _mounts("grafana")
    for target, source in (
        ("/etc/grafana/provisioning/datasources", "grafana/provisioning/datasources"),
        ("/etc/grafana/provisioning/dashboards", "grafana/provisioning/dashboards"),
    ):
        assert (COMPOSE_DIR / grafana[target]).resolve() == ROOT / source


def test_prometheus_scrapes_the_compose_services() -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    jobs = {j["job_name"]: j for j in config["scrape_configs"]}
    for service in ("tessera-agent", "tessera-detector"):
        (static,) = jobs[service]["static_configs"]
        assert static["targets"] == [f"{service}:9477"]
        assert service in SERVICES
    assert all(name.startswith("tessera") for name in jobs if name != "prometheus")
    (am,) = config["alerting"]["alertmanagers"]
    assert am["static_configs"][0]["targets"] == ["alertmanager:9093"]
    assert config["global"]["external_labels"]["cluster"]


@pytest.mark.prometheus
def test_promtool_check_config(tmp_path: Path) -> None:
    config = yaml.safe_load(PROMETHEUS_YML.read_text())
    config["rule_files"] = [str(ROOT / "alert_rules.yml")]  # where compose mounts it, on this machine
    staged = tmp_path / "prometheus.yml"
    staged.write_text(yaml.safe_dump(config, sort_keys=False))
    out = run([find_exe("promtool"), "check", "config", str(staged)])
    assert out.returncode == 0, out.stdout + out.stderr
    assert "SUCCESS" in out.stdout + out.stderr
