"""Messy-fleet evaluation (issue 14, item 7): independent recordings through the real ``replay``.

Recordings come from :mod:`tessera_daemon.sim.messy` (written independently of the simulator the
engine was tuned on, every nuisance on): per cadence mix and seed, a recording with material faults
and its clean twin (same seed, same nuisance draws, no faults). Each is written to a temporary
directory in the public contracts and run through :func:`tessera_daemon.replay.replay` with the
configuration it is given (``tessera-daemon evaluate messy`` passes the defaults: no tuning).

Definitions (w = the daemon's window length: ``window.length_s`` when it is a number, else the
recording's median host poll interval; every time below is on the frames' clock):

* Counted firing: every opened firing (each firing id once), except ``event_conditional`` firings
  whose ``event_id`` names an announced event of the recording. Warm-up firings count too.
* Clean shard-window: one shard x one poll interval of that shard, i.e. one frame the shard sent,
  with a true time at or after the end of the daemon's warm-up, ``start + warmup_max_windows x w``
  (rounded up to the minute). Only clean twins contribute. False pages per 10^6 = counted firings in
  the clean twin / its clean shard-windows x 10^6.
* A counted firing in a faulted recording is true when its members (or its target, if it lists no
  member) intersect a fault's members, the fault's shards making up at least half of them (a cohort-wide
  firing does not explain a one-GPU fault), and it opens within ``[first poll, end + grace]``, first
  poll = the time stamp (host clock) of the first poll at or after the fault's start, grace =
  ``max(3 w, 3 polls of the fault's slowest host)``, end = the recording's end for sustained faults.
  Precision = true / counted firings of the faulted recordings; recall = faults with a true firing /
  faults. Firings per fault = true firings matched to it (one incident per fault is the aim).
* Delay = first true firing's ``opened_ts`` - fault start, in seconds, in windows (/ w) and in polls
  of the fault's host; also in windows after the fault reaches its full size (``full_ts``: ramps of
  1 min, 3 min for a rack's inlet, 30 min for the SDC-like drift; 0 when detected earlier). The
  check is the median of the latter over the statistical faults, a miss counting as infinite.
* Hard faults (XID 79, ECC double-bit, silent device): delay from the first poll that shows them
  (for the silent device: that first missing poll plus ``window.stale_after_windows`` polls of its
  cadence, the point the issue says it becomes a fault) must be at most one window.
* Attribution (rack thermal, PSU cap, NVLink degrade, silent host): the first true firing on the
  fault's shards names the fault's node, or a node with exactly the same member shards (an HGX
  host and its one NVLink domain cannot be told apart by data).
"""

from __future__ import annotations

import json
import math
import os
import shutil
import tempfile
import time
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from tessera_daemon.config import Config
from tessera_daemon.evaluation.report import Check, MatrixResult, table
from tessera_daemon.evaluation.scoring import median
from tessera_daemon.model import Topology
from tessera_daemon.replay import replay
from tessera_daemon.sim.messy import FAULT_KINDS, HARD_KINDS, FleetShape, MessySpec, Nuisances, generate

ACCEPT_MIXES = ("10s", "15s", "30s", "default")  # the bound holds at 10 to 30 s polls
HARD_ONE_WINDOW = ("xid79", "ecc_dbe", "silent_device")
ATTRIBUTED = ("thermal_rack", "psu_cap", "nvlink_degrade", "silent_host")
SKEW_TOLERANCE_S = 10.0  # fallback when a fault has no first poll (frames carry their host's clock)


@dataclass(frozen=True, slots=True)
class Plan:
    shape: FleetShape
    duration_s: float
    runs: tuple[tuple[str, int], ...]  # (cadence mix, seed): a faulted recording and its clean twin
    fault_kinds: tuple[str, ...]
    min_clean: int
    fault_span: tuple[float, float] = (0.4, 0.85)  # faults start in this fraction of the recording


FULL = Plan(FleetShape(), 8 * 3600.0, (("10s", 1), ("30s", 2), ("mixed", 3)), FAULT_KINDS, 1_000_000)
FAST = Plan(
    FleetShape(zones=2, racks_per_zone=2, hosts_per_rack=4, gpus_per_host=4, second_job_share=0.5),
    7200.0,
    (("10s", 7),),
    ("thermal_rack", "straggler", "xid79", "silent_device"),
    0,
    (0.5, 0.9),
)


