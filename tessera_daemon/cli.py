"""tessera-daemon: a thin shell over the library. Exit codes: 0 ok, 1 failure, 2 bad config or usage.

Settings come from --config (a TOML file) and TESSERA_SECTION__KEY environment overrides only, so nothing
is defined twice; subcommand options are limited to what the subcommand itself needs. The global options
(--config, --log-level, --check-config) are accepted before or after the subcommand; given after it, they
win over the same option given before it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tessera_daemon import __version__
from tessera_daemon.commands import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    check_run,
    cmd_agent,
    cmd_assets,
    cmd_check,
    cmd_config,
    cmd_demo,
    cmd_detector,
    cmd_drill,
    cmd_evaluate,
    cmd_openapi,
    cmd_replay,
    cmd_run,
    cmd_simulate,
    cmd_state,
)
from tessera_daemon.config import Config, load_config
from tessera_daemon.errors import BindError, CheckpointError, CodecError, ConfigError, ConfigErrors
from tessera_daemon.log import configure_logging

LOG_LEVELS = ("debug", "info", "warning", "error")


class _HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps the descriptions' line breaks and appends ``(default: X)`` to every option with a real
    default (``None`` / ``False`` / suppressed defaults are described in the help text itself)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (
            "%(default)" in text
            or default is None
            or default is False
            or default is argparse.SUPPRESS
            or not action.option_strings
        ):
            return text
        return f"{text} (default: %(default)s)"


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    """--config / --log-level / --check-config. On the top-level parser they default to None / False; on a
    subcommand parser their default is SUPPRESS, so a value given after the subcommand replaces the one given
    before it, and an absent one leaves it alone."""
    d: Callable[[object], object] = (lambda _v: argparse.SUPPRESS) if suppress else (lambda v: v)
    g = parser.add_argument_group("global options (before or after the subcommand)")
    g.add_argument(
        "--config",
        type=Path,
        default=d(None),
        metavar="FILE",
        help="TOML configuration file (default: none, the built-in defaults; TESSERA_SECTION__KEY "
        "environment variables override both)",
    )
    g.add_argument(
        "--log-level",
        choices=LOG_LEVELS,
        default=d(None),
        help="override log.level (default: log.level of the configuration, info)",
    )
    g.add_argument(
        "--check-config",
        action="store_true",
        default=d(False),
        help="load and validate the configuration exactly as this subcommand would, print "
        "'configuration ok' and exit 0 (2 and every error on a bad configuration)",
    )


@dataclass(frozen=True, slots=True)
class Command:
    """A subcommand: ``handler(cfg, args)`` returns the exit code; ``check(cfg)`` raises ConfigError for what
    the subcommand refuses beyond the configuration's own validation (``--check-config`` runs it too)."""

    handler: Callable[[Config, argparse.Namespace], int]
    check: Callable[[Config], None] | None = None


COMMANDS: dict[str, Command] = {}


