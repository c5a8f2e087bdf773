"""Frozen, typed configuration: TOML file plus ``TESSERA_SECTION__KEY`` environment overrides.

Every setting is defined once, as a dataclass field with its default and its bounds in ``metadata``.
The loader walks the type hints, so an unknown key, a wrong type or an out-of-range value raises
:class:`ConfigError` naming the dotted field and the expected form. Durations carry an ``_s`` suffix.
"""

from __future__ import annotations

import ipaddress
import os
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import tomli_w

from tessera_daemon.errors import ConfigError, ConfigErrors
from tessera_daemon.settings import setting as _f
from tessera_daemon.settings.events import EventsConfig
from tessera_daemon.settings.load import build, merge_env, to_plain
from tessera_daemon.settings.load import parse_material as parse_material  # noqa: PLC0414 - re-exported
from tessera_daemon.settings.sources import SOURCES, SourcesConfig
from tessera_daemon.settings.transport import TransportConfig

# Material effect sizes of the metrics the sources produce (detector.material): what an operator would
# act on. Temperatures in degrees C; utilisations, clocks, power, rates and step time relative to their
# level (a ratio utilisation of 0.9 and a percentage of 90 get the same margin). Cohort-wide job phases
# hit members a few percent differently and rack inlet temperatures wander a few tenths of a degree:
# both stay below these.
DEFAULT_MATERIAL: tuple[str, ...] = (
    "gpu_util=6%",
    "tensorcore_util=6%",
    "mem_bw_util=6%",
    "sm_clock_mhz=3%",
    "mem_clock_mhz=3%",
    "power_w=8%",
    "temp_c=2",
    "mem_temp_c=2",
    "step_time_ms=10%",
    "nvlink_tx_bytes=10%",
    "nvlink_rx_bytes=10%",
    "nvlink_bytes_per_s=10%",
    "nvlink_tx_bytes_per_s=10%",
    "nvlink_rx_bytes_per_s=10%",
    "pcie_tx_bytes_per_s=20%",
    "pcie_rx_bytes_per_s=20%",
    "mem_used_bytes=10%",
)


@dataclass(frozen=True, slots=True)
class DaemonConfig:
    cluster: str = _f("default", doc="cluster name, used in MQTT topics and labels")
    state_dir: str = _f(
        "",
        doc="directory for local state: `run` checkpoints its detector here and resumes from it on restart; "
        "empty: none",
    )
    checkpoint_windows: int = _f(
        10, lo=1, hi=1_000_000, doc="`run` writes a checkpoint to state_dir every this many closed windows"
    )
    capture_path: str = _f(
        "",
        doc="capture every frame delivery, window close, topology and event `run` sees to gzip JSON-lines "
        "segments PATH.NNNNNN.jsonl.gz (`tessera-daemon replay --capture PATH` recomputes the firings); "
        "empty: no capture",
    )
    capture_rotate_bytes: int = _f(
        64 * 1024 * 1024, lo=4096, hi=1 << 40, doc="start a new capture segment past this many bytes of JSON"
    )
    state_max_age_s: float = _f(
        1800.0,
        lo=1.0,
        hi=30 * 86400.0,
        doc="a checkpoint older than this (wall clock) is refused as stale at start and the detector starts fresh",
    )
    shutdown_grace_s: float = _f(5.0, lo=0.1, hi=300.0, doc="time allowed to finish the current window")


@dataclass(frozen=True, slots=True)
class HttpConfig:
    host: str = _f("127.0.0.1", doc="bind address; loopback by default")
    port: int = _f(9477, lo=0, hi=65535, doc="0 picks a free port")
    enabled: bool = _f(True, doc="serve /metrics, /healthz, /readyz and the API")
    max_connections: int = _f(
        256,
        lo=4,
        hi=1_000_000,
        doc="open connections at most (also kept under half the open-file limit); at the cap a new connection "
        "evicts the oldest one that has not sent a complete request, or is refused",
    )
    header_timeout_s: float = _f(
        5.0,
        lo=0.1,
        hi=3600.0,
        doc="a connection must deliver a complete request head this soon after connecting or after its last "
        "response (slow or idle clients are closed)",
    )


@dataclass(frozen=True, slots=True)
class LogConfig:
    level: Literal["debug", "info", "warning", "error"] = _f("info", doc="least severe level logged")
    format: Literal["auto", "json", "console"] = _f("auto", doc="auto: console on a TTY, JSON otherwise")


