"""End-to-end alerting drill: simulator -> daemon -> Prometheus -> Alertmanager -> PagerDuty (a local stand-in).

``tessera-daemon drill [--out FILE] [--speedup X]`` (or :func:`run_drill`) starts, on free loopback ports:

* the daemon (:func:`tessera_daemon.daemon.run`, in this process) on the built-in simulator;
* a real Prometheus scraping it every second with ``alert_rules.yml`` (every group evaluated each second;
  the ``for:`` of the ``tessera-firings`` group capped at one minute of *simulated* time, ``60 / speedup``
  seconds, at least 1 s; the ``tessera-health`` group keeps its wall-clock ``for:`` so that Prometheus'
  own start-up, where ``up`` is still absent, does not page ``TesseraDaemonDown``);
* a real Alertmanager with ``deploy/alertmanager/alertmanager.yml`` (routes, receivers, templates and
  inhibitions as shipped; timers 1 s) whose PagerDuty URL points at a local Events API v2 receiver that
  records every event, and whose ticket webhook points at the same receiver.

The simulated cluster is small and fixed: one cooling zone, 4 racks of 2 hosts of 8 GPUs (64 shards), two
jobs taking hosts round-robin, so each rack is a quarter of each cohort. Windows are 5 s of simulated time
with 1 s ticks; the detector settings (warm-up included, 60 windows by default) and the hard-fault rules
come from the given configuration, everything else is the drill's. Simulated time runs ``speedup`` times
faster than wall time (20: the 300 s warm-up takes 15 s); the source is polled once per window.

Three faults start once warm-up is over, 20 ticks apart, and clear after ``100 + 12 * speedup`` ticks (12 s
of wall time after the ~100 ticks detection needs), so Prometheus and Alertmanager see every firing:

============  ==========================  ========================================================  ==========
fault         simulator                   expected                                                  PagerDuty
============  ==========================  ========================================================  ==========
shard         straggler 5 sigma on        shard firing (shard_fault) -> TesseraShardFault, page,     error
              ``z0-r00-h00-g3``           one incident for rack z0-r00
rack          thermal_rack 3 sigma on     rack firing (common_mode, scope rack) ->                   error
              ``z0-r02``                  TesseraCommonModeRack, page, one incident for rack
                                          z0-r02; no TesseraShardFault page from that rack
                                          (member firings are relabelled common_mode and shard
                                          alerts of the rack are inhibited)
hard          xid79 on ``z0-r03-h01-g5``  rule:xid / rule:device_lost firings (hard_fault) ->         critical
              (lost while it lasts)       TesseraHardFault, page, one incident for rack z0-r03
============  ==========================  ========================================================  ==========

Every incident must resolve (Events API ``resolve`` with the trigger's ``dedup_key``) after its fault
clears, no other page may arrive, PagerDuty must reject nothing, and every event must carry the routing key
read from ``routing_key_file``. The drill prints the timeline of each fault (injected, firing opened, alert
firing, page received, cleared, firing resolved, alert resolved, resolve received) in wall seconds since the
start of simulated time, with event times (simulated seconds) where the moment has one, and the latencies
between them; ``out`` gets all of it as JSON, with every firing, alert and PagerDuty event seen. Moments are
observed by polling every 0.1 s (the receiver stamps arrivals itself), so a latency below that can come out
slightly negative. Exit status 0 when every expectation held. Observations that do not fail the drill
(e.g. alerts of a rule that also match series it was not meant for) are printed as notes.

Simulated time starts at the simulator's fixed ``DEFAULT_START_TS`` (window-aligned), so a given seed and
detector configuration produce the same firings, at the same event times, on every run; only the wall-clock
latencies vary. The scenario is registered under the name ``drill`` in the simulator's catalogue while the
drill runs (the daemon builds its simulator from ``sim.scenario``, a name), then removed again.
"""

from tessera_daemon.drill.report import print_report, report_obj
from tessera_daemon.drill.run import run_drill
from tessera_daemon.drill.scenario import (
    LATENCIES,
    MOMENTS,
    SCENARIO_NAME,
    Case,
    drill_cases,
    drill_config,
    for_cap,
    registered,
)
from tessera_daemon.drill.verdict import CaseResult, Check, assess_case

__all__ = [
    "LATENCIES",
    "MOMENTS",
    "SCENARIO_NAME",
    "Case",
    "CaseResult",
    "Check",
    "assess_case",
    "drill_cases",
    "drill_config",
    "for_cap",
    "print_report",
    "registered",
    "report_obj",
    "run_drill",
]
