"""benchmarks.detect_fast: a team's series alert as one group, scored like benchmarks.detectors."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from benchmarks import detect_fast as df
from benchmarks.detect_fast import _alerts, _params, _score


def test_series_of_a_team_alert_as_one_group_and_resolve_after_quiet_windows() -> None:
    ts = 60.0 * np.arange(1, 21)
    a = np.zeros(20, dtype=bool)
    b = np.zeros(20, dtype=bool)
    a[[2, 3]] = True  # the team's series
    b[[4, 9]] = True  # its team x model series: 4 continues the alert, 9 is a new one
    starts = _alerts({"ads": [(ts, a), (ts, b)]}, window=60, resolve_after=3)
    assert starts == {"ads": [180.0, 600.0]}


def test_scoring_counts_hits_misses_and_false_alerts_by_kind() -> None:
    labels = [
        {"team": "ads", "start": 1000.0, "end": 2000.0, "should_alert": True, "kind": "burst"},
        {"team": "ads", "start": 5000.0, "end": 6000.0, "should_alert": True, "kind": "rising"},
        {"team": "ads", "start": 8000.0, "end": 9000.0, "should_alert": False, "kind": "holiday"},
    ]
    sc = _score({"ads": [1100.0, 2800.0, 8500.0, 500.0]}, labels, scored_from=900.0, last_ts=900.0 + 7 * 86400,
                teams=["ads"])
    assert [(r[1], r[3]) for r in sc["rows"]] == [("burst", 100.0), ("rising", None)]
    # 2800 is within the 15-minute grace of the burst; 500 is before scoring starts
    assert [(f[1], f[2]) for f in sc["false"]] == [(8500.0, "holiday")]
    assert sc["team_weeks"] == 1.0


def test_params_take_component_sections() -> None:
    assert _params(["score_threshold=0.999", "seasonal.threshold=5"]) == {
        "score_threshold": 0.999, "component_params": {"seasonal": {"threshold": 5}}}


def _result(name: str, ts: np.ndarray, flags: np.ndarray, expected: float, impact: np.ndarray,
            value: np.ndarray) -> tuple:
    return ("ads", name, ts, flags, [f"seasonal x{i}" for i in range(int(flags.sum()))],
            np.full(len(ts), expected), impact, value)


def test_parent_gate_holds_a_model_series_to_minutes_of_its_teams_spend() -> None:
    from benchmarks.detect_fast import _parent_gate

    ts = 60.0 * np.arange(1, 6)
    none = np.zeros(5, dtype=bool)
    team = _result("team=ads", ts, none, 2.0, np.zeros(5), np.full(5, 2.0))
    flags = np.array([False, True, True, True, False])
    impact = np.array([0.0, 4.0, 9.0, 12.0, 0.0])  # the incident's running excess
    child = _result("team=ads|model=x", ts, flags, 0.2, impact, np.full(5, 0.2))
    # 5 minutes of the team's $2 a minute: $10; the child's own $0.2 a minute would be $1
    got = _parent_gate([team, child], minutes=5.0, window=60)
    assert got[1][3].tolist() == [False, False, False, True, False]
    assert got[1][4] == ["seasonal x2"]  # the reason of the window kept
    assert got[0][3].tolist() == none.tolist()  # the team's own series is not gated
    assert _parent_gate([team, child], minutes=0.0, window=60)[1][3].tolist() == flags.tolist()


def test_corroborate_needs_the_teams_p_to_start_and_keeps_an_alert_that_started() -> None:
    from benchmarks.detect_fast import _corroborate

    ts = 60.0 * np.arange(1, 13)
    none = np.zeros(12, dtype=bool)
    baseline = np.zeros(12)
    team_p = np.full(12, 0.5)
    team_p[5] = 1e-3  # the team series surprised in window 5 only
    team = (*_result("team=ads", ts, none, 2.0, np.zeros(12), np.full(12, 2.0)), baseline, team_p)
    flags = np.zeros(12, dtype=bool)
    flags[[1, 2, 5, 6, 8, 11]] = True
    child = (*_result("team=ads|model=x", ts, flags, 0.2, np.zeros(12), np.full(12, 0.2)), baseline, np.full(12, 1e-9))
    got = _corroborate([team, child], 0.005, resolve_after=2)
    # 1, 2: the team not surprised; 5: it is; 6, 8: the alert that started goes on; 11: a new start
    assert np.flatnonzero(got[1][3]).tolist() == [5, 6, 8]
    assert len(got[1][4]) == 3
    assert got[0][3].tolist() == none.tolist()
    assert _corroborate([team, child], 0.0)[1][3].tolist() == flags.tolist()  # off


def test_parent_gate_mean_basis_is_the_days_before() -> None:
    from benchmarks.detect_fast import _basis_mean

    ts = 60.0 * np.arange(1, 3 * 1440 + 1)  # three days of 1-minute windows
    value = np.where(ts <= 86400, 1.0, 3.0)  # $1 a minute on day 0, $3 after
    r = _result("team=ads", ts, np.zeros(len(ts), dtype=bool), 0.0, np.zeros(len(ts)), value)
    got = _basis_mean(r, 60)
    assert got[0] == 0.0  # day 0: no day before
    assert got[1440] == 1.0 and got[-1] == 2.0  # day 1: day 0's mean; day 2: days 0-1's


def test_why_missed_tells_never_surprising_from_under_the_gate() -> None:
    from benchmarks.detect_fast import _why_missed

    none = np.zeros(4, dtype=bool)
    run = np.array([0.0, 0.14, 0.39, 0.61])  # the incident's running excess
    gate = np.full(4, 2.0)
    assert _why_missed(none, run, gate, none) == "never surprising"
    surprising = np.array([False, True, True, False])
    # the most the excess reached in a surprising window (0.39), not after it (0.61)
    assert _why_missed(surprising, run, gate, none) == (
        "surprising in 2 windows; the incident's excess there reached $0.39 of a $2.00 gate")
    assert _why_missed(surprising, run, gate, surprising).startswith("flagged in 2 windows")


def test_the_week_ago_reference_is_the_org_stages_and_gates_a_start() -> None:
    from benchmarks.detect_fast import _corroborate, _WeekAgo
    from streams.org.newseries import NANO_USD, NewSeriesRule

    rng = np.random.default_rng(3)
    n = 8 * 1440 + 120  # eight days and two hours of 1-minute windows
    ts = 60.0 * np.arange(1, n + 1)
    value = np.where(rng.random(n) < 0.3, 0.0, rng.gamma(2.0, 0.5, n))
    value[-90:] *= 3.0  # the last hour and a half at 3x
    rule = NewSeriesRule()
    week = _WeekAgo(ts, value, 60)
    for i in range(n):  # the org stage folds each window after judging it: the reference is as of its start
        if i >= 7 * 1440 + 60:
            for shift in (0, 1):  # the same hour a week before; the most of it and the hour either side
                want = rule.week_ratio("team=ads", int(ts[i]) - 60, shift)
                mine = week.ratio(ts[i] - 60, tuple(range(-shift, shift + 1)))
                assert (want is None and mine is None) or (
                    want is not None and mine is not None and abs(want - mine) < 1e-6 * want), (i, shift)
        rows = [("team=ads", round(value[i] * NANO_USD), 1)] if value[i] > 0 else []  # no spend, no row
        rule.judge_window(int(ts[i]) - 60, int(ts[i]), rows, [])
    # a model series' flags at team p 0.005: at the team's usual spend (a week and an hour in)
    # the start is dropped, in the hour at 3x it is kept
    flags = np.zeros(n, dtype=bool)
    i_usual, i_high = 7 * 1440 + 100, n - 5
    flags[[i_usual, i_high]] = True
    none = np.zeros(n, dtype=bool)
    team = (*_result("team=ads", ts, none, 1.0, np.zeros(n), value), np.zeros(n), np.full(n, 0.005))
    child = (*_result("team=ads|model=x", ts, flags, 0.1, np.zeros(n), value / 4), np.zeros(n), np.full(n, 1e-9))
    ratio_usual = week.ratio(ts[i_usual] - 60)
    assert ratio_usual is not None and ratio_usual < 2.0 and (week.ratio(ts[i_high] - 60) or 0.0) >= 2.0
    got = _corroborate([team, child], 0.01, strict=0.001, week_ratio_min=2.0, window=60)
    assert np.flatnonzero(got[1][3]).tolist() == [i_high]
    assert _corroborate([team, child], 0.01)[1][3].tolist() == flags.tolist()  # the p-value alone: both kept


def test_a_shift_start_needs_its_team_above_last_week_and_other_models_starts_do_not() -> None:
    """The week-ago check of a sustained shift (``--shift-week-ratio``, the org stage's
    ``shift_confirmed``): a changepoint-led flag at the team's usual spend (a week and an hour
    in) is dropped, one in the hour at 3x kept, a seasonal-led one at the usual spend kept, and
    a changepoint-led flag right after a counted one of the series goes on (the alert started)."""
    from benchmarks.detect_fast import _confirm_shift

    rng = np.random.default_rng(5)
    n = 8 * 1440 + 120
    ts = 60.0 * np.arange(1, n + 1)
    value = rng.gamma(4.0, 0.5, n)
    value[-90:] *= 3.0
    i_usual, i_seasonal, i_high = 7 * 1440 + 100, 7 * 1440 + 200, n - 5
    flags = np.zeros(n, dtype=bool)
    flags[[i_usual, i_seasonal, i_high, i_high + 1]] = True
    reasons = ["changepoint x2.1", "seasonal x9.0", "changepoint x3.0", "changepoint x3.1"]
    none = np.zeros(n, dtype=bool)
    team = (*_result("team=ads", ts, none, 1.0, np.zeros(n), value), np.zeros(n), np.full(n, 1e-6))
    child = ("ads", "team=ads|model=x", ts, flags, reasons, np.full(n, 0.1), np.zeros(n), value / 4,
             np.zeros(n), np.full(n, 1e-6))
    got = _confirm_shift([team, child], 1.8, window=60, shifts=(-1, 0, 1))
    assert np.flatnonzero(got[1][3]).tolist() == [i_seasonal, i_high, i_high + 1]
    assert got[1][4] == reasons[1:]
    assert _confirm_shift([team, child], 0.0)[1][3].tolist() == flags.tolist()  # off: all kept


def test_hourly_sums_minute_windows_into_the_hour_they_start_in() -> None:
    from benchmarks.detect_fast import _hourly
    from tokenpulse.tune import SeriesWindows

    # windows ending 00:31 .. 03:10 (epoch hours 0-3): the first hour is partial (the series
    # started then), the last (03:00-03:10) has not ended and is not judged
    ts = 60.0 * np.arange(31, 191)
    value = np.ones(len(ts))
    value[ts == 3600.0] = 5.0  # the window 00:59-01:00 belongs to hour 0
    value[ts == 3660.0] = 7.0  # 01:00-01:01 to hour 1
    count = np.full(len(ts), 2.0)
    count[(ts > 3600.0) & (ts <= 7200.0)] = -1.0  # hour 1: requests unknown in every window
    count[ts == 7260.0] = -1.0  # hour 2: unknown in one window only
    h = _hourly(SeriesWindows("team=ads", {"team": "ads"}, ts, value, count), window=60)
    assert h.ts.tolist() == [3600.0, 7200.0, 10800.0]
    assert h.value.tolist() == [29.0 + 5.0, 59.0 + 7.0, 60.0]
    assert h.count.tolist() == [60.0, -1.0, 118.0]
    assert h.series == "team=ads" and h.labels == {"team": "ads"}


def test_a_flagged_hour_holds_the_teams_alert_until_the_next_hours_verdict() -> None:
    from benchmarks.detect_fast import _alerts, _hold

    hours = 3600.0 * np.arange(1, 6)
    flags = np.array([False, True, True, False, True])
    ts, held = _hold(hours, flags, window=60)
    assert held.all() and len(ts) == 3 * 60
    assert ts[0] == 7200.0 and ts[-1] == 18000.0 + 3540.0
    # two flagged hours in a row are one alert; the one after a quiet hour is another
    assert _alerts({"ads": [(ts, held)]}, window=60) == {"ads": [7200.0, 18000.0]}


def test_flap_damping_continues_a_team_alert_that_fires_again_soon_after_resolving() -> None:
    # flags at minutes 0, 10 and 50: resolved 3 windows after each flag; with 30 minutes of
    # keep-firing (alerts.group_keep_firing_s) the flag at 10 continues the alert, 50 does not
    ts = np.arange(0, 60 * 60, 60, dtype=float)
    flags = np.isin(ts, [0.0, 600.0, 3000.0])
    assert _alerts({"ads": [(ts, flags)]}, window=60) == {"ads": [0.0, 600.0, 3000.0]}
    assert _alerts({"ads": [(ts, flags)]}, window=60, keep_firing_s=1800) == {"ads": [0.0, 3000.0]}


def _three_weeks(per_hour: float = 60.0) -> tuple[np.ndarray, np.ndarray]:
    """A team's minute windows (ends) over three weeks at ``per_hour`` dollars an hour."""
    ts = 60.0 * np.arange(1, 21 * 24 * 60 + 1)
    return ts, np.full(len(ts), per_hour / 60)