@dataclass(frozen=True, slots=True)
class WindowConfig:
    length_s: float = _f(
        0.0,
        lo=0.0,
        hi=3600.0,
        auto=True,
        doc='detector window length; "auto" (or 0): the sources\' median sample interval, measured from the '
        "first samples (an explicit number wins; shorter than a source's cadence leaves windows empty)",
    )
    grace_s: float = _f(2.0, lo=0.0, hi=3600.0, doc="lateness allowed after a window ends")
    stale_after_windows: int = _f(
        3,
        lo=1,
        hi=10_000,
        doc="a shard is stale (and, while its host still reports, missing) once it has sent nothing for this "
        "many of its own sample intervals (at least this many windows)",
    )

    host_silent_s: float = _f(
        300.0,
        lo=0.0,
        hi=1e7,
        doc="a host all of whose shards went stale opens one host_silent firing once silent this long "
        "(agent restarts and short network blips rejoin sooner)",
    )
    max_future_skew_s: float = _f(
        10.0,
        lo=0.0,
        hi=1e7,
        doc="live modes: frames further ahead of the receiver's clock are quarantined (counted, never move the "
        "watermark; tessera_clock_skew_seconds); 0: no guard. Keep it above grace_s plus the poll jitter",
    )
    stall_windows: int = _f(
        10,
        lo=0,
        hi=1_000_000,
        doc="readiness fails when no window has completed for this many window lengths while frames arrive; 0: never",
    )
    plausible: dict[str, tuple[float, ...]] = field(
        default_factory=dict,
        metadata={
            "lo": None,
            "hi": None,
            "doc": "plausible range per metric, {metric = [lo, hi]}, over the built-in defaults "
            "(engine/bounds.py); a window value outside is missing, counted in "
            "tessera_values_rejected_total",
        },
    )

    @property
    def auto(self) -> bool:
        """The window length follows the observed poll cadence."""
        return self.length_s <= 0


@dataclass(frozen=True, slots=True)
class DetectorConfig:
    metrics: tuple[str, ...] = _f(
        ("gpu_util", "sm_clock_mhz", "power_w", "temp_c", "mem_bw_util", "nvlink_tx_bytes", "step_time_ms"),
        doc="metrics the statistical detectors watch (counters become rates)",
    )
    log_metrics: tuple[str, ...] = _f(("step_time_ms",), doc="heavy-tailed metrics analysed on log scale")
    backend: Literal["auto", "numba", "numpy"] = _f(
        "auto",
        doc="detector kernels: numba (compiled; the start fails if they do not compile), numpy (the NumPy twins, "
        "slower, same results), auto: numba, falling back to the twins (logged, tessera_kernel_backend) when "
        "compiling or the start-up self-check against the twins fails",
    )
    warmup_windows: int = _f(
        60, lo=5, hi=100_000, doc="fewest windows used to learn offsets, scales and AR(1) (the warm-up minimum)"
    )
    warmup_persistence: float = _f(
        14.0,
        lo=0.0,
        hi=1e6,
        doc="warm-up ends once n (1 - phi) reaches this (n windows, phi their AR(1) estimate read 3 standard "
        "errors high): near a unit root the offset error persists ~1/(1 - phi) windows, so persistent streams "
        "learn longer; 0: a fixed warm-up of warmup_windows",
    )
    warmup_max_windows: int = _f(
        240, lo=5, hi=100_000, doc="longest warm-up, whatever phi (>= warmup_windows; the warm-up buffer depth)"
    )
    false_pages_per_day: float = _f(
        0.1, lo=1e-6, hi=1e4, doc="fleet-wide expected false pages per day (sets the evidence threshold)"
    )
    min_threshold_log: float = _f(6.0, lo=1.0, hi=100.0, doc="floor on the log-evidence threshold")
    delta_min_sigma: float = _f(
        0.1, lo=0.0, hi=3.0, doc="practical significance: shifts below this many sigma are null"
    )
    material: tuple[str, ...] = _f(
        DEFAULT_MATERIAL,
        pairs=True,
        doc='material effect size per metric, "metric=N" in the metric\'s own units or "metric=N%" of its '
        'level (a TOML table works too: [detector.material] temp_c = 2, power_w = "8%"); a deviation '
        "pages only when it is both certain and larger than this (the null is |shift| <= margin); entries "
        'given here replace the defaults of the same metric; with "*" the defaults are dropped and "*" sets '
        'every metric not named ("*=0": no material margins, sigma margins only)',
    )
    fleet_event_persist_s: float = _f(
        1200.0,
        lo=0.0,
        hi=1e7,
        doc="a whole cohort's shift opens a fleet_event ticket only once it has lasted this long (job phases "
        "such as eval loops and checkpoint stalls come and go; a new regime persists)",
    )
    clip_sigma: float = _f(4.0, lo=1.0, hi=20.0, doc="standardised residuals are clipped at this many sigma")
    bets: tuple[float, ...] = _f((0.1, 0.25, 0.5, 1.0, 1.5), doc="grid of bets (Catoni scale) mixed by the e-detector")
    ar_max: float = _f(0.95, lo=0.0, hi=0.999, doc="cap on the estimated AR(1) coefficient")
    baseline_halflife_windows: float = _f(
        2000.0, lo=0.0, hi=1e9, doc="half-life of the slow baseline follow; 0 freezes baselines after warm-up"
    )
    learn_below_log: float = _f(
        1.0, lo=-10.0, hi=100.0, doc="baselines learn only from streams whose log-evidence is below this"
    )
    resolve_fraction: float = _f(0.5, lo=0.0, hi=1.0, doc="resolve when evidence falls below this x threshold")
    resolve_windows: int = _f(3, lo=1, hi=10_000, doc="consecutive quiet windows before a firing resolves")
    attribution_p0: float = _f(
        1e-3, lo=1e-12, hi=0.5, doc="chance that a healthy shard is firing at a given time (binomial null)"
    )
    attribution_alpha: float = _f(0.01, lo=1e-9, hi=0.5, doc="level of the 'k of n fired by chance' test")
    attribution_kinds: tuple[str, ...] = _f(
        ("host", "nvlink_domain", "psu", "rack", "cooling_zone"), doc="topology node kinds that can explain co-firing"
    )
    selection: Literal["e-d-bh", "bonferroni"] = _f(
        "e-d-bh", doc="multi-stream selection: e-d-BH lowers the bar when several streams are elevated together"
    )
    families: tuple[str, ...] = _f(
        ("C", "D", "E"), doc="detector families beside A: C multivariate, D oscillation, E conformal novelty"
    )
    oscillation_metrics: tuple[str, ...] = _f(
        ("step_time_ms", "sm_clock_mhz"), doc="metrics Family D watches for periodic stalls / throttling cycles"
    )
    conformal_seed: int = _f(0, lo=0, hi=2**63 - 1, doc="seed of Family E's deterministic tie-breaking")
    min_cohort: int = _f(3, lo=2, hi=1_000_000, doc="fewest reporting peers for a peer residual")
    recent_resolved: int = _f(500, lo=0, hi=1_000_000, doc="resolved firings kept for /v1/firings")
    threads: int = _f(
        1,
        lo=0,
        hi=1024,
        doc="threads the Family A kernel splits a window's shards over (numba, OpenMP; at most the usable "
        "cores; fleets under 4096 streams stay on one); 0: min(usable cores, 2). One by default: the kernel "
        "is ~2 ms a window at 10k shards on one core, and on a busy machine a second thread costs more "
        "than it saves (docs/performance.md)",
    )


