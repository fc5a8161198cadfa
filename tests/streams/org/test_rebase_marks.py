"""On-call's "expected, new normal" on an org stage apart from its judges
(``TOKENPULSE_PLACEMENT=series``): the org stage resolves the alert at once, the series' judge
rebases its detector when the detector part reaches it, and marks that in its next verdicts
(:class:`~streams.org.verdicts.RebaseMark`). Until the mark is back, the series' flagged windows
(judged with the old baseline) do not raise the alert again; after it, those judged before the
rebase do not either; a mark that never comes is given up on; a restart keeps the rule."""

from __future__ import annotations

import json
from typing import Any

from streams.ingest.windows import NANO, Partial
from streams.org.core import OrgCore
from streams.org.verdicts import RebaseMark, Verdicts, WindowVerdict, for_org_partitions
from tests.streams.org.test_org_core import W, judge, org, sig

ADS = "team=ads"
KEY = f"cost_spike:{ADS}"


def hot(judge_p: int, seq: int, i: int, usd: float = 50.0, marks: tuple[RebaseMark, ...] = ()) -> Verdicts:
    """Judge partition ``judge_p``'s verdicts of window ``i``: team=ads at ``usd`` (flagged above 5 $)."""
    return Verdicts(judge_p, seq, [WindowVerdict(i * W, (i + 1) * W, [sig(ADS, (i + 1) * W, usd)])], [],
                    float((i + 1) * W), list(marks))


def quiet(judge_p: int, seq: int, i: int) -> Verdicts:
    return Verdicts(judge_p, seq, [WindowVerdict(i * W, (i + 1) * W, [])], [], float((i + 1) * W))


def answered() -> OrgCore:
    """Two judge partitions; team=ads (judged on 0) fired in window 0 and on-call answered
    "expected, new normal" (answer ``a1``) at the end of it."""
    o = org(n_judges=2)
    o.receive(hot(0, 0, 0))
    assert [(n.key, n.action) for n in o.receive(quiet(1, 0, 0)).notifications] == [(KEY, "trigger")]
    assert [n.action for n in o.engine.resolve_now(KEY, float(W))] == ["resolve"]
    o.await_rebase([ADS], "a1", float(W))
    return o


def actions(outs: list[Any]) -> list[str]:
    return [n.action for out in outs for n in out.notifications if n.key == KEY]


def test_windows_judged_before_the_rebase_do_not_raise_the_alert_again() -> None:
    o = answered()
    # window 1, judged with the old baseline before the detector part reached judge 0
    outs = [o.receive(hot(0, 1, 1)), o.receive(quiet(1, 1, 1))]
    assert actions(outs) == [] and outs[1].before_rebase == 1 and not o.tracks(KEY)
    # window 2 too; judge 1 behind: it waits, flagged, in the org stage's pending windows
    o.receive(hot(0, 2, 2))
    # the rebase reached judge 0 before window 3: its next verdicts mark it
    mark = o.receive(hot(0, 3, 3, usd=1.0, marks=(RebaseMark(ADS, 3 * W, "a1"),)))
    assert mark.marks == 1 and o.rebasing[ADS].marked
    # window 2 (before the rebase) is stepped now and held back; window 3 counts
    outs = [o.receive(quiet(1, 2, 2)), o.receive(quiet(1, 3, 3))]
    assert actions(outs) == [] and outs[0].before_rebase == 1
    assert ADS not in o.rebasing  # every window before the rebase is stepped: nothing more held
    assert o.checkpoint()[f"rebasing|{ADS}"] is None
    # a spike after the rebase is a new incident: it pages
    outs = [o.receive(hot(0, 4, 4)), o.receive(quiet(1, 4, 4))]
    assert actions(outs) == ["trigger"]


def test_a_mark_that_never_comes_expires() -> None:
    o = answered()
    o.rebase_wait_s = 3 * W
    outs = []
    for i in range(1, 6):
        outs += [o.receive(hot(0, i, i)), o.receive(quiet(1, i, i))]
    expired = [s for out in outs for s in out.expired]
    assert expired == [ADS] and ADS not in o.rebasing
    # held back while it waited (windows 1 to 3: until 3 windows after the answer), counted again after
    assert sum(out.before_rebase for out in outs) == 3
    assert actions(outs) == ["trigger"]


