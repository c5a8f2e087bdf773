"""A messy-fleet recording generator, written independently of :mod:`tessera_daemon.sim.cluster`.

It writes what a collector in front of a real GPU fleet would have recorded, in the daemon's public
contracts (frames JSON lines, topology JSON, cluster events JSON lines), plus a ground-truth file.
Nothing here is shared with the simulator the engine was tuned on: its own topology naming, its own
physical model (load -> power -> temperature with thermal lag, clocks under a power limit, integer
NVML readings), and the nuisances real fleets show every day.

Fleet (defaults: 256 H100 GPUs): ``zones`` cooling zones (``cz1``...) > ``racks_per_zone`` racks
(``rk01``...) > ``hosts_per_rack`` hosts (``gn001``...) > ``gpus_per_host`` GPUs (``gn001-d0``...).
Each rack has ``psus_per_rack`` PSUs (``rk01-pdu1``...) that each power a contiguous block of its
hosts; each host has ``gpus_per_host / gpus_per_nvlink`` NVLink domains (``gn001-nvs0``...; an HGX
H100 board is one NVSwitch domain of 8). Training jobs are cohorts (``labels.cohort``): the second
job takes the upper half of the hosts of the first racks, the first job the rest, so racks are mixed
and PSUs are job-pure (a PSU's load follows its job).

Metrics per GPU and poll: ``gpu_util`` (integer percent, saturating at 100), ``sm_clock_mhz``
(15 MHz bins, below the 1980 MHz boost under load), ``power_w``, ``temp_c`` (integer degrees: inlet +
thermal resistance x lagged power + a persistent per-GPU offset), ``mem_bw_util`` (integer percent),
``step_time_ms`` (per-rank compute time of a training step), ``nvlink_tx_bytes`` (cumulative uint64
counter) and ``ecc_dbe`` (cumulative, volatile: reset to 0 by a driver reload), the last two listed in
``counters``; ``xid`` appears in the sample in which an XID occurred.

Nuisances (each switchable, all on by default; see :class:`Nuisances`): per-host poll cadence from a
mix (1 to 60 s) with up to 20 % jitter, clock skew between hosts, missing metrics (a host whose
exporter lacks one), null readings and whole-null frames, counter wraps at 2^64 and resets (driver
reloads zero the NVLink and volatile ECC counters), host dropouts (agent restarts) and rejoins, group
wander near a unit root (zone room temperature, rack inlet, host airflow, PSU input), heterogeneous
recurring job phases (eval loops, checkpoint stalls, data-loader pauses; each member responds with
its own fixed multiplicative factor), persistent per-GPU offsets (some GPUs always 2-3 C hotter),
Student-t innovations, AR(1) noise up to 0.97 per 10 s (continuous-time, so the correlation follows the
actual interval), diurnal load and room temperature, benign XIDs (13, 31, 43, 45), quantised readings,
and an announced firmware push on part of a cohort (rolling reboots, then clocks move).

Faults (material sizes, labelled in ``truth.json``): straggler, SDC-like drift, thermal rack, PSU
power cap, NVLink degrade, unannounced firmware push, XID 79, ECC double-bit increment, silent device,
silent host. The clean twin (``faults=False``) shares every nuisance draw: independent random
streams per component, so its frames equal the faulted recording's outside the faults.

Vectorised NumPy (one loop over hosts; AR recursions in a small numba kernel): a 256-GPU x 8 h
recording at 10 s polls (737 k frames) generates and writes in seconds.
"""

from __future__ import annotations

import json
import math
import zlib
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
from numba import njit

from tessera_daemon.model import ClusterEvent, TopoEdge, Topology, TopoNode

F64 = npt.NDArray[np.float64]
FRAMES_FILE = "frames.jsonl"
TOPOLOGY_FILE = "topology.json"
EVENTS_FILE = "events.jsonl"
TRUTH_FILE = "truth.json"
MODEL = "NVIDIA H100 80GB HBM3"
GAUGES = ("gpu_util", "sm_clock_mhz", "power_w", "temp_c", "mem_bw_util", "step_time_ms")
COUNTERS = ("ecc_dbe", "nvlink_tx_bytes")
METRICS = (*GAUGES, "nvlink_tx_bytes", "ecc_dbe")
TWO64 = float(2**64)
GRID_S = 5.0  # resolution of the slow fleet processes (wander), interpolated to sample times
BENIGN_XIDS = (13, 31, 43, 45)
CADENCE_MIXES: dict[str, tuple[tuple[float, float], ...]] = {
    "10s": ((10.0, 1.0),),
    "15s": ((15.0, 1.0),),
    "30s": ((30.0, 1.0),),
    "default": ((10.0, 3.0), (15.0, 3.0), (20.0, 2.0), (30.0, 2.0)),
    "mixed": ((1.0, 1.0), (5.0, 3.0), (10.0, 8.0), (15.0, 8.0), (20.0, 4.0), (30.0, 6.0), (60.0, 2.0)),
}
FAULT_KINDS = (
    "thermal_rack",
    "psu_cap",
    "fw_unannounced",
    "nvlink_degrade",
    "silent_host",
    "straggler",
    "sdc_drift",
    "xid79",
    "ecc_dbe",
    "silent_device",
)
HARD_KINDS = frozenset({"xid79", "ecc_dbe", "silent_device"})
RAMP_S = {"straggler": 60.0, "psu_cap": 60.0, "nvlink_degrade": 60.0, "thermal_rack": 180.0, "sdc_drift": 1800.0}
SINGLE_GPU_KINDS = frozenset({"straggler", "sdc_drift", "xid79", "ecc_dbe", "silent_device"})
COMMON_MODE_KINDS = frozenset({"thermal_rack", "psu_cap", "nvlink_degrade", "silent_host"})


# ----------------------------------------------------------------------------------------- specs


@dataclass(frozen=True, slots=True)
class FleetShape:
    zones: int = 2
    racks_per_zone: int = 4
    hosts_per_rack: int = 4
    gpus_per_host: int = 8
    gpus_per_nvlink: int = 8
    psus_per_rack: int = 2
    second_job_share: float = 0.375  # share of hosts of job 2 (0: a single job)

    @property
    def n_hosts(self) -> int:
        return self.zones * self.racks_per_zone * self.hosts_per_rack

    @property
    def n_gpus(self) -> int:
        return self.n_hosts * self.gpus_per_host


