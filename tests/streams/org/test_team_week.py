"""The team corroboration's week-ago reference (policy ``detector.team_corroboration_strict_p``,
``detector.team_week_ratio``; :func:`streams.org.core.corroborated`): where the org stage knows
the team's spend of the same hour a week before (the new-series rule's hourly team sums), a team
x model series' flag whose team p-value is above the strict one starts an alert only while the
team's last hour is at least the ratio times that hour a week before (``detector.team_week_shift_h``:
or the most of it and the hour either side)."""

from __future__ import annotations

from alerts import AlertEngine, AlertPolicy, Signal
from streams.org.core import OrgCore, OrgOutput, corroborated
from streams.org.newseries import NANO_USD, NewSeriesRule, week_ratio

H = 3600
W = 60
TEAM, MODEL = "team=a", "team=a|model=m"


def rule_with_week(last_hour_usd: float, first_hour: int = 0, week_ago: dict[int, float] | None = None
                   ) -> NewSeriesRule:
    """A team at $10 an hour from ``first_hour`` to 8 days (fed as hourly rows), its last hour
    at ``last_hour_usd`` (and ``week_ago``: hours from the last hour's a week before -> spend)."""
    rule = NewSeriesRule()
    hours = 8 * 24
    ago = {hours - 1 - 7 * 24 + k: v for k, v in (week_ago or {}).items()}
    for h in range(first_hour, hours):
        usd = last_hour_usd if h == hours - 1 else ago.get(h, 10.0)
        rule.judge_window(h * H, (h + 1) * H, [(TEAM, int(usd * NANO_USD), 10)], [])
    return rule


def flagged(end: int) -> Signal:
    return Signal(series=MODEL, labels={"team": "a", "model": "m"}, window_start=float(end - W),
                  window_end=float(end), observed_usd=50.0, expected_usd=1.0, score=0.99999, is_anomaly=True,
                  impact_usd=49.0)


def org(rule: NewSeriesRule | None, strict: float = 0.001, ratio: float = 2.0, shift: int = 0) -> OrgCore:
    return OrgCore(0, W, AlertEngine(AlertPolicy()), new_series=rule, team_corroboration_p=0.01,
                   team_corroboration_strict_p=strict, team_week_ratio=ratio, team_week_shift_h=shift)


def step(o: OrgCore, team_p: float) -> OrgOutput:
    end = 8 * 24 * H + W  # the first window after the rule's last hour: the last hour is the one before it
    out = OrgOutput()
    o.step_window(end, [flagged(end)], out, [], None, {TEAM: team_p})
    return out


def test_a_mildly_surprising_team_at_last_weeks_spend_does_not_corroborate() -> None:
    out = step(org(rule_with_week(12.0)), 0.005)  # the team's last hour 1.2x the same hour a week before
    assert out.uncorroborated == 1 and out.notifications == []


def test_a_team_at_twice_last_weeks_spend_or_surprising_by_itself_corroborates() -> None:
    out = step(org(rule_with_week(25.0)), 0.005)  # 2.5x a week before
    assert out.uncorroborated == 0 and [n.action for n in out.notifications] == ["trigger"]
    out = step(org(rule_with_week(12.0)), 0.0005)  # the team's p under the strict one
    assert out.uncorroborated == 0 and [n.action for n in out.notifications] == ["trigger"]
    out = step(org(rule_with_week(12.0)), 0.05)  # over team_corroboration_p: never
    assert out.uncorroborated == 1


def test_a_job_moved_an_hour_by_daylight_saving_is_not_new_money_with_the_hours_either_side() -> None:
    """A weekly $30 job at a local hour: this week in the last hour, a week before an hour later
    in UTC (spring) or an hour earlier (autumn). Against the same UTC hour ($10) it is 3x; against
    the most of that hour and the one either side (``team_week_shift_h`` 1) it is 1x."""
    for moved in (1, -1):
        week_ago = {moved: 30.0}
        out = step(org(rule_with_week(30.0, week_ago=week_ago)), 0.005)
        assert out.uncorroborated == 0 and [n.action for n in out.notifications] == ["trigger"], moved
        out = step(org(rule_with_week(30.0, week_ago=week_ago), shift=1), 0.005)
        assert out.uncorroborated == 1 and out.notifications == [], moved
    # new money is new money either way: 3x every hour around the same hour a week before
    out = step(org(rule_with_week(30.0), shift=1), 0.005)
    assert out.uncorroborated == 0 and [n.action for n in out.notifications] == ["trigger"]
    rule = rule_with_week(30.0, week_ago={-1: 30.0})
    assert rule.week_ratio(TEAM, 8 * 24 * H) == 3.0 and rule.week_ratio(TEAM, 8 * 24 * H, 1) == 1.0


