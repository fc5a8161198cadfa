"""The week-ago check of a sustained shift (policy ``detector.shift_week_ratio``;
:meth:`streams.org.core.OrgCore.confirm_shift`): a team or team x model series' flag that the
sustained-shift model (``changepoint``) leads starts an alert only while the team's last hour is
at least the ratio times the same hours a week before (the new-series rule's hourly team sums,
the team corroboration's week-ago reference). The day after a holiday is a "shift" against an
hour-of-day baseline that learnt the quiet days, and ordinary against last week."""

from __future__ import annotations

from alerts import AlertEngine, AlertPolicy, Signal
from streams.org.core import OrgCore, OrgOutput, shift_confirmed
from streams.org.newseries import NewSeriesRule
from tests.streams.org.test_team_week import MODEL, TEAM, H, W, rule_with_week

CHANGEPOINT = "changepoint: 3.1x the hour-of-day level over the last 60 windows; $90.00 over expected in this incident"
SEASONAL = "seasonal: 3.1x the hour-of-week expected value (alert bound 2.0x); $90.00 over expected in this incident"
END = 8 * 24 * H + W  # the first window after the rule's last hour: the last hour is the one before it


def flagged(series: str, explanation: str, end: int = END) -> Signal:
    labels = {"team": "a", "model": "m"} if series == MODEL else {"team": "a"}
    return Signal(series=series, labels=labels, window_start=float(end - W), window_end=float(end),
                  observed_usd=50.0, expected_usd=16.0, score=0.99999, is_anomaly=True, impact_usd=90.0,
                  explanation=explanation)


def org(rule: NewSeriesRule | None, ratio: float = 1.8, shift: int = 1) -> OrgCore:
    return OrgCore(0, W, AlertEngine(AlertPolicy()), new_series=rule, team_week_shift_h=shift,
                   shift_week_ratio=ratio)


def step(o: OrgCore, sg: Signal) -> OrgOutput:
    out = OrgOutput()
    o.step_window(int(sg.window_end), [sg], out, [], None, None)
    return out


def test_a_shift_at_last_weeks_spend_starts_no_alert_for_a_team_or_its_model() -> None:
    for series in (TEAM, MODEL):
        out = step(org(rule_with_week(15.0)), flagged(series, CHANGEPOINT))  # 1.5x the same hours a week before
        assert out.shift_unconfirmed == 1 and out.notifications == [], series


def test_a_shift_that_is_new_money_against_last_week_alerts() -> None:
    for series in (TEAM, MODEL):
        out = step(org(rule_with_week(25.0)), flagged(series, CHANGEPOINT))  # 2.5x a week before
        assert out.shift_unconfirmed == 0 and [n.action for n in out.notifications] == ["trigger"], series


def test_other_models_flags_and_a_team_without_a_reference_or_the_check_off_are_not_checked() -> None:
    cases = [(org(rule_with_week(15.0)), flagged(TEAM, SEASONAL)),  # a spike the hour-of-week model leads
             (org(rule_with_week(15.0), ratio=0.0), flagged(TEAM, CHANGEPOINT)),  # off
             (org(None), flagged(TEAM, CHANGEPOINT)),  # no new-series rule: no reference
             (org(rule_with_week(15.0, first_hour=24)), flagged(TEAM, CHANGEPOINT))]  # known under a week + 1 h
    for o, sg in cases:
        out = step(o, sg)
        assert out.shift_unconfirmed == 0 and [n.action for n in out.notifications] == ["trigger"], sg.explanation


def test_an_alert_that_started_goes_on() -> None:
    o = org(rule_with_week(15.0))
    first = step(o, flagged(TEAM, SEASONAL))  # the incident starts on a spike
    assert [n.action for n in first.notifications] == ["trigger"]
    out = step(o, flagged(TEAM, CHANGEPOINT, END + W))  # the engine tracks it: the shift's flag goes on
    assert out.shift_unconfirmed == 0


def test_the_hour_either_side_a_week_before_is_the_reference() -> None:
    """Last week's busy hour came an hour later (a job at a local hour, daylight saving): against
    the same UTC hour this hour is 3x, against the most of it and the hour either side 1x."""
    rule = rule_with_week(30.0, week_ago={1: 30.0})
    assert step(org(rule, shift=0), flagged(TEAM, CHANGEPOINT)).shift_unconfirmed == 0
    rule = rule_with_week(30.0, week_ago={1: 30.0})
    assert step(org(rule, shift=1), flagged(TEAM, CHANGEPOINT)).shift_unconfirmed == 1


def test_the_decision() -> None:
    assert not shift_confirmed("changepoint", 1.79, 1.8)
    assert shift_confirmed("changepoint", 1.8, 1.8)
    assert shift_confirmed("counts", 0.5, 1.8) and shift_confirmed("changepoint", None, 1.8)
    assert shift_confirmed("changepoint", 0.5, 0.0)


def test_the_default_detector_names_a_sustained_shift_as_the_check_reads_it() -> None:
    # the check finds a shift by the lead model the default detector puts first in its reason;
    # renaming the model or rewording the reason must fail here, not turn the check off unseen
    from detectors import Combined
    from streams.org.core import SHIFT_LEAD
    from tests.detectors.synthetic import daily_series

    ts, spend = daily_series(10.0, seed=21, base=1.0, swing=0.6, noise=0.2)
    det, step_at = Combined(), 8 * 1440  # eight days of a seasonal $1 a minute, then 1.8x for 6 h
    for t, v in zip(ts[:step_at], spend[:step_at], strict=True):
        det.update(float(t), float(v), 40.0)
    verdicts = [det.update(float(t), float(v) * 1.8, 40.0)
                for t, v in zip(ts[step_at : step_at + 360], spend[step_at : step_at + 360], strict=True)]
    leads = {v.reason.partition(":")[0] for v in verdicts if v.is_anomaly}
    assert SHIFT_LEAD in leads
