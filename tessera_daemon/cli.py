"""``tessera-daemon``: a thin shell over the library. Exit codes: 0 ok, 1 failure, 2 bad config/usage.

Settings come from ``--config`` (TOML) and ``TESSERA_SECTION__KEY`` environment overrides only, so
nothing is defined twice; subcommand options are limited to what the subcommand itself needs.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import os
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

from tessera_daemon import __version__
from tessera_daemon.config import Config, dump_toml, load_config
from tessera_daemon.errors import CodecError, ConfigError
from tessera_daemon.log import configure_logging

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tessera-daemon", description=__doc__)
    p.add_argument("--version", action="version", version=f"tessera-daemon {__version__}")
    p.add_argument("--config", type=Path, default=None, help="TOML configuration file")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"], default=None)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    sub.add_parser("run", help="run everything in one process (simulated cluster when no source is set)")
    sub.add_parser("config", help="print the effective configuration as TOML")
    sub.add_parser("agent", help="run the configured sources and publish frames to Redis")
    sub.add_parser("detector", help="run a detector worker in the Redis consumer group")

    sim = sub.add_parser("simulate", help="write a simulated scenario to files")
    sim.add_argument("--scenario", default=None, help="scenario name (default: sim.scenario)")
    sim.add_argument("--seed", type=int, default=None, help="seed (default: sim.seed)")
    sim.add_argument("--duration-s", type=float, default=None, help="simulated seconds (default 1800)")
    sim.add_argument("--out", type=Path, help="output directory")
    sim.add_argument("--list", action="store_true", help="list scenarios and exit")

    rp = sub.add_parser("replay", help="run the detector pipeline offline over recorded frames")
    rp.add_argument("--frames", type=Path, required=True, help="frames, JSON lines (frame contract)")
    rp.add_argument("--topology", type=Path, required=True, help="topology JSON (topology contract)")
    rp.add_argument("--events", type=Path, default=None, help="cluster events, JSON lines")
    rp.add_argument("--out", type=Path, required=True, help="firings output, JSON lines")

    dr = sub.add_parser("drill", help="end-to-end drill: simulator -> daemon -> Prometheus -> Alertmanager -> "
                                      "a local PagerDuty receiver; prints the timeline")
    dr.add_argument("--out", type=Path, default=None, help="write the timeline as JSON here")
    dr.add_argument("--speedup", type=float, default=20.0, help="simulated seconds per wall second")

    ev = sub.add_parser("evaluate", help="run an evaluation matrix (r72, r77, r78, r79, calibration, realistic, all)")
    ev.add_argument("matrix", choices=["r72", "r77", "r78", "r79", "calibration", "realistic", "all"])
    ev.add_argument("--out", type=Path, default=None, help="write markdown and JSON results here")
    ev.add_argument("--fast", action="store_true", help="the reduced subset that `make test` runs")

    dm = sub.add_parser("demo", help="the simulator fast-forwarded through warm-up, watched in the web console")
    dm.add_argument("scenario", nargs="?", default="demo", help="scenario (default: demo; --list names them all)")
    dm.add_argument("--list", action="store_true", help="list scenarios: what each injects and what should be found")
    dm.add_argument("--speed", type=float, default=20.0, help="simulated seconds per wall second once live")
    dm.add_argument("--fast-forward", type=float, default=300.0, help="speed-up through the warm-up")
    dm.add_argument("--no-browser", action="store_true", help="only print the console URL")
    dm.add_argument("--unannounced", action="store_true", help="do not announce the scenario's events")

    ck = sub.add_parser("check", help="exit 0 if /healthz and /readyz answer 200 (container HEALTHCHECK)")
    ck.add_argument("--url", default=None, help="base URL (default: from http.host / http.port)")
    ck.add_argument("--timeout-s", type=float, default=3.0)
    return p


def _load(args: argparse.Namespace) -> Config:
    env = dict(os.environ)
    if args.log_level:
        env["TESSERA_LOG__LEVEL"] = args.log_level
    return load_config(args.config, env)


def cmd_run(cfg: Config) -> int:
    from tessera_daemon.daemon import run  # noqa: PLC0415 - keeps `config` and `check` fast

    return asyncio.run(run(cfg))


def cmd_split(cfg: Config, command: str) -> int:
    """The agent / detector split over Redis Streams (``tessera_daemon.agent`` / ``.worker``)."""
    module, func = ("tessera_daemon.agent", "run_agent") if command == "agent" else ("tessera_daemon.worker",
                                                                                      "run_detector")
    try:
        entry = getattr(importlib.import_module(module), func)
    except ModuleNotFoundError as exc:
        raise ConfigError(command, f"the {command} process is not available in this build ({exc})") from exc
    rc: int = asyncio.run(entry(cfg))
    return rc


def cmd_simulate(cfg: Config, args: argparse.Namespace) -> int:
    from tessera_daemon.sim import SCENARIOS, write_simulation  # noqa: PLC0415

    if args.list:
        for name in sorted(SCENARIOS):
            print(name)
        return EXIT_OK
    if args.out is None:
        raise ConfigError("--out", "an output directory is required")
    scenario = args.scenario or cfg.sim.scenario
    seed = cfg.sim.seed if args.seed is None else args.seed
    duration = args.duration_s if args.duration_s is not None else (cfg.sim.duration_s or 1800.0)
    summary = write_simulation(cfg.sim, args.out, scenario=scenario, seed=seed, duration_s=duration)
    print(json.dumps(summary, sort_keys=True))
    return EXIT_OK


def cmd_replay(cfg: Config, args: argparse.Namespace) -> int:
    from tessera_daemon.replay import replay  # noqa: PLC0415

    for name in ("frames", "topology", "events"):
        path = getattr(args, name)
        if path is not None and not path.exists():
            raise ConfigError(f"--{name}", f"file not found: {path}")
    summary = replay(cfg, args.frames, args.topology, args.out, args.events)
    print(json.dumps(summary.to_obj(), sort_keys=True))
    return EXIT_OK


def cmd_drill(cfg: Config, args: argparse.Namespace) -> int:
    drill = importlib.import_module("tessera_daemon.drill")
    rc: int = asyncio.run(drill.run_drill(cfg, out=args.out, speedup=args.speedup))
    return rc


def cmd_evaluate(cfg: Config, args: argparse.Namespace) -> int:
    evaluation = importlib.import_module("tessera_daemon.evaluation")
    summary = evaluation.run_matrix(args.matrix, cfg, args.out, fast=args.fast)
    print(json.dumps(summary, sort_keys=True, default=str))
    return EXIT_OK if summary.get("ok", True) else EXIT_FAIL


def cmd_check(cfg: Config, args: argparse.Namespace) -> int:
    host = cfg.http.host if cfg.http.host not in ("0.0.0.0", "::") else "127.0.0.1"
    base = args.url or f"http://{host}:{cfg.http.port}"
    ok = True
    for path in ("/healthz", "/readyz"):
        try:
            with urllib.request.urlopen(base + path, timeout=args.timeout_s) as resp:
                status = resp.status
                body = resp.read().decode(errors="replace")
        except urllib.error.HTTPError as exc:
            status, body = exc.code, exc.read().decode(errors="replace")
        except (urllib.error.URLError, OSError) as exc:
            status, body = 0, str(exc)
        print(f"{path} {status} {body.strip()[:300]}")
        ok = ok and status == 200
    return EXIT_OK if ok else EXIT_FAIL


def cmd_demo(cfg: Config, args: argparse.Namespace) -> int:
    demo = importlib.import_module("tessera_daemon.demo")
    if args.list:
        demo.print_catalogue()
        return EXIT_OK
    cfg = dataclasses.replace(cfg, sim=dataclasses.replace(cfg.sim, scenario=args.scenario))
    demo.first_fault_tick(cfg)  # an unknown scenario is a ConfigError naming the known ones
    rc: int = asyncio.run(demo.run_demo(cfg, speed=args.speed, fast_forward=args.fast_forward,
                                        open_browser=not args.no_browser, announce=not args.unannounced))
    return rc


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        cfg = _load(args)
        configure_logging(cfg.log.level, cfg.log.format)
        if args.command == "config":
            print(dump_toml(cfg), end="")
            return EXIT_OK
        if args.command == "run":
            return cmd_run(cfg)
        if args.command in ("agent", "detector"):
            return cmd_split(cfg, args.command)
        if args.command == "simulate":
            return cmd_simulate(cfg, args)
        if args.command == "replay":
            return cmd_replay(cfg, args)
        if args.command == "check":
            return cmd_check(cfg, args)
        if args.command == "drill":
            return cmd_drill(cfg, args)
        if args.command == "evaluate":
            return cmd_evaluate(cfg, args)
        if args.command == "demo":
            return cmd_demo(cfg, args)
    except ConfigError as exc:
        print(f"tessera-daemon: configuration error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except CodecError as exc:
        print(f"tessera-daemon: invalid input: {exc}", file=sys.stderr)
        return EXIT_FAIL
    except KeyboardInterrupt:
        return EXIT_OK
    return EXIT_USAGE