@dataclass(frozen=True, slots=True)
class RulesConfig:
    critical_xids: tuple[int, ...] = _f(
        (48, 63, 64, 74, 79, 92, 94, 95, 119, 120),
        doc="XID codes that open a hard-fault firing at once",
    )
    ecc_dbe_counter: str = _f("ecc_dbe", doc="counter whose increments are uncorrectable ECC errors")
    clear_windows: int = _f(10, lo=1, hi=1_000_000, doc="quiet windows before a hard fault resolves")


@dataclass(frozen=True, slots=True)
class SimConfig:
    seed: int = _f(7, lo=0, hi=2**63 - 1, doc="seed of the simulated cluster (topology, noise, faults)")
    scenario: str = _f("demo", doc="fault scenario (see `tessera-daemon simulate --list`)")
    zones: int = _f(2, lo=1, hi=1000, doc="cooling zones of the simulated cluster")
    racks_per_zone: int = _f(2, lo=1, hi=1000, doc="racks per zone")
    hosts_per_rack: int = _f(4, lo=1, hi=1000, doc="hosts per rack")
    shards_per_host: int = _f(8, lo=1, hi=64, doc="GPUs (shards) per host")
    cohorts: int = _f(2, lo=1, hi=10_000, doc="training jobs; each spans whole hosts")
    tick_s: float = _f(1.0, lo=0.001, hi=3600.0, doc="sampling period of the simulated pollers")
    speedup: float = _f(1.0, lo=0.01, hi=100_000.0, doc="simulated seconds per wall second")
    rho: float = _f(0.8, lo=-0.99, hi=0.99, doc="AR(1) coefficient of per-shard noise")
    tail_df: float = _f(4.0, lo=2.1, hi=1000.0, doc="Student-t degrees of freedom of the innovations")
    diurnal_period_s: float = _f(86_400.0, lo=1.0, hi=1e9, doc="period of the simulated daily load cycle")
    diurnal_amplitude: float = _f(0.5, lo=0.0, hi=10.0, doc="diurnal load swing in noise sigmas")
    regime_every_s: float = _f(0.0, lo=0.0, hi=1e9, doc="mean interval between cohort regime steps; 0: none")
    start_ts: float = _f(0.0, lo=0.0, doc="simulated start time; 0: wall clock at start")
    duration_s: float = _f(0.0, lo=0.0, doc="stop after this long (simulated); 0: forever")


