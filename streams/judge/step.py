"""One windows message on one judge partition: the judge, its budget ledger and its mix watch,
stepped together.

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
    """Judge one message (:meth:`JudgeCore.receive`), then feed the spend it judged to the
    partition's budget ledger (its crossings and decisions at the judge's watermark) and to its
    mix watch.

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
    if ledger is not None and ledger.budgets:
        step.budget_events = ledger.judge_step(out.spend, wm, wall=wall)
        if wm is not None:
            step.budget_skipped = list(ledger.skipped)
            # before the checkpoint, like the outbox: a replay of the message decides the same
            step.decisions = ledger.decisions(wm)
    if mix is not None:
        for series, w, sums, seqs in out.spend:
            mix.apply_judge_spend(series, w, sums, seqs)
    return step
