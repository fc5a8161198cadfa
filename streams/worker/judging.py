"""The judge side of the worker: one judge core, budget ledger and mix watch per judge partition
it holds, the notifications they give, and their checkpoint.

What the Faust app calls (:mod:`streams.worker.app`): the ``judge`` agent :meth:`JudgeWorker.receive`
for each windows message, the ``judge_tick`` timer :meth:`JudgeWorker.tick`, a rebalance
:meth:`JudgeWorker.revoke`. Each message is one :func:`streams.judge.step.judge_step` -- the step
the offline replay takes too -- and what it gives goes out here: spike, budget and mix
notifications to the alerts table and the outbox, over-budget decisions to the decisions topic,
counts to the metrics, due reports to :class:`streams.reports.reporting.Reporting`.

Budgets: each partition's :class:`~streams.budgets.ledger.BudgetLedger` holds the budgets whose
series it judges (:func:`~streams.budgets.ledger.budgets_for_partition`); its state is in the
``budgets`` table. Budgets with ``on_exhausted`` get their block/downgrade/allow decisions on
the decisions topic, sent like the outbox records: before the checkpoint that records them.

Model mix alert (policy ``mix.max_third_party_share``): each partition's
:class:`~streams.budgets.mix.MixWatch` counts the team×model spend it judged (in the ``budgets``
table too, under ``mix*`` keys); the share is read across the watches of the partitions that
judge series (:func:`~streams.common.partitioning.judging_partitions`: the org's), by the
worker that holds them. Its notification goes to the outbox on the team's owner partition
(:func:`~streams.budgets.mix.mix_owner`). With ``TOKENPULSE_PLACEMENT=series`` the org stage
feeds the watch instead, from every judge partition's verdicts (:mod:`streams.worker.organizing`).

Exactness: state is written at most once per ``checkpoint_seconds`` per partition (a backfill
judges many windows per second, but each detector state is written once), and a message is
acknowledged only once the state it changed is written, so a crash replays the unacknowledged
messages onto the last checkpoint, which gives the same state again; redelivered messages are
recognised by their seq.

Plain Python: the tables, sends and acknowledgement are handed in, so the tests drive it with
plain objects (tests/streams/worker/test_judging.py).
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from alerts import AlertPolicy, Notification, dashboard_link
from streams.budgets.ledger import BudgetLedger, budgets_for_partition
from streams.budgets.mix import MixWatch, mix_crossings, mix_notification, mix_owner
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.common.partitioning import judging_partitions, placed_partition
from streams.ingest.windows import Partial
from streams.judge.core import JudgeCore, judge_factory, new_series_settings
from streams.judge.step import judge_step
from streams.org.verdicts import for_org_partitions, wire_parts
from streams.reports.reporting import Reporting
from streams.reports.retention import SpendRollup
from streams.worker.tables import AckChain, Tables, pack_local, persist, persist_spend, restore_items

log = logging.getLogger("tokenpulse.alerts")

__all__ = ["JudgeWorker"]

# (key, value, partition): a send to the outbox
SendTo = Callable[[bytes, bytes, int], Awaitable[Any]]
# (key, value): a send to the decisions topic (partitioned by key)
SendKeyed = Callable[[bytes, bytes], Awaitable[Any]]


class JudgeWorker:
    """The judge partitions this worker holds, each judged message sent on, and their checkpoints.

    ``live`` is the config in force: a policy reload replaces it (budgets, alert policy, mix
    lines; :mod:`streams.worker.reload`), and judges and ledgers made later (a rebalance) are
    built from it. ``owned()`` says which windows partitions this worker holds (``None``: not
    known yet); ``ack`` acknowledges a message (the stream's, set by the agent).
    """

    def __init__(
        self,
        cfg: StreamConfig,
        metrics: Metrics,
        tables: Tables,
        *,
        send_outbox: SendTo,
        send_decision: SendKeyed,
        send_verdicts: SendTo | None = None,
        owned: Callable[[], set[int] | None] = lambda: None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.live = cfg
        self.metrics = metrics
        self.tables = tables
        self.send_outbox = send_outbox
        self.send_decision = send_decision
        # TOKENPULSE_PLACEMENT=series: each series judged on the partition its name hashes to; the
        # org stage (alert engine, budgets) runs elsewhere (streams.worker.organizing), fed on the
        # verdicts topic through ``send_verdicts``. "org": the org stage runs beside each judge.
        self.placement = cfg.placement
        self.apart = cfg.placement == "series"
        if self.apart and send_verdicts is None:
            raise ValueError("placement 'series' needs a verdicts topic to send to")
        self.send_verdicts = send_verdicts
        # the verdicts sends of each partition since its last checkpoint: it acknowledges its
        # messages only once the broker has them too
        self.verdicts_sent: dict[int, list[Any]] = defaultdict(list)
        self.owned = owned
        self.clock = clock
        self.n = cfg.usage_partitions
        self.judges: dict[int, JudgeCore] = {}
        # one budget ledger per judge partition, holding the budgets whose series it judges
        self.ledgers: dict[int, BudgetLedger] = {}
        # The mix alert's per-partition counts and fired marks (absent: the alert is off; a
        # reload changes its lines only, never whether it is on).
        self.mixes: dict[int, MixWatch] = {}
        # each partition's spend roll-up: windows into hours into days (streams.reports.retention)
        self.rollups: dict[int, SpendRollup] = {}
        self.mix_on = cfg.mix_alert is not None
        self.reporting: Reporting | None = None  # daily/weekly reports (set by the app)
        # called with each judge made (the app installs on-call's snooze silences with it)
        self.on_judge: Callable[[JudgeCore], None] | None = None
        self.ack: Callable[[Any], Awaitable[Any]] | None = None
        self.held: dict[int, list[Any]] = defaultdict(list)  # messages judged, not acknowledged yet
        # per judge partition, the window records a revoked judge had changed and not written
        # (JudgeCore.unwritten_spend): its books outlive it in the spend table's local data, so
        # this worker's next judge of the partition writes them (see revoke)
        self.unwritten: dict[int, set[tuple[str, int]]] = {}
        self.last: dict[int, float] = defaultdict(float)  # when each partition was last checkpointed
        self.acks = AckChain("judge", log)  # acknowledgements in order, after the broker has the state
        self._vseq = 0  # the verdicts seq when a message has no offset (tests' plain messages)
        self._new_judge = judge_factory(
            cfg.window_seconds, cfg.detector_name, cfg.detector_params, cfg.alert_policy,
            dashboard_url=cfg.dashboard_url, overrides=cfg.detector_overrides,
            raise_half_life_s=cfg.not_anomaly_half_life_days * 86400, state_every=cfg.judge_state_every,
            new_series=new_series_settings(cfg), team_scale_minutes=cfg.team_scale_minutes,
            park=cfg.judge_park,
            team_corroboration_p=cfg.team_corroboration_p,
            team_corroboration_strict_p=cfg.team_corroboration_strict_p,
            team_week_ratio=cfg.team_week_ratio,
            team_week_shift_h=cfg.team_week_shift_h,
            shift_week_ratio=cfg.shift_week_ratio,
        )

    # -- the partitions ------------------------------------------------------------------
    def judge_for(self, q: int) -> JudgeCore:
        """The judge of partition ``q``, restored from the tables with its ledger and mix watch
        the first time it is asked for."""
        j = self.judges.get(q)
        if j is None:
            n, live = self.n, self.live
            j = self._new_judge(q)
            placement = self.placement
            owns = j.owns = lambda series, q=q: placed_partition(series, n, placement) == q
            if live is not self.cfg:  # the alert policy of the last reload
                j.engine.policy = AlertPolicy(**live.alert_policy)
            if self.apart:  # the org stage is elsewhere: see JudgeCore.local_tracking
                j.local_tracking = j.engine.policy.resolve_after_windows
            spend = self.tables.spend.data
            # the recovered detector states packed, as _write keeps them; a parked series' judge
            # holds those very bytes (restore_items raw)
            pack_local(self.tables.judge, f"{q}|det|")
            j.restore(restore_items(self.tables.judge, q, raw=True),
                      ((k, v) for k, v in list(spend.items()) if owns(k.rpartition("|")[0])))
            # the records recovery put in the table are held by the judge's books now
            for key, book in j.spend.items():
                spend[key] = book
            for key in j.spend_loaded:
                spend.pop(key, None)
            # what a judge revoked here had added to those books and not written (revoke)
            unwritten = self.unwritten.pop(q, None)
            if unwritten:
                n_again = j.rewrite_spend(unwritten)
                log.info("judge partition %d: %d spend records of the revoked judge to be written", q, n_again)
            # before the first message is applied: a copy of a window record that a crash left
            # behind its roll-up is dropped now, before a late event could add to it
            roll = self.rollups[q] = SpendRollup(self.cfg.window_seconds, self.cfg.spend_hourly_after,
                                                 self.cfg.spend_daily_after,
                                                 user_hourly_after=self.cfg.spend_user_hourly_after,
                                                 user_daily_after=self.cfg.spend_user_daily_after)
            roll.restored(j.spend)
            persist_spend(self.tables.spend, q, j.spend, roll.roll(j.spend, j.done_until, force=True))
            if not self.apart:  # apart, the org stage holds the ledger (streams.worker.organizing)
                led = BudgetLedger(self.cfg.window_seconds, budgets_for_partition(live.budgets, q, n))
                # before the first apply: the fired thresholds and counted seqs come back with it
                led.restore(restore_items(self.tables.budgets, q))
                self.ledgers[q] = led
                if self.mix_on:
                    self.mix_for(q)
            if self.on_judge is not None:
                self.on_judge(j)
            self.judges[q] = j
        return j

    def mix_for(self, p: int) -> MixWatch:
        m = self.mixes.get(p)
        if m is None:
            m = self.mixes[p] = MixWatch(self.live.mix_alert)
            m.restore(restore_items(self.tables.budgets, p))
        return m

    def revoke(self, partitions: Iterable[int]) -> None:
        """The windows partitions revoked by a rebalance: forget their state and the messages
        held (not acknowledged). Whoever is assigned a partition next -- another worker, or
        this one again (Faust's eager rebalance revokes every partition, also those it gives
        back) -- restores its state from the tables and is given every message after the last
        committed offset again; redelivered messages are recognised by their seq.

        Nothing is checkpointed here, unlike the hot path's revoke: Faust has already
        forgotten its acknowledgements of these partitions by now, so an acknowledgement sent
        from here would be one it can mix up with the redelivered messages'.

        One thing outlives the judge: each series' spend book is the very object the spend
        table's local data holds (:meth:`judge_for`), so the windows it judged since its last
        checkpoint stay added there. A partition given back to this worker (eager rebalancing
        revokes it all the same) is not read from its changelog again: its next judge restores
        those books as they are, and the redelivered messages add nothing to them (their seqs are
        there), so no checkpoint would write those windows, and a later owner restoring from the
        changelog (after a SIGKILL) would lack them. Their keys are kept (:attr:`unwritten`) for
        the next judge's first checkpoint; a partition that went elsewhere drops them with its
        local data (:meth:`assigned`)."""
        revoked = sorted(set(partitions))
        self.acks.revoke()
        dropped = 0
        for q in revoked:
            j = self.judges.pop(q, None)
            if j is not None:
                unwritten = j.unwritten_spend()
                if unwritten:
                    self.unwritten.setdefault(q, set()).update(unwritten)
            self.verdicts_sent.pop(q, None)
            if not self.apart:  # apart, the org stage's (streams.worker.organizing)
                self.ledgers.pop(q, None)
            self.mixes.pop(q, None)
            self.rollups.pop(q, None)
            dropped += len(self.held.pop(q, []))
            self.last.pop(q, None)
            if self.reporting is not None:
                self.reporting.revoke(q)
        log.info("judge partitions revoked: %s (%d messages not acknowledged, to be read again)", revoked, dropped)

    def assigned(self, partitions: Iterable[int]) -> None:
        """The windows partitions of a new assignment: drop this worker's copies of the others'
        state from the tables' local data.

        Faust's in-memory store forgets what it recovered from a changelog when the partition
        goes, but not what this worker wrote itself (:func:`persist` writes the table's data
        directly). Left there, a partition that moved away keeps its old spend in this
        worker's ``/api/spend`` (counted twice across the workers) and its old judge and
        budget state beside the new owner's. The changelogs are untouched: they hold the
        partition's state for whoever owns it."""
        mine = set(partitions)
        log.info("judge partitions assigned: %s", sorted(mine))
        n = self.n
        t = self.tables
        def theirs(key: str) -> bool:  # "<q>|...": the judge's and the ledgers' keys
            head = key.partition("|")[0]
            return head.isdigit() and int(head) not in mine

        for table in (t.judge, t.budgets):
            for k in [k for k in list(table.data) if theirs(k)]:
                table.data.pop(k, None)
        for q in [q for q in self.unwritten if q not in mine]:  # their books go below
            del self.unwritten[q]
        # spend: "<series>|<window>", on the series' judge partition
        placement = self.placement
        for k in [k for k in list(t.spend.data) if placed_partition(k.rpartition("|")[0], n, placement) not in mine]:
            t.spend.data.pop(k, None)

    # -- one message -----------------------------------------------------------------------
    async def receive(self, q: int, body: dict[str, Any], message: Any = None) -> None:
        """Judge one windows message of partition ``q`` and send what it gives; ``message`` is
        acknowledged with the checkpoint that covers it."""
        generation = self.acks.generation
        j = self.judge_for(q)
        self.rollups[q].seen(int(body["src"]), int(body.get("seq", -1)))
        metrics = self.metrics
        apart = self.apart
        step = judge_step(
            j, None if apart else self.ledgers[q], self.mixes[q] if self.mix_on and not apart else None,
            int(body["src"]), int(body["n_src"]), body["closed_until"],
            [Partial.from_wire(r) for r in body["partials"]],
            int(body.get("seq", -1)), bool(body.get("wm", True)),
            wall=self.clock(),
        )
        out, wm = step.judged, step.watermark
        if apart and self.send_verdicts is not None:
            # the seq the org stage applies each verdicts message once by: the windows
            # message's offset (a replay after a crash reads the same messages at the same offsets)
            seq = _offset(message, self._vseq)
            self._vseq = seq + 1
            for p, v in for_org_partitions(step.verdicts(q, seq), self.n).items():
                for raw in wire_parts(v, orjson.dumps):  # a backlog's verdicts in parts under 1 MB
                    self.verdicts_sent[q].append(await self.send_verdicts(str(q).encode(), raw, p))
        metrics.inc("windows_judged_total", out.windows_judged)
        source = {"source": str(body["src"])}
        metrics.inc("judge_partials_total", len(body["partials"]), labels=source)
        if out.late_partials:
            metrics.inc("judge_late_partials_total", out.late_partials, labels=source)
        for why in out.skipped:
            metrics.inc("alerts_skipped_total", labels={"reason": why})
        count_gated(metrics, out)
        for bev, _ in step.budget_events:
            metrics.inc("budget_events_total", labels={"kind": bev.kind + ("_past" if bev.past else "")})
        for why in step.budget_skipped:
            metrics.inc("alerts_skipped_total", labels={"reason": why})
        for dec in step.decisions:
            await self.send_decision(dec["budget"].encode(), orjson.dumps(dec))
            metrics.inc("budget_decisions_total", labels={"decision": dec["decision"]})
        notes = [(q, note) for note in step.notifications]
        if self.mix_on and not apart and wm is not None and any(m.touched for m in self.mixes.values()):
            notes += self.mix_due(wm)
        for p, note in notes:
            await self.notify(p, note)
        if self.reporting is not None and self.reporting.specs and not apart:
            # apart, the org stage sends the part once its ledger has the period (OrgWorker.receive)
            await self.reporting.after_judge(q, wm)
        if generation != self.acks.generation:
            # revoked while this message was judged: the judge it changed is gone, and the
            # message comes again after the rebalance
            return
        self.held[q].append(message)
        now = self.clock()
        if now - self.last[q] >= self.cfg.checkpoint_seconds:
            await self.checkpoint(q, now)

    async def notify(self, p: int, note: Notification) -> None:
        """Record ``note`` as its alert's latest state and write it to the outbox on partition
        ``p``. Delivery is idempotent per (key, seq): a replay after a crash re-sends nothing."""
        if note.dashboard_url is None:  # budgets, the mix share: the engine links its alerts
            note.dashboard_url = dashboard_link(self.cfg.dashboard_url, note.series)
        record = note.to_dict()
        persist(self.tables.alerts, p, note.key, record)
        self.metrics.inc("alerts_raised_total", labels={"action": note.action, "reason": note.reason})
        if note.action == "update":
            log.debug("%s", alert_line(note))
        else:
            log.info("%s", alert_line(note))  # the console's one line per alert raised or resolved
        await self.send_outbox(note.key.encode(), orjson.dumps(record), p)

    def mix_due(self, wm: float) -> list[tuple[int, Notification]]:
        """The mix notifications due at ``wm``, with the partition each goes out on."""
        owned = self.owned()
        needed = judging_partitions(self.n)
        if owned is None or not needed <= owned:
            return []  # another worker judges the series; it evaluates the share
        watches = {p: self.mix_for(p) for p in needed}
        out: list[tuple[int, Notification]] = []
        for ev in mix_crossings(watches, self.n, wm, wall=self.clock()):
            self.metrics.inc("mix_alerts_total", labels={"state": "past" if ev.past else "notified"})
            if not ev.past:
                out.append((mix_owner(ev.team, self.n), mix_notification(ev, self.live.mix_alert, wm)))
        return out

    # -- checkpoints -----------------------------------------------------------------------
    async def tick(self) -> None:
        """The timer: checkpoint every partition with messages held for ``checkpoint_seconds``."""
        now = self.clock()
        for q in list(self.held):
            if self.held[q] and now - self.last[q] >= self.cfg.checkpoint_seconds:
                await self.checkpoint(q, now)

    async def checkpoint(self, q: int, now: float) -> None:
        """Persist what changed on partition ``q``, then acknowledge the messages it covers.

        The ledger first: if a crash lands between the two, the judge re-emits spend the
        ledger already holds (its seq marks skip it), rather than the other way round.

        The messages are acknowledged only once the broker has every changelog record written
        here (Faust buffers them): Faust commits what was acknowledged within a second, and a
        crash between that commit and the records reaching the broker would lose the state of
        messages never to be read again. Not at all when a rebalance revoked the partitions
        meanwhile (:meth:`revoke`), nor when a record was not written.

        And in order: a checkpoint's messages are acknowledged only after the previous
        checkpoint's of the partition, and not at all if those were not. Faust commits the
        first run of acknowledged offsets, and before the partition's first commit it does not
        look for a gap in front of that run (``Consumer._new_offset``): a later checkpoint
        acknowledged first (its writes done sooner, or none to wait for) would have the offsets
        of messages whose state is not on the broker yet committed past."""
        generation = self.acks.generation
        to_ack = self.held.pop(q, [])
        self.last[q] = now
        # the agent goes on judging meanwhile (a backlog's checkpoint can be hundreds of
        # records, one request each on Tansu); the acknowledgement follows the broker's
        await self.acks.after(q, self._write(q), to_ack, generation, self.ack)

    def _write(self, q: int) -> list[Any]:
        """Persist what changed on partition ``q``: the ledger, the mix watches, the judge's
        state and spend (in that order). Returns the changelog writes, for :func:`written`."""
        j = self.judges.get(q)
        t = self.tables
        writes: list[Any] = self.verdicts_sent.pop(q, [])
        led = None if self.apart else self.ledgers.get(q)
        if led is not None:
            for key, value in led.checkpoint().items():
                writes.append(persist(t.budgets, q, f"{q}|{key}", value))
        # every partition's watch: a crossing marks the owner's, which may not be q (apart, the
        # org stage feeds and writes the watches: streams.worker.organizing)
        for p, watch in [] if self.apart else list(self.mixes.items()):
            for key, value in watch.checkpoint().items():
                writes.append(persist(t.budgets, p, f"{p}|{key}", value))
        if j is not None:
            changes = j.checkpoint()
            parked = j.packed_out
            for key, value in changes.items():
                # a series' state (detector, mix) is read back by a restore only: kept as bytes,
                # a parked series' as the very bytes its judge holds
                writes.append(persist(t.judge, q, f"{q}|{key}", value,
                                      packed=parked.get(key) or key.startswith("det|")))
            writes += persist_spend(t.spend, q, j.spend, j.spend_changes())
            roll = self.rollups.get(q)
            if roll is not None:  # at most one pass per hour of event time
                writes += persist_spend(t.spend, q, j.spend, roll.roll(j.spend, j.done_until))
        return writes


def _offset(message: Any, fallback: int) -> int:
    """The offset of a Faust event's message (``fallback`` for anything else)."""
    off = getattr(getattr(message, "message", None), "offset", None)
    return int(off) if isinstance(off, int) else fallback


def alert_line(note: Notification) -> str:
    """The console's line for a notification: raised or resolved, its severity, what and how
    much (money in USD; a budget in its unit), and its key.

    >>> from alerts.model import SpikeNotification
    >>> n = SpikeNotification(key="cost_spike:team=ads", seq=1, action="trigger", severity="critical", reason="first",
    ...     series="team=ads", labels={"team": "ads"}, title="Cost spike: team=ads", started_at=0, fired_at=60,
    ...     observed_usd=12.5, expected_usd=1.25, excess_usd=11.25, excess_pct=900.0, window_start=0, window_end=60)
    >>> alert_line(n)
    'alert raised    [critical] Cost spike: team=ads: $12.50 in the window, expected $1.25 (cost_spike:team=ads)'
    >>> n.action = "resolve"
    >>> alert_line(n)
    'alert resolved  [critical] Cost spike: team=ads (cost_spike:team=ads)'
    """
    state = {"trigger": "raised", "resolve": "resolved"}.get(note.action, note.action)
    what = note.title
    observed, expected = getattr(note, "observed_usd", None), getattr(note, "expected_usd", None)
    if note.action != "resolve" and observed is not None and expected is not None:
        what += f": ${observed:,.2f} in the window, expected ${expected:,.2f}"
    return f"alert {state:<9} [{note.severity}] {what} ({note.key})"


def count_gated(metrics: Metrics, out: Any) -> None:
    """The flagged windows an org stage (beside the judge, or apart: its :class:`OrgOutput`)
    turned normal: by the team-scale gate, the team corroboration and the week-ago check of a
    sustained shift."""
    if out.team_scaled:
        metrics.inc("team_scale_gated_total", out.team_scaled)
    if out.uncorroborated:
        metrics.inc("team_uncorroborated_total", out.uncorroborated)
    if out.shift_unconfirmed:
        metrics.inc("shift_unconfirmed_total", out.shift_unconfirmed)