@dataclass(frozen=True, slots=True)
class Config:
    daemon: DaemonConfig = field(default_factory=DaemonConfig)
    http: HttpConfig = field(default_factory=HttpConfig)
    log: LogConfig = field(default_factory=LogConfig)
    window: WindowConfig = field(default_factory=WindowConfig)
    detector: DetectorConfig = field(default_factory=DetectorConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    transport: TransportConfig = field(default_factory=TransportConfig)
    sim: SimConfig = field(default_factory=SimConfig)
    sources: SourcesConfig = field(default_factory=SourcesConfig)
    events: EventsConfig = field(default_factory=EventsConfig)

    def to_dict(self) -> dict[str, Any]:
        return to_plain(self)  # type: ignore[no-any-return]


def is_loopback(host: str) -> bool:
    """Whether the HTTP bind address ``host`` is loopback only (127.0.0.0/8, ::1, localhost)."""
    if host.strip().lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip().strip("[]")).is_loopback
    except ValueError:
        return False


def _validate_window(w: WindowConfig, bad: Callable[[str, str], None]) -> None:
    if not w.auto and w.length_s < 0.001:
        bad("window.length_s", f'must be "auto" (0) or at least 0.001 s, got {w.length_s}')
    elif not w.auto and w.grace_s >= 50 * w.length_s:
        bad("window.grace_s", "must be less than 50 window lengths")
    for metric, pair in w.plausible.items():
        if len(pair) != 2 or not pair[0] < pair[1]:
            bad(f"window.plausible.{metric}", f"expected [lo, hi] with lo < hi, got {list(pair)}")


def _validate(cfg: Config) -> None:
    """The checks that span fields; every failing one is reported."""
    errors: list[ConfigError] = []

    def bad(field_path: str, message: str) -> None:
        errors.append(ConfigError(field_path, message))

    _validate_window(cfg.window, bad)
    unknown_log = sorted(set(cfg.detector.log_metrics) - set(cfg.detector.metrics))
    if unknown_log:
        bad("detector.log_metrics", f"{unknown_log[0]!r} is not in detector.metrics")
    unknown_fam = sorted(set(cfg.detector.families) - {"C", "D", "E"})
    if unknown_fam:
        bad("detector.families", f"unknown family {unknown_fam[0]!r} (C, D, E; A always runs)")
    if not cfg.detector.metrics:
        bad("detector.metrics", "must name at least one metric")
    if cfg.detector.warmup_max_windows < cfg.detector.warmup_windows:
        bad(
            "detector.warmup_max_windows",
            f"must be >= detector.warmup_windows ({cfg.detector.warmup_windows}), "
            f"got {cfg.detector.warmup_max_windows}",
        )
    if not cfg.detector.bets or any(not 0 < b <= 4 for b in cfg.detector.bets):
        bad("detector.bets", "expected bets in (0, 4]")
    unknown_src = [n for n in cfg.sources.enabled if n not in SOURCES]
    if unknown_src:
        bad("sources.enabled", f"unknown source {unknown_src[0]!r} (known: {', '.join(sorted(SOURCES))})")
    twice = sorted({n for n in cfg.sources.enabled if cfg.sources.enabled.count(n) > 1})
    if twice:
        bad("sources.enabled", f"source {twice[0]!r} is listed twice")
    if cfg.events.allow_unauthenticated and not is_loopback(cfg.http.host):
        bad(
            "events.allow_unauthenticated",
            f"only on a loopback bind (http.host is {cfg.http.host!r}): set events.api_token / "
            "events.deploysignal.token instead",
        )
    if cfg.transport.kind == "memory" and cfg.transport.batch_max > cfg.transport.capacity:
        bad("transport.batch_max", "must not exceed transport.capacity")
    if errors:
        raise ConfigErrors(errors)


def load_config(path: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Config:
    """Read ``path`` (TOML; optional), apply ``TESSERA_*`` overrides, validate, freeze."""
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError("--config", f"file not found: {p}") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError("--config", f"{p} is not valid TOML: {exc}") from exc
    merge_env(data, os.environ if environ is None else environ)
    cfg: Config = build(Config, data, "")
    _validate(cfg)
    return cfg


def dump_toml(cfg: Config) -> str:
    """Render the effective configuration as TOML (what `tessera-daemon config` prints), with tomli-w so
    that any value (quotes, newlines, unicode) round-trips; tokens are redacted."""

    def redact(table: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in table.items():
            if isinstance(v, dict):
                out[k] = redact(v)
            elif k.endswith("token") and isinstance(v, str) and v:
                out[k] = "<redacted>"
            elif k == "length_s" and v == 0:
                out[k] = "auto"
            else:
                out[k] = v
        return out

    return tomli_w.dumps(redact(cfg.to_dict()))