def _hour(h: int) -> slice:
    """The minute windows of epoch hour ``h`` (each belongs to the hour it starts in)."""
    return slice(h * 60, (h + 1) * 60)


def test_week_over_week_flags_new_money_against_the_same_hours_a_week_before() -> None:
    from benchmarks.detect_fast import _week_over_week

    ts, value = _three_weeks()
    up = np.ones(len(ts))
    for h in (200, 201, 202):  # three hours at 5x in the second week
        value[_hour(h)] *= 5
    got = _week_over_week(ts, value, up, 60, k=2, ratio=3.5, excess_hours=0.5, growth="none", weeks=1, shift=0, m=0)
    # the last two hours reach 3.5x their week-ago hours once both are at 5x (hours 201, 202 end)
    assert got.tolist() == [202 * 3600.0, 203 * 3600.0]
    for h in (32, 33, 34):  # the same hours a week before were at 5x too: nothing new
        value[_hour(h)] *= 5
    assert len(_week_over_week(ts, value, up, 60, k=2, ratio=3, excess_hours=0.5, growth="none", weeks=1, shift=0, m=0)) == 0
    # the team's minute surprise: none of its windows in those hours had p <= q
    value[_hour(32)] /= 5
    value[_hour(33)] /= 5
    value[_hour(34)] /= 5
    assert len(_week_over_week(ts, value, up, 60, k=2, ratio=3, excess_hours=0.5, growth="none", weeks=1, shift=0, q=1e-3, m=1)) == 0
    up[_hour(201)] = 1e-4
    assert len(_week_over_week(ts, value, up, 60, k=2, ratio=3, excess_hours=0.5, growth="none", weeks=1, shift=0, q=1e-3, m=1)) == 2


