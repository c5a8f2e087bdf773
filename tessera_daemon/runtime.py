"""The process runtime shared by ``run``, ``agent`` and ``detector``.

``check_all_in_one`` holds what ``run`` refuses beyond the configuration's own validation, so that
``tessera-daemon run --check-config`` and ``run`` itself refuse the same things.
"""

from __future__ import annotations

from tessera_daemon.config import Config
from tessera_daemon.errors import ConfigError


def check_all_in_one(cfg: Config) -> None:
    """``run`` is the all-in-one process and uses the in-memory transport."""
    if cfg.transport.kind != "memory":
        raise ConfigError("transport.kind", f"`run` is the all-in-one process and uses the in-memory transport; "
                          f"for {cfg.transport.kind!r} run `tessera-daemon agent` and `tessera-daemon detector`")