@dataclass(frozen=True, slots=True)
class Nuisances:
    """Each nuisance can be switched off (False / 0); all are on by default."""

    cadence_mix: str = "default"  # a key of CADENCE_MIXES
    jitter: float = 0.2  # each host draws its relative poll jitter in U(0, jitter)
    clock_skew_s: float = 0.4  # sd of host clock offsets; 10 % of hosts get 5x this
    missing: bool = True  # hosts lacking a metric, null readings, whole-null frames, absent keys
    null_rate: float = 0.002  # per value
    counter_quirks: bool = True  # 2^64 wraps, resets at driver reloads, historic volatile ECC counts
    dropouts_per_host_day: float = 0.75  # agent restarts: the host is silent 20-150 s, then rejoins
    group_wander: bool = True  # zone / rack / host temperature, PSU power, job step-time wander
    job_phases: bool = True  # eval loops, checkpoint stalls, data-loader pauses
    offsets: bool = True  # persistent per-GPU offsets (silicon and airflow)
    heavy_tails: bool = True  # Student-t innovations (df 3-8)
    ar_max: float = 0.97  # AR(1) per 10 s of the noise drawn in U(0.3, ar_max); 0: white noise
    diurnal: bool = True  # room temperature and load follow the day
    announced_firmware: bool = True  # a firmware push on part of a cohort, with its event
    benign_xids: bool = True  # application XIDs (13, 31, 43, 45) now and then
    quantise: bool = True  # integer util / temp / bandwidth, 15 MHz clock bins

    @classmethod
    def none(cls) -> Nuisances:
        """No nuisance at all: fixed 10 s polls, white Gaussian noise (for tests and contrasts)."""
        return cls("10s", 0.0, 0.0, False, 0.0, False, 0.0, False, False, False, False, 0.0, False, False, False, False)


@dataclass(frozen=True, slots=True)
class MessySpec:
    shape: FleetShape = field(default_factory=FleetShape)
    nuisances: Nuisances = field(default_factory=Nuisances)
    duration_s: float = 8 * 3600.0
    start_ts: float = 1_780_034_400.0  # 2026-05-29 06:00 UTC: the morning ramp of the diurnal cycle
    seed: int = 1
    faults: bool = True
    fault_kinds: tuple[str, ...] = FAULT_KINDS
    fault_span: tuple[float, float] = (0.4, 0.85)  # faults start in this fraction of the recording
    fault_duration_s: float = 2400.0  # statistical faults end after this (hard / silent: sustained)

    def twin(self) -> MessySpec:
        """The clean twin: same seed and nuisances, no faults."""
        return replace(self, faults=False)


# ------------------------------------------------------------------------------------- helpers


def _rng(seed: int, *parts: str | int) -> np.random.Generator:
    key = [seed] + [zlib.crc32(p.encode()) if isinstance(p, str) else int(p) for p in parts]
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(key)))


@njit(cache=True, nogil=True)
def _recur(a: np.ndarray, x: np.ndarray, y0: np.ndarray) -> np.ndarray:  # pragma: no cover - numba
    """y[:, k] = a[:, k] * y[:, k-1] + x[:, k] (rows independent), y[:, -1] = y0."""
    n, k = x.shape
    y = np.empty_like(x)
    for i in range(n):
        prev = y0[i]
        for j in range(k):
            prev = a[i, j] * prev + x[i, j]
            y[i, j] = prev
    return y


def _ar_grid(rng: np.random.Generator, rows: int, n: int, rho: float, sd: float) -> F64:
    """Stationary AR(1) paths on the slow grid (rows x n), marginal sd ``sd``."""
    a = np.full((rows, n), rho)
    x = rng.standard_normal((rows, n)) * sd * math.sqrt(1.0 - rho * rho)
    return np.asarray(_recur(a, x, rng.standard_normal(rows) * sd))


def _innovations(rng: np.random.Generator, shape: tuple[int, ...], df: F64 | None) -> F64:
    """Unit-variance innovations: Student-t with per-row df (heavy tails), else Gaussian."""
    if df is None:
        return rng.standard_normal(shape)
    d = df.reshape((-1,) + (1,) * (len(shape) - 1))
    t = rng.standard_normal(shape) / np.sqrt(rng.chisquare(np.broadcast_to(d, shape)) / d)
    return np.asarray(t / np.sqrt(d / (d - 2.0)))


def _active(t: F64, starts: F64, ends: F64) -> npt.NDArray[np.intp]:
    """Index of the interval containing each t (-1: none); intervals sorted, non-overlapping."""
    if len(starts) == 0:
        return np.full(t.shape, -1, np.intp)
    i = np.searchsorted(starts, t, side="right") - 1
    ok = (i >= 0) & (t < ends[np.maximum(i, 0)])
    return np.where(ok, i, -1)


def _allocate(weights: list[float], n: int) -> list[int]:
    """Largest-remainder allocation of n items to weights."""
    w = np.asarray(weights, float) / sum(weights)
    raw = w * n
    counts = np.floor(raw).astype(int)
    for i in np.argsort(-(raw - counts), kind="stable")[: n - counts.sum()]:
        counts[i] += 1
    return [int(c) for c in counts]


# ------------------------------------------------------------------------------------ topology


@dataclass(slots=True)
class Fleet:
    shape: FleetShape
    host_ids: list[str]
    rack_of_host: list[int]
    zone_of_rack: list[int]
    psu_of_host: list[str]
    job_of_host: list[int]
    rack_ids: list[str]
    zone_ids: list[str]
    job_ids: list[str]
    gpu_ids: list[list[str]]  # per host
    nvl_of_gpu: list[list[str]]  # per host
    topology: Topology
    members: dict[str, list[str]]  # group node id -> member GPU ids

    def hosts_of(self, node: str) -> list[int]:
        shards = set(self.members[node])
        return [h for h in range(len(self.host_ids)) if shards & set(self.gpu_ids[h])]