def test_week_over_week_scales_the_reference_by_the_weeks_growth_and_takes_the_larger_week() -> None:
    from benchmarks.detect_fast import _week_over_week

    ts, value = _three_weeks()
    up = np.ones(len(ts))
    value[9 * 24 * 60:] *= 4  # organic growth: from day 9 on, every hour at 4x
    plain = _week_over_week(ts, value, up, 60, k=2, ratio=3, excess_hours=0.5, growth="none", weeks=1, shift=0, m=0)
    grown = _week_over_week(ts, value, up, 60, k=2, ratio=3, excess_hours=0.5, growth="day", weeks=1, shift=0, m=0)
    day10 = 10 * 86400.0 + 2 * 3600.0  # a day and two hours into the growth
    assert (plain >= day10).sum() > 0  # unscaled, the grown week reads as new money for a week
    assert (grown >= day10).sum() == 0  # scaled by the last day against the same day a week before
    # a holiday a week before (day 9 at a tenth) reads as new money against that week alone;
    # the larger of the two weeks' references (day 2) does not
    ts, value = _three_weeks()
    value[9 * 24 * 60:10 * 24 * 60] /= 10
    one = _week_over_week(ts, value, up, 60, k=2, ratio=3, excess_hours=0.5, growth="none", weeks=1, shift=0, m=0)
    two = _week_over_week(ts, value, up, 60, k=2, ratio=3, excess_hours=0.5, growth="none", weeks=2, shift=0, m=0)
    assert len(one) > 0 and ((one >= 16 * 86400.0) & (one <= 17 * 86400.0 + 3600.0)).all()
    assert len(two) == 0


