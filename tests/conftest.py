from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, mosquitto_argv, redis_argv, running


@pytest.fixture(scope="session")
def redis_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A real redis-server on a free loopback port for the whole session."""
    d = tmp_path_factory.mktemp("redis")
    port = free_port()
    with running(redis_argv(port, d), port, d / "redis.log"):
        yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def mqtt_port(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A real mosquitto broker on a free loopback port for the whole session."""
    d: Path = tmp_path_factory.mktemp("mqtt")
    port = free_port()
    with running(mosquitto_argv(port, d), port, d / "mosquitto.log"):
        yield port
