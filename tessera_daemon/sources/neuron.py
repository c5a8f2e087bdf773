"""AWS Neuron source (Trainium / Inferentia): ``neuron-ls`` for topology, ``neuron-monitor`` for
counters.

``neuron-monitor`` is a long-running subprocess that prints one JSON report per line; a reader task
parses lines as they come, folds each report into per-device state and restarts the monitor with
doubling delays (``neuron.restart_backoff_s`` .. ``restart_backoff_max_s``) when it exits. Per-period
event counts (hardware ECC events, execution errors and completions) are accumulated into monotone
counters, since the source started: ``mem_ecc_corrected``, ``mem_ecc_uncorrected``,
``sram_ecc_corrected``, ``sram_ecc_uncorrected``, ``ecc_sbe`` (all corrected), ``ecc_dbe`` (all
uncorrected), ``exec_errors``, ``exec_completed``. Gauges: ``gpu_util`` (mean NeuronCore utilisation
of the device, ratio), ``mem_used_bytes`` (device memory used by runtimes), ``exec_latency_p50_ms`` /
``exec_latency_p99_ms`` (when present).

``poll`` returns one frame per device for each report not returned before (ts = when the report
arrived; nothing new: no frames) and raises SubstrateUnavailable when no report arrived for
``neuron.stale_after_s``. Shards are ``<host>/neuron<N>``; topology: ``neuron_link`` edges from
``connected_to``, model ``trainium<gen>`` / ``inferentia<gen>`` from the instance type.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING

from tessera_daemon.errors import SubstrateFatal, SubstrateUnavailable
from tessera_daemon.log import get_logger
from tessera_daemon.model import Frame
from tessera_daemon.sources._util import PartBuilder, host_name, kill_group, run_command, shard_id
from tessera_daemon.sources.base import TopologyPart
from tessera_daemon.sources.neuron_parse import (
    HW_COUNTERS,
    DeviceSample,
    NeuronDevice,
    accelerator_model,
    parse_monitor_report,
    parse_neuron_ls,
)

if TYPE_CHECKING:
    from tessera_daemon.config import Config

log = get_logger(__name__)
COUNTERS = frozenset({*HW_COUNTERS, "ecc_sbe", "ecc_dbe", "exec_errors", "exec_completed"})
MAX_LINE = 64 * 1024 * 1024


class NeuronSource:
    name = "neuron"

    def __init__(self, cfg: Config) -> None:
        self.settings = cfg.sources.neuron
        self.timeout_s = cfg.sources.timeout_s
        self.host = host_name(self.settings.host)
        self._instance_type = self.settings.instance_type
        self._devices: list[NeuronDevice] = []
        self._totals: dict[int, dict[str, float]] = {}
        self._latest: dict[int, DeviceSample] = {}
        self._report_seq = 0
        self._returned_seq = 0
        self._report_wall = 0.0
        self._report_mono: float | None = None
        self._started_mono = time.monotonic()
        self._error: str | None = None
        self._proc: asyncio.subprocess.Process | None = None
        self._alive = False
        self._task: asyncio.Task[None] | None = None
        self._first = asyncio.Event()
        self.restarts = 0

    # ---------------------------------------------------------------------------- lifecycle

    async def open(self) -> None:
        await self._read_devices()
        if self._task is None or self._task.done():
            self._started_mono = time.monotonic()
            self._task = asyncio.create_task(self._monitor_loop(), name="neuron-monitor")
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._first.wait(), self.timeout_s)

    async def _read_devices(self) -> None:
        rc, out, err = await run_command(self.settings.ls_command, substrate=self.name, timeout_s=self.timeout_s)
        if rc != 0:
            raise SubstrateUnavailable(self.name, f"neuron-ls exited {rc}: {err.decode(errors='replace').strip()}")
        try:
            instance_type, devices = parse_neuron_ls(json.loads(out))
            if instance_type and not self.settings.instance_type:
                self._instance_type = instance_type
            if self._instance_type:
                accelerator_model(self._instance_type)
        except ValueError as exc:
            raise SubstrateFatal(self.name, str(exc)) from exc
        self._devices = devices

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self._stop_proc()

    async def _stop_proc(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.returncode is not None:
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)  # its own process group: wrappers' children too
        try:
            await asyncio.wait_for(proc.wait(), 2.0)
        except TimeoutError:
            kill_group(proc.pid)
            await proc.wait()
        if proc.stdout is not None:  # read to EOF so asyncio closes the pipe and the transport
            with contextlib.suppress(Exception):
                await asyncio.wait_for(proc.stdout.read(), 2.0)

    # ------------------------------------------------------------------------- the stream

    async def _monitor_loop(self) -> None:
        delay = self.settings.restart_backoff_s
        argv = self.settings.monitor_command
        while True:
            started = time.monotonic()
            try:
                self._proc = await asyncio.create_subprocess_exec(
                    *argv,
                    stdin=asyncio.subprocess.DEVNULL,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.DEVNULL,
                    limit=MAX_LINE,
                    start_new_session=True,
                )
                assert self._proc.stdout is not None
                self._alive = True
                async for line in self._proc.stdout:
                    self._ingest(line)
                rc = await self._proc.wait()
                self._error = f"neuron-monitor exited with code {rc}"
            except OSError as exc:
                self._error = f"cannot start {argv[0]!r}: {exc}"
            except ValueError as exc:  # a line longer than the stream limit
                self._error = f"neuron-monitor output unreadable: {exc}"
                await self._stop_proc()
            finally:
                self._alive = False
            if time.monotonic() - started > 10 * self.settings.restart_backoff_max_s:
                delay = self.settings.restart_backoff_s  # it ran fine for a long while
            log.warning("neuron.monitor_restart", error=self._error, delay_s=delay)
            self.restarts += 1
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.settings.restart_backoff_max_s)

    def _ingest(self, line: bytes) -> None:
        text = line.strip()
        if not text:
            return
        try:
            report = json.loads(text)
            if not isinstance(report, dict):
                raise ValueError("not a JSON object")
            cores = self._devices[0].cores if self._devices else 0
            samples = parse_monitor_report(report, cores)
        except (ValueError, TypeError, AttributeError) as exc:
            self._error = f"bad neuron-monitor report: {exc}"
            return
        if not self._instance_type:
            self._instance_type = str((report.get("instance_info") or {}).get("instance_type") or "")
        for dev, s in samples.items():
            totals = self._totals.setdefault(dev, {})
            for key, v in s.hw.items():
                totals[key] = totals.get(key, 0.0) + v
            if s.hw:
                totals["ecc_sbe"] = totals.get("mem_ecc_corrected", 0.0) + totals.get("sram_ecc_corrected", 0.0)
                totals["ecc_dbe"] = totals.get("mem_ecc_uncorrected", 0.0) + totals.get("sram_ecc_uncorrected", 0.0)
            if s.exec_seen:
                totals["exec_errors"] = totals.get("exec_errors", 0.0) + s.exec_errors
                totals["exec_completed"] = totals.get("exec_completed", 0.0) + s.exec_completed
        self._latest = samples
        self._report_seq += 1
        self._report_wall = time.time()
        self._report_mono = time.monotonic()
        self._error = None
        self._first.set()

    # ---------------------------------------------------------------------------- protocol

    async def poll(self, now: float) -> Sequence[Frame]:
        if self._task is None:
            await self.open()
        last = self._report_mono if self._report_mono is not None else self._started_mono
        if time.monotonic() - last > self.settings.stale_after_s:
            why = self._error or "no report"
            limit = self.settings.stale_after_s
            raise SubstrateUnavailable(self.name, f"no neuron-monitor report for {limit:g}s ({why})")
        if self._report_seq == self._returned_seq:
            if self._error and not self._alive:
                raise SubstrateUnavailable(self.name, self._error)
            return []
        self._returned_seq = self._report_seq
        known = {d.index for d in self._devices}
        frames = []
        for dev in sorted(known | set(self._latest)):
            s = self._latest.get(dev)
            metrics: dict[str, float | None] = dict(self._totals.get(dev, {}))
            if s is not None:
                if s.util:
                    metrics["gpu_util"] = sum(s.util) / len(s.util)
                if s.mem_seen:
                    metrics["mem_used_bytes"] = s.mem_used
                if s.latency_p50_ms is not None:
                    metrics["exec_latency_p50_ms"] = s.latency_p50_ms
                if s.latency_p99_ms is not None:
                    metrics["exec_latency_p99_ms"] = s.latency_p99_ms
            frames.append(
                Frame(
                    self._report_wall, shard_id(self.host, "neuron", dev), metrics, frozenset(COUNTERS & metrics.keys())
                )
            )
        return frames

    async def topology(self) -> TopologyPart:
        if not self._devices:
            await self._read_devices()
        b = PartBuilder()
        try:
            model = accelerator_model(self._instance_type) if self._instance_type else "neuron"
        except ValueError as exc:
            raise SubstrateFatal(self.name, str(exc)) from exc
        b.node(self.host, "host", None, host=self.host, instance_type=self._instance_type)
        for d in self._devices:
            sid = shard_id(self.host, "neuron", d.index)
            b.node(
                sid,
                "shard",
                self.host,
                host=self.host,
                model=model,
                index=str(d.index),
                instance_type=self._instance_type,
                pci_bdf=d.bdf,
            )
        known = {d.index for d in self._devices}
        for d in self._devices:
            for p in d.peers:
                if p in known:
                    b.edge(shard_id(self.host, "neuron", d.index), shard_id(self.host, "neuron", p), "neuron_link")
        nodes, edges = b.result()
        notes: list[str] = [] if edges else ["no neuron_link peers reported"]
        if not self._instance_type:
            notes.append("instance type unknown")
        return TopologyPart(self.name, nodes, edges, partial=bool(notes), notes=tuple(notes))
