"""The org stage of the worker with ``TOKENPULSE_PLACEMENT=series``: one :class:`OrgCore` and
budget ledger per org partition it holds, fed by the judge partitions' verdicts.

With that placement each series is judged on the partition its own name hashes to
(:func:`streams.common.partitioning.series_partition`), and every judge partition sends what an
org needs -- the signals of its series per window, their spend rows, its watermark -- on
``<p>.verdicts`` to the org's partition (:func:`streams.org.verdicts.for_org_partitions`). The
``org`` agent hands each of those messages to :meth:`OrgWorker.receive`: the org's
:class:`~streams.org.core.OrgCore` merges the judge partitions by watermark and applies each
(judge partition, seq) once, steps the org's one alert engine, and feeds the org's
:class:`~streams.budgets.ledger.BudgetLedger`. Notifications go to the outbox on the org's
partition, decisions to their topic (:meth:`JudgeWorker.notify`, ``send_decision``).

Exactness, as the judge (:mod:`streams.worker.judging`): the org core's state (``org`` table,
``"<p>|<OrgCore key>"``) and the ledger's (``budgets`` table, under the same keys as a judge's
ledger) are written at most once per ``checkpoint_seconds``, and a verdicts message is
acknowledged only once the broker has that checkpoint's writes, in order per partition.

A switch from the org placement: the first time an org partition's stage finds no alert or group
state of its own in the ``org`` table, it adopts those the judge table holds under that partition
(where the org placement kept them), once; they move: written to the ``org`` table with its next
checkpoint, then deleted from the judge table once the broker has them (:meth:`OrgWorker.org_for`).

On-call's answers to the alerts of its orgs are applied here too (the alert part; the detector
part goes to the series' judge partition: :mod:`streams.worker.feedback`). A new normal waits for
the judge's rebase mark (:meth:`OrgCore.await_rebase`): counted by
``org_rebase_marks_total{outcome}`` (``matched``; ``unasked``: no answer waiting for it here;
``expired``: none came within an hour of event time) and ``org_signals_before_rebase_total`` (flagged
windows judged with the old baseline, held back).

Scheduled reports: partition ``p``'s part is sent from here rather than from its judge, at the
org stage's merged watermark (:meth:`OrgWorker.receive`).

The third-party share (policy ``mix.max_third_party_share``): the org stage of the share's org
(the default org's partition) feeds its :class:`~streams.budgets.mix.MixWatch` with the spend
rows of every judge partition, and reads the crossings at its merged watermark
(:meth:`JudgeWorker.mix_due`); the watch is checkpointed with the org stage.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import orjson

from alerts import AlertEngine, AlertPolicy
from streams.budgets.ledger import BudgetLedger, budgets_for_partition
from streams.budgets.mix import MixWatch
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.common.partitioning import judging_partitions
from streams.judge.core import new_series_settings
from streams.org.core import OrgCore
from streams.org.newseries import NewSeriesRule
from streams.org.verdicts import Verdicts
from streams.worker.judging import JudgeWorker, count_gated
from streams.worker.tables import AckChain, Table, persist, restore_items, unpack, written

log = logging.getLogger("tokenpulse.org")

__all__ = ["OrgWorker"]

_ALERT_KINDS = ("alert|", "group|")  # the engine's records, in the judge table with the org placement


class OrgWorker:
    """The org partitions this worker holds (the verdicts topic's, co-assigned with the windows
    topic's), each verdicts message applied, and their checkpoints.

    ``judging`` is the worker's judge side: its ``ledgers`` dict is where the org stage keeps
    its ledgers (what ``/api/budgets`` and a policy reload read), and its ``notify`` and
    ``send_decision`` send what the org stage gives.
    """

    def __init__(self, cfg: StreamConfig, metrics: Metrics, table: Table, judging: JudgeWorker, *,
                 clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.metrics = metrics
        self.table = table
        self.judging = judging
        self.clock = clock
        self.n = cfg.usage_partitions
        self.orgs: dict[int, OrgCore] = {}
        self.ack: Callable[[Any], Awaitable[Any]] | None = None
        self.held: dict[int, list[Any]] = defaultdict(list)
        self.last: dict[int, float] = defaultdict(float)
        self.acks = AckChain("org", log)  # the judge's rules (JudgeWorker.checkpoint)
        # called with each org stage made (the app installs on-call's snooze silences with it)
        self.on_org: Callable[[OrgCore], None] | None = None
        # org partition -> judge table records adopted (OrgCore.adopt), deleted there once the
        # org table's copy is on the broker (:meth:`checkpoint`)
        self.moving: dict[int, list[str]] = {}

    @property
    def ledgers(self) -> dict[int, BudgetLedger]:
        return self.judging.ledgers

    def org_for(self, p: int) -> OrgCore:
        """The org stage of partition ``p``, restored with its ledger the first time."""
        o = self.orgs.get(p)
        if o is None:
            live = self.judging.live
            engine = AlertEngine(AlertPolicy(**live.alert_policy), dashboard_url=self.cfg.dashboard_url)
            rule = new_series_settings(self.cfg)
            o = OrgCore(p, self.cfg.window_seconds, engine, n_judges=self.n,
                        new_series=None if rule is None else NewSeriesRule(rule),
                        team_scale_minutes=self.cfg.team_scale_minutes,
                        team_corroboration_p=self.cfg.team_corroboration_p,
                        team_corroboration_strict_p=self.cfg.team_corroboration_strict_p,
                        team_week_ratio=self.cfg.team_week_ratio,
                        team_week_shift_h=self.cfg.team_week_shift_h,
                        shift_week_ratio=self.cfg.shift_week_ratio)
            own = list(restore_items(self.table, p))
            o.restore(own)
            if not any(v is not None and k.startswith(_ALERT_KINDS) for k, v in own):
                self._adopt(p, o)
            led = BudgetLedger(self.cfg.window_seconds, budgets_for_partition(live.budgets, p, self.n))
            led.restore(restore_items(self.judging.tables.budgets, p))
            self.ledgers[p] = led
            if self.on_org is not None:
                self.on_org(o)
            self.orgs[p] = o
        return o

    def _adopt(self, p: int, o: OrgCore) -> None:
        """A switch from the org placement: take the alert and group states the judge table
        holds under partition ``p`` (the org placement's engine beside the judge wrote them), so
        that an incident open at the pager resolves once, with its key, instead of never."""
        # by key first: the judge table's other records of the partition are the detectors'
        # states, kept packed (tables.pack), not worth unpacking to be skipped
        heads = tuple(f"{p}|{kind}" for kind in _ALERT_KINDS)
        found = [(k[len(f"{p}|"):], unpack(v) if isinstance(v, bytes) else v)
                 for k, v in list(self.judging.tables.judge.data.items()) if k.startswith(heads) and v is not None]
        took = o.adopt(found)
        if took:
            self.moving[p] = took
            log.info("org partition %d: adopted %d alert and group states of the judge table (a switch from the org "
                     "placement)", p, len(took))

    async def _finish_move(self, p: int, keys: list[str], writes: list[Any], generation: int) -> None:
        """Delete the adopted records from the judge table once the org table's ``writes`` of
        them are on the broker (a crash before leaves both, and the org table's copy is read);
        the judge beside forgets them too (under this placement it never steps them, and a
        series it tracks is never let go: :meth:`JudgeCore._drop_foreign`)."""
        failed = await written(writes)
        if generation != self.acks.generation:
            return  # revoked meanwhile: the partition's next owner reads the org table (or adopts again)
        o = self.orgs.get(p)
        if failed and o is not None:  # written again with the next checkpoint, deleted after it
            o.alerts_changed([k[6:] for k in keys if k.startswith("alert|")],
                             [k[6:] for k in keys if k.startswith("group|")])
            self.moving[p] = keys
            return
        judge_t = self.judging.tables.judge
        j = self.judging.judges.get(p)
        for key in keys:
            persist(judge_t, p, f"{p}|{key}", None)
            if j is not None:
                kind, _, rest = key.partition("|")
                (j.engine.load_state if kind == "alert" else j.engine.load_group_state)(rest, None)

    def mix_for(self, p: int) -> MixWatch | None:
        """The third-party share's watch of org partition ``p`` (:class:`~streams.budgets.mix.MixWatch`,
        in the judge side's ``mixes`` where a reload finds it): on the partitions that hold the
        share's org (:func:`~streams.common.partitioning.judging_partitions`: the default org's),
        with the mix alert on. None elsewhere: no other org's rows count (:func:`mix_rows`)."""
        if not self.judging.mix_on or p not in judging_partitions(self.n):
            return None
        return self.judging.mix_for(p)

    def reconfigure(self, new: StreamConfig, applied: Iterable[str]) -> None:
        """A policy reload (:meth:`WorkerState.apply_policy`, after the judges and ledgers took
        it): the org stages' alert engines take the new alert policy and silences, and the
        judges send a series' windows for the new ``resolve_after_windows`` after its last
        flagged one (:attr:`JudgeCore.local_tracking`). Org stages made later read it from
        ``judging.live``."""
        if not {"alerts", "silences"} & set(applied):
            return
        policy = AlertPolicy(**new.alert_policy)
        for o in list(self.orgs.values()):
            o.engine.policy = policy
        for j in list(self.judging.judges.values()):
            j.local_tracking = policy.resolve_after_windows

    def revoke(self, partitions: Iterable[int]) -> None:
        """As :meth:`JudgeWorker.revoke`: forget the partitions' state and held messages."""
        revoked = sorted(set(partitions))
        self.acks.revoke()
        for p in revoked:
            self.orgs.pop(p, None)
            self.moving.pop(p, None)
            self.ledgers.pop(p, None)
            self.held.pop(p, None)
            self.last.pop(p, None)
        log.info("org partitions revoked: %s", revoked)

    def assigned(self, partitions: Iterable[int]) -> None:
        """A new assignment: drop this worker's own copies of other partitions' org state from
        the ``org`` table's local data, as :meth:`JudgeWorker.assigned` does for its tables."""
        mine = set(partitions)
        data = self.table.data
        for k in list(data):
            head = k.partition("|")[0]
            if head.isdigit() and int(head) not in mine:
                data.pop(k, None)

    async def receive(self, p: int, body: dict[str, Any], message: Any = None) -> None:
        """Apply one verdicts message on org partition ``p`` and send what it gives; ``message``
        is acknowledged with the checkpoint that covers it."""
        generation = self.acks.generation
        o = self.org_for(p)
        mix = self.mix_for(p)
        out = o.receive(Verdicts.from_wire(body), self.ledgers.get(p), mix, wall=self.clock())
        m = self.metrics
        m.inc("org_verdicts_total", labels={"judge": str(body.get("judge")), "duplicate": str(out.duplicate).lower()})
        for why in (*out.skipped, *out.budget_skipped):
            m.inc("alerts_skipped_total", labels={"reason": why})
        for bev, _ in out.budget_events:
            m.inc("budget_events_total", labels={"kind": bev.kind + ("_past" if bev.past else "")})
        if out.before_rebase:
            m.inc("org_signals_before_rebase_total", out.before_rebase)
        count_gated(m, out)
        for outcome, n in (("matched", out.marks), ("unasked", out.marks_unasked), ("expired", len(out.expired))):
            if n:
                m.inc("org_rebase_marks_total", n, labels={"outcome": outcome})
        for dec in out.decisions:
            await self.judging.send_decision(dec["budget"].encode(), orjson.dumps(dec))
            m.inc("budget_decisions_total", labels={"decision": dec["decision"]})
        notes = [(p, n) for n in [*out.notifications, *(n for _, n in out.budget_events if n is not None)]]
        wm = o.watermark()
        if mix is not None and mix.touched and wm is not None:
            # the share at the merged watermark: every judge partition's spend before it is counted
            notes += self.judging.mix_due(wm)
        for q, note in notes:
            await self.judging.notify(q, note)
        reporting = self.judging.reporting
        if reporting is not None and reporting.specs:
            # Partition p's part of a report (its judge's series, its ledger's budgets) goes out
            # once the org stage's merged watermark is past the due time: every judge partition's
            # spend before it is in the ledger then. At the judge's own watermark (the org
            # placement's moment) the ledger may not have the other judges' last windows yet.
            # Its judge's spend must be there too: not yet after a restart that restored the org
            # stage ahead of the judge (each has its own checkpoint).
            j = self.judging.judges.get(p)
            if wm is not None and j is not None and j.done_until is not None:
                await reporting.after_judge(p, min(wm, float(j.done_until)))
        if generation != self.acks.generation:
            return  # revoked meanwhile: read again after the rebalance
        self.held[p].append(message)
        now = self.clock()
        if now - self.last[p] >= self.cfg.checkpoint_seconds:
            await self.checkpoint(p, now)

    async def tick(self) -> None:
        now = self.clock()
        for p in list(self.held):
            if self.held[p] and now - self.last[p] >= self.cfg.checkpoint_seconds:
                await self.checkpoint(p, now)

    async def checkpoint(self, p: int, now: float) -> None:
        """Persist partition ``p``'s ledger and org core, then acknowledge the messages they
        cover once the broker has the writes and the previous checkpoint's messages were
        acknowledged (the judge's rules: :meth:`JudgeWorker.checkpoint`)."""
        generation = self.acks.generation
        to_ack = self.held.pop(p, [])
        self.last[p] = now
        writes: list[Any] = []
        led = self.ledgers.get(p)
        if led is not None:
            for key, value in led.checkpoint().items():
                writes.append(persist(self.judging.tables.budgets, p, f"{p}|{key}", value))
        mix = self.judging.mixes.get(p)  # apart, only the org stage feeds it (JudgeWorker._write skips it)
        if mix is not None:
            for key, value in mix.checkpoint().items():
                writes.append(persist(self.judging.tables.budgets, p, f"{p}|{key}", value))
        o = self.orgs.get(p)
        if o is not None:
            for key, value in o.checkpoint().items():
                writes.append(persist(self.table, p, f"{p}|{key}", value))
        moved = self.moving.pop(p, None)
        if moved:
            await self._finish_move(p, moved, writes, generation)
        await self.acks.after(p, writes, to_ack, generation, self.ack)
