"""The week-over-week hourly judge of each team series (policy ``detector.week_over_week``;
:func:`streams.org.newseries.wow_verdict`, beside the new-series rule whose hourly team sums it
reads): at each UTC hour's end, a team whose last 3 hours cost 8x the larger of the same hours
(or an hour either side) one and two weeks before, $2 and 3 hours of its mean spend more, in hours
it did not alert in, is anomalous for the next hour."""

from __future__ import annotations

from typing import Any

import pytest

from alerts import AlertEngine, AlertPolicy, Signal
from streams.org.core import OrgCore, OrgOutput
from streams.org.newseries import NANO_USD, WEEK_HOURS, WOW_DETECTOR, NewSeriesRule, NewSeriesSettings, WeekOverWeekSettings

H = 3600
TEAM, MODEL = "team=a", "team=a|model=m"
RISE = 16 * 24  # the first hour of the rise: the team is known two weeks and more by then


def rule(**kw: Any) -> NewSeriesRule:
    return NewSeriesRule(NewSeriesSettings(week_over_week=WeekOverWeekSettings(**kw)))


def feed(r: NewSeriesRule, spend: dict[int, float], until: int, base: float = 1.0, since: int = 0,
         signals: dict[int, list[Signal]] | None = None) -> dict[int, list[Signal]]:
    """One window an hour from ``since`` to ``until`` (excluded): the team at ``base`` dollars an
    hour but the hours of ``spend``; the judge's signals of each hour's window."""
    out = {}
    for h in range(since, until):
        usd = spend.get(h, base)
        got = r.judge_window(h * H, (h + 1) * H, [(TEAM, int(usd * NANO_USD), 10)], (signals or {}).get(h, []),
                             lambda series: True)
        out[h] = [sg for sg in got if sg.detector == WOW_DETECTOR]
    return out


def flagged(got: dict[int, list[Signal]], since: int = RISE) -> list[int]:
    """The hours whose window the judge held anomalous, from ``since``."""
    return [h for h, sgs in got.items() if h >= since and any(sg.is_anomaly for sg in sgs)]


def rise(at: int = RISE, usd: float = 20.0) -> dict[int, float]:
    return {at: usd, at + 1: usd, at + 2: usd}


def test_a_rise_against_both_weeks_flags_the_hours_after_it_and_then_quiets() -> None:
    got = feed(rule(), rise(), RISE + 6)
    # the verdicts on hours RISE+1 ($41 in 3 hours against $3), RISE+2 ($60) and RISE+3 ($41),
    # not RISE ($22, 7.3x) or RISE+4: the next hours' windows
    assert flagged(got) == [RISE + 2, RISE + 3, RISE + 4]
    sg = got[RISE + 3][0]
    assert sg.series == TEAM and sg.observed_usd == pytest.approx(60.0) and sg.expected_usd == pytest.approx(3.0)
    assert "$60.00 in the 3 hours" in sg.explanation and "20.0x" in sg.explanation
    assert got[RISE + 5] and not got[RISE + 5][0].is_anomaly  # quiet after the hold, while its alert is tracked
    # off: nothing
    assert flagged(feed(NewSeriesRule(), rise(), RISE + 6)) == []


@pytest.mark.parametrize("weeks_ago", [1, 2])
def test_no_flag_when_last_week_or_the_week_before_had_the_same_hours(weeks_ago: int) -> None:
    spend = {**rise(RISE - weeks_ago * WEEK_HOURS), **rise()}
    assert flagged(feed(rule(), spend, RISE + 6)) == []
    if weeks_ago == 2:  # with one week of references the week before last is not looked at
        assert flagged(feed(rule(weeks=1), spend, RISE + 6)) == [RISE + 2, RISE + 3, RISE + 4]


def test_last_weeks_hours_an_hour_earlier_or_later_are_the_reference_with_shift_1() -> None:
    for moved in (-1, 1):  # a $20 hour (judged an hour at a time) that was an hour off both weeks before
        spend = {RISE - WEEK_HOURS + moved: 20.0, RISE - 2 * WEEK_HOURS + moved: 20.0, RISE: 20.0}
        assert flagged(feed(rule(hours=1), spend, RISE + 4)) == []
        assert flagged(feed(rule(hours=1, shift=0), spend, RISE + 4)) == [RISE + 1]


