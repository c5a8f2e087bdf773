"""MQTT plumbing shared by the MQTT source (frames in) and the firing publisher (firings out).

Client settings (credentials read from ``password_file``, a per-process client id), topic fragments
that cannot inject wildcards, the connection health both report as metrics, and the reconnect
backoff (the one ``tessera_daemon.backoff``).
"""

from __future__ import annotations

import os
import socket
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera_daemon.backoff import Backoff
from tessera_daemon.settings.transport import MqttSettings


@dataclass(slots=True)
class MqttHealth:
    role: str
    up: bool = False
    reconnects: int = 0
    connects: int = 0
    messages: Counter[str] = field(default_factory=Counter)  # received / published / rejected / dropped
    last_error: str = ""


def topic_level(text: str) -> str:
    """A publishable topic fragment: no wildcards, no empty levels."""
    cleaned = text.replace("+", "_").replace("#", "_")
    return "/".join(p or "_" for p in cleaned.split("/"))


def client_kwargs(s: MqttSettings, role: str) -> dict[str, Any]:
    password = Path(s.password_file).read_text(encoding="utf-8").strip() if s.password_file else None
    ident = s.client_id or f"tessera-{role}-{socket.gethostname()}-{os.getpid()}"
    return {
        "hostname": s.host,
        "port": s.port,
        "username": s.username or None,
        "password": password,
        "identifier": ident,
        "keepalive": s.keepalive_s,
        "timeout": 10.0,
    }


def reconnect_backoff(s: MqttSettings) -> Backoff:
    """The reconnect backoff of an MQTT client (``transport.mqtt.backoff_base_s`` / ``backoff_cap_s``)."""
    return Backoff(s.backoff_base_s, s.backoff_cap_s)
