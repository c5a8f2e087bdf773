"""``ClusterSim.step_block``: the simulator's tick as one FrameBlock, equal to ``step``'s frames."""

from __future__ import annotations

import numpy as np

from tessera_daemon.config import load_config
from tessera_daemon.model import FrameBlock
from tessera_daemon.sim import ClusterSim, FaultSpec, Scenario
from tessera_daemon.sources.synthetic import SyntheticSource
from tests.sim.runs import SMALL

HARD = Scenario(
    "hard",
    "lost devices, silent shards, XIDs and ECC increments within a few ticks",
    (
        FaultSpec("xid79", start_tick=3, duration_ticks=4),
        FaultSpec("sparse", start_tick=2, duration_ticks=5),
        FaultSpec("ecc_dbe", start_tick=4),
        FaultSpec("device_lost", start_tick=5, duration_ticks=3),
    ),
)


def test_step_block_equals_step_frames() -> None:
    by_block, by_frame = ClusterSim(SMALL, HARD, seed=3), ClusterSim(SMALL, HARD, seed=3)
    saw = {"xid": False, "lost": False, "silent": False}
    for _ in range(12):
        ts_b, block = by_block.step_block()
        ts_f, frames = by_frame.step()
        assert ts_b == ts_f
        assert isinstance(block, FrameBlock) and block.values.dtype == np.float64
        assert list(block) == frames
        saw["xid"] |= bool(block.xids)
        saw["lost"] |= bool(block.lost)
        saw["silent"] |= len(block) < len(by_block.shard_ids)
    assert all(saw.values())


async def test_synthetic_source_polls_blocks() -> None:
    cfg = load_config(None, {"TESSERA_SIM__ZONES": "1", "TESSERA_SIM__SPEEDUP": "10"})
    src = SyntheticSource(cfg, wall_clock=False)
    await src.open()
    assert src._wall_start is not None
    got = await src.poll(src._wall_start + 3 * cfg.sim.tick_s / 10)  # three ticks due
    assert isinstance(got, FrameBlock)
    n = len(src.sim.shard_ids)
    assert len(got) == 3 * n and np.unique(got.ts).size == 3
    assert await src.poll(src._wall_start + 3 * cfg.sim.tick_s / 10) == []  # nothing new due
