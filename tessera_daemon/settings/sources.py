"""Settings of the substrate sources: the ``[sources]`` table and one sub-table per source.

Every sub-table is optional in the TOML file; a source reads only its own table
(``cfg.sources.<name>``) plus ``cfg.sources.timeout_s`` and ``cfg.daemon.cluster``.
Maps are written as tuples of ``"key=value"`` strings (the config schema has no dicts).
Command lines are tuples of argv words, so a stub or a wrapper can be configured without a shell.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tessera_daemon.settings import setting

# The source registry: a name usable in ``sources.enabled`` -> ``"module:Class"`` (imported on demand by
# ``sources.build_sources``).
SOURCES: dict[str, str] = {
    "nvml": "tessera_daemon.sources.nvml:NvmlSource",
    "dcgm": "tessera_daemon.sources.dcgm:DcgmSource",
    "kubernetes": "tessera_daemon.sources.kubernetes:KubernetesSource",
    "slurm": "tessera_daemon.sources.slurm:SlurmSource",
    "neuron": "tessera_daemon.sources.neuron:NeuronSource",
    "tpu": "tessera_daemon.sources.tpu:TpuSource",
    "prometheus": "tessera_daemon.sources.prometheus:PrometheusSource",
    # owned by their own modules and tests: application frames over MQTT, the built-in simulator
    "mqtt": "tessera_daemon.sources.mqtt:MqttSource",
    "synthetic": "tessera_daemon.sources.synthetic:SyntheticSource",
}


@dataclass(frozen=True, slots=True)
class NvmlSettings:
    host: str = setting("", doc="host name used in shard ids <host>/gpu<i>; empty: socket.gethostname()")
    expected_devices: int = setting(
        0, lo=0, hi=1024, doc="GPUs this host should have; fewer visible gives lost frames; 0: no check"
    )
    xid_events: bool = setting(True, doc="register an NVML event set for critical XID errors")
    init_timeout_s: float = setting(15.0, lo=0.1, hi=600.0, doc="timeout of nvmlInit and device discovery")
    nvlink_links: int = setting(18, lo=0, hi=36, doc="NVLink links probed per GPU for the topology")


@dataclass(frozen=True, slots=True)
class DcgmSettings:
    urls: tuple[str, ...] = setting(
        ("http://127.0.0.1:9400/metrics",), doc="dcgm-exporter /metrics URLs scraped each poll"
    )
    host: str = setting("", doc="host name for shard ids; empty: the Hostname label, else the URL host")


@dataclass(frozen=True, slots=True)
class KubernetesSettings:
    api_url: str = setting("", doc="API server URL; empty: in-cluster config, else kubeconfig")
    kubeconfig: str = setting("", doc="kubeconfig path when api_url is empty and not in a cluster")
    token_file: str = setting("", doc="bearer token file used with api_url; empty: none")
    ca_file: str = setting("", doc="CA bundle used with api_url; empty: system default")
    verify_tls: bool = setting(True, doc="verify the API server certificate when api_url is https")
    node_selector: str = setting("", doc="label selector restricting the watched nodes")
    zone_label: str = setting("topology.kubernetes.io/zone", doc="node label naming the zone")
    rack_label: str = setting("topology.kubernetes.io/rack", doc="node label naming the rack; empty: none")
    psu_label: str = setting("", doc="node label naming the power supply group; empty: none")
    cooling_zone_label: str = setting("", doc="node label naming the cooling zone; empty: the zone")
    nvlink_domain_label: str = setting("nvidia.com/gpu.clique", doc="node label naming the NVLink domain")
    cohort_labels: tuple[str, ...] = setting(
        (
            "batch.kubernetes.io/job-name",
            "job-name",
            "jobset.sigs.k8s.io/jobset-name",
            "training.kubeflow.org/job-name",
            "leaderworkerset.sigs.k8s.io/name",
        ),
        doc="pod labels naming the job (cohort), first match wins; else the controller owner",
    )
    devices: tuple[str, ...] = setting(
        ("gpu=nvidia.com/gpu", "tpu=google.com/tpu", "neuron=aws.amazon.com/neuron"),
        doc="shard kind=extended resource; shard ids are <node>/<kind><index>",
    )
    watch_timeout_s: int = setting(300, lo=1, hi=3600, doc="server-side timeout of one watch request")
    retry_s: float = setting(2.0, lo=0.05, hi=600.0, doc="first delay before re-watching after an error")


@dataclass(frozen=True, slots=True)
class SlurmSettings:
    sinfo: tuple[str, ...] = setting(("sinfo",), doc="sinfo command (argv); --json is appended")
    squeue: tuple[str, ...] = setting(("squeue",), doc="squeue command (argv); --json is appended")
    scontrol: tuple[str, ...] = setting(("scontrol",), doc="scontrol command (argv)")
    slurm_conf: str = setting("", doc="SLURM_CONF for the commands; empty: inherited environment")
    topology: Literal["scontrol", "file", "none"] = setting(
        "scontrol", doc="switch tree from `scontrol show topology`, a topology.conf file, or none"
    )
    topology_file: str = setting("", doc='topology.conf path when topology = "file"')
    gres: str = setting("gpu", doc="GRES name whose indexes are shards")
    shard_kind: str = setting("gpu", doc="shard ids are <node>/<shard_kind><gres index>")
    refresh_s: float = setting(15.0, lo=0.0, hi=86_400.0, doc="poll re-reads squeue/sinfo this often")
    command_timeout_s: float = setting(8.0, lo=0.1, hi=600.0, doc="kill a Slurm command after this long")


@dataclass(frozen=True, slots=True)
class NeuronSettings:
    ls_command: tuple[str, ...] = setting(("neuron-ls", "--json-output"), doc="neuron-ls argv")
    monitor_command: tuple[str, ...] = setting(("neuron-monitor",), doc="neuron-monitor argv (a stream)")
    host: str = setting("", doc="host name for shard ids <host>/neuron<N>; empty: socket.gethostname()")
    instance_type: str = setting("", doc="EC2 instance type; empty: from neuron-ls or neuron-monitor")
    stale_after_s: float = setting(
        20.0, lo=0.1, hi=3600.0, doc="no neuron-monitor report this long: the source is unavailable"
    )
    restart_backoff_s: float = setting(1.0, lo=0.01, hi=600.0, doc="first delay before restarting the monitor")
    restart_backoff_max_s: float = setting(30.0, lo=0.01, hi=3600.0, doc="cap on the restart delay")


@dataclass(frozen=True, slots=True)
class TpuSettings:
    command: tuple[str, ...] = setting(("tpu-info",), doc="tpu-info argv (static mode, table output)")
    slice_file: str = setting("", doc="slice description JSON (tpu_version, slice_shape, chips, ici_peers)")
    slice_name: str = setting("slice0", doc="id suffix of the slice node (kind pod): slice:<name>")
    host: str = setting("", doc="host name for shard ids <host>/tpu<chip>; empty: socket.gethostname()")
    hosts: tuple[str, ...] = setting(
        (), doc="slice worker host names in worker order; empty: the whole slice is on this host"
    )
    chips_per_host: int = setting(4, lo=1, hi=64, doc="chips per worker host (global chip N -> host N // k)")
    accelerator: str = setting("", doc="model label (e.g. tpu-v5p-slice); empty: tpu-<version>")


@dataclass(frozen=True, slots=True)
class PrometheusSettings:
    url: str = setting("http://127.0.0.1:9090", doc="Prometheus base URL (GET /api/v1/query)")
    queries: tuple[str, ...] = setting(
        (
            "gpu_util=DCGM_FI_DEV_GPU_UTIL / 100",
            "sm_clock_mhz=DCGM_FI_DEV_SM_CLOCK",
            "power_w=DCGM_FI_DEV_POWER_USAGE",
            "temp_c=DCGM_FI_DEV_GPU_TEMP",
        ),
        doc="metric_name=PromQL instant queries, one series per shard",
    )
    counters: tuple[str, ...] = setting((), doc="metric names (left of =) whose queries return counters")
    host_label: str = setting("Hostname", doc="series label naming the host")
    device_label: str = setting("gpu", doc="series label naming the device index")
    shard_kind: str = setting("gpu", doc="shard ids are <host>/<shard_kind><device>")
    model_label: str = setting("modelName", doc="series label naming the device model; empty: none")
    uuid_label: str = setting("UUID", doc="series label carrying the device UUID; empty: none")


@dataclass(frozen=True, slots=True)
class SourcesConfig:
    enabled: tuple[str, ...] = setting((), doc="sources to run; empty: the built-in simulator")
    poll_interval_s: float = setting(1.0, lo=0.01, hi=3600.0, doc="how often every enabled source is polled")
    timeout_s: float = setting(2.0, lo=0.01, hi=600.0, doc="per-poll timeout of each source")
    stale_after_s: float = setting(30.0, lo=0.1, hi=86_400.0, doc="a source with no success this long is stale")
    topology_refresh_s: float = setting(60.0, lo=1.0, hi=86_400.0, doc="how often topology is re-read")
    static_topology: str = setting("", doc="static topology JSON (contract 2) merged with top precedence; empty: none")
    nvml: NvmlSettings = field(default_factory=NvmlSettings)
    dcgm: DcgmSettings = field(default_factory=DcgmSettings)
    kubernetes: KubernetesSettings = field(default_factory=KubernetesSettings)
    slurm: SlurmSettings = field(default_factory=SlurmSettings)
    neuron: NeuronSettings = field(default_factory=NeuronSettings)
    tpu: TpuSettings = field(default_factory=TpuSettings)
    prometheus: PrometheusSettings = field(default_factory=PrometheusSettings)
