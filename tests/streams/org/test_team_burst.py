"""The team burst rule (policy ``detector.team_burst``; :func:`streams.org.newseries.burst_verdict`,
beside the new-series rule whose hourly team sums give the team's mean spend): a team series
with 2 surprising windows (p <= 1e-4) among its last 30 alerts while its spend since the first
of them is 3x its detector's expected spend there and more by an hour of the team's mean spend
(at least $0.50) -- the $2 money gate is hours of spend for a small team."""

from __future__ import annotations

from typing import Any

from alerts import AlertEngine, AlertPolicy, Signal
from streams.org.core import OrgCore, OrgOutput
from streams.org.newseries import BURST_DETECTOR, NANO_USD, NewSeriesRule, NewSeriesSettings, TeamBurstSettings

W = 60
TEAM = "team=a"
DAY = 86400
START = 2 * DAY  # the burst's first window: the team is known two days by then
BASE = 1.0 / 60  # the team's dollars a minute ($1 an hour)


def rule(**kw: Any) -> NewSeriesRule:
    return NewSeriesRule(NewSeriesSettings(team_burst=TeamBurstSettings(**kw)))


def feed(r: NewSeriesRule, burst: dict[int, tuple[float, float]], until: int, since: int = 0,
         base: float = BASE, given: bool = True) -> dict[int, list[Signal]]:
    """One window a minute from ``since`` to ``until`` (seconds, excluded): the team at ``base``
    dollars a window (its detector expecting that, p 0.5) but the windows of ``burst`` (start ->
    (dollars, p)); the rule's signals of each window. ``given``: the judges sent the team's
    expected spend and p-values (else None: the window is not the rule's)."""
    out = {}
    for t in range(since, until, W):
        usd, p = burst.get(t, (base, 0.5))
        got = r.judge_window(t, t + W, [(TEAM, round(usd * NANO_USD), 1)], [], lambda series: True,
                             {TEAM: base} if given else None, {TEAM: p} if given else None)
        out[t] = [sg for sg in got if sg.detector == BURST_DETECTOR]
    return out


def flagged(got: dict[int, list[Signal]]) -> list[int]:
    return [t for t, sgs in got.items() if any(sg.is_anomaly for sg in sgs)]


def storm(at: int = START, n: int = 10, usd: float = 0.15, surprising: tuple[int, ...] = (0, 2)) -> dict[int, tuple[float, float]]:
    """A retry storm: ``n`` windows at ``usd`` from ``at``, the detector surprised (p 1e-6) in
    the windows ``surprising`` of it -- $1.50 at 9x, under the detectors' $2 gate."""
    return {at + i * W: (usd, 1e-6 if i in surprising else 0.5) for i in range(n)}


def test_a_small_teams_storm_under_the_two_dollar_gate_alerts_once_it_is_an_hour_of_its_spend() -> None:
    got = feed(rule(), storm(), START + 40 * W)
    # from the storm's first window on: $0.15 a window against $0.0167 expected; the excess
    # reaches $1 (an hour of the team's $1 an hour) in its 8th window and holds while the
    # windows since the first surprising one stay 3x their expected spend
    first = flagged(got)
    assert first and first[0] == START + 7 * W
    sg = next(s for s in got[first[0]] if s.is_anomaly)
    assert sg.series == TEAM and sg.observed_usd == round(8 * 0.15, 2) and "team burst" in sg.explanation
    assert sg.impact_usd is not None and sg.impact_usd >= 1.0
    # after it: quiet signals of the rule while the alert is tracked, so that it resolves
    assert got[START + 39 * W] and not got[START + 39 * W][0].is_anomaly
    # the windows after it under the detector's expectation are not the burst's: no flag goes on
    # through them while the surprising windows are still within the span
    quiet_after = {START + i * W: (BASE / 2, 0.5) for i in range(10, 40)}
    after = flagged(feed(rule(), {**storm(), **quiet_after}, START + 40 * W))
    assert after and max(after) == START + 9 * W
    # off (the rule's settings without it), or without the judges' expected spends and p-values: nothing
    assert flagged(feed(NewSeriesRule(), storm(), START + 40 * W)) == []
    assert flagged(feed(rule(), storm(), START + 40 * W, given=False)) == []


