"""Replay output pinned byte for byte on every built-in scenario.

Each scenario is simulated on a small fleet and replayed through the real code path
(``write_simulation`` then ``replay``, what ``tessera-daemon simulate`` and ``replay`` run); the
SHA-256 of the firings file and the replay summary must equal the digests stored in
``tests/fixtures/replay/digests.json``, recorded at the pre-renovation commit cd237dc and re-recorded
once for the intended engine change of 415c5ac (messy fleets: one incident per fault; thermal_rack
opens 2 firings instead of 3, mixed 4 instead of 5). A refactor that changes any firing, any receipt
figure or any count fails here.

Regenerate only for an intended behaviour change: ``python -m tests.test_replay``.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from tessera_daemon.config import Config, SimConfig
from tessera_daemon.replay import replay
from tessera_daemon.sim import SCENARIOS, write_simulation

FIXTURE = Path(__file__).parent / "fixtures" / "replay" / "digests.json"
SIM = SimConfig(zones=1, racks_per_zone=2, hosts_per_rack=2, shards_per_host=8, cohorts=2)
"""32 shards: the smallest fleet on which most scenarios still open a firing within the run."""
SEED = 7
DURATION_S = 1300.0  # faults start at tick 400: 900 s of fault time after the onset


def digest(scenario: str, root: Path) -> dict[str, object]:
    """Simulate ``scenario``, replay it, and return the digest of what came out."""
    cfg = dataclasses.replace(Config(), sim=SIM)
    run_dir = root / scenario
    write_simulation(SIM, run_dir, scenario=scenario, seed=SEED, duration_s=DURATION_S)
    out = run_dir / "firings.jsonl"
    summary = replay(cfg, run_dir / "frames.jsonl", run_dir / "topology.json", out, run_dir / "events.jsonl")
    body = out.read_bytes()
    return {
        "sha256": hashlib.sha256(body).hexdigest(),
        "lines": body.count(b"\n"),
        "summary": summary.to_obj(),
    }


def load() -> dict[str, dict[str, object]]:
    pinned: dict[str, dict[str, object]] = json.loads(FIXTURE.read_text(encoding="utf-8"))
    return pinned


def test_every_built_in_scenario_is_pinned() -> None:
    assert sorted(load()) == sorted(SCENARIOS)
    # the pin is worth something only if firings come out: most scenarios open at least one
    opened = [name for name, d in load().items() if d["lines"] != 0]
    assert len(opened) >= 9, opened


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_replay_output_is_byte_identical_to_the_pre_renovation_commit(scenario: str, tmp_path: Path) -> None:
    assert digest(scenario, tmp_path) == load()[scenario]


def main() -> None:
    import tempfile  # noqa: PLC0415

    with tempfile.TemporaryDirectory() as tmp:
        pinned = {name: digest(name, Path(tmp)) for name in sorted(SCENARIOS)}
    FIXTURE.parent.mkdir(parents=True, exist_ok=True)
    FIXTURE.write_text(json.dumps(pinned, indent=1, sort_keys=True) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
