"""What each ``tessera-daemon`` subcommand does, given the loaded configuration and its own options.

The parser and ``main`` (option handling, exit codes on errors) are in ``cli.py``. Heavy modules (the
daemon, the simulator, the evaluation, the drill) are imported inside the command that needs them, so
``config`` and ``check`` stay fast.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import importlib
import json
import urllib.error
import urllib.request

from tessera_daemon.config import Config, dump_toml
from tessera_daemon.errors import ConfigError

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def check_run(cfg: Config) -> None:
    from tessera_daemon.runtime import check_all_in_one  # noqa: PLC0415

    check_all_in_one(cfg)


def cmd_config(cfg: Config, args: argparse.Namespace) -> int:
    if args.reference:
        from tessera_daemon.config_reference import reference_markdown  # noqa: PLC0415

        print(reference_markdown(), end="")
        return EXIT_OK
    print(dump_toml(cfg), end="")
    return EXIT_OK


def cmd_run(cfg: Config, _args: argparse.Namespace) -> int:
    from tessera_daemon.daemon import run  # noqa: PLC0415 - keeps `config` and `check` fast

    return asyncio.run(run(cfg))


def cmd_demo(cfg: Config, args: argparse.Namespace) -> int:
    demo = importlib.import_module("tessera_daemon.demo")  # the web console's demo (docs/console.md)
    if args.list:
        demo.print_catalogue()
        return EXIT_OK
    cfg = dataclasses.replace(cfg, sim=dataclasses.replace(cfg.sim, scenario=args.scenario))
    demo.first_fault_tick(cfg)  # an unknown scenario is a ConfigError naming the known ones
    rc: int = asyncio.run(
        demo.run_demo(
            cfg,
            speed=args.speed,
            fast_forward=args.fast_forward,
            open_browser=not args.no_browser,
            announce=not args.unannounced,
        )
    )
    return rc


def _split(cfg: Config, command: str) -> int:
    """The agent / detector split over Redis Streams (``tessera_daemon.agent`` / ``.worker``)."""
    module, func = (
        ("tessera_daemon.agent", "run_agent") if command == "agent" else ("tessera_daemon.split.worker", "run_detector")
    )
    try:
        entry = getattr(importlib.import_module(module), func)
    except ModuleNotFoundError as exc:
        raise ConfigError(command, f"the {command} process is not available in this build ({exc})") from exc
    rc: int = asyncio.run(entry(cfg))
    return rc


def cmd_agent(cfg: Config, _args: argparse.Namespace) -> int:
    return _split(cfg, "agent")


def cmd_detector(cfg: Config, _args: argparse.Namespace) -> int:
    return _split(cfg, "detector")


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

    if args.capture is not None:
        from tessera_daemon.capture import replay_capture  # noqa: PLC0415

        fired, _ = replay_capture(cfg, args.capture)
        with args.out.open("w", encoding="utf-8") as out:
            out.writelines(f.to_json() + "\n" for f in fired)
        print(json.dumps({"firings": len(fired), "out": str(args.out)}, sort_keys=True))
        return EXIT_OK
    if args.frames is None or args.topology is None:
        raise ConfigError("--frames", "--frames and --topology are required (or --capture)")
    for name in ("frames", "topology", "events"):
        path = getattr(args, name)
        if path is not None and not path.exists():
            raise ConfigError(f"--{name}", f"file not found: {path}")
    summary = replay(cfg, args.frames, args.topology, args.out, args.events)
    print(json.dumps(summary.to_obj(), sort_keys=True))
    return EXIT_OK


def cmd_state(cfg: Config, args: argparse.Namespace) -> int:
    from tessera_daemon.statebackup import export_state, import_state  # noqa: PLC0415

    if args.action == "export":
        summary = export_state(cfg, args.file)
    else:
        if not args.file.exists():
            raise ConfigError("FILE", f"file not found: {args.file}")
        summary = import_state(cfg, args.file, replace=args.replace)
    print(json.dumps({"action": args.action, **summary.to_obj()}, sort_keys=True))
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


def cmd_assets(_cfg: Config, args: argparse.Namespace) -> int:
    from tessera_daemon import shipped  # noqa: PLC0415

    if args.action == "list":
        root = shipped.asset_root()
        for rel in shipped.asset_files(root):
            print(rel)
        return EXIT_OK
    if args.dir is None:
        raise ConfigError("assets export", "a target directory is required: tessera-daemon assets export DIR")
    written = shipped.export(args.dir)
    print(f"tessera-daemon: wrote {len(written)} files to {args.dir} (from {shipped.asset_root()})")
    return EXIT_OK


def cmd_openapi(_cfg: Config, args: argparse.Namespace) -> int:
    from tessera_daemon.web import openapi  # noqa: PLC0415

    if args.markdown:
        print(openapi.markdown(), end="")
    else:
        print(json.dumps(openapi.full_document(), indent=2))
    return EXIT_OK


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