def test_growth_scales_the_reference() -> None:
    # the team grew 4x over the last day; the 3 hours are 5x their week-ago ones ($5 against $1)
    spend = {h: 4.0 for h in range(RISE - 24, RISE)} | rise(usd=5.0)
    assert flagged(feed(rule(ratio=3, excess_hours=0.5), spend, RISE + 4), RISE + 1) == [RISE + 1, RISE + 2, RISE + 3]
    assert flagged(feed(rule(ratio=3, excess_hours=0.5, growth="day"), spend, RISE + 4), RISE + 1) == []
    # over the week before them the team grew 1.4x only: 5x against 1.4x its hours of a week before
    assert flagged(feed(rule(ratio=3, excess_hours=0.5, growth="week"), spend, RISE + 4), RISE + 1) != []


def test_quiet_no_flag_for_hours_the_team_already_alerted_in() -> None:
    alert = Signal(series=MODEL, labels={"team": "a", "model": "m"}, window_start=float((RISE + 1) * H),
                   window_end=float((RISE + 2) * H), observed_usd=19.0, expected_usd=1.0, score=1.0,
                   is_anomaly=True, impact_usd=18.0)
    got = feed(rule(), rise(), RISE + 8, signals={RISE + 1: [alert]})
    assert flagged(got) == []  # every 3-hour span with the rise in it holds the alerting hour


def test_too_little_money_or_a_young_team_does_not_flag() -> None:
    assert flagged(feed(rule(), rise(usd=0.6), RISE + 6, base=0.01)) == []  # $1.80 of excess: under $2
    assert flagged(feed(rule(), rise(usd=0.7), RISE + 6, base=0.01)) == [RISE + 3]
    # the team known a week and 3 hours by the verdict on the rise's last hour, or not
    assert flagged(feed(rule(), rise(), RISE + 6, since=RISE - WEEK_HOURS - 1)) == [RISE + 3, RISE + 4]
    assert flagged(feed(rule(), rise(), RISE + 6, since=RISE - WEEK_HOURS + 3)) == []


def restore(r: NewSeriesRule, week: list[list[int]] | None = None) -> NewSeriesRule:
    back = rule()
    state = r.get_state(TEAM)
    back.set_week(TEAM, r.get_week(TEAM) if week is None else week)
    back.set_state(TEAM, state)
    return back


def test_the_judge_restores_from_the_rules_records_and_old_one_week_records_load() -> None:
    spend = rise()
    r = rule()
    assert flagged(feed(r, spend, RISE + 2)) == []
    r = restore(r)
    assert flagged(feed(r, spend, RISE + 6, since=RISE + 2)) == [RISE + 2, RISE + 3, RISE + 4]
    # the closed hours keep the two weeks the judge reads (and the latest hour rides in the state)
    assert len(r.get_week(TEAM) or []) >= 2 * WEEK_HOURS + 3
    # a flag is held across a restore in its hour
    r = rule()
    assert flagged(feed(r, spend, RISE + 3)) == [RISE + 2]
    r = restore(r)
    half = (RISE + 2) * H + H // 2  # a second window in the hour held
    got = r.judge_window(half, half + 60, [(TEAM, NANO_USD, 10)], [], lambda series: True)
    assert [sg.is_anomaly for sg in got if sg.detector == WOW_DETECTOR] == [True]
    # a record from before the judge: a week and two hours of closed hours, a state without its
    # fields; the week before last (which had the same hours) is unknown, so the rise flags
    spend = {**rise(RISE - 2 * WEEK_HOURS), **rise()}
    r = rule()
    feed(r, spend, RISE + 2)
    old = [[h, u] for h, u in r.get_week(TEAM) or [] if h >= RISE + 1 - WEEK_HOURS - 2]
    state = {k: v for k, v in (r.get_state(TEAM) or {}).items() if k not in ("busy", "judged", "wow")}
    back = rule()
    back.set_week(TEAM, old)
    back.set_state(TEAM, state)
    assert flagged(feed(back, spend, RISE + 6, since=RISE + 2)) == [RISE + 2, RISE + 3, RISE + 4]
    assert flagged(feed(restore(r), spend, RISE + 6, since=RISE + 2)) == []


def test_the_org_stage_alerts_on_it_and_resolves_it() -> None:
    r = rule()
    feed(r, rise(), RISE + 3)
    o = OrgCore(0, H, AlertEngine(AlertPolicy()), new_series=r)
    actions = []
    for h in range(RISE + 3, RISE + 12):
        out = OrgOutput()
        o.step_window((h + 1) * H, [], out, [(TEAM, int(1.0 * NANO_USD), 10)], None, {})
        actions += [(h, n.action, n.explanation[:14]) for n in out.notifications]
    assert actions[0] == (RISE + 3, "trigger", "week over week")
    assert actions[-1][1] == "resolve"
