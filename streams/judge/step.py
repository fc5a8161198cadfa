"""One windows message on one judge partition: the judge, then the org stage beside it (its
alert engine, stepped by the judge window by window; its budget ledger and its mix watch, fed here).

This is the judge step of tokenpulse, in one place: the worker's
:class:`streams.worker.judging.JudgeWorker` calls :func:`judge_step` for every message of the
windows topic, and the offline replay (:mod:`tokenpulse.replay`) for every closing of its one
ingest partition, so a replayed history and the same events streamed through a worker are
judged, budgeted and alerted alike (tests/integration/test_replay_equivalence.py). What differs
is only what the caller does with the result: the worker sends it (outbox, decisions topic,
metrics), the replay writes it down.

Pure Python, no Faust, no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from alerts import Notification
from alerts.model import BudgetNotification
from streams.budgets.ledger import BudgetEvent, BudgetLedger
from streams.budgets.mix import MixWatch
from streams.ingest.windows import Partial
from streams.judge.core import JudgeCore, JudgeOutput
from streams.org.core import OrgOutput
from streams.org.verdicts import Verdicts

__all__ = ["Step", "judge_step"]


@dataclass
class Step:
    """What one message gave on one judge partition."""

    judged: JudgeOutput  # the judge's own output: spend rows, spike notifications, windows judged
    watermark: float | None  # the judge's watermark after the message (None: not every source heard)
    # each threshold or forecast event of the ledger, with its notification (None: a past
    # period's threshold, recorded as fired and not told)
    budget_events: list[tuple[BudgetEvent, BudgetNotification | None]] = field(default_factory=list)
    budget_skipped: list[str] = field(default_factory=list)  # why the ledger held events back
    decisions: list[dict[str, Any]] = field(default_factory=list)  # over-budget decisions due now

    def verdicts(self, judge: int, seq: int = -1) -> Verdicts:
        """What the message gave the org stage (the windows judged with their signals, the spend
        rows, the watermark, the rebases applied before it), as judge partition ``judge`` would
        send it as its ``seq``-th."""
        return Verdicts(judge, seq, self.judged.windows, self.judged.spend, self.watermark, self.judged.rebased)

    @property
    def notifications(self) -> list[Notification]:
        """The spike notifications, then the budget ones (what the worker sends to the outbox)."""
        return [*self.judged.notifications, *(note for _, note in self.budget_events if note is not None)]


def judge_step(
    judge: JudgeCore,
    ledger: BudgetLedger | None,
    mix: MixWatch | None,
    src: int,
    n_src: int,
    closed_until: int | None,
    partials: Iterable[Partial],
    seq: int = -1,
    carries_watermark: bool = True,
    *,
    wall: float | None = None,
) -> Step:
    """Judge one message (:meth:`JudgeCore.receive`, which steps the org stage's alert engine
    window by window), then feed the spend it judged to the org stage's budget ledger (its
    crossings and decisions at the judge's watermark) and mix watch (:meth:`OrgCore.apply_spend`).

    ``ledger`` None (or holding no budget) and ``mix`` None leave those parts out. ``wall`` is
    when the budget crossings are counted (the worker passes the wall clock; None: the
    watermark, as in the replay, whose clock is event time; see
    :meth:`BudgetLedger.crossings`). The share of the mix watches is not read here: it spans
    every judging partition, which only the worker holds together.
    """
    out = judge.receive(src, n_src, closed_until, partials, seq, carries_watermark)
    raw = judge.watermark()
    wm = None if raw is None else float(raw)
    step = Step(out, wm)
    if (ledger is not None and ledger.budgets) or mix is not None:
        org = OrgOutput()
        judge.org.apply_spend(out.spend, wm, ledger, mix, org, wall=wall)
        step.budget_events, step.budget_skipped, step.decisions = org.budget_events, org.budget_skipped, org.decisions
    return step
