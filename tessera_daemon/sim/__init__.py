"""Simulated GPU cluster with fault injection and ground-truth labels.

Deterministic from a seed: the same (``SimConfig``, scenario, seed, start_ts) gives byte-identical
frames. Independent PCG64 streams seeded from (seed, purpose) drive the noise, the static draws
(offsets, cohort levels, counter starts, GPU uuids), the regime steps and the fault targets, so a
faulted run and a clean run with the same seed share every noise draw: their difference is the fault.

Topology
--------
``zones`` cooling zones > ``racks_per_zone`` racks > ``hosts_per_rack`` hosts > ``shards_per_host``
shards (ids ``z0``, ``z0-r00``, ``z0-r00-h00``, ``z0-r00-h00-g3``). Each host has one NVLink domain
(``z0-r00-h00-nvl``; ``nvlink`` edges join every pair of its shards, an NVSwitch full mesh). Each rack
has two PSUs, ``-psu-a`` powering the first half of its hosts (rounded up) and ``-psu-b`` the rest
(one PSU for a one-host rack). ``cohorts`` jobs (``job-0``...) take whole hosts round-robin in
(zone, rack, host) order, so each job spans several racks. Shard labels: cohort, model
(H100-SXM5-80GB), host, rack, cooling_zone, psu, nvlink_domain, gpu_index, rank, gpu_uuid.

Metrics (one frame per shard per tick, every ``tick_s``)
--------------------------------------------------------
===============  ============================  ===========  =======================================
metric           level                         noise sigma  notes
===============  ============================  ===========  =======================================
gpu_util         0.90 (ratio)                  0.015        clipped to [0, 1]
sm_clock_mhz     1980 MHz                      15           clipped at >= 0
power_w          600 W                         15           follows util
temp_c           65 C                          1.0          follows util and power
mem_bw_util      0.60 (ratio)                  0.02         clipped to [0, 1]; follows util
nvlink_tx_bytes  counter of a 40 GB/s rate     1.5 GB/s     uint64 byte counter, wraps at 2**64
step_time_ms     exp(log 350 ms)               0.03 (log)   lognormal-ish, always positive
ecc_dbe          counter, 0                    none         moves only under the ecc_dbe fault
===============  ============================  ===========  =======================================

``nvlink_tx_bytes`` and ``ecc_dbe`` are listed as counters in every frame. NVLink counters start at
random points in [0, 2**62); 3 % of shards (at least one) start 20-300 ticks before the 2**64 wrap.

Null model
----------
For shard i of cohort c, channel m (the metric, the NVLink *rate*, or log step time), tick t::

    x = L[c,m] + o[i,m] + sigma[m] * (e[i,m,t] + A * w_d[m] * sin(2 pi ts / P) + R[c,t] * w_r[m])

- ``L``: per-cohort level (fleet level + a per-job draw: step time sd 30 %, power sd 20 W, ...).
- ``o``: persistent per-shard offset, sd 0.5-2 sigma depending on the metric (temp 2 sigma).
- ``e``: AR(1) noise with coefficient ``rho`` (default 0.8) and Student-t(``tail_df``) innovations
  scaled to unit stationary variance, lightly coupled across channels by a lower-triangular matrix
  with unit rows (power follows util, temperature follows util and power, mem-bw and NVLink follow
  util, step time slightly anti-correlated with util); every channel keeps lag-1 autocorrelation rho.
- Diurnal cycle: ``A = diurnal_amplitude`` sigmas, period ``diurnal_period_s``, phase from absolute
  time, shared by all shards (load up: util, power, temp, mem-bw, NVLink up, clock down 0.5 A).
- Regime steps ``R``: per cohort a Poisson process with mean interval ``regime_every_s`` (0: none);
  each moves the whole cohort by U(1, 2) sigma (random sign, toward 0 once |R| >= 2) on util, power
  and step time (mem-bw 0.5): a new batch size. Benign and unlabelled (``ClusterSim.regime_steps``).

Faults (``FaultSpec``; magnitude in sigmas of the affected channel, signed)
---------------------------------------------------------------------------
Ticks ``[start_tick, start_tick + duration_ticks)`` (duration None: to the end). Statistical deltas
are ``magnitude * coefficient * sigma * profile`` where profile ramps linearly over ``ramp_ticks``.

- sdc_drift (shard): ramps ``metric`` (default power_w) from 0 to +magnitude sigma over ramp_ticks
  (default 200), then holds.
- straggler (shard): step_time_ms +magnitude sigma on its log scale, gpu_util -0.3 magnitude sigma.
- thermal_rack (rack, or a cooling zone if targeted): temp_c +magnitude sigma, 30-tick ramp.
- psu_cap (psu): power_w and sm_clock_mhz -magnitude sigma each, a step.
- nvlink_degrade (host): NVLink rate -magnitude sigma (the counter grows slower), step_time_ms
  +0.5 magnitude sigma.
- fleet_regime_change (cohort; benign): every shard of the cohort moves together like a regime
  step: util, power, step time +magnitude sigma, mem-bw +0.5 magnitude sigma.
- firmware_push (rack by default, or host / cooling zone / fleet; benign, announced): a
  ``ClusterEvent`` ``firmware_push`` with scope = the affected host ids, ts = start,
  end_ts = start + duration; each host gets sm_clock_mhz +magnitude sigma at its own tick spread
  over the rollout window, and keeps it (label end_ts null).
- xid79 (shard; hard): XID 79 in the start tick's frame (metrics still valid), then lost=True
  frames for duration ticks (None: to the end); label end_ts = first tick after.
- ecc_dbe (shard; hard): ecc_dbe counter +1..3 once at start (label lasts one tick).
- device_lost (shard; hard): lost=True frames (all metrics None) for the duration.
- sparse (3 % of shards scattered over the fleet, or a targeted host / rack / shard): no frames
  at all for the duration.

Untargeted faults are placed from the seed: broadest first, non-benign faults on disjoint shards
while the cluster is large enough; benign faults avoid taken shards when they can.

Ground truth: ``labels.json`` = ``{"v":1,"scenario","seed","tick_s","start_ts","faults":[{"id",
"kind","scope","target","shards","metric","metrics","start_ts","end_ts","magnitude","hard","benign",
"event_id"}]}``; ``metrics`` lists every metric the fault moves (``metric`` is the primary one);
scattered sparse faults have scope and target ``fleet``.
"""

from __future__ import annotations

from tessera_daemon.sim.cluster import COUNTERS, DEFAULT_START_TS, METRICS, ClusterSim, SimTick
from tessera_daemon.sim.scenarios import SCENARIOS, FaultSpec, Scenario, get_scenario
from tessera_daemon.sim.topology import build_topology
from tessera_daemon.sim.writer import write_simulation

__all__ = [
    "COUNTERS",
    "DEFAULT_START_TS",
    "METRICS",
    "SCENARIOS",
    "ClusterSim",
    "FaultSpec",
    "Scenario",
    "SimTick",
    "build_topology",
    "get_scenario",
    "write_simulation",
]