@dataclass(frozen=True, slots=True)
class Task:
    mix: str
    seed: int
    faulted: bool
    spec: MessySpec


def tasks(plan: Plan) -> list[Task]:
    out = []
    for mix, seed in plan.runs:
        spec = MessySpec(
            shape=plan.shape,
            nuisances=Nuisances(cadence_mix=mix),
            duration_s=plan.duration_s,
            seed=seed,
            fault_kinds=plan.fault_kinds,
            fault_span=plan.fault_span,
        )
        out += [Task(mix, seed, True, spec), Task(mix, seed, False, spec.twin())]
    return out


def window_s(cfg: Config, cadences: list[float]) -> float:
    """The daemon's window length: the configured number, else (``"auto"``, or 0) the median poll interval."""
    length = getattr(cfg.window, "length_s", None)
    if isinstance(length, int | float) and not isinstance(length, bool) and length > 0:
        return float(length)
    return float(median(sorted(cadences)) or 10.0)


def _read_firings(path: Path) -> list[dict[str, Any]]:
    seen: dict[str, dict[str, Any]] = {}
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                obj = json.loads(line)
                seen.setdefault(obj["id"], obj)
    keep = (
        "id",
        "opened_ts",
        "window",
        "scope",
        "target",
        "members",
        "detector",
        "metric",
        "classification",
        "event_id",
        "log_evidence",
    )
    return sorted(({k: f.get(k) for k in keep} for f in seen.values()), key=lambda f: (f["opened_ts"], f["id"]))


