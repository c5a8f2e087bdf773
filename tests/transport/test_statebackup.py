"""``tessera-daemon state export|import``: round trips through a real split run and a state_dir."""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pytest

from tessera_daemon.cli import main
from tessera_daemon.config import load_config
from tessera_daemon.engine.checkpoint import restore
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.errors import CheckpointError
from tessera_daemon.localstate import FILENAME, LocalState
from tessera_daemon.sim import ClusterSim
from tessera_daemon.statebackup import export_state, import_state, read_archive
from tessera_daemon.transport.keys import Keys
from tests.transport.conftest import Server
from tests.transport.helpers import agent, all_committed, client_for, detector, make_cfg, reference, wait_for


@pytest.mark.redis
async def test_redis_state_round_trip_and_a_worker_resumes_from_it(redis_server: Server, tmp_path: Path) -> None:
    cfg = make_cfg(redis_server.url, TESSERA_SIM__DURATION_S="400", TESSERA_TRANSPORT__REDIS__PREFIX="src")
    ref = reference(cfg)
    keys = Keys("src")
    client = client_for(redis_server.url)
    async with detector(cfg) as (_w, _t), agent(cfg) as (_a, at):
        await wait_for(at.done, 30, "the agent")
        await wait_for(lambda: all_committed(client, cfg, ref), 30, "every window committed")
    events = [
        await client.xadd(keys.events, {"event": json.dumps({"kind": "drain", "n": i}), "source": "api"})
        for i in range(3)
    ]
    archive = tmp_path / "state.tar.gz"
    assert main(["state", "export", str(archive)]) == 2  # memory transport, no state_dir: refused by name
    out = export_state(cfg, archive)
    assert out.checkpoints == len(ref.windows) == 2 and out.events == 3

    dst = make_cfg(redis_server.url, TESSERA_SIM__DURATION_S="400", TESSERA_TRANSPORT__REDIS__PREFIX="dst")
    dkeys = Keys("dst")
    got = import_state(dst, archive)
    assert got.checkpoints == 2 and got.events == 3
    for token in ref.windows:
        assert await client.get(dkeys.checkpoint(token)) == await client.get(keys.checkpoint(token))
        assert await client.get(dkeys.committed(token)) == await client.get(keys.committed(token))
    assert await client.hgetall(dkeys.partitions) == await client.hgetall(keys.partitions)
    assert [e[0] for e in await client.xrange(dkeys.events)] == events
    with pytest.raises(Exception, match="already holds state"):
        import_state(dst, archive)
    assert import_state(dst, archive, replace=True).events == 3
    assert await client.xlen(dkeys.events) == 3

    # a worker on the imported prefix restores both partitions from the imported checkpoints
    async with detector(dst) as (worker, _t), agent(dst) as (_a, at):
        await wait_for(lambda: worker.detector.counters.checkpoints["restored"] >= 2, 30, "both restored")
    assert worker.detector.counters.checkpoints["refused"] == 0
    await client.aclose()


def test_state_dir_round_trip_through_the_cli(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cfg = load_config(None, {"TESSERA_DAEMON__STATE_DIR": str(tmp_path / "a"), "TESSERA_WINDOW__LENGTH_S": "5"})
    sim = ClusterSim(cfg.sim, scenario="clean", start_ts=1_700_000_000.0)
    p = Pipeline(cfg, sim.topology)
    for _ in range(60):
        p.ingest(sim.step()[1])
        p.advance()
    st = LocalState(cfg)
    st.dir.mkdir(parents=True)
    st.save(p, st.extra())
    archive = tmp_path / "backup" / "state.tar.gz"
    env = {"TESSERA_DAEMON__STATE_DIR": str(tmp_path / "a"), "TESSERA_WINDOW__LENGTH_S": "5"}
    mp = pytest.MonkeyPatch()
    try:
        for k, v in env.items():
            mp.setenv(k, v)
        assert main(["state", "export", str(archive)]) == 0
        assert json.loads(capsys.readouterr().out)["checkpoints"] == 1
        mp.setenv("TESSERA_DAEMON__STATE_DIR", str(tmp_path / "b"))
        assert main(["state", "import", str(archive)]) == 0
        assert main(["state", "import", str(archive)]) == 2  # exists: --replace needed
        assert main(["state", "import", str(archive), "--replace"]) == 0
    finally:
        mp.undo()
    a, b = (tmp_path / "a" / FILENAME).read_bytes(), (tmp_path / "b" / FILENAME).read_bytes()
    assert a == b
    restored, meta = restore(b, cfg)
    assert meta.window == p.assembler.last_closed and restored.windows_processed == p.windows_processed


def test_a_corrupted_archive_is_refused(tmp_path: Path) -> None:
    cfg = load_config(None, {"TESSERA_DAEMON__STATE_DIR": str(tmp_path / "a"), "TESSERA_WINDOW__LENGTH_S": "5"})
    sim = ClusterSim(cfg.sim, scenario="clean", start_ts=1_700_000_000.0)
    p = Pipeline(cfg, sim.topology)
    st = LocalState(cfg)
    st.dir.mkdir(parents=True)
    st.save(p, st.extra())
    archive = tmp_path / "s.tar.gz"
    export_state(cfg, archive)
    manifest, files = read_archive(archive)
    bad = tmp_path / "bad.tar.gz"
    with tarfile.open(bad, "w:gz") as tar:
        for name, raw in [("manifest.json", json.dumps(manifest).encode()), *files.items()]:
            data = raw[:-1] + bytes([raw[-1] ^ 1]) if name.startswith("checkpoints/") else raw
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    with pytest.raises(CheckpointError, match="digest mismatch"):
        read_archive(bad)
    (tmp_path / "junk.tar.gz").write_bytes(b"nope")
    with pytest.raises(CheckpointError, match="not a state archive"):
        read_archive(tmp_path / "junk.tar.gz")
