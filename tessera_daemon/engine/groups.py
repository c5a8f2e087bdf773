"""Group detectors on pooled residuals: common modes too weak to fire any single shard.

For every topology group of the configured kinds (host, NVLink domain, PSU, rack, cooling zone; groups
with identical member sets are kept once), per metric and window:

    z_g = sum of members' standardised innovations / sqrt(members observed)

A shift of mu (innovation units) shared by n members moves z_g by mu sqrt(n): a rack of 32 shards sees
a per-shard 0.5-sigma shift as 2.8 sigma. z_g is standardised by a predictable estimate of its own
variance (learnt from quiet windows, so shared noise inside a group does not inflate false alarms),
then fed to the same Family A e-detector as the shards, with the practical-significance margin scaled
to the group (delta x sqrt(n): a shift below delta_min per member stays null).

Members' innovations are winsorised at ``clip`` before pooling, so one shard's glitch moves z_g by at
most clip / sqrt(n); z_g itself is winsorised at ``GROUP_CLIP x clip``, so a shift shared by many members
is worth more evidence per window than any single shard can give.

Warm-up: a group's variance is seeded from its members' own warm-up buffers (their buffered deviations,
whitened with the offset, AR(1) coefficient and scale they learnt), at the window half of its members
have finished their warm-up (members still warming join the pool when they are warm). The group is
live from the first window its members are, instead of spending a second warm-up of its own that would
learn a fault starting in between as group noise; after a restart from a checkpoint or a topology
change it re-seeds at once. Groups whose members warmed without a
usable buffer fall back to an online warm-up of ``warmup`` windows.

Parsimony: a crossing group is reported when all of its immediate sub-groups show evidence in the same
direction (at least ``CHILD_FRACTION`` of the threshold; or it has none), and no larger reported group
contains it. A host fault makes its host cross but leaves its rack's other hosts null, so the host is
reported, not the rack; a rack fault moves every PSU / host of the rack, so the rack is reported, not
each host, and without waiting for each host to cross on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

from tessera_daemon.detect.kernels import family_a_rearm, family_a_state, family_a_update
from tessera_daemon.detect.quiet import quiet_runtime_warnings
from tessera_daemon.detect.state import DetectorState
from tessera_daemon.engine.group_tree import containment
from tessera_daemon.model import Topology

KIND_ORDER = ("host", "nvlink_domain", "psu", "rack", "cooling_zone")
VAR_FLOOR = 0.25
GROUP_CLIP = 3.0  # pooled z is winsorised at this many times the per-shard clip
GROUP_BET_EXTRA = (2.0, 3.0)  # pooled streams also bet these multiples of the largest shard bet
CHILD_FRACTION = 0.25  # a sub-group "shows evidence" at this fraction of the threshold (parsimony only)
MIN_SEED = 20  # innovations needed to seed a group's variance from its members' warm-up buffers
WANDER_K = 3.0  # a group's level may wander this many times its kind's typical wander without paging
WANDER_HALFLIFE_S = 4 * 3600.0  # memory of each group kind's normal between-group spread


@dataclass(slots=True)
class GroupResult:
    crossing: npt.NDArray[np.bool_]  # [G, M]
    selected: list[tuple[int, int]]  # (group, metric) pairs to report
    chosen: frozenset[tuple[int, int]] = field(init=False)

    def __post_init__(self) -> None:
        self.chosen = frozenset(self.selected)


class GroupDetector:
    def __init__(
        self,
        topology: Topology,
        shard_row: dict[str, int],
        n_metrics: int,
        kinds: tuple[str, ...],
        bets: npt.NDArray[np.float64],
        warmup: int,
        halflife: float,
        previous: GroupDetector | None = None,
        old_row: npt.NDArray[np.int64] | None = None,
    ) -> None:
        """``previous`` and ``old_row`` (each new shard row's row before a topology change, -1: new):
        groups whose members are unchanged keep the variance they learnt (as a re-seed would give it;
        their evidence starts afresh like every group's), so they need no member buffers."""
        members = topology.members()  # cached by the topology
        cohort_name = [topology.cohort_of(s) for s in topology.shards]
        cohort_names = sorted(set(cohort_name))
        cidx = {c: i for i, c in enumerate(cohort_names)}
        cohort_of_shard = {s: cidx[c] for s, c in zip(topology.shards, cohort_name, strict=True)}
        cohort_size = np.bincount([cidx[c] for c in cohort_name], minlength=len(cohort_names))

        # Peer residuals are centred on the cohort median, so a group holding more than half of a cohort
        # sums to about zero by construction: it cannot be compared with its peers. One pass over all
        # (group, member) pairs: count each group's members per cohort, flag any count above half.
        cand = [g for g in members if topology.nodes[g].kind in kinds]
        if cand:
            sizes = np.array([len(members[g]) for g in cand], np.int64)
            gidx = np.repeat(np.arange(len(cand), dtype=np.int64), sizes)
            cflat = np.fromiter((cohort_of_shard[s] for g in cand for s in members[g]), np.int64, int(sizes.sum()))
            pair, counts = np.unique(gidx * max(1, len(cohort_names)) + cflat, return_counts=True)
            over = counts > cohort_size[pair % max(1, len(cohort_names))] / 2
            bad = np.zeros(len(cand), np.bool_)
            bad[pair[over] // max(1, len(cohort_names))] = True
            peer = [g for g, b in zip(cand, bad.tolist(), strict=True) if not b]
        else:
            peer = []

        seen: set[bytes] = set()
        order = {k: i for i, k in enumerate(KIND_ORDER)}
        groups = sorted(peer, key=lambda g: (len(members[g]), order.get(topology.nodes[g].kind, 99), g))
        self.ids: list[str] = []
        self.kinds: list[str] = []
        rows: list[npt.NDArray[np.int64]] = []
        for gid in groups:
            r = np.fromiter((shard_row[s] for s in members[gid] if s in shard_row), np.int64)
            if r.size > 1 and (r[1:] <= r[:-1]).any():  # members come sorted by id, rows usually follow
                r = np.sort(r)
            key = r.tobytes()  # the same member set is the same sorted rows
            if key in seen or r.size < 2:
                continue
            seen.add(key)
            self.ids.append(gid)
            self.kinds.append(topology.nodes[gid].kind)
            rows.append(r)
        self.rows = rows
        self.index = {g: i for i, g in enumerate(self.ids)}
        self.flat = np.concatenate(rows) if rows else np.zeros(0, np.int64)
        self.starts = np.cumsum([0] + [r.size for r in rows[:-1]]).astype(np.int64) if rows else np.zeros(0, np.int64)
        self.parents, self.children, self.descendants = containment(rows)
        g, m, k = len(self.ids), n_metrics, len(bets) + len(GROUP_BET_EXTRA)
        self.bets = np.concatenate([bets, bets.max() * np.asarray(GROUP_BET_EXTRA)])
        self.warmup = warmup
        self.halflife = halflife
        self.var = np.ones((g, m))
        self.n = np.zeros((g, m), np.int64)
        self.ready = np.zeros((g, m), np.bool_)  # variance known: seeded, or online warm-up done
        # warm members counted at the last seeding attempt (-1: none): a (group, metric) is tried again
        # only when that count changes, since a warm member's buffer does not (``seed``)
        self.seed_tried = np.full((g, m), -1, np.int64)
        self.size = np.array([r.size for r in rows], np.int64)
        self.e_state = family_a_state((g, m), k)
        self.run_start = np.zeros((g, m), np.int64)
        self.log_m = np.zeros((g, m))
        self.side = np.zeros((g, m), np.int64)
        self.last_z = np.full((g, m), np.nan)
        self.last_x = np.full((g, m), np.nan)
        # group wander: each kind's typical |mean member residual| (analysed units), learnt over hours
        self.kind_names = sorted(set(self.kinds))
        self.kind_idx = np.array([self.kind_names.index(k) for k in self.kinds], np.int64)
        self.wander = np.full((len(self.kind_names), m), np.nan)  # [kinds, M] typical wander (units)
        self.level2 = np.zeros((g, m))  # [G, M] slow mean of (group level^2 - member noise)
        self.wander_obs = np.zeros((g, m), np.int64)
        if previous is not None and old_row is not None and previous.var.shape[1] == m:
            self._carry(previous, old_row)

    def _carry(self, previous: GroupDetector, old_row: npt.NDArray[np.int64]) -> None:
        """Take the learnt variance of every group with the same id and the same members from ``previous``."""
        for gi, gid in enumerate(self.ids):
            oi = previous.index.get(gid)
            if oi is None or previous.rows[oi].size != self.rows[gi].size:
                continue
            mapped = np.sort(old_row[self.rows[gi]])
            if mapped[0] < 0 or not np.array_equal(mapped, previous.rows[oi]):
                continue
            self.var[gi] = previous.var[oi]
            self.n[gi] = previous.n[oi]
            self.ready[gi] = previous.ready[oi]
            self.seed_tried[gi] = previous.seed_tried[oi]

    def __len__(self) -> int:
        return len(self.ids)

    def seed(self, state: DetectorState, clip: float) -> int:
        """Seed the variance of groups once half their members have finished warm-up, from their buffers;
        then give back the warm-up buffers no group needs any more (:meth:`DetectorState.release`).

        For each (group, metric) not yet ready with at least half of its members warm (and holding
        their buffers), and more of them than at its last attempt (one vectorised count per window,
        Python only where it changed): the members' buffered deviations are whitened exactly as live
        ones are (offset, phi, scale), winsorised, pooled window by window into z_g, and the group's
        variance is the mean of z_g^2 over the buffered windows (floored). Returns the number of
        (group, metric) pairs seeded.
        """
        seeded = self._seed(state, clip) if len(self.ids) and state.shape[0] and not self.ready.all() else 0
        self._release(state)
        return seeded

    def _seed(self, state: DetectorState, clip: float) -> int:
        held = state.warm() & (state.buf_row >= 0)[:, None]  # [S, M] warm, buffer still held
        n_held = np.add.reduceat(held[self.flat].astype(np.int64), self.starts, axis=0)  # [G, M]
        need = np.maximum(2, (self.size + 1) // 2)[:, None]  # half the members (the others join when warm)
        todo = ~self.ready & (n_held >= need) & (n_held != self.seed_tried)
        seeded = 0
        for gi, j in zip(*np.nonzero(todo), strict=True):
            self.seed_tried[gi, j] = n_held[gi, j]
            rows = self.rows[gi]
            w_rows = rows[held[rows, j]]
            e = state.buf[state.buf_row[w_rows], j, :].astype(np.float64) - state.offset[w_rows, j][:, None]
            u = e[:, 1:] - state.phi[w_rows, j][:, None] * e[:, :-1]
            wv = np.clip(u / state.scale[w_rows, j][:, None], -clip, clip)
            obs = ~np.isnan(wv)
            cnt = obs.sum(axis=0)
            ok = cnt >= 2
            if ok.sum() < MIN_SEED:
                continue  # retried once more members are warm
            z = np.where(obs, wv, 0.0).sum(axis=0)[ok] / np.sqrt(cnt[ok])
            self.var[gi, j] = max(float(np.mean(z * z)), VAR_FLOOR)
            self.n[gi, j] = int(ok.sum())
            self.ready[gi, j] = True
            seeded += 1
        return seeded

    def _release(self, state: DetectorState) -> None:
        """Give back the buffer rows of shards whose every stream is warm (or never buffered) and whose
        every group is ready. A group made to re-seed later (``relearn``, a changed topology) seeds from
        the members still holding a buffer, or learns online (``warmup`` windows)."""
        if not (state.buf_row >= 0).any():
            return
        done = (state.warm() | (state.n_warm == 0)).all(axis=1) & (state.buf_row >= 0)
        if len(self.ids) and not self.ready.all():
            seeding = np.repeat(~self.ready.all(axis=1), self.size)
            done[self.flat[seeding]] = False
        if done.any():
            state.release(done)

    def pooled(
        self, w: npt.NDArray[np.float64], clip: float = math.inf
    ) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]:
        """Sum of observed member innovations (winsorised at ``clip``) and the count observed, per group
        and metric."""
        vals = np.clip(w[self.flat], -clip, clip)
        obs = ~np.isnan(vals)
        sums = np.add.reduceat(np.where(obs, vals, 0.0), self.starts, axis=0)
        counts = np.add.reduceat(obs.astype(np.float64), self.starts, axis=0)
        return sums, counts

    def learn_wander(
        self, r: npt.NDArray[np.float64], marg_sd: npt.NDArray[np.float64], window_s: float, learn_below: float
    ) -> None:
        """Learn each group kind's normal between-group spread from the members' peer residuals ``r``
        [S, M] (analysed units). Per group and metric, the slow mean of the squared mean member residual,
        less what the members' own noise explains (``sum marg_sd^2 / n^2``), is the group's squared
        wander; a kind's wander is the median over its groups (those without evidence). Racks whose inlet
        temperature follows the room, PSUs whose load follows their jobs: that much is normal, learnt
        with a half-life of ``WANDER_HALFLIFE_S`` and kept in the checkpoint."""
        if self.var.shape[0] == 0:
            return
        vals = r[self.flat]
        obs = ~np.isnan(vals)
        sums = np.add.reduceat(np.where(obs, vals, 0.0), self.starts, axis=0)
        counts = np.add.reduceat(obs.astype(np.float64), self.starts, axis=0)
        noise = np.add.reduceat(np.where(obs, np.nan_to_num(marg_sd[self.flat]) ** 2, 0.0), self.starts, axis=0)
        with np.errstate(invalid="ignore", divide="ignore"):
            level = np.where(counts >= 2, sums / counts, np.nan)
            noise = np.where(counts >= 2, noise / (counts * counts), np.nan)
        learn = ~np.isnan(level) & (self.log_m < learn_below)
        rate = math.log(2.0) * window_s / WANDER_HALFLIFE_S
        eta = np.where(learn, np.maximum(1.0 / (self.wander_obs + 1.0), rate), 0.0)
        self.level2 = self.level2 + eta * (np.nan_to_num(level) ** 2 - np.nan_to_num(noise) - self.level2)
        self.wander_obs += learn
        g_wander = np.sqrt(np.maximum(self.level2, 0.0))
        for k in range(len(self.kind_names)):
            rows = self.kind_idx == k
            if rows.sum() < 3:
                continue  # too few groups of this kind to say what is normal between them
            known = self.wander_obs[rows] >= MIN_SEED
            with quiet_runtime_warnings():  # metrics with no known group yet
                med = np.nanmedian(np.where(known, g_wander[rows], np.nan), axis=0)
            self.wander[k] = np.where(known.sum(axis=0) >= 3, med, np.nan)

    def update(
        self,
        w: npt.NDArray[np.float64],
        delta_min: npt.NDArray[np.float64],
        v_inflation: float,
        clip: float,
        window: int,
        thr: float,
        learn_below: float,
        per_unit: npt.NDArray[np.float64] | None = None,
        margin: npt.NDArray[np.float64] | None = None,
        threads: int = 1,
    ) -> GroupResult:
        """One window of the pooled detectors. ``per_unit`` [S, M]: each member innovation's response to a
        unit shift of its residual ((1 - phi) / scale); with it, a group's margin also covers its kind's
        learnt wander (``WANDER_K`` x typical level)."""
        g, m = self.var.shape
        if g == 0:
            return GroupResult(np.zeros((0, m), np.bool_), [])
        sums, counts = self.pooled(w, clip)
        with np.errstate(invalid="ignore", divide="ignore"):
            z = np.where(counts >= 2, sums / np.sqrt(counts), np.nan)
        self.ready |= self.n >= self.warmup
        warm = self.ready
        x = np.where(warm, z / np.sqrt(self.var), np.nan)
        # practical significance scales with the group (a shift below delta_min per member is null);
        # the members' offset-estimation errors average out in z_g, so that margin does not
        n_mem = np.maximum(self.size.astype(np.float64), 1.0)[:, None]  # members per group
        dmean = np.add.reduceat(np.nan_to_num(delta_min[self.flat]), self.starts, axis=0) / n_mem
        centre = np.zeros_like(dmean)  # the material / wander margin the pooled bets are centred on
        if margin is not None:
            centre = np.add.reduceat(np.nan_to_num(margin[self.flat]), self.starts, axis=0) / n_mem
        if per_unit is not None:
            pu = np.nan_to_num(per_unit[self.flat])
            mean_pu = np.add.reduceat(pu, self.starts, axis=0) / n_mem
            wander = WANDER_K * np.nan_to_num(self.wander[self.kind_idx]) * mean_pu
            centre = np.where(wander > np.maximum(dmean, centre), wander, centre)
            dmean = np.maximum(dmean, wander)
        root_n = np.sqrt(np.maximum(counts, 1.0))
        dg = (dmean - centre) * root_n + 1.0 / np.sqrt(np.maximum(self.n, 1))
        vg = v_inflation + 1.0 / np.sqrt(np.maximum(self.n, 1)) + dg * dg
        learn = ~np.isnan(z) & (self.log_m < learn_below) & (np.abs(np.nan_to_num(x)) < 4.0)
        # a shared shift c per member moves z by c sqrt(n) and x = z / sqrt(var) by c sqrt(n / var): the
        # material / wander margin the bets are centred on, in x's units
        family_a_update(
            x,
            dg,
            vg,
            self.bets,
            GROUP_CLIP * clip,
            window,
            self.e_state,
            self.run_start,
            self.log_m,
            self.side,
            margin=centre * root_n / np.sqrt(self.var),
            threads=threads,
        )
        if self.halflife > 0:
            # cumulative during the group's warm-up, then the slow exponential follow, as for shards:
            # a fault must not teach the group that its shift is noise
            slow = math.log(2.0) / self.halflife
            eta = np.where(~warm, 1.0 / (self.n + 1.0), slow)
            self.var = np.where(
                learn, np.maximum(self.var + eta * (np.nan_to_num(z) ** 2 - self.var), VAR_FLOOR), self.var
            )
            self.n += learn
        self.last_z = z
        self.last_x = x
        return self.result((self.log_m >= thr) & ~np.isnan(x), thr)

    def live_log_m(self) -> npt.NDArray[np.float64]:
        """Log evidence of the streams observed (and warm) this window, -inf elsewhere: the group part of
        a joint e-d-BH selection."""
        return np.where(np.isnan(self.last_x), -np.inf, self.log_m)

    def result(self, crossing: npt.NDArray[np.bool_], thr: float) -> GroupResult:
        """The groups to report given which (group, metric) streams are selected this window."""
        return GroupResult(crossing, self._select(crossing, thr))

    def _select(self, crossing: npt.NDArray[np.bool_], thr: float) -> list[tuple[int, int]]:
        """Parsimony: a selected group is reported when every immediate sub-group shows evidence in the
        same direction (log evidence >= CHILD_FRACTION x threshold: the shift is spread over the group,
        not confined to one part of it), and no larger such group contains it. Selection itself comes
        from the group's own crossing; the children only decide which level is named."""
        out: list[tuple[int, int]] = []
        side = self.side
        elevated = self.log_m >= CHILD_FRACTION * thr

        def complete(gi: int, j: int) -> bool:
            return all((crossing[c, j] or elevated[c, j]) and side[c, j] == side[gi, j] for c in self.children[gi])

        for gi, j in zip(*np.nonzero(crossing), strict=True):
            if not complete(gi, j):
                continue
            if any(crossing[p, j] and side[p, j] == side[gi, j] and complete(p, j) for p in self.parents[gi]):
                continue  # a larger group explains it
            # promotion: a larger group whose every sub-group shows evidence in the same direction (and
            # that shows some itself) explains the crossing better than the part that crossed first; the
            # crossing is the alarm, the parsimony names the node (a rack fault is the rack, not a host)
            wider = [p for p in self.parents[gi] if elevated[p, j] and side[p, j] == side[gi, j] and complete(p, j)]
            pick = max(wider, key=lambda p: self.rows[p].size) if wider else int(gi)
            if (pick, j) not in out:
                out.append((int(pick), int(j)))
        return out

    def relearn(self, rows: npt.NDArray[np.int64]) -> None:
        """Members re-learn their baselines (an announced event ended): every group holding one of them
        forgets its evidence and variance and re-seeds once half its members are warm again, so
        evidence gathered while the event moved them never outlives it."""
        if self.var.shape[0] == 0:
            return
        hit = np.add.reduceat(np.isin(self.flat, rows).astype(np.int64), self.starts) > 0
        family_a_rearm(self.e_state, hit)
        self.log_m[hit] = 0.0
        self.var[hit] = 1.0
        self.n[hit] = 0
        self.ready[hit] = False
        self.seed_tried[hit] = -1
        self.last_z[hit] = np.nan
        self.last_x[hit] = np.nan

    def rearm_within(self, gi: int, j: int) -> None:
        """Re-arm a group and every group inside it on metric column j: the incident the group's firing
        stood for has closed, and the evidence its sub-groups gathered belonged to it."""
        for c in (gi, *self.descendants[gi]):
            self.rearm(c, j)

    def rearm(self, gi: int, j: int) -> None:
        family_a_rearm(self.e_state, (gi, j))
        self.log_m[gi, j] = 0.0