def run_task(task: Task, cfg: Config, keep_dir: Path | None = None) -> dict[str, Any]:
    """Generate one recording, replay it with ``cfg``, and return what scoring needs."""
    t0 = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="tessera-messy-"))
    try:
        rec = generate(task.spec, tmp)
        t_gen = time.perf_counter() - t0
        summary = replay(cfg, rec.frames_path, rec.topology_path, tmp / "firings.jsonl", rec.events_path)
        firings = _read_firings(tmp / "firings.jsonl")
        cadences = [h["cadence_s"] for h in rec.truth["hosts"].values()]
        w = summary.window_s or window_s(cfg, cadences)  # the length the replay measured (auto) or was given
        warm_end = rec.truth["start_ts"] + cfg.detector.warmup_max_windows * w
        topo = Topology.from_json(rec.topology_path.read_bytes())
        groups_all = {nid: sorted(m) for nid, m in topo.members().items()}
        groups = groups_all
        if keep_dir is not None:
            dest = keep_dir / f"{task.mix}-s{task.seed}-{'faulted' if task.faulted else 'clean'}"
            shutil.copytree(tmp, dest, dirs_exist_ok=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    truth = rec.truth
    return {
        "mix": task.mix,
        "seed": task.seed,
        "faulted": task.faulted,
        "frames": rec.frames,
        "window_s": w,
        "warm_end_ts": warm_end,
        "clean_shard_windows": rec.shard_polls_after(warm_end),
        "shards": len(rec.cadence_of_shard),
        "firings": firings,
        "faults": rec.faults,
        "events": [e.id for e in rec.events],
        "event_windows": [[e.ts, e.end_ts] for e in rec.events],
        "hosts": truth["hosts"],
        "host_of_shard": rec.host_of_shard,
        "phase_intervals": truth["phase_intervals"],
        "start_ts": truth["start_ts"],
        "end_ts": truth["end_ts"],
        "nulls": truth["null_values"],
        "null_frames": truth["null_frames"],
        "benign_xids": truth["benign_xids"],
        "phases": truth["phases"],
        "groups": {k: v for k, v in groups.items() if k in {f["target"] for f in rec.faults}},
        "group_sets": sorted({tuple(v) for v in groups.values()}),
        "node_members": {t: groups_all[t] for t in {f["target"] for f in firings} if t in groups_all},
        "replay": summary.to_obj(),
        "elapsed_s": round(time.perf_counter() - t0, 1),
        "generate_s": round(t_gen, 1),
    }


def _run_all(todo: list[Task], cfg: Config, workers: int) -> list[dict[str, Any]]:
    if workers <= 1:
        return [run_task(t, cfg) for t in todo]
    import multiprocessing  # noqa: PLC0415

    ctx = multiprocessing.get_context("spawn")
    order = sorted(range(len(todo)), key=lambda i: -_cost(todo[i]))  # longest first
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futs = {i: pool.submit(run_task, todo[i], cfg) for i in order}
        return [futs[i].result() for i in range(len(todo))]


def _cost(t: Task) -> float:
    from tessera_daemon.sim.messy import CADENCE_MIXES  # noqa: PLC0415

    mix = CADENCE_MIXES[t.spec.nuisances.cadence_mix]
    return t.spec.duration_s * sum(w / c for c, w in mix) / sum(w for _, w in mix)


# ------------------------------------------------------------------------------------------ scoring


def counted(run: dict[str, Any]) -> list[dict[str, Any]]:
    """Every opened firing, less event_conditional ones that match an announced event."""
    ev = set(run["events"])
    return [f for f in run["firings"] if not (f["classification"] == "event_conditional" and f["event_id"] in ev)]


def _nuisance_near(f: dict[str, Any], run: dict[str, Any]) -> str:
    """What nuisance a false firing coincides with (a diagnosis, not an excuse: it still counts)."""
    ts, w = f["opened_ts"], run["window_s"]
    members = f["members"] or [f["target"]]
    hosts = {run["host_of_shard"][m] for m in members if m in run["host_of_shard"]}
    for h in hosts:
        for s, e, _ in run["hosts"][h]["dropouts"]:
            if s - w <= ts <= e + 6 * run["hosts"][h]["cadence_s"] + 2 * w:
                return "host dropout / rejoin"
    if f["opened_ts"] < run["warm_end_ts"]:
        return "during warm-up"
    for s, e in run["event_windows"]:
        if s <= ts <= (e or math.inf) + 600:
            return "announced event window"
    jobs = {run["hosts"][h]["job"] for h in hosts} or set(run["phase_intervals"])
    for job in sorted(jobs):
        for kind, ivs in run["phase_intervals"][job].items():
            for s, e in ivs:
                if s - 2 * w <= ts <= e + 120:
                    return f"job phase ({kind})"
    return "none identified"


def _breakdown(fs: list[dict[str, Any]], key: str) -> dict[str, int]:
    return dict(Counter(str(f.get(key)) for f in fs).most_common())


def score_clean(run: dict[str, Any]) -> dict[str, Any]:
    fs = counted(run)
    csw = run["clean_shard_windows"]
    post = [f for f in fs if f["opened_ts"] >= run["warm_end_ts"]]
    for f in fs:
        f["near"] = _nuisance_near(f, run)
    return {
        "mix": run["mix"],
        "seed": run["seed"],
        "frames": run["frames"],
        "clean_shard_windows": csw,
        "window_s": run["window_s"],
        "firings": len(fs),
        "after_warmup": len(post),
        "per_million": len(fs) / csw * 1e6 if csw else None,
        "excluded_event_conditional": len(run["firings"]) - len(fs),
        "by_classification": _breakdown(fs, "classification"),
        "by_detector": _breakdown(fs, "detector"),
        "by_metric": _breakdown(fs, "metric"),
        "by_scope": _breakdown(fs, "scope"),
        "by_nuisance": _breakdown(fs, "near"),
        "examples": [
            {k: f[k] for k in ("opened_ts", "target", "scope", "detector", "metric", "classification", "near")}
            for f in fs[:15]
        ],
        "elapsed_s": run["elapsed_s"],
        "replay": run["replay"],
    }


def _matches(f: dict[str, Any], fault: dict[str, Any], run: dict[str, Any]) -> bool:
    w = run["window_s"]
    members = set(f["members"] or [f["target"]])
    if 2 * len(members & set(fault["members"])) < len(members):  # at least half of the firing is the fault
        return False
    end = run["end_ts"] if fault["end_ts"] is None else fault["end_ts"]
    grace = max(3 * w, 3 * fault["cadence_s"])
    lower = fault.get("first_poll_ts", fault["start_ts"] - SKEW_TOLERANCE_S)  # the first frame it can show in
    return bool(lower <= f["opened_ts"] <= end + grace)


def score_faulted(run: dict[str, Any], stale_after: int) -> dict[str, Any]:
    fs = counted(run)
    w = run["window_s"]
    per_fault = []
    true_ids: set[str] = set()
    for fault in run["faults"]:
        hits = [f for f in fs if _matches(f, fault, run)]
        true_ids.update(f["id"] for f in hits)
        first = hits[0] if hits else None
        delay = None if first is None else first["opened_ts"] - fault["start_ts"]
        ref = fault.get("first_poll_ts", fault["start_ts"])
        if fault["kind"] == "silent_device":
            ref += stale_after * fault["cadence_s"]
        hard_delay = None if first is None else first["opened_ts"] - ref
        attributed = None
        if fault["kind"] in ATTRIBUTED:
            # the named node is the fault's node, or a node holding exactly the same GPUs (a host and
            # its only NVLink domain): compared as topology nodes, not by which members co-fired
            named = run.get("node_members", {}).get(first["target"]) if first is not None else None
            same = named is not None and sorted(named) == sorted(fault["members"])
            attributed = first is not None and (first["target"] == fault["target"] or same)
        per_fault.append(
            {
                "mix": run["mix"],
                "seed": run["seed"],
                "id": fault["id"],
                "kind": fault["kind"],
                "target": fault["target"],
                "members": len(fault["members"]),
                "hard": fault["hard"],
                "cadence_s": fault["cadence_s"],
                "detected": first is not None,
                "delay_s": delay,
                "delay_windows": None if delay is None else delay / w,
                "delay_polls": None if delay is None else delay / fault["cadence_s"],
                "full_delay_windows": None
                if first is None
                else max(0.0, first["opened_ts"] - fault.get("full_ts", fault["start_ts"])) / w,
                "hard_delay_windows": None if hard_delay is None else hard_delay / w,
                "firings": len(hits),
                "first_target": first["target"] if first else None,
                "widest_target": max(
                    hits,
                    key=lambda f: (len(set(f["members"] or [f["target"]]) & set(fault["members"])), -f["opened_ts"]),
                )["target"]
                if hits
                else None,
                "first_class": first["classification"] if first else None,
                "first_detector": first["detector"] if first else None,
                "attributed": attributed,
            }
        )
    false = [f for f in fs if f["id"] not in true_ids]
    for f in false:
        f["near"] = _nuisance_near(f, run)
    return {
        "mix": run["mix"],
        "seed": run["seed"],
        "firings": len(fs),
        "true": len(true_ids),
        "false": len(false),
        "per_fault": per_fault,
        "false_by_nuisance": _breakdown(false, "near"),
        "false_by_classification": _breakdown(false, "classification"),
        "elapsed_s": run["elapsed_s"],
        "replay": run["replay"],
    }


def score(runs: list[dict[str, Any]], cfg: Config) -> dict[str, Any]:
    clean = [score_clean(r) for r in runs if not r["faulted"]]
    faulted = [score_faulted(r, cfg.window.stale_after_windows) for r in runs if r["faulted"]]
    per_fault = [p for f in faulted for p in f["per_fault"]]
    tp = sum(f["true"] for f in faulted)
    n = sum(f["firings"] for f in faulted)
    stat = [p for p in per_fault if p["kind"] not in HARD_KINDS]
    delays = [p["delay_windows"] if p["delay_windows"] is not None else math.inf for p in stat]
    full = [p["full_delay_windows"] if p["full_delay_windows"] is not None else math.inf for p in stat]
    return {
        "clean": clean,
        "faulted": faulted,
        "per_fault": per_fault,
        "precision": tp / n if n else None,
        "true_firings": tp,
        "counted_firings": n,
        "recall": sum(p["detected"] for p in per_fault) / len(per_fault) if per_fault else None,
        "median_delay_windows": median(delays) if delays else None,
        "median_full_delay_windows": median(full) if full else None,
        "all_clean": _sum_breakdowns(clean),
    }


def _sum_breakdowns(clean: list[dict[str, Any]]) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    for key in ("by_classification", "by_detector", "by_metric", "by_scope", "by_nuisance"):
        c: Counter[str] = Counter()
        for r in clean:
            c.update(r[key])
        out[key] = dict(c.most_common())
    return out


# ------------------------------------------------------------------------------------------ report


def run(cfg: Config, *, fast: bool = False, workers: int | None = None, plan: Plan | None = None) -> MatrixResult:
    t0 = time.perf_counter()
    plan = plan or (FAST if fast else FULL)
    todo = tasks(plan)
    n_workers = workers if workers is not None else (1 if fast else max(1, min(len(todo), os.cpu_count() or 1)))
    runs = _run_all(todo, cfg, n_workers)
    sc = score(runs, cfg)
    res = MatrixResult(
        "messy",
        f"Messy fleet: {plan.shape.n_gpus} GPUs, independent recordings with every "
        "nuisance on, through replay (default configuration)",
        fast,
    )
    _checks(res, sc, plan, cfg)
    res.sections += _sections(sc, plan, cfg)
    res.data = {"plan": asdict(plan), **sc}
    res.elapsed_s = time.perf_counter() - t0
    return res


def _fmt(v: float | None, nd: int = 1) -> str:
    return "-" if v is None else ("inf" if math.isinf(v) else f"{v:.{nd}f}")


def _checks(res: MatrixResult, sc: dict[str, Any], plan: Plan, cfg: Config) -> None:
    csw = sum(c["clean_shard_windows"] for c in sc["clean"])
    res.checks.append(
        Check(
            "clean shard-windows (after warm-up, all clean twins)",
            f">= {plan.min_clean:,}",
            f"{csw:,}",
            csw >= plan.min_clean,
        )
    )
    for c in sc["clean"]:
        if c["mix"] in ACCEPT_MIXES:
            res.checks.append(
                Check(
                    f"false pages or tickets per 10^6 clean shard-windows, {c['mix']} polls (seed {c['seed']})",
                    "<= 1",
                    f"{_fmt(c['per_million'])} ({c['firings']} in {c['clean_shard_windows']:,})",
                    c["per_million"] is not None and c["per_million"] <= 1.0,
                )
            )
    p, r = sc["precision"], sc["recall"]
    res.checks.append(
        Check(
            "precision over material faults (counted firings of the faulted recordings)",
            ">= 0.95",
            f"{_fmt(p, 3)} ({sc['true_firings']}/{sc['counted_firings']})",
            p is not None and p >= 0.95,
        )
    )
    pf = sc["per_fault"]
    res.checks.append(
        Check(
            "recall over material faults",
            ">= 0.95",
            f"{_fmt(r, 3)} ({sum(x['detected'] for x in pf)}/{len(pf)})",
            r is not None and r >= 0.95,
        )
    )
    attr = [x for x in pf if x["attributed"] is not None]
    ok = sum(1 for x in attr if x["attributed"])
    res.checks.append(
        Check(
            "common modes attributed to their node (first true firing)",
            "all",
            f"{ok}/{len(attr)}",
            ok == len(attr) if attr else None,
        )
    )
    md, mf = sc["median_delay_windows"], sc["median_full_delay_windows"]
    res.checks.append(
        Check(
            "median delay after full size, statistical faults (misses infinite)",
            "<= 10 windows",
            f"{_fmt(mf)} windows ({_fmt(md)} from onset)",
            mf is not None and mf <= 10,
        )
    )
    hard = [x for x in pf if x["kind"] in HARD_ONE_WINDOW]
    late = [x for x in hard if x["hard_delay_windows"] is None or x["hard_delay_windows"] > 1.0 + 1e-9]
    res.checks.append(
        Check(
            "hard faults (XID 79, ECC DBE, silent device) within 1 window",
            "all",
            f"{len(hard) - len(late)}/{len(hard)}"
            + (
                " (late or missed: "
                + ", ".join(f"{x['kind']} {x['mix']}:{_fmt(x['hard_delay_windows'])}" for x in late)
                + ")"
                if late
                else ""
            ),
            not late if hard else None,
        )
    )
    _ = cfg


def _length(cfg: Config) -> str:
    length = getattr(cfg.window, "length_s", None)
    return f"{length:g} s" if isinstance(length, int | float) and length > 0 else "auto"


def _sections(sc: dict[str, Any], plan: Plan, cfg: Config) -> list[str]:
    out = []
    w = {c["mix"]: c["window_s"] for c in sc["clean"]}
    out.append(
        "## Setup\n\n"
        + (
            f"{plan.shape.n_gpus} GPUs ({plan.shape.zones} cooling zones x {plan.shape.racks_per_zone} racks x "
            f"{plan.shape.hosts_per_rack} hosts x {plan.shape.gpus_per_host} GPUs, {plan.shape.psus_per_rack} PSUs per "
            f"rack, NVLink domains of {plan.shape.gpus_per_nvlink}), 2 training jobs; {plan.duration_s / 3600:g} h per "
            f"recording; runs (cadence mix, seed): {list(plan.runs)}, each a faulted recording and its clean twin; "
            f"every nuisance on (tessera_daemon.sim.messy). Replay with the configuration given (window "
            f"{_length(cfg)}; effective window per run {w}); warm-up {cfg.detector.warmup_max_windows} windows."
        )
    )
    rows = [
        [
            c["mix"],
            c["seed"],
            f"{c['frames']:,}",
            f"{c['clean_shard_windows']:,}",
            c["firings"],
            c["after_warmup"],
            _fmt(c["per_million"]),
            c["excluded_event_conditional"],
            c["elapsed_s"],
        ]
        for c in sc["clean"]
    ]
    out.append(
        "## Clean twins: false pages and tickets\n\n"
        + table(
            [
                "cadence mix",
                "seed",
                "frames",
                "clean shard-windows",
                "counted firings",
                "after warm-up",
                "per 10^6",
                "event_conditional (announced, excluded)",
                "seconds",
            ],
            rows,
        )
    )
    tot = sc["all_clean"]
    lines = []
    for key, title in (
        ("by_classification", "classification"),
        ("by_detector", "detector"),
        ("by_metric", "metric"),
        ("by_scope", "scope"),
        ("by_nuisance", "coincident nuisance"),
    ):
        lines.append(f"- by {title}: " + ", ".join(f"{k} {v}" for k, v in tot[key].items()))
    out.append("## What fired on the clean twins (all cadences)\n\n" + "\n".join(lines))
    per_mix = [
        [
            c["mix"],
            ", ".join(f"{k} {v}" for k, v in c["by_classification"].items()),
            ", ".join(f"{k} {v}" for k, v in list(c["by_metric"].items())[:6]),
            ", ".join(f"{k} {v}" for k, v in c["by_scope"].items()),
        ]
        for c in sc["clean"]
    ]
    out.append("## Clean twins per cadence\n\n" + table(["mix", "classification", "metric (top 6)", "scope"], per_mix))
    rows = [
        [
            p["mix"],
            p["id"],
            p["target"],
            p["members"],
            p["cadence_s"],
            "yes" if p["detected"] else "no",
            _fmt(p["delay_s"], 0),
            _fmt(p["delay_windows"]),
            _fmt(p["full_delay_windows"]),
            _fmt(p["delay_polls"]),
            _fmt(p["hard_delay_windows"]) if p["kind"] in HARD_ONE_WINDOW else "",
            p["firings"],
            p["first_target"] or "-",
            p["first_class"] or "-",
            p["widest_target"] or "-",
            "" if p["attributed"] is None else ("yes" if p["attributed"] else "no"),
        ]
        for p in sc["per_fault"]
    ]
    out.append(
        "## Faults\n\n"
        + table(
            [
                "mix",
                "fault",
                "node",
                "shards",
                "poll s",
                "detected",
                "delay s",
                "windows",
                "after full size (win)",
                "polls",
                "hard delay (win)",
                "firings",
                "first firing target",
                "class",
                "widest firing target",
                "attributed",
            ],
            rows,
        )
    )
    counts = [p["firings"] for p in sc["per_fault"] if p["detected"]]
    fr = [
        [
            f["mix"],
            f["firings"],
            f["true"],
            f["false"],
            ", ".join(f"{k} {v}" for k, v in f["false_by_nuisance"].items()),
            f["elapsed_s"],
        ]
        for f in sc["faulted"]
    ]
    out.append(
        "## Faulted recordings\n\n"
        + table(["mix", "counted firings", "true", "false", "false firings by coincident nuisance", "seconds"], fr)
        + f"\n\nFirings per detected fault: median {_fmt(median([float(c) for c in counts]))}, max "
        f"{max(counts) if counts else '-'}; faults with exactly one firing: {sum(1 for c in counts if c == 1)}/"
        f"{len(sc['per_fault'])}."
    )
    ex = [
        [c["mix"], e["opened_ts"], e["target"], e["scope"], e["detector"], e["metric"], e["classification"], e["near"]]
        for c in sc["clean"]
        for e in c["examples"][:8]
    ]
    if ex:
        out.append(
            "## First false firings per clean twin\n\n"
            + table(["mix", "opened_ts", "target", "scope", "detector", "metric", "class", "coincident nuisance"], ex)
        )
    return out


def plan_with(plan: Plan, **kw: Any) -> Plan:
    return replace(plan, **kw)


__all__ = ["FAST", "FULL", "Plan", "run", "run_task", "score", "tasks", "window_s"]