def build_fleet(shape: FleetShape) -> Fleet:
    nodes = [TopoNode("fleet", "fleet", None, {})]
    edges: list[TopoEdge] = []
    n_jobs = 2 if shape.second_job_share > 0 else 1
    job_ids = ["llm-pretrain-a", "llm-pretrain-b"][:n_jobs]
    nodes += [TopoNode(j, "cohort", "fleet", {"model": MODEL}) for j in job_ids]
    zone_ids = [f"cz{z + 1}" for z in range(shape.zones)]
    nodes += [TopoNode(z, "cooling_zone", "fleet", {}) for z in zone_ids]
    n_racks = shape.zones * shape.racks_per_zone
    rack_ids = [f"rk{r + 1:02d}" for r in range(n_racks)]
    zone_of_rack = [r // shape.racks_per_zone for r in range(n_racks)]
    # job 2 takes the upper half of the hosts of the first racks, job 1 the rest
    order = sorted(
        range(shape.n_hosts),
        key=lambda h: (h % shape.hosts_per_rack < shape.hosts_per_rack // 2, h // shape.hosts_per_rack, h),
    )
    n_second = round(shape.second_job_share * shape.n_hosts) if n_jobs == 2 else 0
    second = set(order[:n_second])
    host_ids: list[str] = []
    psu_of_host: list[str] = []
    rack_of_host: list[int] = []
    job_of_host: list[int] = []
    gpu_ids: list[list[str]] = []
    nvl_of_gpu: list[list[str]] = []
    members: dict[str, list[str]] = {}
    per_psu = math.ceil(shape.hosts_per_rack / shape.psus_per_rack)
    for r, rack in enumerate(rack_ids):
        zone = zone_ids[zone_of_rack[r]]
        nodes.append(TopoNode(rack, "rack", zone, {"cooling_zone": zone}))
        psus = [f"{rack}-pdu{p + 1}" for p in range(math.ceil(shape.hosts_per_rack / per_psu))]
        nodes += [TopoNode(p, "psu", rack, {"rack": rack, "cooling_zone": zone}) for p in psus]
        for slot in range(shape.hosts_per_rack):
            h = len(host_ids)
            host = f"gn{h + 1:03d}"
            job = 1 if h in second else 0
            psu = psus[slot // per_psu]
            host_ids.append(host)
            rack_of_host.append(r)
            psu_of_host.append(psu)
            job_of_host.append(job)
            common = {"rack": rack, "cooling_zone": zone, "psu": psu, "cohort": job_ids[job]}
            nodes.append(TopoNode(host, "host", rack, dict(common)))
            gids, nvls = [], []
            n_dom = max(1, shape.gpus_per_host // shape.gpus_per_nvlink)
            for d in range(n_dom):
                nodes.append(TopoNode(f"{host}-nvs{d}", "nvlink_domain", host, {"host": host}))
            for g in range(shape.gpus_per_host):
                gid = f"{host}-d{g}"
                nvl = f"{host}-nvs{min(g // shape.gpus_per_nvlink, n_dom - 1)}"
                gids.append(gid)
                nvls.append(nvl)
                nodes.append(
                    TopoNode(
                        gid,
                        "shard",
                        host,
                        {**common, "host": host, "nvlink_domain": nvl, "model": MODEL, "gpu_index": str(g)},
                    )
                )
                for grp in (host, nvl, psu, rack, zone, job_ids[job], "fleet"):
                    members.setdefault(grp, []).append(gid)
            for i, a in enumerate(gids):
                edges += [
                    TopoEdge(a, b, "nvlink")
                    for b, nb in zip(gids[i + 1 :], nvls[i + 1 :], strict=True)
                    if nb == nvls[i]
                ]
            gpu_ids.append(gids)
            nvl_of_gpu.append(nvls)
    return Fleet(
        shape,
        host_ids,
        rack_of_host,
        zone_of_rack,
        psu_of_host,
        job_of_host,
        rack_ids,
        zone_ids,
        job_ids,
        gpu_ids,
        nvl_of_gpu,
        Topology(nodes, edges),
        members,
    )


# ------------------------------------------------------------------------------- fleet processes


@dataclass(slots=True)
class Phases:
    """Recurring job phases: per job and kind, sorted intervals; per GPU a fixed response factor."""

    intervals: dict[tuple[int, str], tuple[F64, F64]]
    counts: dict[str, int]


PHASE_DEPTH = {  # multiplicative drop (or rise, step) of each channel during a phase, before heterogeneity
    "eval": {"util": 0.38, "power": 0.30, "bw": 0.45, "step": 0.0, "nvl": 0.40},
    "checkpoint": {"util": 0.65, "power": 0.45, "bw": 0.70, "step": -2.0, "nvl": 0.85},
    "dataloader": {"util": 0.30, "power": 0.20, "bw": 0.30, "step": -0.7, "nvl": 0.50},
}


def _phase_schedule(spec: MessySpec, n_jobs: int) -> Phases:
    out: dict[tuple[int, str], tuple[F64, F64]] = {}
    counts = {k: 0 for k in PHASE_DEPTH}
    t0, dur = spec.start_ts, spec.duration_s
    for j in range(n_jobs):
        rng = _rng(spec.seed, "phases", j)
        sched: dict[str, list[tuple[float, float]]] = {k: [] for k in PHASE_DEPTH}
        if spec.nuisances.job_phases:
            period = rng.uniform(36, 44) * 60
            t = t0 + rng.uniform(0, period)
            while t < t0 + dur:
                sched["eval"].append((t + rng.uniform(-90, 90), rng.uniform(180, 360)))
                t += period
            period = rng.uniform(25, 35) * 60
            t = t0 + rng.uniform(0, period)
            while t < t0 + dur:
                sched["checkpoint"].append((t + rng.uniform(-60, 60), rng.uniform(20, 60)))
                t += period
            t = t0 + rng.exponential(720)
            while t < t0 + dur:
                sched["dataloader"].append((t, rng.uniform(8, 30)))
                t += rng.exponential(720)
        for kind, ivs in sched.items():
            ivs.sort()
            starts = np.array([s for s, _ in ivs], float)
            ends = np.array([s + d for s, d in ivs], float)
            if len(starts) > 1:
                ends[:-1] = np.minimum(ends[:-1], starts[1:])
            out[(j, kind)] = (starts, ends)
            counts[kind] += len(ivs)
    return Phases(out, counts)


@dataclass(slots=True)
class Slow:
    """Slow processes on the GRID_S grid, interpolated to sample times."""

    grid: F64
    zone_temp: F64  # [zones, n] room temperature (diurnal + wander)
    rack_temp: F64  # [racks, n] rack inlet wander relative to the room
    host_temp: F64  # [hosts, n] host airflow wander
    psu_power: F64  # [psus, n] multiplicative PSU input wander (log)
    job_step: F64  # [jobs, n] job-wide step-time wander (log)
    intensity: F64  # [n] diurnal load factor
    psu_index: dict[str, int]

    def at(self, arr: F64, t: F64) -> F64:
        return np.asarray(np.interp(t, self.grid, arr))


def _slow(spec: MessySpec, fleet: Fleet) -> Slow:
    nz = spec.nuisances
    grid = spec.start_ts - 120.0 + np.arange(int((spec.duration_s + 240.0) / GRID_S) + 2) * GRID_S
    n = len(grid)
    rng = _rng(spec.seed, "wander")
    psus = sorted(set(fleet.psu_of_host))
    hours = (grid % 86400.0) / 3600.0
    diurnal = np.sin(2 * np.pi * (hours - 9.0) / 24.0) if nz.diurnal else np.zeros(n)  # peak at 15:00
    zones, racks, hosts = len(fleet.zone_ids), len(fleet.rack_ids), len(fleet.host_ids)
    if nz.group_wander:
        # per 5 s grid step: room tau ~ 2.8 h, rack inlet ~ 1.4 h (0.9986 per 10 s), host ~ 40 min
        zone_w = _ar_grid(rng, zones, n, 0.9995, 0.4)
        rack_w = _ar_grid(rng, racks, n, 0.9993, 0.3)
        host_w = _ar_grid(rng, hosts, n, 0.998, 0.15)
        psu_w = _ar_grid(rng, len(psus), n, 0.999, 0.008)
        job_w = _ar_grid(rng, len(fleet.job_ids), n, 0.995, 0.015)
    else:
        zone_w, rack_w, host_w = np.zeros((zones, n)), np.zeros((racks, n)), np.zeros((hosts, n))
        psu_w, job_w = np.zeros((len(psus), n)), np.zeros((len(fleet.job_ids), n))
    zone_base = 22.0 + rng.uniform(-1.0, 1.0, zones)[:, None]
    rack_base = rng.uniform(-0.8, 0.8, racks)[:, None]
    room = np.asarray(zone_base + 1.2 * diurnal[None, :] + zone_w, np.float64)
    return Slow(
        np.asarray(grid, np.float64),
        room,
        rack_base + rack_w,
        host_w,
        psu_w,
        job_w,
        1.0 + 0.015 * diurnal,
        {p: i for i, p in enumerate(psus)},
    )


# --------------------------------------------------------------------------------------- hosts


@dataclass(slots=True)
class HostPlan:
    cadence_s: float
    jitter: float
    skew_s: float
    latency_s: float
    dropouts: list[tuple[float, float, bool]]  # (start, end, counter reset on rejoin)
    lacks: tuple[str, ...]  # metrics this host's exporter never sends
    fw_reboot: float | None = None  # announced firmware push: reboot time on this host


def _host_plans(spec: MessySpec, fleet: Fleet) -> list[HostPlan]:
    nz = spec.nuisances
    rng = _rng(spec.seed, "hosts")
    n = len(fleet.host_ids)
    mix = CADENCE_MIXES[nz.cadence_mix]
    cad = np.repeat([c for c, _ in mix], _allocate([w for _, w in mix], n)).astype(float)
    cad = cad[rng.permutation(n)]
    jit = rng.uniform(0, nz.jitter, n)
    skew = rng.normal(0, nz.clock_skew_s, n) * np.where(rng.random(n) < 0.1, 5.0, 1.0)
    lat = rng.uniform(0.05, 0.4, n)
    lacking = rng.random(n) < (0.08 if nz.missing else 0.0)
    if nz.missing and not lacking.any():
        lacking[int(rng.integers(n))] = True  # at least one host's exporter lacks mem_bw_util
    plans = []
    for h in range(n):
        drops = []
        k = rng.poisson(nz.dropouts_per_host_day * spec.duration_s / 86400.0)
        for _ in range(k):
            s = spec.start_ts + rng.uniform(0.05, 0.97) * spec.duration_s
            drops.append((s, s + rng.uniform(20, 150), bool(rng.random() < 0.4 and nz.counter_quirks)))
        drops.sort()
        plans.append(
            HostPlan(
                float(cad[h]),
                float(jit[h]),
                float(skew[h]),
                float(lat[h]),
                drops,
                ("mem_bw_util",) if lacking[h] else (),
            )
        )
    return plans


def _announced(spec: MessySpec, fleet: Fleet, plans: list[HostPlan]) -> list[ClusterEvent]:
    """Firmware push on a quarter of job 1's hosts (at least 2), taken from the last racks: rolling
    reboots (each host silent 90-150 s, counters reset), then clocks +45 MHz and power +2 %."""
    if not spec.nuisances.announced_firmware:
        return []
    rng = _rng(spec.seed, "announced")
    job0 = [h for h in range(len(fleet.host_ids)) if fleet.job_of_host[h] == 0]
    k = max(2, len(job0) // 4)
    hosts = sorted(job0[-k:])
    ts = spec.start_ts + 0.55 * spec.duration_s
    for i, h in enumerate(hosts):
        reboot = ts + 60.0 + i * 240.0 + rng.uniform(0, 60)
        plans[h].fw_reboot = reboot
        plans[h].dropouts = sorted([*plans[h].dropouts, (reboot, reboot + rng.uniform(90, 150), True)])
    end = ts + 60.0 + len(hosts) * 240.0 + 600.0
    return [
        ClusterEvent(
            "fw-2026-05-h100-vbios-96.00.99", "firmware_push", ts, tuple(fleet.host_ids[h] for h in hosts), end
        )
    ]


def _sample_times(spec: MessySpec, plan: HostPlan, rng: np.random.Generator) -> F64:
    c = plan.cadence_s
    n = int(spec.duration_s / (c * (1 - plan.jitter))) + 2
    steps = c * (1.0 + rng.uniform(-plan.jitter, plan.jitter, n))
    t = spec.start_ts + rng.uniform(0, c) + np.concatenate([[0.0], np.cumsum(steps[:-1])])
    t = t[t < spec.start_ts + spec.duration_s]
    for s, e, _ in plan.dropouts:
        t = t[(t < s) | (t >= e)]
    return np.asarray(t)


# --------------------------------------------------------------------------------------- faults


@dataclass(slots=True)
class Fault:
    id: str
    kind: str
    target: str
    scope: str
    members: list[str]
    metrics: list[str]
    start_ts: float
    end_ts: float | None
    magnitude: str
    hard: bool
    hosts: list[int]
    detail: dict[str, Any] = field(default_factory=dict)

    def to_obj(self, fleet: Fleet, plans: list[HostPlan]) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "target": self.target,
            "scope": self.scope,
            "members": sorted(self.members),
            "metrics": self.metrics,
            "start_ts": self.start_ts,
            "end_ts": self.end_ts,
            "magnitude": self.magnitude,
            "hard": self.hard,
            "common_mode": self.kind in COMMON_MODE_KINDS,
            "full_ts": self.start_ts + RAMP_S.get(self.kind, 0.0),  # when the fault reaches its full size
            "hosts": [fleet.host_ids[h] for h in self.hosts],
            "cadence_s": max(plans[h].cadence_s for h in self.hosts),
            **self.detail,
        }


def _plan_faults(spec: MessySpec, fleet: Fleet, plans: list[HostPlan]) -> list[Fault]:
    if not spec.faults:
        return []
    rng = _rng(spec.seed, "faults")
    kinds = list(spec.fault_kinds)
    lo, hi = spec.fault_span
    starts = spec.start_ts + spec.duration_s * np.linspace(lo, hi, len(kinds))
    starts = starts[rng.permutation(len(kinds))] + rng.uniform(-60, 60, len(kinds))
    used: set[int] = {h for h, p in enumerate(plans) if p.fw_reboot is not None}
    single: dict[int, set[str]] = {}
    faults: list[Fault] = []
    # targets: the largest footprints first (a whole rack, a PSU, three hosts...), single GPUs last
    for idx in sorted(
        range(len(kinds)), key=lambda i: FAULT_KINDS.index(kinds[i]) if kinds[i] in FAULT_KINDS else len(FAULT_KINDS)
    ):
        f = _fault(kinds[idx], kinds[idx], float(starts[idx]), spec, fleet, used, rng, single)
        if f is None:
            continue
        if f.scope == "shard":  # single-GPU faults may share a host once every free host has one
            single.setdefault(f.hosts[0], set()).add(f.target)
        else:
            used.update(f.hosts)
        faults.append(f)
    faults.sort(key=lambda f: f.start_ts)
    for i, f in enumerate(faults):
        f.id = f"F{i + 1:02d}-{f.kind}"
    return faults


def _free_hosts(fleet: Fleet, used: set[int], job: int | None = None) -> list[int]:
    return [h for h in range(len(fleet.host_ids)) if h not in used and (job is None or fleet.job_of_host[h] == job)]


def _fault(
    kind: str,
    fid: str,
    start: float,
    spec: MessySpec,
    fleet: Fleet,
    used: set[int],
    rng: np.random.Generator,
    single: dict[int, set[str]],
) -> Fault | None:
    end = start + spec.fault_duration_s
    free = [h for h in _free_hosts(fleet, used) if h not in single]
    if kind in ("thermal_rack", "psu_cap"):
        groups = fleet.rack_ids if kind == "thermal_rack" else sorted(set(fleet.psu_of_host))
        ok = [g for g in groups if all(h not in used for h in fleet.hosts_of(g))]
        if not ok:
            return None
        node = str(rng.choice(ok))
        hosts = fleet.hosts_of(node)
        if kind == "thermal_rack":
            return Fault(
                fid, kind, node, "rack", list(fleet.members[node]), ["temp_c"], start, end, "+4 C", False, hosts
            )
        return Fault(
            fid,
            kind,
            node,
            "psu",
            list(fleet.members[node]),
            ["power_w", "sm_clock_mhz"],
            start,
            end,
            "power -18 %, clocks -110 MHz",
            False,
            hosts,
        )
    if kind == "fw_unannounced":
        cand = _free_hosts(fleet, used, job=1 if len(fleet.job_ids) > 1 else 0)
        if len(cand) < 3:
            return None
        hosts = sorted(rng.choice(cand, size=3, replace=False).tolist())
        members = [g for h in hosts for g in fleet.gpu_ids[h]]
        return Fault(
            fid,
            kind,
            fleet.job_ids[fleet.job_of_host[hosts[0]]],
            "hosts",
            members,
            ["sm_clock_mhz", "power_w"],
            start,
            None,
            "clocks -90 MHz, power -4 %",
            False,
            hosts,
        )
    if kind in SINGLE_GPU_KINDS:
        free = free or [h for h in _free_hosts(fleet, used) if len(single[h]) < len(fleet.gpu_ids[h])]
    if not free:
        return None
    h = int(rng.choice(free))
    gpus = fleet.gpu_ids[h]
    if kind == "nvlink_degrade":
        node = fleet.nvl_of_gpu[h][int(rng.integers(len(gpus)))]
        return Fault(
            fid,
            kind,
            node,
            "nvlink_domain",
            list(fleet.members[node]),
            ["nvlink_tx_bytes", "step_time_ms"],
            start,
            end,
            "NVLink rate -50 %, step +6 %",
            False,
            [h],
        )
    if kind == "silent_host":
        return Fault(
            fid, kind, fleet.host_ids[h], "host", list(gpus), [], start, None, "host stops reporting", False, [h]
        )
    left = [g for g in gpus if g not in single.get(h, set())]
    g = left[int(rng.integers(len(left)))]
    step = float(rng.uniform(20, 50))
    table: dict[str, tuple[list[str], str, float | None, bool]] = {
        "straggler": (["step_time_ms", "gpu_util", "power_w"], f"step +{step:.0f} %, util -12", end, False),
        "sdc_drift": (["power_w", "temp_c"], "ramp over 30 min to power +10 %, temp +4 C", end, False),
        "xid79": (["xid"], "XID 79, then the GPU reads null", None, True),
        "ecc_dbe": (["ecc_dbe"], "double-bit ECC counter +1", None, True),
        "silent_device": ([], "GPU stops reporting, its host's others go on", None, True),
    }
    metrics, mag, fend, hard = table[kind]
    return Fault(
        fid,
        kind,
        g,
        "shard",
        [g],
        metrics,
        start,
        fend,
        mag,
        hard,
        [h],
        {"step_factor": 1.0 + step / 100.0} if kind == "straggler" else {},
    )


# ------------------------------------------------------------------------------------ per host


@dataclass(slots=True)
class GpuStatics:
    het: dict[str, F64]  # phase kind -> response factor (1 + N(0, 5 %)), fixed per GPU
    off: dict[str, F64]  # channel -> persistent offset
    rho10: F64  # [gpus, channels] AR(1) per 10 s
    df: F64 | None  # [gpus * channels] Student-t df
    nvl_start: F64
    ecc_base: F64


CHANNELS = ("util", "power", "temp", "clock", "bw", "step", "nvl")
NOISE_SD = {"util": 1.2, "power": 7.0, "temp": 0.25, "clock": 8.0, "bw": 1.2, "step": 0.02, "nvl": 0.03}
JOB_LEVEL = (
    {"util": 94.0, "step": 850.0, "nvl": 2.2e10, "bw": 62.0},
    {"util": 90.0, "step": 420.0, "nvl": 1.4e10, "bw": 55.0},
)


def _statics(spec: MessySpec, h: int, n_gpus: int) -> GpuStatics:
    nz = spec.nuisances
    rng = _rng(spec.seed, "statics", h)
    het = {k: 1.0 + np.clip(rng.normal(0, 0.05, n_gpus), -0.12, 0.12) for k in PHASE_DEPTH}
    if not nz.job_phases:
        het = {k: np.ones(n_gpus) for k in PHASE_DEPTH}
    hot = np.where(rng.random(n_gpus) < 0.06, rng.uniform(2.0, 3.0, n_gpus), 0.0)
    off = {
        "util": rng.normal(0, 0.8, n_gpus),
        "power": rng.normal(0, 0.025, n_gpus),
        "temp": rng.normal(0, 0.8, n_gpus) + hot,
        "clock": rng.normal(0, 12.0, n_gpus),
        "bw": rng.normal(0, 0.02, n_gpus),
        "step": rng.normal(0, 0.01, n_gpus),
        "nvl": rng.normal(0, 0.03, n_gpus),
    }
    if not nz.offsets:
        off = {k: np.zeros(n_gpus) for k in off}
    rho = (
        rng.uniform(0.3, max(0.3, nz.ar_max), (n_gpus, len(CHANNELS)))
        if nz.ar_max > 0
        else np.zeros((n_gpus, len(CHANNELS)))
    )
    df = rng.choice([3.0, 4.0, 5.0, 8.0], n_gpus * len(CHANNELS)) if nz.heavy_tails else None
    nvl_start = rng.uniform(0, 2.0**62, n_gpus)
    ecc_base = np.zeros(n_gpus)
    if nz.counter_quirks:
        wraps = rng.random(n_gpus) < 0.03
        wraps[-1] |= h == 0  # at least one GPU of the fleet wraps its NVLink counter during the recording
        nvl_start = np.where(wraps, TWO64 - rng.uniform(0.2, 0.8, n_gpus) * spec.duration_s * 2.0e10, nvl_start)
        ecc_base = np.where(rng.random(n_gpus) < 0.04, rng.integers(1, 4, n_gpus), 0).astype(float)
    return GpuStatics(het, off, rho, df, nvl_start, ecc_base)


def _phase_mult(t: F64, job: int, st: GpuStatics, phases: Phases) -> dict[str, F64]:
    """Per channel, [gpus, K] multiplicative factor of the job phases at times t."""
    n = len(st.het["eval"])
    mult = {c: np.ones((n, len(t))) for c in ("util", "power", "bw", "step", "nvl")}
    for kind, depth in PHASE_DEPTH.items():
        starts, ends = phases.intervals[(job, kind)]
        on = (_active(t, starts, ends) >= 0).astype(float)[None, :]
        if not on.any():
            continue
        h = st.het[kind][:, None]
        for ch, d in depth.items():
            if d:
                mult[ch] = mult[ch] * (1.0 - np.clip(d * h, None, 0.95) * on)
    return mult


@dataclass(slots=True)
class HostData:
    t: F64  # true sample times [K]
    values: dict[str, F64]  # metric -> [gpus, K] (NaN: null)
    absent: npt.NDArray[np.bool_]  # [gpus, K] frame not sent
    xid: dict[tuple[int, int], int]  # (gpu, k) -> XID code
    stats: dict[str, int]


def _noise(spec: MessySpec, h: int, t: F64, st: GpuStatics) -> dict[str, F64]:
    rng = _rng(spec.seed, "noise", h)
    n_g, k = st.rho10.shape[0], len(t)
    dt = np.diff(t, prepend=t[0] - 10.0) if k else t
    a = st.rho10.reshape(-1, 1) ** (np.maximum(dt, 0.05)[None, :] / 10.0)  # [gpus*ch, K]
    e = _innovations(rng, (n_g * len(CHANNELS), k), st.df) * np.sqrt(1.0 - a * a)
    y0 = rng.standard_normal(n_g * len(CHANNELS))
    y = np.asarray(_recur(a, e, y0)).reshape(n_g, len(CHANNELS), k)
    return {c: y[:, i, :] * NOISE_SD[c] for i, c in enumerate(CHANNELS)}


def _host_values(
    spec: MessySpec, fleet: Fleet, h: int, plan: HostPlan, slow: Slow, phases: Phases, t: F64
) -> tuple[dict[str, F64], GpuStatics, dict[str, F64]]:
    n_g = fleet.shape.gpus_per_host
    job = fleet.job_of_host[h]
    lvl = JOB_LEVEL[job % 2]
    st = _statics(spec, h, n_g)
    nz = _noise(spec, h, t, st)
    ph = _phase_mult(t, job, st, phases)
    inten = slow.at(slow.intensity, t)[None, :]
    psu = np.exp(slow.at(slow.psu_power[slow.psu_index[fleet.psu_of_host[h]]], t))[None, :]
    util = lvl["util"] * inten * ph["util"] + st.off["util"][:, None] + nz["util"]
    load = inten * ph["power"]
    power = (95.0 + 520.0 * load) * (1.0 + st.off["power"][:, None]) * psu + nz["power"]
    clock = 1980.0 - 140.0 * load + st.off["clock"][:, None] + nz["clock"]
    if plan.fw_reboot is not None:
        after = (t >= plan.fw_reboot)[None, :]
        clock = clock + 45.0 * after
        power = power * (1.0 + 0.02 * after)
    bw = lvl["bw"] * inten * ph["bw"] * (1.0 + st.off["bw"][:, None]) + nz["bw"]
    step = (
        lvl["step"]
        * ph["step"]
        * np.exp(st.off["step"][:, None] + slow.at(slow.job_step[job], t)[None, :] + nz["step"])
    )
    nvl_rate = lvl["nvl"] * inten * ph["nvl"] * np.exp(st.off["nvl"][:, None] + nz["nvl"])
    r, z = fleet.rack_of_host[h], fleet.zone_of_rack[fleet.rack_of_host[h]]
    inlet = slow.at(slow.zone_temp[z], t) + slow.at(slow.rack_temp[r], t) + slow.at(slow.host_temp[h], t)
    vals = {
        "gpu_util": util,
        "sm_clock_mhz": clock,
        "power_w": power,
        "mem_bw_util": bw,
        "step_time_ms": step,
        "_nvl_rate": nvl_rate,
        "_inlet": np.broadcast_to(inlet[None, :], util.shape).copy(),
    }
    return vals, st, nz


def _thermal(vals: dict[str, F64], t: F64, st: GpuStatics, noise_temp: F64) -> None:
    """temp = inlet + 0.055 C/W x power lagged (tau 45 s) + offset + noise."""
    p = vals["power_w"]
    if p.shape[1] == 0:
        vals["temp_c"] = p.copy()
        return
    dt = np.diff(t, prepend=t[0])
    a = np.broadcast_to(np.exp(-dt / 45.0)[None, :], p.shape).copy()
    lag = np.asarray(_recur(a, (1.0 - a) * p, p[:, 0].copy()))
    vals["temp_c"] = vals.pop("_inlet") + 0.055 * lag + st.off["temp"][:, None] + noise_temp


def _apply_faults(
    faults: list[Fault],
    fleet: Fleet,
    h: int,
    t: F64,
    vals: dict[str, F64],
    absent: npt.NDArray[np.bool_],
    xid: dict[tuple[int, int], int],
    ecc_add: F64,
    dead: npt.NDArray[np.bool_],
    skew_s: float,
) -> None:
    gpus = fleet.gpu_ids[h]
    for f in faults:
        if h not in f.hosts:
            continue
        k0 = int(np.searchsorted(t, f.start_ts))
        if k0 < len(t):  # the first poll that shows the fault (or, for silence, the first one missing)
            first = float(t[k0]) + skew_s  # on the host's (skewed) clock, as the frames are stamped
            f.detail["first_poll_ts"] = min(first, float(f.detail.get("first_poll_ts", math.inf)))
        rows = np.array([i for i, g in enumerate(gpus) if g in set(f.members)], np.intp)
        end = math.inf if f.end_ts is None else f.end_ts
        on = ((t >= f.start_ts) & (t < end)).astype(float)[None, :]
        ramp = np.clip((t - f.start_ts) / RAMP_S.get(f.kind, 60.0), 0, 1)[None, :] * on  # to full size
        sel = (rows[:, None], slice(None))
        if f.kind == "straggler":
            vals["step_time_ms"][sel] *= 1.0 + (float(f.detail["step_factor"]) - 1.0) * ramp
            vals["gpu_util"][sel] -= 12.0 * ramp
            vals["power_w"][sel] *= 1.0 - 0.06 * ramp
        elif f.kind == "sdc_drift":
            vals["power_w"][sel] *= 1.0 + 0.10 * ramp
            vals["_inlet"][sel] += 4.0 * ramp
        elif f.kind == "thermal_rack":
            vals["_inlet"][sel] += 4.0 * ramp
        elif f.kind == "psu_cap":
            vals["power_w"][sel] *= 1.0 - 0.18 * ramp
            vals["sm_clock_mhz"][sel] -= 110.0 * ramp
            vals["step_time_ms"][sel] *= 1.0 + 0.07 * ramp
        elif f.kind == "nvlink_degrade":
            vals["_nvl_rate"][sel] *= 1.0 - 0.5 * ramp
            vals["step_time_ms"][sel] *= 1.0 + 0.06 * ramp
        elif f.kind == "fw_unannounced":
            vals["sm_clock_mhz"][sel] -= 90.0 * on
            vals["power_w"][sel] *= 1.0 - 0.04 * on
        elif f.kind in ("silent_device", "silent_host"):
            absent[rows] |= (t >= f.start_ts)[None, :]
        elif f.kind == "ecc_dbe":
            ecc_add[sel] += (t >= f.start_ts)[None, :].astype(float)
        elif f.kind == "xid79":
            k = int(np.searchsorted(t, f.start_ts))
            if k < len(t):
                xid[(int(rows[0]), k)] = 79
                dead[rows[0], k + 1 :] = True  # fallen off the bus: the exporter reads nulls from now on
                f.detail["observed_ts"] = float(t[k])


def _counters(plan: HostPlan, t: F64, vals: dict[str, F64], st: GpuStatics, ecc_add: F64) -> None:
    rate = vals.pop("_nvl_rate")
    dt = np.diff(t, prepend=t[0]) if len(t) else t
    inc = np.nan_to_num(rate) * dt[None, :]
    resets = [e for _, e, reset in plan.dropouts if reset]
    seg = np.searchsorted(np.array(resets, float), t, side="right") if resets else np.zeros(len(t), np.intp)
    total = np.zeros_like(inc)
    ecc = np.broadcast_to(st.ecc_base[:, None], inc.shape).copy()
    for s in np.unique(seg):
        cols = seg == s
        base = st.nvl_start[:, None] if s == 0 else np.zeros((inc.shape[0], 1))
        total[:, cols] = base + np.cumsum(inc[:, cols], axis=1)
        if s > 0:
            ecc[:, cols] = 0.0  # volatile ECC counts are zeroed by the driver reload
    total = np.where(total >= TWO64, total - TWO64, total)
    vals["nvlink_tx_bytes"] = np.minimum(total, TWO64 - 65536.0)
    vals["ecc_dbe"] = ecc + ecc_add


def _quantise(spec: MessySpec, vals: dict[str, F64]) -> None:
    vals["gpu_util"] = np.clip(vals["gpu_util"], 0, 100)
    vals["mem_bw_util"] = np.clip(vals["mem_bw_util"], 0, 100)
    vals["sm_clock_mhz"] = np.minimum(vals["sm_clock_mhz"], 1980.0)
    if spec.nuisances.quantise:
        for m in ("gpu_util", "mem_bw_util", "temp_c"):
            vals[m] = np.round(vals[m])
        vals["sm_clock_mhz"] = np.round(vals["sm_clock_mhz"] / 15.0) * 15.0


def _nulls(spec: MessySpec, h: int, vals: dict[str, F64], stats: dict[str, int]) -> None:
    if not spec.nuisances.missing:
        return
    rng = _rng(spec.seed, "nulls", h)
    shape = vals["gpu_util"].shape
    whole = rng.random(shape) < 0.0005  # exporter error: every metric null in this frame
    for m in METRICS:
        if m == "ecc_dbe":
            continue
        cell = (rng.random(shape) < spec.nuisances.null_rate) | whole
        vals[m] = np.where(cell, np.nan, vals[m])
        stats["null_values"] += int(cell.sum())
    stats["null_frames"] += int(whole.sum())


def _benign_xids(spec: MessySpec, h: int, shape: tuple[int, int], t: F64, xid: dict[tuple[int, int], int]) -> int:
    if not spec.nuisances.benign_xids or shape[1] == 0:
        return 0
    rng = _rng(spec.seed, "xids", h)
    rate = spec.duration_s / (2 * 86400.0)  # one application XID per GPU every two days
    n = 0
    for g in range(shape[0]):
        for _ in range(rng.poisson(rate)):
            k = int(rng.integers(shape[1]))
            xid.setdefault((g, k), int(rng.choice(BENIGN_XIDS)))
            n += 1
    return n


def simulate_host(
    spec: MessySpec, fleet: Fleet, h: int, plan: HostPlan, slow: Slow, phases: Phases, faults: list[Fault]
) -> HostData:
    t = _sample_times(spec, plan, _rng(spec.seed, "times", h))
    vals, st, nz = _host_values(spec, fleet, h, plan, slow, phases, t)
    n_g = fleet.shape.gpus_per_host
    absent = np.zeros((n_g, len(t)), np.bool_)
    dead = np.zeros((n_g, len(t)), np.bool_)
    xid: dict[tuple[int, int], int] = {}
    stats = {"null_values": 0, "null_frames": 0, "benign_xids": 0}
    ecc_add = np.zeros((n_g, len(t)))
    _apply_faults(faults, fleet, h, t, vals, absent, xid, ecc_add, dead, plan.skew_s)
    _thermal(vals, t, st, nz["temp"])
    _counters(plan, t, vals, st, ecc_add)
    _quantise(spec, vals)
    _nulls(spec, h, vals, stats)
    for m in METRICS:
        vals[m] = np.where(dead, np.nan, vals[m])
    stats["benign_xids"] = _benign_xids(spec, h, (n_g, len(t)), t, xid)
    for m in plan.lacks:
        vals.pop(m, None)
    return HostData(t, vals, absent, xid, stats)


# -------------------------------------------------------------------------------------- writing

_FMT = {
    "gpu_util": "%.0f",
    "sm_clock_mhz": "%.0f",
    "power_w": "%.2f",
    "temp_c": "%.0f",
    "mem_bw_util": "%.0f",
    "step_time_ms": "%.2f",
    "nvlink_tx_bytes": "%d",
    "ecc_dbe": "%d",
}
_FMT_FLOAT = {**_FMT, "gpu_util": "%.2f", "temp_c": "%.2f", "mem_bw_util": "%.2f", "sm_clock_mhz": "%.1f"}


def _lines(spec: MessySpec, gpus: list[str], plan: HostPlan, d: HostData) -> tuple[list[str], F64]:
    """JSON lines of one host (GPU-major order) and their arrival keys (true time + collection latency)."""
    names = [m for m in METRICS if m in d.values]
    fmt = _FMT if spec.nuisances.quantise else _FMT_FLOAT
    ints = {"nvlink_tx_bytes", "ecc_dbe"}
    head = ",".join(f'"{m}":{fmt[m]}' for m in names)
    tmpl = '{"v":1,"ts":%.3f,"shard":"%s","metrics":{' + head + '},"counters":["ecc_dbe","nvlink_tx_bytes"]}'
    nan = np.zeros(d.absent.shape, np.bool_)
    for m in names:
        nan |= np.isnan(d.values[m])
    special = nan.copy()
    for g, k in d.xid:
        special[g, k] = True
    ts = d.t + plan.skew_s
    out: list[str] = []
    keys: list[F64] = []
    for g, gid in enumerate(gpus):
        ks = np.flatnonzero(~d.absent[g])
        cols = [
            (np.nan_to_num(d.values[m][g, ks]).astype(np.uint64) if m in ints else d.values[m][g, ks]).tolist()
            for m in names
        ]
        for i, (k, sp, *row) in enumerate(
            zip(ks.tolist(), special[g, ks].tolist(), ts[ks].tolist(), *cols, strict=True)
        ):
            if not sp:
                out.append(tmpl % (row[0], gid, *row[1:]))
                continue
            metrics = {
                m: (
                    None
                    if nan[g, k] and math.isnan(d.values[m][g, k])
                    else (int(cols[j][i]) if m in ints else float(fmt[m] % cols[j][i]))
                )
                for j, m in enumerate(names)
            }
            obj: dict[str, Any] = {
                "v": 1,
                "ts": round(row[0], 3),
                "shard": gid,
                "metrics": metrics,
                "counters": list(COUNTERS),
            }
            code = d.xid.get((g, k))
            if code is not None:
                obj["xid"] = code
            out.append(json.dumps(obj, separators=(",", ":")))
        keys.append(d.t[ks] + plan.latency_s + g * 1e-4)
    return out, (np.concatenate(keys) if keys else np.zeros(0))


@dataclass(slots=True)
class Recording:
    """What was written, plus in-memory figures the evaluation needs (not all of it goes to truth.json)."""

    out_dir: Path
    frames: int
    faults: list[dict[str, Any]]
    events: list[ClusterEvent]
    cadence_of_shard: dict[str, float]
    host_of_shard: dict[str, str]
    frame_minutes: dict[str, npt.NDArray[np.int64]]  # shard -> frames per minute of recording
    truth: dict[str, Any]

    @property
    def frames_path(self) -> Path:
        return self.out_dir / FRAMES_FILE

    @property
    def topology_path(self) -> Path:
        return self.out_dir / TOPOLOGY_FILE

    @property
    def events_path(self) -> Path:
        return self.out_dir / EVENTS_FILE

    def shard_polls_after(self, ts: float) -> int:
        """Frames (polls) with a true time at or after ``ts`` (rounded up to the next whole minute)."""
        spec_start = float(self.truth["start_ts"])
        m0 = max(0, math.ceil((ts - spec_start) / 60.0))
        return int(sum(int(v[m0:].sum()) for v in self.frame_minutes.values()))


def generate(spec: MessySpec, out_dir: Path) -> Recording:
    """Write frames.jsonl, topology.json, events.jsonl and truth.json for ``spec`` into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fleet = build_fleet(spec.shape)
    plans = _host_plans(spec, fleet)
    events = _announced(spec, fleet, plans)
    faults = _plan_faults(spec, fleet, plans)
    slow = _slow(spec, fleet)
    phases = _phase_schedule(spec, len(fleet.job_ids))
    all_lines: list[str] = []
    all_keys: list[F64] = []
    minutes = math.ceil(spec.duration_s / 60.0) + 1
    frame_minutes: dict[str, npt.NDArray[np.int64]] = {}
    stats = {"null_values": 0, "null_frames": 0, "benign_xids": 0}
    for h, plan in enumerate(plans):
        d = simulate_host(spec, fleet, h, plan, slow, phases, faults)
        lines, keys = _lines(spec, fleet.gpu_ids[h], plan, d)
        all_lines += lines
        all_keys.append(keys)
        for k, v in d.stats.items():
            stats[k] += v
        mins = np.minimum(((d.t - spec.start_ts) // 60.0).astype(np.int64), minutes - 1)
        for g, gid in enumerate(fleet.gpu_ids[h]):
            frame_minutes[gid] = np.bincount(mins[~d.absent[g]], minlength=minutes).astype(np.int64)
    order = np.argsort(np.concatenate(all_keys), kind="stable") if all_keys else np.zeros(0, np.intp)
    with (out_dir / FRAMES_FILE).open("w", encoding="utf-8", newline="\n") as fh:
        for lo in range(0, len(order), 65536):
            fh.write("\n".join(all_lines[i] for i in order[lo : lo + 65536].tolist()) + "\n")
    (out_dir / TOPOLOGY_FILE).write_text(fleet.topology.to_json() + "\n", encoding="utf-8")
    (out_dir / EVENTS_FILE).write_text("".join(e.to_json() + "\n" for e in events), encoding="utf-8")
    fault_objs = [f.to_obj(fleet, plans) for f in faults]
    truth = {
        "v": 1,
        "generator": "tessera_daemon.sim.messy",
        "seed": spec.seed,
        "start_ts": spec.start_ts,
        "end_ts": spec.start_ts + spec.duration_s,
        "faulted": spec.faults,
        "spec": asdict(spec),
        "faults": fault_objs,
        "events": [json.loads(e.to_json()) for e in events],
        "hosts": {
            fleet.host_ids[h]: {
                "cadence_s": p.cadence_s,
                "jitter": round(p.jitter, 4),
                "skew_s": round(p.skew_s, 4),
                "job": fleet.job_ids[fleet.job_of_host[h]],
                "lacks": list(p.lacks),
                "fw_reboot": p.fw_reboot,
                "dropouts": [[s, e, r] for s, e, r in p.dropouts],
            }
            for h, p in enumerate(plans)
        },
        "phases": phases.counts,
        "phase_intervals": {
            job: {
                kind: np.stack(iv, axis=1).round(3).tolist()
                for (j, kind), iv in phases.intervals.items()
                if fleet.job_ids[j] == job
            }
            for job in fleet.job_ids
        },
        "frames": len(all_lines),
        **stats,
    }
    (out_dir / TRUTH_FILE).write_text(json.dumps(truth, indent=1) + "\n", encoding="utf-8")
    cad = {g: plans[h].cadence_s for h in range(len(plans)) for g in fleet.gpu_ids[h]}
    host = {g: fleet.host_ids[h] for h in range(len(plans)) for g in fleet.gpu_ids[h]}
    return Recording(out_dir, len(all_lines), fault_objs, events, cad, host, frame_minutes, truth)


__all__ = [
    "CADENCE_MIXES",
    "COMMON_MODE_KINDS",
    "FAULT_KINDS",
    "HARD_KINDS",
    "FleetShape",
    "MessySpec",
    "Nuisances",
    "Recording",
    "build_fleet",
    "generate",
]


def main(argv: list[str] | None = None) -> int:
    """``python -m tessera_daemon.sim.messy --out DIR [--mix 10s] [--seed 1] [--hours 8] [--clean]``."""
    import argparse  # noqa: PLC0415

    p = argparse.ArgumentParser(prog="python -m tessera_daemon.sim.messy", description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, required=True, help="directory for frames/topology/events/truth")
    p.add_argument("--mix", default="default", choices=sorted(CADENCE_MIXES), help="poll cadence mix")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--hours", type=float, default=8.0)
    p.add_argument("--clean", action="store_true", help="the clean twin (no faults)")
    a = p.parse_args(argv)
    spec = MessySpec(
        nuisances=Nuisances(cadence_mix=a.mix), duration_s=a.hours * 3600.0, seed=a.seed, faults=not a.clean
    )
    rec = generate(spec, a.out)
    print(
        json.dumps(
            {"out": str(rec.out_dir), "frames": rec.frames, "faults": len(rec.faults), "events": len(rec.events)}
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
