"""Work in progress (issue 15 item 3, step 2): each series judged on its own partition, the org
stage elsewhere. The judges then cannot ask the org stage which alerts it tracks; they keep
sending a series' windows for ``resolve_after_windows`` after its last flagged one
(:attr:`JudgeCore.local_tracking`). Held here to today's placement."""

from __future__ import annotations

import random
from typing import Any

from alerts import AlertEngine, AlertPolicy
from streams.budgets.ledger import BudgetLedger
from streams.judge.core import JudgeCore
from streams.judge.step import judge_step
from streams.org.verdicts import Verdicts
from tests.streams.org import test_org_core as base


def judges_apart(msgs: list[base.Msg], home: dict[str, int], policy: dict[str, Any]) -> dict[int, list[Verdicts]]:
    judges: dict[int, JudgeCore] = {}
    for q in (0, 1):
        j = base.judge(q)
        j.engine = AlertEngine(AlertPolicy(**policy))
        j.local_tracking = int(policy["resolve_after_windows"])
        judges[q] = j
    out: dict[int, list[Verdicts]] = {0: [], 1: []}
    for src, closed, seq, parts in msgs:
        for q, j in judges.items():
            step = judge_step(j, None, None, src, 2, closed, [p for p in base.copies(parts) if home[p.series] == q], seq)
            assert not step.judged.notifications  # the org stage is not beside it
            out[q].append(step.verdicts(q, len(out[q])))
    return out


def one(msgs: list[base.Msg], policy: dict[str, Any]) -> list[dict[str, Any]]:
    j = base.judge()
    j.engine = AlertEngine(AlertPolicy(**policy))
    notes = []
    for src, closed, seq, parts in msgs:
        notes += [n.to_dict() for n in judge_step(j, None, None, src, 2, closed, base.copies(parts), seq).judged.notifications]
    return notes


def without_contributors(notes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    def strip(n: dict[str, Any]) -> dict[str, Any]:
        return {k: ([strip(m) for m in v] if k == "members" else v) for k, v in n.items()
                if k not in ("top_contributors", "worst_top_contributors")}
    return [strip(n) for n in notes]


def test_judges_apart_decide_as_today_without_inhibition() -> None:
    home = {"org": 0, "team=ads": 1, "team=search": 0, "team=search|model=m": 1, "team=legal": 1}
    for seed in range(2):
        msgs = base.stream(seed)
        want = one(msgs, base.POLICY)
        o = base.org(n_judges=2)
        led = BudgetLedger(base.W, base.BUDGETS)
        got = base.feed(o, base.interleave(judges_apart(msgs, home, base.POLICY), random.Random(seed)), led)
        assert got == want, seed


def test_judges_apart_with_inhibition_decide_as_today_here() -> None:
    """With the org alert inhibiting its teams, a team's flagged windows the engine does not keep
    are still sent for resolve_after_windows windows, and keep its mix from learning meanwhile:
    top contributors can differ from today's placement. They do not in this history."""
    policy = {**base.POLICY, "inhibit_by_org": True}
    home = {"org": 0, "team=ads": 1, "team=search": 0, "team=search|model=m": 1, "team=legal": 1}
    for seed in range(2):
        msgs = base.stream(seed)
        want = one(msgs, policy)
        o = base.org(n_judges=2)
        o.engine = AlertEngine(AlertPolicy(**policy))
        got = base.feed(o, base.interleave(judges_apart(msgs, home, policy), random.Random(seed)))
        assert any(m["status"] == "inhibited" for n in want for m in n["members"])
        assert without_contributors(got) == without_contributors(want), seed
        assert got == want, seed