def test_week_over_week_takes_a_daily_job_moved_by_an_hour_for_the_same_job() -> None:
    from benchmarks.detect_fast import _week_over_week

    ts, value = _three_weeks(per_hour=6.0)
    up = np.ones(len(ts))
    for d in range(21):  # a daily job at 09:00 UTC, at 08:00 from day 10 on (daylight saving)
        value[_hour(d * 24 + (8 if d >= 10 else 9))] += 100
    moved = _week_over_week(ts, value, up, 60, k=1, ratio=3, excess_hours=0.5, growth="none", weeks=1, shift=0, m=0)
    assert moved.tolist() == [(d * 24 + 9) * 3600.0 for d in range(10, 17)]  # a week of 08:00 hours
    assert len(_week_over_week(ts, value, up, 60, k=1, ratio=3, excess_hours=0.5, growth="none", weeks=1, shift=1, m=0)) == 0


def test_week_over_week_needs_the_team_known_a_week_and_joins_its_alerts_held_for_the_hour() -> None:
    from benchmarks.detect_fast import _wow_flags

    ts, value = _three_weeks()
    value[: 3 * 24 * 60] = 0.0  # the team spends from day 3 on
    value[_hour(3 * 24 + 168)] *= 10  # too early: its week-ago hour is its first (which may be partial)
    value[_hour(15 * 24)] *= 10  # day 15, 00:00-01:00: flagged, held until the next hour's verdict
    n = len(ts)
    team = ("ads", "team=ads", ts, np.zeros(n, dtype=bool), [], np.zeros(n), np.zeros(n), value, np.zeros(n),
            np.ones(n))
    child = ("ads", "team=ads|model=x", ts, np.zeros(n, dtype=bool), [], np.zeros(n), np.zeros(n), value * 10,
             np.zeros(n), np.ones(n))
    got = _wow_flags([team, child], 60, {"k": 1, "ratio": 3, "excess_hours": 0.5, "growth": "none", "weeks": 1, "shift": 0, "m": 0})
    assert list(got) == ["ads"] and len(got["ads"]) == 1
    held, flags = got["ads"][0]
    assert flags.all() and held[0] == (15 * 24 + 1) * 3600.0 and len(held) == 60
    assert _alerts(got, window=60) == {"ads": [(15 * 24 + 1) * 3600.0]}


