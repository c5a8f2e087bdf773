"""Writing a simulated run to disk: frames.jsonl, topology.json, events.jsonl, labels.json."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from tessera_daemon.config import SimConfig
from tessera_daemon.errors import ConfigError
from tessera_daemon.sim.cluster import ClusterSim
from tessera_daemon.sim.scenarios import Scenario

FRAMES_FILE = "frames.jsonl"
TOPOLOGY_FILE = "topology.json"
EVENTS_FILE = "events.jsonl"
LABELS_FILE = "labels.json"

_BUFFER_LINES = 4096


def write_simulation(
    cfg: SimConfig, out_dir: Path, *, scenario: str | Scenario, seed: int, duration_s: float
) -> dict[str, Any]:
    """Simulate ``duration_s`` of cluster time and write the four files into ``out_dir``.

    frames.jsonl holds one frame (contract 1) per line, in tick order and shard order within a tick;
    events.jsonl the announced events that start within the run; labels.json the ground truth of
    the faults that start within the run. Output is byte-identical for the same arguments.
    Returns a summary: scenario, seed, ticks, frames, shards, faults, events, start_ts, out_dir.
    """
    if not (math.isfinite(duration_s) and duration_s > 0):
        raise ConfigError("sim.duration_s", f"must be a positive number of seconds, got {duration_s}")
    sim = ClusterSim(cfg, scenario, seed=seed)
    ticks = max(1, math.floor(duration_s / sim.tick_s + 1e-9))
    end_ts = sim.ts_of(ticks)
    out_dir.mkdir(parents=True, exist_ok=True)
    n_frames = 0
    with (out_dir / FRAMES_FILE).open("w", encoding="utf-8", newline="\n") as fh:
        lines: list[str] = []
        for _ in range(ticks):
            _, frames = sim.step()
            lines.extend(f.to_json() for f in frames)
            n_frames += len(frames)
            if len(lines) >= _BUFFER_LINES:
                fh.write("\n".join(lines) + "\n")
                lines.clear()
        if lines:
            fh.write("\n".join(lines) + "\n")
    (out_dir / TOPOLOGY_FILE).write_text(sim.topology.to_json() + "\n", encoding="utf-8")
    events = [e for e in sim.events if e.ts < end_ts]
    (out_dir / EVENTS_FILE).write_text("".join(e.to_json() + "\n" for e in events), encoding="utf-8")
    labels = sim.labels(until_ts=end_ts)
    (out_dir / LABELS_FILE).write_text(json.dumps(labels, indent=1) + "\n", encoding="utf-8")
    return {
        "scenario": sim.scenario.name,
        "seed": sim.seed,
        "ticks": ticks,
        "frames": n_frames,
        "shards": len(sim.shard_ids),
        "faults": len(labels["faults"]),
        "events": len(events),
        "start_ts": sim.start_ts,
        "out_dir": str(out_dir),
    }
