"""Kubernetes source: the real ``kubernetes.aio`` client against a fake API server (aiohttp)
serving recorded NodeList / PodList JSON and newline-delimited watch events."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from tessera_daemon.errors import SubstrateUnavailable
from tessera_daemon.settings.sources import KubernetesSettings
from tessera_daemon.sources.base import TopologyPart
from tessera_daemon.sources.k8s_topology import build_part
from tessera_daemon.sources.kubernetes import KubernetesSource
from tests.sources.conftest import FIXTURES, make_config, poll_until_error
from tests.sources.fake_kube import FakeKubeApi

K8S = FIXTURES / "kubernetes"


def items(name: str) -> list[dict[str, Any]]:
    data: list[dict[str, Any]] = json.loads((K8S / name).read_text())["items"]
    return data


@pytest.fixture
async def api() -> AsyncIterator[FakeKubeApi]:
    server = FakeKubeApi()
    server.load("nodes", items("nodelist.json"))
    server.load("pods", items("podlist.json"))
    await server.start()
    yield server
    await server.stop()


def source(api: FakeKubeApi, **kw: Any) -> KubernetesSource:
    return KubernetesSource(
        make_config(kubernetes=KubernetesSettings(api_url=f"http://127.0.0.1:{api.port}", retry_s=0.05, **kw))
    )


async def eventually(check: Callable[[], Any], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def nodes_of(part: TopologyPart) -> dict[str, Any]:
    return {n.id: n for n in part.nodes}


async def test_list_builds_hosts_racks_zones_devices_and_cohorts(api: FakeKubeApi) -> None:
    src = source(api)
    await src.open()
    assert await src.poll(1.0) == []  # a topology source: no frames
    part = nodes_of(await src.topology())
    h1 = part["gpu-node-01"]
    assert h1.kind == "host" and h1.parent == "rack:r01" and h1.labels["cooling_zone"] == "zone:us-east-1a"
    assert part["rack:r01"].kind == "rack" and part["zone:us-east-1a"].kind == "cooling_zone"
    g = part["gpu-node-01/gpu7"]
    assert g.parent == "gpu-node-01" and g.labels["model"] == "NVIDIA-H100-80GB-HBM3"
    assert g.labels["cohort"] == "ml-team/llm-pretrain" and g.labels["nvlink_domain"].startswith("nvlink:")
    assert part["gpu-node-02/gpu0"].labels["cohort"] == "ml-team/llm-pretrain"
    # a PyTorchJob (owner reference) and a notebook share gpu-node-03: 4 + 2 GPUs, approximate indexes
    g3 = [part[f"gpu-node-03/gpu{i}"].labels for i in range(8)]
    assert [lb.get("cohort") for lb in g3] == ["research/finetune"] * 4 + ["research/notebook-7d9f8"] * 2 + [None] * 2
    assert g3[0]["cohort_approx"] == "true"
    assert "cohort" not in part["gpu-node-04/gpu0"].labels  # its only pod has Succeeded
    tpu = part["gke-tpu-v5p-pool-1/tpu3"]
    assert tpu.labels["cohort"] == "tpu-team/jax-train" and tpu.labels["pod"] == "tpu-slice:tpu-v5p-pool"
    assert part["tpu-slice:tpu-v5p-pool"].labels["tpu_topology"] == "2x2x2"
    assert len([n for n in part if n.startswith("trn1-node-01/neuron")]) == 16
    assert not [n for n in part if n.startswith("cpu-node-01/")]
    await src.close()


async def test_watch_applies_changes_and_relists_after_410_gone(api: FakeKubeApi) -> None:
    src = source(api)
    await src.open()
    await eventually(lambda: len(api.watch_requests("nodes")) == 1 and len(api.watch_requests("pods")) == 1)
    w = api.watch_requests("nodes")[0].query
    assert w["watch"] == "true" and w["resourceVersion"] and w["timeoutSeconds"] == "300"

    node = items("nodelist.json")[0]
    node["metadata"]["labels"]["topology.kubernetes.io/rack"] = "r09"
    await api.change("nodes", "MODIFIED", node)
    await eventually(
        lambda: src._objects["nodes"]["/gpu-node-01"]["metadata"]["labels"]["topology.kubernetes.io/rack"] == "r09"
    )
    assert nodes_of(await src.topology())["gpu-node-01"].parent == "rack:r09"

    pod = items("podlist.json")[0]
    await api.change("pods", "DELETED", pod)
    await eventually(lambda: "ml-team/llm-pretrain-0-abcde" not in src._objects["pods"])
    assert "cohort" not in nodes_of(await src.topology())["gpu-node-01/gpu0"].labels

    lists_before = len(api.list_requests("nodes"))
    await api.compact()  # history gone: the re-watch gets an ERROR 410 event, the source re-lists
    await eventually(lambda: src.relists["nodes"] >= 2 and src.relists["pods"] >= 2)
    assert len(api.list_requests("nodes")) > lists_before
    new = dict(items("nodelist.json")[-1])
    new["metadata"] = {**new["metadata"], "name": "cpu-node-02"}
    await api.change("nodes", "ADDED", new)
    await eventually(lambda: "/cpu-node-02" in src._objects["nodes"])
    assert await src.poll(2.0) == []
    await src.close()


async def test_api_server_gone_is_unavailable_and_recovers(api: FakeKubeApi) -> None:
    src = source(api)
    await src.open()
    await api.stop()
    assert isinstance(await poll_until_error(src), SubstrateUnavailable)
    await api.start()  # same port: the watch loop re-lists and the source is healthy again
    for _ in range(250):
        try:
            await src.poll(2.0)
            break
        except SubstrateUnavailable:
            await asyncio.sleep(0.02)
    assert await src.poll(3.0) == []
    await src.close()


async def test_open_fails_typed_when_nothing_listens() -> None:
    server = FakeKubeApi()
    await server.start()
    await server.stop()
    src = source(server)
    with pytest.raises(SubstrateUnavailable):
        await src.open()
    await src.close()


@pytest.mark.parametrize(
    ("fixture", "hosts", "shards", "zones"),
    [
        ("k8s-nodelist-fixture-full.json", 4, 32, 2),
        ("k8s-nodelist-fixture-sparse-no-gpu.json", 2, 0, 1),
        ("k8s-nodelist-fixture-sparse-no-region.json", 2, 0, 1),
    ],
)
def test_tessera_nodelist_fixtures(fixture: str, hosts: int, shards: int, zones: int) -> None:
    part = build_part(items(fixture), [], KubernetesSettings())
    kinds = [n.kind for n in part.nodes]
    assert (kinds.count("host"), kinds.count("shard"), kinds.count("cooling_zone")) == (hosts, shards, zones)
