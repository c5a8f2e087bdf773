"""The registry, the settings tables and the example configurations."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tessera_daemon.config import load_config
from tessera_daemon.errors import ConfigError
from tessera_daemon.settings.sources import PrometheusSettings
from tessera_daemon.sources import SOURCES, build_sources
from tessera_daemon.sources.prometheus import PrometheusSource
from tests.sources.conftest import make_config

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"


VENDOR = sorted(set(SOURCES) - {"mqtt", "synthetic"})


@pytest.mark.parametrize("name", VENDOR)
def test_example_config_loads_and_builds_its_source(name: str) -> None:
    cfg = load_config(EXAMPLES / f"{name}.toml", environ={})
    assert cfg.sources.enabled == (name,)
    [src] = build_sources(cfg)
    assert src.name == name


def test_unknown_or_repeated_source_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        build_sources(make_config(enabled=("nvml", "cuda-magic")))
    assert info.value.field == "sources.enabled" and "cuda-magic" in info.value.message
    with pytest.raises(ConfigError, match="twice"):
        build_sources(make_config(enabled=("dcgm", "dcgm")))


def test_only_the_selected_modules_are_imported() -> None:
    code = (
        "import sys\n"
        "from tessera_daemon.config import load_config\n"
        "from tessera_daemon.sources import build_sources\n"
        "build_sources(load_config(None, environ={'TESSERA_SOURCES__ENABLED': '\"dcgm\"'}))\n"
        "loaded = [m for m in ('tessera_daemon.sources.nvml', 'tessera_daemon.sources.kubernetes',"
        " 'kubernetes', 'pynvml', 'tessera_daemon.sources.slurm') if m in sys.modules]\n"
        "assert 'tessera_daemon.sources.dcgm' in sys.modules\n"
        "print(','.join(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_sub_tables_and_environment_overrides() -> None:
    cfg = load_config(
        None,
        environ={
            "TESSERA_SOURCES__SLURM__REFRESH_S": "2.5",
            "TESSERA_SOURCES__NVML__EXPECTED_DEVICES": "8",
            "TESSERA_SOURCES__TPU__HOSTS": "w0,w1",
            "TESSERA_SOURCES__STATIC_TOPOLOGY": '"/etc/tessera/topology.json"',
        },
    )
    assert cfg.sources.slurm.refresh_s == 2.5 and cfg.sources.nvml.expected_devices == 8
    assert cfg.sources.tpu.hosts == ("w0", "w1")
    assert cfg.sources.static_topology == "/etc/tessera/topology.json"
    with pytest.raises(ConfigError, match=r"sources\.slurm\.topology"):
        load_config(None, environ={"TESSERA_SOURCES__SLURM__TOPOLOGY": '"yaml"'})
    with pytest.raises(ConfigError, match=r"sources\.nvml\.nvlink_links"):
        load_config(None, environ={"TESSERA_SOURCES__NVML__NVLINK_LINKS": "99"})


def test_malformed_prometheus_query_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match=r"sources\.prometheus\.queries"):
        PrometheusSource(make_config(prometheus=PrometheusSettings(queries=("no_equals_sign",))))
