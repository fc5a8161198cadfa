"""A judge apart from the org stage (series placement) follows a fired alert that hysteresis
holds open (``alerts.resolve_max_excess_pct``): it keeps sending the series' windows for
``resolve_after_windows`` after the last one that held it (:attr:`SeriesInfo.hold_end`), and a
restart in the middle of the hold does not lose the resolve (the checkpoint keeps ``hold_end``)."""

from __future__ import annotations

import json
import random
from typing import Any

from alerts import AlertEngine, AlertPolicy
from streams.ingest.windows import NANO, Partial
from streams.judge.core import JudgeCore
from streams.judge.step import judge_step
from tests.alerts.policies import NO_HOLD
from tests.streams.org import test_org_core as base

W = base.W
R = 3
POLICY: dict[str, Any] = {**base.POLICY, **NO_HOLD, "resolve_after_windows": R}


def history() -> list[base.Msg]:
    """One source, team=ads: 40 noisy windows ($0.5-1.5), a $40 spike, then eleven at $2 --
    twice expected, not surprising enough to flag after a noisy history -- then $1 again."""
    rnd = random.Random(0)
    out: list[base.Msg] = []
    for i in range(70):
        usd = 40.0 if i == 40 else rnd.uniform(0.95, 1.05) * 2.0 if 41 <= i < 52 else rnd.uniform(0.5, 1.5)
        n = int(usd * NANO)
        out.append((0, (i + 1) * W, i, [Partial("team=ads", {"team": "ads"}, i * W, [n, 10, 2, 0, 0, 3], {"user:a": n}, True)]))
    return out


def apart(policy: dict[str, Any]) -> JudgeCore:
    j = base.judge(1)
    j.engine = AlertEngine(AlertPolicy(**policy))
    j.local_tracking = R
    return j


def run(msgs: list[base.Msg], restart_at: int = -1, old_format: bool = False,
        policy: dict[str, Any] = POLICY) -> list[tuple[str, int]]:
    """The org stage's trigger and resolve (action, message index), the judge restarted from its
    checkpoint (through JSON) before message ``restart_at``; ``old_format``: a checkpoint written
    before ``hold_end`` was kept."""
    j, o = apart(policy), base.org()
    o.engine = AlertEngine(AlertPolicy(**policy))
    out = []
    for k, (src, closed, seq, parts) in enumerate(msgs):
        if k == restart_at:
            saved = json.loads(json.dumps(j.checkpoint()))
            if old_format:
                saved = {key: {f: v for f, v in rec.items() if f != "hold"} if key.startswith("det|") and rec else rec
                         for key, rec in saved.items()}
            j = apart(policy)
            j.restore(saved.items())
        step = judge_step(j, None, None, src, 1, closed, base.copies(parts), seq)
        out += [(n.action, k) for n in o.receive(step.verdicts(1, k)).notifications]
    return out


def test_a_judge_restarted_while_hysteresis_holds_an_alert_still_sends_its_resolve() -> None:
    msgs = history()
    # flagged once (window 40), held by the $2 windows, resolved three windows after them
    assert run(msgs) == [("trigger", 40), ("resolve", 54)]
    for k in range(41, 57, 3):  # before, during and after the hold
        assert run(msgs, restart_at=k) == [("trigger", 40), ("resolve", 54)], k


def test_a_checkpoint_written_before_the_hold_loads() -> None:
    msgs = history()
    # no hold under way: as if nothing was left out
    assert run(msgs, restart_at=42, old_format=True) == [("trigger", 40), ("resolve", 54)]
    # mid-hold, what an old checkpoint knows: the judge stops R windows after the last flagged
    # one, and the alert stays open (what keeping hold_end mends)
    assert run(msgs, restart_at=47, old_format=True) == [("trigger", 40)]


def test_the_judge_apart_follows_the_cap_on_the_hold() -> None:
    # held at most 5 windows after the flagged one (ending at 41W): the windows ending at 46W,
    # 47W and 48W count, and the judge still sends them
    capped = {**POLICY, "resolve_max_hold_s": 5 * W}
    assert run(history(), policy=capped) == [("trigger", 40), ("resolve", 47)]
    assert run(history(), restart_at=45, policy=capped) == [("trigger", 40), ("resolve", 47)]