def test_week_over_week_can_need_a_surprising_minute_and_by_default_an_hour_the_team_did_not_alert_in() -> None:
    from benchmarks.detect_fast import _week_over_week, _wow_flags

    ts, value = _three_weeks()
    up = np.ones(len(ts))
    value[_hour(300)] *= 5  # 5x its hour a week before
    one = {"k": 1, "ratio": 3, "excess_hours": 0.5, "weeks": 1, "q": 1e-4, "m": 1}
    assert len(_week_over_week(ts, value, up, 60, **one)) == 0  # no minute window of it was surprising
    assert _week_over_week(ts, value, up, 60, **{**one, "m": 0}).tolist() == [301 * 3600.0]
    up[_hour(300).start + 30] = 1e-5
    assert _week_over_week(ts, value, up, 60, **one).tolist() == [301 * 3600.0]
    # a team that alerted in that hour already: the hourly judge stays out of it (quiet, the default)
    assert len(_week_over_week(ts, value, up, 60, **one, flagged=np.array([300 * 3600.0 + 600]))) == 0
    assert _week_over_week(ts, value, up, 60, **one, flagged=np.array([300 * 3600.0])).tolist() == [301 * 3600.0]
    assert _week_over_week(ts, value, up, 60, **one, flagged=np.array([300 * 3600.0 + 600]),
                           quiet=False).tolist() == [301 * 3600.0]
    n = len(ts)
    team = ("ads", "team=ads", ts, np.zeros(n, dtype=bool), [], np.zeros(n), np.zeros(n), value, np.zeros(n), up)
    busy = np.isin(ts, [300 * 3600.0 + 600])
    assert _wow_flags([team], 60, one, {"ads": [(ts, busy)]}) == {}
    assert len(_wow_flags([team], 60, one, {"ads": [(ts, np.zeros(n, dtype=bool))]})["ads"]) == 1