def add_command(
    sub: argparse._SubParsersAction[argparse.ArgumentParser],
    name: str,
    help_text: str,
    command: Command,
    description: str | None = None,
) -> argparse.ArgumentParser:
    """Register a subcommand: its parser (with the global options) and its handler."""
    p = sub.add_parser(
        name,
        help=help_text,
        description=description or help_text[:1].upper() + help_text[1:] + ".",
        formatter_class=_HelpFormatter,
    )
    _global_options(p, suppress=True)
    COMMANDS[name] = command
    return p


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tessera-daemon", description=__doc__, formatter_class=_HelpFormatter)
    p.add_argument("--version", action="version", version=f"tessera-daemon {__version__}")
    _global_options(p, suppress=False)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    add_command(
        sub,
        "run",
        "run everything in one process (the simulated cluster when no source is set)",
        Command(cmd_run, check_run),
    )
    cf = add_command(
        sub,
        "config",
        "print the effective configuration as TOML (validated as run, agent and detector validate it)",
        Command(cmd_config),
    )
    cf.add_argument(
        "--reference",
        action="store_true",
        help="print the reference of every setting (type, default, range, meaning, environment "
        "variable) as Markdown instead: docs/configuration.md",
    )
    add_command(sub, "agent", "run the configured sources and publish frames to Redis", Command(cmd_agent))
    add_command(sub, "detector", "run a detector worker in the Redis consumer group", Command(cmd_detector))

    sim = add_command(sub, "simulate", "write a simulated scenario to files", Command(cmd_simulate))
    sim.add_argument("--scenario", default=None, help="scenario name (default: sim.scenario)")
    sim.add_argument("--seed", type=int, default=None, help="seed (default: sim.seed)")
    sim.add_argument(
        "--duration-s",
        type=float,
        default=None,
        help="simulated seconds (default: sim.duration_s, or 1800 when that is 0)",
    )
    sim.add_argument("--out", type=Path, metavar="DIR", help="output directory (required unless --list)")
    sim.add_argument("--list", action="store_true", help="list the scenarios and exit")

    rp = add_command(sub, "replay", "run the detector pipeline offline over recorded frames", Command(cmd_replay))
    rp.add_argument("--frames", type=Path, default=None, help="frames, JSON lines (frame contract)")
    rp.add_argument("--topology", type=Path, default=None, help="topology JSON (topology contract)")
    rp.add_argument(
        "--capture",
        type=Path,
        default=None,
        metavar="PATH",
        help="a capture of run (daemon.capture_path) instead of --frames/--topology/--events: the same firings",
    )
    rp.add_argument("--events", type=Path, default=None, help="cluster events, JSON lines (default: none)")
    rp.add_argument("--out", type=Path, required=True, help="firings output, JSON lines")

    st = add_command(
        sub,
        "state",
        "back up or restore detector state: checkpoints and the event log (daemon.state_dir or Redis)",
        Command(cmd_state),
    )
    st.add_argument("action", choices=["export", "import"], help="export to FILE, or import from FILE")
    st.add_argument("file", type=Path, metavar="FILE", help="the archive (.tar.gz)")
    st.add_argument("--replace", action="store_true", help="import over existing state")

    dr = add_command(
        sub,
        "drill",
        "end-to-end drill: simulator, daemon, Prometheus, Alertmanager and a local "
        "PagerDuty receiver; prints the timeline",
        Command(cmd_drill),
    )
    dr.add_argument("--out", type=Path, default=None, help="write the timeline as JSON here (default: not written)")
    dr.add_argument("--speedup", type=float, default=20.0, help="simulated seconds per wall second")

    ev = add_command(
        sub,
        "evaluate",
        "run an evaluation matrix (r72, r77, r78, r79, calibration, realistic, all; "
        "messy: the messy fleet of issue 14, by name only)",
        Command(cmd_evaluate),
    )
    ev.add_argument(
        "matrix",
        choices=["r72", "r77", "r78", "r79", "calibration", "realistic", "all", "messy"],
        help="the matrix to run",
    )
    ev.add_argument(
        "--out",
        type=Path,
        default=None,
        metavar="DIR",
        help="write markdown and JSON results here (default: not written)",
    )
    ev.add_argument("--fast", action="store_true", help="the reduced subset that make test runs")

    dm = add_command(
        sub,
        "demo",
        "the simulator fast-forwarded through warm-up, watched in the web console",
        Command(cmd_demo, check_run),
    )
    dm.add_argument("scenario", nargs="?", default="demo", help="scenario (--list names them all)")
    dm.add_argument("--list", action="store_true", help="list scenarios: what each injects and what should be found")
    dm.add_argument("--speed", type=float, default=20.0, help="simulated seconds per wall second once live")
    dm.add_argument("--fast-forward", type=float, default=300.0, help="speed-up through the warm-up")
    dm.add_argument("--no-browser", action="store_true", help="only print the console URL")
    dm.add_argument("--unannounced", action="store_true", help="do not announce the scenario's events")

    at = add_command(
        sub,
        "assets",
        "list or export the shipped files: alert rules, Grafana dashboards, deployment "
        "files (systemd, Kubernetes, compose, Helm) and example configurations",
        Command(cmd_assets),
    )
    at.add_argument("action", choices=["list", "export"], help="list: print their paths; export: copy them to DIR")
    at.add_argument("dir", nargs="?", type=Path, metavar="DIR", help="target directory of export (created)")

    oa = add_command(
        sub, "openapi", "print the OpenAPI document of the HTTP API (every process's routes)", Command(cmd_openapi)
    )
    oa.add_argument("--markdown", action="store_true", help="print the Markdown reference instead: docs/api.md")

    co = add_command(
        sub, "completion", "print the shell completion script (bash; zsh through bashcompinit)", Command(cmd_completion)
    )
    co.add_argument("shell", choices=["bash"], help="the shell")

    ck = add_command(
        sub, "check", "exit 0 if /healthz and /readyz answer 200 (the container HEALTHCHECK)", Command(cmd_check)
    )
    ck.add_argument("--url", default=None, help="base URL (default: from http.host and http.port)")
    ck.add_argument("--timeout-s", type=float, default=3.0, help="timeout of each request in seconds")
    return p


def _load(args: argparse.Namespace) -> Config:
    env = dict(os.environ)
    if args.log_level:
        env["TESSERA_LOG__LEVEL"] = args.log_level
    return load_config(args.config, env)


def cmd_completion(_cfg: Config, args: argparse.Namespace) -> int:
    from tessera_daemon.completion import bash  # noqa: PLC0415

    print(bash(_parser()), end="")
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    command = COMMANDS[args.command]
    try:
        cfg = _load(args)
        if command.check is not None:
            command.check(cfg)
        if args.check_config:
            print(
                f"tessera-daemon {args.command}: configuration ok"
                + (f" ({args.config})" if args.config else " (built-in defaults and environment)")
            )
            return EXIT_OK
        configure_logging(cfg.log.level, cfg.log.format)
        return command.handler(cfg, args)
    except BindError as exc:
        print(f"tessera-daemon: cannot start: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        for error in exc.errors if isinstance(exc, ConfigErrors) else [exc]:
            print(f"tessera-daemon: configuration error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except CodecError as exc:
        print(f"tessera-daemon: invalid input: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except CheckpointError as exc:
        print(f"tessera-daemon: invalid state: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_OK
