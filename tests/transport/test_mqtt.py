"""MQTT: frames from training processes in, firings out, through a real mosquitto broker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import aiomqtt
import pytest

from tessera_daemon.config import load_config
from tessera_daemon.errors import SubstrateUnavailable
from tessera_daemon.model import Frame, Topology
from tessera_daemon.outputs.mqtt import MqttFiringPublisher
from tessera_daemon.outputs.stream import read_firings
from tessera_daemon.sim import ClusterSim
from tessera_daemon.sources.mqtt import MqttSource
from tessera_daemon.transport.keys import Keys
from tessera_daemon.transport.registry import slice_topology
from tests.transport.conftest import Server
from tests.transport.helpers import SIM, START_TS, agent, client_for, detector, make_cfg, wait_for

pytestmark = pytest.mark.mqtt


def mqtt_env(port: int) -> dict[str, str]:
    return {
        "TESSERA_TRANSPORT__MQTT__PORT": str(port),
        "TESSERA_TRANSPORT__MQTT__BACKOFF_BASE_S": "0.05",
        "TESSERA_TRANSPORT__MQTT__BACKOFF_CAP_S": "0.3",
        "TESSERA_DAEMON__CLUSTER": "lab",
    }


async def publish_frames(port: int, frames: list[Frame], *, strip_shard: bool = False) -> None:
    async with aiomqtt.Client("127.0.0.1", port, identifier="trainer") as c:
        for f in frames:
            obj = f.to_obj()
            if strip_shard:
                del obj["shard"]
            await c.publish(f"tessera/lab/frames/{f.shard}", json.dumps(obj), qos=1)


async def test_source_ingests_training_frames_rejects_garbage_and_reconnects(mosquitto_server: Server) -> None:
    cfg = load_config(None, {**SIM, **mqtt_env(mosquitto_server.port)})
    src = MqttSource(cfg)
    await src.open()
    try:
        await asyncio.wait_for(src.connected.wait(), 10)
        sent = [
            Frame(
                START_TS + i,
                f"job7/rank{r}",
                {"step_time_ms": 350.0 + r, "loss": 2.5 - i / 10, "grad_norm": 1.0 + r / 4},
            )
            for i in range(3)
            for r in range(4)
        ]
        await publish_frames(mosquitto_server.port, sent, strip_shard=True)
        async with aiomqtt.Client("127.0.0.1", mosquitto_server.port) as c:
            await c.publish("tessera/lab/frames/job7/rank0", b"{not json", qos=1)
            await c.publish("tessera/lab/frames/job7/rank1", b'{"v":1,"ts":1,"shard":"elsewhere","metrics":{}}', qos=1)
        await wait_for(lambda: src.health.messages["rejected"] == 2, 10, "both bad messages")
        assert list(await src.poll(0.0)) == sent
        assert src.health.messages["received"] == 12

        mosquitto_server.stop()
        await wait_for(lambda: not src.health.up, 10, "the source noticing the broker is gone")
        with pytest.raises(SubstrateUnavailable):
            await src.poll(0.0)
        mosquitto_server.start()
        await asyncio.wait_for(src.connected.wait(), 15)
        assert src.health.reconnects == 1
        again = [Frame(START_TS + 9, "job7/rank0", {"loss": 1.0})]
        await publish_frames(mosquitto_server.port, again)
        await wait_for(lambda: len(src.buffer) == 1, 10, "a frame after the reconnect")
        assert list(await src.poll(0.0)) == again
    finally:
        await src.close()


async def test_firings_published_qos1_retained_per_target(mosquitto_server: Server) -> None:
    cfg = load_config(None, {**SIM, **mqtt_env(mosquitto_server.port)})
    pub = MqttFiringPublisher(cfg.transport.mqtt, "lab")
    stop = asyncio.Event()
    task = asyncio.create_task(pub.run(stop))
    firing = {"v": 1, "id": "f1", "state": "open", "scope": "shard", "target": "z0-r00-h00-g3"}
    pub.offer("shard", "z0-r00-h00-g3", 10, [firing])
    pub.offer("host", "z0-r00-h01", 10, [{**firing, "id": "f2", "scope": "host", "target": "z0-r00-h01"}])
    pub.offer("host", "z0-r00-h01", 12, [])  # resolved later: the retained state follows
    await wait_for(lambda: not pub.pending and pub.health.up, 10, "publication")
    stop.set()
    await asyncio.wait_for(task, 10)
    got: dict[str, tuple[dict[str, object], int, bool]] = {}
    async with aiomqtt.Client("127.0.0.1", mosquitto_server.port) as c:  # a subscriber arriving later
        await c.subscribe("tessera/lab/firings/#", qos=1)
        async with asyncio.timeout(5):
            async for m in c.messages:
                got[m.topic.value] = (json.loads(bytes(m.payload)), m.qos, m.retain)
                if len(got) == 2:
                    break
    shard = got["tessera/lab/firings/shard/z0-r00-h00-g3"]
    host = got["tessera/lab/firings/host/z0-r00-h01"]
    assert shard[0]["state"] == "open" and shard[0]["firings"] == [firing] and shard[1:] == (1, True)
    assert host[0]["state"] == "resolved" and host[0]["window"] == 12 and host[0]["firings"] == []


@pytest.mark.redis
async def test_round_trip_trainer_mqtt_agent_redis_worker_mqtt(
    mosquitto_server: Server, redis_server: Server, tmp_path: Path
) -> None:
    sim = ClusterSim(load_config(None, SIM).sim, scenario="clean")
    shards = [s for s in sim.topology.shards if s.startswith("z0-r00-h00-")]
    topo_file = tmp_path / "topology.json"
    topo_file.write_text(slice_topology(sim.topology, shards).to_json())
    cfg = make_cfg(
        redis_server.url,
        **mqtt_env(mosquitto_server.port),
        TESSERA_SOURCES__ENABLED='["mqtt"]',
        TESSERA_SOURCES__STATIC_TOPOLOGY=str(topo_file),
        TESSERA_TRANSPORT__MQTT__PUBLISH_FIRINGS="true",
    )
    sick = shards[3]
    frames = [
        Frame(
            START_TS + t,
            s,
            {"step_time_ms": 350.0, "gpu_util": 0.9},
            frozenset(),
            (79,) if (s == sick and t == 12) else (),
        )
        for t in range(30)
        for s in shards
    ]
    keys = Keys(cfg.transport.redis.prefix)
    client = client_for(redis_server.url)
    states: dict[str, dict[str, object]] = {}
    try:
        async with (
            aiomqtt.Client("127.0.0.1", mosquitto_server.port) as sub,
            detector(cfg) as (worker, _wt),
            agent(cfg) as (ag, _at),
        ):
            await sub.subscribe("tessera/lab/firings/#", qos=1)
            await wait_for(lambda: ag.status.health["mqtt"].up, 10, "the agent's MQTT source")
            await publish_frames(mosquitto_server.port, frames)
            async with asyncio.timeout(20):
                async for m in sub.messages:
                    states[m.topic.value] = json.loads(bytes(m.payload))
                    break
            await wait_for(lambda: worker.detector.counters.windows["committed"] >= 6, 15, "the windows")
        events = await read_firings(client, keys.firings)
    finally:
        await client.aclose()
    state = states[f"tessera/lab/firings/shard/{sick}"]
    assert state["state"] == "open" and state["target"] == sick
    firings: list[dict[str, object]] = state["firings"]  # type: ignore[assignment]
    (f,) = firings
    assert f["detector"] == "rule:xid" and f["classification"] == "hard_fault"
    assert [(e.id, e.state, e.firing["target"]) for e in events] == [(f["id"], "open", sick)]
    assert ag.status.producer.stats.published_frames == len(frames)
    assert isinstance(Topology.from_json(topo_file.read_text()), Topology)