def test_week_over_week_defaults_take_three_hours_at_eight_times_two_weeks_references() -> None:
    from benchmarks.detect_fast import _week_over_week

    ts, value = _three_weeks(per_hour=1.0)
    up = np.ones(len(ts))
    for h in (400, 401, 402):  # a tiny team's loop: three hours at 10x ($27 more than the $3 of the weeks before)
        value[_hour(h)] *= 10
    assert _week_over_week(ts, value, up, 60).tolist() == [403 * 3600.0]  # its third hour: 3 h at 10x
    value[_hour(400 - 2 * 168 + 1)] = 30  # two weeks before, an hour of $30: the larger reference
    assert len(_week_over_week(ts, value, up, 60)) == 0


def test_the_org_stages_week_over_week_judge_flags_the_fast_loops_hours() -> None:
    """streams.org.newseries.wow_verdict (the worker's, in the org stage) and --wow's
    _week_over_week (the fast loop's, where its defaults were measured) flag the same hours of a
    team series: hourly spend with random spikes and a week-ago copy of some, over three weeks."""
    from streams.org.newseries import NANO_USD, NewSeriesRule, NewSeriesSettings, WeekOverWeekSettings

    rng = np.random.default_rng(7)
    n = 24 * 23
    usd = rng.gamma(2.0, 0.5, n)
    for at in rng.choice(np.arange(24 * 8, n - 4), 30, replace=False):
        usd[at:at + rng.integers(1, 4)] += rng.choice([2.0, 10.0, 40.0])
        if rng.random() < 0.3:
            usd[at - 168 + rng.integers(-1, 2)] += 40.0
    usd[:5] = 0.0  # the team's first spending hour is not the series' first
    for settings in ({}, {"k": 2, "ratio": 4.0, "excess_hours": 1.0, "shift": 0, "weeks": 1},
                     {"ratio": 3.0, "excess_hours": 0.5, "growth": "day"}):
        s = dict(settings)
        ts = (np.arange(n) + 1) * 3600.0
        fast = df._week_over_week(ts, usd, np.ones(n), 3600, **s)
        wow = WeekOverWeekSettings(**{("hours" if key == "k" else key): v for key, v in s.items()})
        rule = NewSeriesRule(NewSeriesSettings(week_over_week=wow))
        got = []
        for h in range(n + 1):  # the window after the last judges the last hour
            nusd = int(round(usd[h] * NANO_USD)) if h < n else 0
            out = rule.judge_window(h * 3600, (h + 1) * 3600, [("team=a", nusd, 1 if nusd else 0)], [])
            got += [h * 3600.0 for sg in out if sg.is_anomaly]
        assert len(fast) > 3 and got == list(fast), settings