def test_without_a_week_ago_reference_or_with_it_off_the_p_value_alone_decides() -> None:
    for o in (org(rule_with_week(12.0), strict=0.0), org(rule_with_week(12.0), ratio=0.0), org(None),
              org(rule_with_week(12.0, first_hour=24))):  # off twice, no rule, a team known for under a week + 1 h
        out = step(o, 0.005)
        assert out.uncorroborated == 0 and [n.action for n in out.notifications] == ["trigger"]


def test_the_hourly_sums_ride_in_the_rules_state_and_old_states_load_without_them() -> None:
    rule = rule_with_week(25.0)
    at = 8 * 24 * H
    assert rule.week_ratio(TEAM, at) == 2.5
    state, week = rule.get_state(TEAM), rule.get_week(TEAM)
    assert state is not None and week is not None
    assert len(state["hour"]) == 1 and len(week) == 7 * 24 + 2  # a week and three hours kept, no more
    for first, second in (("state", "week"), ("week", "state")):  # records restore in any order
        again = NewSeriesRule()
        for which in (first, second):
            if which == "state":
                again.set_state(TEAM, state)
            else:
                again.set_week(TEAM, week)
        assert again.week_ratio(TEAM, at) == 2.5, first
    # a state written before the closed hours had their own record: every hour in it
    together = NewSeriesRule()
    together.set_state(TEAM, {**{k: v for k, v in state.items() if k != "hour"}, "hours": week + state["hour"]})
    assert together.week_ratio(TEAM, at) == 2.5
    old = {k: v for k, v in state.items() if k != "hour"}  # before the week-ago reference
    again = NewSeriesRule()
    again.set_state(TEAM, old)
    assert again.week_ratio(TEAM, at) is None


def test_the_closed_hours_are_written_when_an_hour_begins_not_with_every_window() -> None:
    """The team's own record is written with every window it spends in, so it carries only the
    latest hour; the week of closed hours (~171 sums) is its own record, written once an hour."""
    rule = rule_with_week(10.0)
    rule.take_dirty(), rule.take_week_dirty()
    start = 8 * 24 * H
    written = []
    for i in range(120):  # two hours of minute windows
        rule.judge_window(start + i * W, start + (i + 1) * W, [(TEAM, NANO_USD, 1)], [])
        written.append((TEAM in rule.take_dirty(), TEAM in rule.take_week_dirty()))
    assert all(state for state, _ in written)
    assert [i for i, (_, week) in enumerate(written) if week] == [0, 60]


def test_week_ratio_and_the_decision() -> None:
    assert week_ratio({}, 200 * H) is None
    assert week_ratio({10: 5.0, 178: 15.0}, 179 * H) == 3.0
    assert corroborated(0.005, 0.01, 0.001, 2.0, 1.9) is False
    assert corroborated(0.005, 0.01, 0.001, 2.0, 2.0) is True


def test_the_reference_survives_the_org_stages_checkpoint_and_restore() -> None:
    """The hours ride in the org stage's ``newser|<team>`` (the latest) and ``newserw|<team>``
    (the closed ones) records (both placements write them):
    an org stage restored from its checkpoint decides as the one that wrote it."""
    rule = rule_with_week(12.0)
    o = org(rule)
    o.step_window(8 * 24 * H, [], OrgOutput(), [(TEAM, NANO_USD // 100, 1)], None, None)  # a cent: marks the team dirty
    records = {k: v for k, v in o.checkpoint().items() if k.startswith("newser")}
    assert set(records) == {f"newser|{TEAM}", f"newserw|{TEAM}"} and records[f"newserw|{TEAM}"]
    again = org(NewSeriesRule())
    again.restore(records.items())
    assert again.new_series is not None and again.new_series.week_ratio(TEAM, 8 * 24 * H) is not None
    assert step(again, 0.005).uncorroborated == 1
    assert step(org(NewSeriesRule()), 0.005).uncorroborated == 0  # nothing restored: no reference, the old rule