def test_the_floor_scales_with_the_team_and_one_surprising_window_is_not_enough() -> None:
    # a team of $4 an hour: the same storm ($1.50 at 2.2x its windows) is under an hour of its spend
    assert flagged(feed(rule(), storm(), START + 40 * W, base=4.0 / 60)) == []
    # one surprising window
    assert flagged(feed(rule(), storm(surprising=(0,)), START + 40 * W)) == []
    # a team known under a day
    assert flagged(feed(rule(), storm(at=DAY // 2), DAY // 2 + 40 * W)) == []
    # the $0.50 floor: a team of $0.10 an hour still needs $0.50 of excess
    tiny = 0.1 / 60
    assert flagged(feed(rule(), storm(usd=0.05), START + 40 * W, base=tiny)) == []
    assert flagged(feed(rule(), storm(usd=0.08), START + 40 * W, base=tiny))


def test_the_rule_restores_its_windows_from_the_teams_record_and_old_records_load() -> None:
    r = rule()
    feed(r, storm(), START + 5 * W)
    back = rule()
    back.set_week(TEAM, r.get_week(TEAM))
    back.set_state(TEAM, r.get_state(TEAM))
    assert flagged(feed(back, storm(), START + 40 * W, since=START + 5 * W))[0] == START + 7 * W
    # a record from before the rule: no windows kept, the storm's first ones unknown
    old = {k: v for k, v in (r.get_state(TEAM) or {}).items() if k not in ("ring", "burst")}
    back = rule()
    back.set_week(TEAM, r.get_week(TEAM))
    back.set_state(TEAM, old)
    assert flagged(feed(back, storm(), START + 40 * W, since=START + 5 * W)) == []


def test_the_org_stage_alerts_on_it_and_resolves_it() -> None:
    r = rule()
    feed(r, {}, START)
    o = OrgCore(0, W, AlertEngine(AlertPolicy()), new_series=r)
    actions = []
    burst = storm()
    for t in range(START, START + 120 * W, W):
        usd, p = burst.get(t, (BASE, 0.5))
        out = OrgOutput()
        o.step_window(t + W, [], out, [(TEAM, round(usd * NANO_USD), 1)], {TEAM: BASE}, {TEAM: p})
        actions += [(t, n.action, n.explanation[:10]) for n in out.notifications]
    assert actions[0] == (START + 7 * W, "trigger", "team burst")
    assert actions[-1][1] == "resolve"


def judged(burst: TeamBurstSettings | None, apart: bool) -> list[tuple[str, str, int]]:
    """A team of $1 an hour, its one model's series and its own, for a day and two hours, then
    three windows of $0.60 (a $1.75 excess: under the detectors' $2 gate, surprising) judged
    by real judges with the team-scale gate and the team corroboration off (0), the team burst
    rule ``burst`` (None: off) in the new-series rule; beside the judge (one judge holds both
    series) or apart (each series on its own judge partition, the org stage fed their verdicts
    through the wire). The notifications: (action, explanation's start, window end)."""
    import json
    import random

    from detectors import make_detector
    from streams.ingest.windows import NANO, Partial
    from streams.judge.core import JudgeCore
    from streams.judge.step import judge_step
    from streams.org.verdicts import Verdicts

    settings = NewSeriesSettings(team_burst=burst)
    policy = AlertPolicy(inhibit_by_org=False)

    def judge(q: int) -> JudgeCore:
        j = JudgeCore(partition=q, window_seconds=W, make_detector=lambda: make_detector("default", window_seconds=W),
                      engine=AlertEngine(policy), new_series=settings, team_scale_minutes=0.0,
                      team_corroboration_p=0.0)
        if apart:
            j.local_tracking = policy.resolve_after_windows
        return j

    rnd = random.Random(0)
    at = DAY + 2 * 3600
    home = {TEAM: 0, f"{TEAM}|model=m": 1}
    judges = {q: judge(q) for q in ((0, 1) if apart else (0,))}
    o = OrgCore(0, W, AlertEngine(policy), n_judges=2, new_series=NewSeriesRule(settings)) if apart else None
    notes: list[tuple[str, str, int]] = []
    for i in range(at // W + 30):
        t = i * W
        usd, n_req = (0.6, 30) if at <= t < at + 3 * W else (BASE * rnd.uniform(0.8, 1.2), 3)
        n = int(usd * NANO)
        parts = [Partial(series, labels, t, [n, 10, 2, 0, 0, n_req], {"user:u": n}, True)
                 for series, labels in ((f"{TEAM}|model=m", {"team": "a", "model": "m"}), (TEAM, {"team": "a"}))]
        for q, j in judges.items():
            step = judge_step(j, None, None, 0, 1, t + W, [p for p in parts if not apart or home[p.series] == q], i)
            if o is None:
                notes += [(x.action, x.explanation[:10], t + W) for x in step.judged.notifications]
            else:
                v = Verdicts.from_wire(json.loads(json.dumps(step.verdicts(q, i).to_wire())))
                notes += [(x.action, x.explanation[:10], t + W) for x in o.receive(v).notifications]
    return notes


def test_the_rule_judges_with_the_team_gates_off_under_both_placements() -> None:
    """The judges send the team series' expected spend and p-value the rule reads whenever it is
    on, not only for the team-scale gate and the team corroboration: turning those gates off
    (0) does not turn the rule off unseen."""
    at = DAY + 2 * 3600
    assert judged(None, apart=False) == []  # the detectors alone: under their $2 gate
    for apart in (False, True):
        got = judged(TeamBurstSettings(), apart)
        # the storm's second window: two surprising windows, $1.20 against $0.03 expected
        assert got[:1] == [("trigger", "team burst", at + 2 * W)], apart
