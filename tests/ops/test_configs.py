"""Every configuration file shipped in deploy/ loads with the daemon's own loader, together with the
TESSERA_* environment its deployment sets (unit Environment=, pod env, image ENV)."""

from __future__ import annotations

import re
import tempfile
import tomllib
from pathlib import Path

import pytest
import yaml

from tessera_daemon.config import Config, load_config
from tessera_daemon.sources import SOURCES
from tests.ops.catalog import ROOT

DEPLOY = ROOT / "deploy"


def _image_env() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    return {k: v for k, v in re.findall(r"(TESSERA_\w+)=(\S+)", text)}


def _unit_env(name: str) -> dict[str, str]:
    env = {}
    for line in (DEPLOY / "systemd" / name).read_text().splitlines():
        if line.startswith("Environment=TESSERA_"):
            key, value = line[len("Environment=") :].split("=", 1)
            env[key] = value.replace("%S", "/var/lib").replace("%C", "/var/cache")
    return env


def _pod_env(path: Path, kind: str) -> dict[str, str]:
    for doc in yaml.safe_load_all(path.read_text()):
        if doc and doc["kind"] == kind:
            (container,) = doc["spec"]["template"]["spec"]["containers"]
            return {
                e["name"]: e["value"]
                for e in container.get("env", [])
                if e["name"].startswith("TESSERA_") and "value" in e
            }
    raise AssertionError(f"no {kind} in {path}")


def _configmap(name: str) -> str:
    for doc in yaml.safe_load_all((DEPLOY / "kubernetes" / "configmap.yaml").read_text()):
        if doc["metadata"]["name"] == name:
            text: str = doc["data"]["tessera.toml"]
            return text
    raise AssertionError(name)


def _load_text(toml_text: str, env: dict[str, str]) -> Config:
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "tessera.toml"
        path.write_text(toml_text)
        return load_config(path, env)


SYSTEMD, K8S, COMPOSE = DEPLOY / "systemd", DEPLOY / "kubernetes", DEPLOY / "compose"


def _case(case: str) -> tuple[str, dict[str, str], str]:
    """(TOML text, environment, expected transport kind) of one deployment."""
    if case == "systemd all-in-one":
        return (SYSTEMD / "tessera.toml.example").read_text(), _unit_env("tessera-daemon.service"), "memory"
    if case in {"systemd agent", "systemd detector"}:
        unit = f"tessera-{case.split()[1]}.service"
        return (SYSTEMD / "tessera-split.toml.example").read_text(), _unit_env(unit), "redis"
    if case == "kubernetes agent":
        return (_configmap("tessera-agent-config"), _image_env() | _pod_env(K8S / "agent.yaml", "DaemonSet"), "redis")
    if case == "kubernetes detector":
        return (
            _configmap("tessera-detector-config"),
            _image_env() | _pod_env(K8S / "detector.yaml", "Deployment"),
            "redis",
        )
    mode = case.split()[1]
    return (COMPOSE / f"tessera-{mode}.toml").read_text(), _image_env(), "redis"


CASES = [
    "systemd all-in-one",
    "systemd agent",
    "systemd detector",
    "kubernetes agent",
    "kubernetes detector",
    "compose agent",
    "compose detector",
]


@pytest.mark.parametrize("case", CASES)
def test_shipped_config_loads(case: str) -> None:
    text, env, transport = _case(case)
    cfg = _load_text(text, env)
    assert cfg.transport.kind == transport
    if case.startswith(("kubernetes", "compose")):
        assert cfg.http.host == "0.0.0.0"
        assert cfg.http.port == 9477
    if case == "systemd detector":
        assert cfg.http.port == 9478
    assert cfg.daemon.state_dir in {"", "/var/lib/tessera"}


@pytest.mark.parametrize("case", CASES)
def test_enabled_sources_exist(case: str) -> None:
    enabled = tomllib.loads(_case(case)[0]).get("sources", {}).get("enabled", [])
    unknown = set(enabled) - set(SOURCES)
    assert not unknown, f"{case}: unknown sources {unknown} (known: {sorted(SOURCES)})"


def test_image_env_is_valid_on_its_own() -> None:
    cfg = load_config(None, _image_env())
    assert cfg.http.host == "0.0.0.0"
    assert cfg.daemon.state_dir == "/var/lib/tessera"