def test_the_org_stages_team_burst_rule_flags_the_fast_loops_windows() -> None:
    """streams.org.newseries.burst_verdict (the worker's, in the org stage) and --burst's
    _team_burst (the fast loop's, where its defaults were measured) flag the same windows of a
    team series: sparse minute spend with random storms, surprising p-values in some, over three days."""
    from streams.org.newseries import BURST_DETECTOR, NANO_USD, NewSeriesRule, NewSeriesSettings, TeamBurstSettings

    rng = np.random.default_rng(11)
    n = 3 * 1440
    usd = np.where(rng.random(n) < 0.3, rng.gamma(1.0, 0.05, n), 0.0)
    p = np.where(usd > 0, rng.random(n), 1.0)
    for at in rng.choice(np.arange(1500, n - 40), 25, replace=False):
        k = int(rng.integers(3, 30))
        usd[at:at + k] += rng.choice([0.02, 0.1, 0.3])
        p[at:at + k] = np.where(rng.random(k) < 0.3, 1e-6, p[at:at + k])
    usd[:7] = 0.0  # the team's first spending window is not the series' first
    expected = np.full(n, 0.015)
    ts = (np.arange(n) + 1) * 60.0
    for settings in ({}, {"windows": 10, "surprising": 1, "ratio": 2.0, "mean_minutes": 30.0, "min_excess_usd": 0.2}):
        fast = df._team_burst(ts, usd, expected, p, 60, **settings)
        rule = NewSeriesRule(NewSeriesSettings(team_burst=TeamBurstSettings(**settings)))
        got = []
        for i in range(n):
            nusd = round(usd[i] * NANO_USD)
            spent = {"team=a": float(expected[i])} if nusd > 0 else {}
            out = rule.judge_window(i * 60, (i + 1) * 60, [("team=a", nusd, 1 if nusd else 0)], [], None, spent,
                                    {"team=a": float(p[i])} if nusd > 0 else {})
            got += [ts[i] for sg in out if sg.is_anomaly and sg.detector == BURST_DETECTOR]
        assert len(fast) > 3 and got == list(fast), settings


def _two_storms(d: Path) -> None:
    """A cached history in ``d`` (as ``record`` writes it, ``i1``): a team of $1 an hour, its one
    model's series and its own, and two retry storms of three windows at $0.60 (a $1.75 excess,
    under the detectors' $2 gate, surprising: only the team burst rule flags them) -- the first
    a labelled incident, the second not (a false alert)."""
    import json
    import random

    from tokenpulse.tune import SeriesWindows, WindowSet, _save

    day, w = 86400, 60
    rnd = random.Random(0)
    n = (day + 7 * 3600) // w
    ts = (np.arange(n) + 1) * float(w)
    value = np.array([rnd.uniform(0.8, 1.2) / 60 for _ in range(n)])
    count = np.full(n, 3.0)
    storms = [day + 2 * 3600, day + 5 * 3600]
    for at in storms:
        i = at // w
        value[i:i + 3], count[i:i + 3] = 0.6, 30.0
    series = [SeriesWindows(name, labels, ts, value, count)
              for name, labels in (("team=a", {"team": "a"}), ("team=a|model=m", {"team": "a", "model": "m"}))]
    _save(WindowSet(series=series, first_ts=0.0, last_ts=float(ts[-1]), teams=["a"], counters={}, rejects=[],
                    window_seconds=w), d / "i1.npz")
    labels = [{"team": "a", "start": float(storms[0]), "end": float(storms[0] + 3 * w), "should_alert": True,
               "kind": "retry_storm"}]
    (d / "i1.labels.json").write_text(json.dumps({"labels": labels, "scored_from": float(day)}))


def test_misses_and_falses_score_the_alerts_run_does(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``misses`` and ``falses`` take ``run``'s flags (the week-over-week judge and the team burst
    rule with the rest, :func:`_flags_of`): an incident only the team burst rule finds is not
    listed as missed, and its false alert is counted, as ``run`` scores them."""
    _two_storms(tmp_path)
    one = ["--dir", str(tmp_path), "--independent", "1", "--project", "--jobs", "1"]

    def out(*argv: str) -> str:
        df.main([*argv, *one])
        return str(capsys.readouterr().out)

    assert "recall 1/1 = 1.00, false 1 /" in out("run")
    assert "MISSED" not in out("misses")
    falses = out("falses")
    assert "false alert starts: 1" in falses and "| team-burst | team-burst | 1 |" in falses
    # without the rule, the incident is missed and nothing is false, alike in the three
    assert "recall 0/1 = 0.00, false 0 /" in out("run", "--no-burst")
    assert "MISSED i1 a retry_storm" in out("misses", "--no-burst")
    assert "false alert starts: 0" in out("falses", "--no-burst")
