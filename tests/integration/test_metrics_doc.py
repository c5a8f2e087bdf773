"""docs/metrics.md lists every series in the registry, and every `all`-mode series exists."""

from __future__ import annotations

import re
from pathlib import Path

from prometheus_client.parser import text_string_to_metric_families

from tessera_daemon.config import load_config
from tessera_daemon.engine.pipeline import Pipeline
from tessera_daemon.sim import ClusterSim
from tessera_daemon.sources.supervise import SourceHealth
from tessera_daemon.sources.synthetic import SyntheticSource
from tessera_daemon.transport.memory import MemoryTransport
from tessera_daemon.web.metrics import MetricsRenderer
from tessera_daemon.web.status import Status

DOC = Path(__file__).resolve().parents[2] / "docs" / "metrics.md"
SUFFIX = {"counter": "_total", "histogram": "", "gauge": ""}


def documented() -> dict[str, str]:
    rows = {}
    for line in DOC.read_text().splitlines():
        m = re.match(r"\| (tessera_[a-z_]+) \| (\w+) \|[^|]*\| (\w+) \|", line)
        if m:
            rows[m.group(1)] = m.group(3)
    return rows


def test_registry_matches_docs() -> None:
    cfg = load_config(
        None,
        {
            "TESSERA_SIM__SCENARIO": "xid79",
            "TESSERA_SIM__ZONES": "1",
            "TESSERA_SIM__HOSTS_PER_RACK": "2",
            "TESSERA_SIM__COHORTS": "1",
        },
    )
    sim = ClusterSim(cfg.sim, scenario="xid79")
    p = Pipeline(cfg, sim.topology)
    for _ in range(700):
        p.ingest(sim.step()[1])
        p.advance()
    status = Status(cfg, p.snapshot(), MemoryTransport(10), {SyntheticSource.name: SourceHealth(SyntheticSource.name)})
    text = MetricsRenderer(status).render().decode()
    exported = set()
    for fam in text_string_to_metric_families(text):
        exported.add(fam.name + SUFFIX.get(fam.type, ""))
    docs = documented()
    exported = {n for n in exported if not n.startswith("process_")}  # prometheus_client's process collector
    assert exported - set(docs) == set(), "exported but not in docs/metrics.md"
    missing = {n for n, mode in docs.items() if mode == "all"} - exported
    assert missing == set(), "documented for all modes but not exported"