def test_a_restart_between_the_answer_and_the_mark_keeps_the_rule() -> None:
    o = answered()
    o.receive(hot(0, 1, 1))
    saved = json.loads(json.dumps([[k, v] for k, v in o.checkpoint().items() if v is not None]))
    assert any(k == f"rebasing|{ADS}" for k, _ in saved)
    again = org(n_judges=2)
    # the engine's alert states come back with the org stage's (resolved: not written)
    again.restore(saved)
    assert again.rebasing == o.rebasing
    outs = [again.receive(quiet(1, 1, 1)), again.receive(hot(0, 2, 2)), again.receive(quiet(1, 2, 2))]
    assert actions(outs) == [] and sum(out.before_rebase for out in outs) == 2
    outs = [again.receive(hot(0, 3, 3, usd=1.0, marks=(RebaseMark(ADS, 3 * W, "a1"),))), again.receive(quiet(1, 3, 3))]
    assert outs[0].marks == 1 and ADS not in again.rebasing
    # the mark's verdicts read again (a judge's replay): applied once
    assert again.receive(hot(0, 3, 3, usd=1.0, marks=(RebaseMark(ADS, 3 * W, "a1"),))).duplicate


def test_a_mark_before_its_answer_is_kept_for_it_and_another_answers_mark_is_not_this_ones() -> None:
    o = org(n_judges=2)
    # a crash put the org stage back before the answer: the mark's verdicts come first
    out = o.receive(hot(0, 0, 0, usd=1.0, marks=(RebaseMark(ADS, 0, "a1"),)))
    assert out.marks_unasked == 1 and not o.rebasing[ADS].holds(0)  # nobody answered here: nothing held
    o.await_rebase([ADS], "a1", 0.0)  # the answer, applied again
    assert o.rebasing[ADS].marked and not o.rebasing[ADS].holds(0)
    # a later answer waits for its own mark, not an earlier answer's
    o.await_rebase([ADS], "a2", float(W))
    o.receive(quiet(1, 0, 0))
    o.receive(hot(0, 1, 1, marks=(RebaseMark(ADS, W, "a1"),)))
    assert o.rebasing[ADS].answer == "a2" and not o.rebasing[ADS].marked
    assert o.receive(quiet(1, 1, 1)).before_rebase == 1


def test_marks_on_the_wire_and_messages_from_before_them() -> None:
    v = hot(0, 7, 3, marks=(RebaseMark(ADS, 3 * W, "slack:C1:1.0001:U1:1"), RebaseMark("team=web", None, "a")))
    body = json.loads(json.dumps(v.to_wire()))
    assert Verdicts.from_wire(body) == v
    assert "rebased" not in hot(0, 7, 3).to_wire()  # no mark: the message is as it was
    old = {"judge": 0, "seq": 7, "windows": [], "spend": [], "wm": None}  # a worker of the version before
    assert Verdicts.from_wire(old).rebased == []
    # a mark goes to its series' org partition only
    split = for_org_partitions(Verdicts(0, 1, [], [], None, [RebaseMark("org=beta|team=ads", 0, "a")]), 4)
    assert sum(len(x.rebased) for x in split.values()) == 1


def test_the_judge_marks_a_rebase_in_its_next_message_across_a_restart() -> None:
    j = judge()
    j.local_tracking = 2  # the org stage apart

    def msg(i: int) -> list[Partial]:
        return [Partial(ADS, {"team": "ads"}, i * W, [NANO, 1, 1, 0, 0, 1], {"user:a": NANO}, True)]

    for i in range(3):
        assert j.receive(0, 1, (i + 1) * W, msg(i), seq=i).rebased == []
    assert j.rebase(ADS, mark="a1")
    assert j.rebase("team=gone", mark="a2") is False  # no detector: marked all the same (it sends nothing)
    saved = json.loads(json.dumps([[k, v] for k, v in j.checkpoint().items() if v is not None]))
    again = judge()
    again.restore(saved)
    for core in (j, again):  # the judge that goes on, and one restored before its next message
        out = core.receive(0, 1, 4 * W, msg(3), seq=3)
        assert sorted(out.rebased, key=lambda m: m.series) == [RebaseMark(ADS, 3 * W, "a1"),
                                                               RebaseMark("team=gone", 3 * W, "a2")]
        assert core.receive(0, 1, 5 * W, msg(4), seq=4).rebased == []  # once
        assert {k: v for k, v in core.checkpoint().items() if k.startswith("rbmark|")} == {
            f"rbmark|{ADS}": None, "rbmark|team=gone": None}
    # the org placement's rebase (the org stage beside the judge) marks nothing
    assert j.rebase(ADS) and j.rebase_marks == {}
