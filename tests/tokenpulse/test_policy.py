from __future__ import annotations

import pytest

from tokenpulse.policy import Policy, PolicyError, load_policy, parse_policy


def assert_refused(text: str, line: int, fragment: str) -> None:
    """The policy ``text`` is refused with an error that names its line (as ``p.yaml:LINE:``)
    and ``fragment`` (the field at fault)."""
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "p.yaml")
    assert f"p.yaml:{line}:" in str(err.value) and fragment in str(err.value), str(err.value)


def test_empty_policy_gives_defaults():
    assert parse_policy("") == Policy()
    assert load_policy(None).watch == ["org", "team", "team×model", "provider"]


def test_full_policy_parses():
    p = parse_policy(
        """
watch: [org, team, team*model]
prices:
  acme-llama-70b: {input: 0.2, output: 0.4}
detector: {name: default, params: {seasonal: {threshold: 5}}}
alerts: {min_excess_usd: 10, page_min_excess_usd: 100}
teams:
  ads: {slack_channel: "#ads-spend"}
"""
    )
    assert p.watch == ["org", "team", "team×model"]
    assert p.price_overrides() == {"acme-llama-70b": {"input": 0.2, "output": 0.4}}
    assert p.teams["ads"].slack_channel == "#ads-spend"


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ("watch: [team, galaxy]\n", 1, "unknown dimension 'galaxy'"),
        ("alerts:\n  min_excess_usd: 5\n  min_exces_pct: 3\n", 3, "alerts.min_exces_pct"),
        ("prices:\n  m1:\n    input: 1\n    output: -2\n", 4, "prices.m1.output"),
        ("teams: [ads]\n", 1, "teams"),
        ("watch: [team\n", 2, "not valid YAML"),
        ("- a\n- b\n", 1, "must be a mapping"),
    ],
)
def test_errors_name_the_line(text: str, line: int, fragment: str):
    with pytest.raises(PolicyError) as exc:
        parse_policy(text, "p.yaml")
    assert f"p.yaml:{line}" in str(exc.value) and fragment in str(exc.value)


def test_example_policy_in_repo_is_valid():
    from pathlib import Path

    load_policy(Path(__file__).resolve().parents[2] / "policy.example.yaml")


def test_silences_are_validated_with_their_line_and_reach_the_engine() -> None:
    from tokenpulse.policy import parse_policy

    p = parse_policy("silences:\n  - matchers: {team: data}\n    starts_at: 2026-11-27T01:00:00\n"
                     "    ends_at: 2026-11-27T05:00:00Z\n    reason: backfill\n")
    [s] = p.alert_policy()["silences"]
    assert s["matchers"] == {"team": "data"} and s["ends_at"] - s["starts_at"] == 4 * 3600
    assert s["starts_at"] == 1_795_741_200.0  # 2026-11-27T01:00:00Z: no zone means UTC
    for text, line, fragment in [
        ("silences:\n  - matchers: {colour: red}\n    starts_at: 2026-11-27T01:00:00Z\n    reason: x\n", 2, "unknown matcher"),
        ("silences:\n  - matchers: {team: a}\n    starts_at: 2026-11-27T01:00:00Z\n    ends_at: 2026-11-26T01:00:00Z\n    reason: x\n", 2, "ends_at must be after"),
        ("silences:\n  - matchers: {team: a}\n    starts_at: 2026-11-27T01:00:00Z\n", 2, "reason"),
    ]:
        assert_refused(text, line, fragment)


def test_teams_and_subscriptions_are_slack_routes_and_bad_ones_name_their_line() -> None:
    from alerts.routing import Route
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import Settings

    p = parse_policy("teams:\n  ads: {slack_channel: '#ads'}\nsubscriptions:\n"
                     "  - {channel: '#finops', min_severity: warning}\n  - {channel: '#llm', match: {model: gpt-4o}}\n")
    cfg = stream_config(Settings(), p, bootstrap="b:9092")
    assert cfg.routes == (Route("slack", "#ads", {"team": "ads"}), Route("slack", "#finops", {}, "warning"),
                          Route("slack", "#llm", {"model": "gpt-4o"}))
    assert [r.source for r in cfg.routes] == ["teams", "subscriptions", "subscriptions"]
    for text, line, fragment in [
        ("subscriptions:\n  - channel: '#x'\n    match: {colour: red}\n", 3, "unknown matcher"),
        ("subscriptions:\n  - channel: '#x'\n    min_severity: loud\n", 3, "min_severity"),
    ]:
        assert_refused(text, line, fragment)


def test_mix_internal_models_reach_the_stream_config() -> None:
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import Settings

    p = parse_policy("mix:\n  internal_models: ['acme-*', inhouse-coder]\n")
    assert stream_config(Settings(), p, bootstrap="b:9092").internal_models == ("acme-*", "inhouse-coder")
    with pytest.raises(PolicyError, match=r"p\.yaml:2: mix\.internal_model"):
        parse_policy("mix:\n  internal_model: [x]\n", "p.yaml")


def test_subscription_modes_reach_the_digest_routes_and_bad_ones_name_their_line() -> None:
    from alerts.routing import Route
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import Settings

    p = parse_policy("budget_timezone: Europe/Berlin\nsubscriptions:\n"
                     "  - {channel: '#finops', min_severity: warning}\n"
                     "  - {channel: '#ads', match: {team: ads}, mode: daily, daily_at: 17:30}\n"
                     "  - {channel: '#ads', match: {kind: budget_threshold}, mode: daily, daily_at: '17:30', timezone: Europe/Berlin}\n"
                     "  - {channel: '#ml', mode: hourly, timezone: Asia/Kolkata}\n")
    cfg = stream_config(Settings(), p, bootstrap="b:9092")
    assert cfg.routes == (
        Route("slack", "#finops", {}, "warning"),
        Route("slack", "#ads", {"team": "ads"}, "info", "daily", "Europe/Berlin", "17:30"),  # 17:30 unquoted is fine
        Route("slack", "#ads", {"kind": "budget_threshold"}, "info", "daily", "Europe/Berlin", "17:30"),
        Route("slack", "#ml", {}, "info", "hourly", "Asia/Kolkata", "09:00"),
    )
    for text, line, fragment in [
        ("subscriptions:\n  - channel: '#x'\n    mode: weekly\n", 3, "'immediate', 'hourly' or 'daily'"),
        ("subscriptions:\n  - channel: '#x'\n    mode: daily\n    daily_at: '25:00'\n", 4, "HH:MM"),
        ("subscriptions:\n  - channel: '#x'\n    mode: daily\n    timezone: Mars/Base\n", 4, "unknown time zone"),
        ("subscriptions:\n  - channel: '#x'\n    mode: hourly\n    daily_at: '08:00'\n", 2, "daily_at is for mode: daily"),
        ("subscriptions:\n  - channel: '#x'\n    timezone: UTC\n", 2, "timezone is for digests"),
        ("subscriptions:\n  - {channel: '#x', mode: daily}\n  - {channel: '#x', mode: hourly}\n", 3, "must share"),
    ]:
        assert_refused(text, line, fragment)


ROUTES = """\
teams:
  ads: {slack_channel: '#ads'}
routes:
  - {match: {team: ads}, receiver: pagerduty, target: ads-oncall}
  - match: {team: ads}
    receiver: slack
    target: '#ads-spend'
    min_severity: warning
  - {match: {team: ml}, receiver: pagerduty}
  - {receiver: slack, target: '#ads-digest', match: {team: ads}, mode: daily}
"""


def test_routes_name_a_receiver_and_a_target_and_come_between_teams_and_subscriptions() -> None:
    from alerts.routing import Route

    p = parse_policy(ROUTES + "subscriptions:\n  - {channel: '#finops', min_severity: critical}\n")
    assert p.delivery_routes() == [
        Route("slack", "#ads", {"team": "ads"}),
        Route("pagerduty", "ads-oncall", {"team": "ads"}),
        Route("slack", "#ads-spend", {"team": "ads"}, "warning"),
        Route("pagerduty", "default", {"team": "ml"}),  # no target: the receiver's unnamed key
        Route("slack", "#ads-digest", {"team": "ads"}, mode="daily"),
        Route("slack", "#finops", {}, "critical"),
    ]
    assert [r.source for r in p.delivery_routes()] == ["teams", "routes", "routes", "routes", "routes", "subscriptions"]
    for text, line, fragment in [
        ("routes:\n  - {receiver: email, target: x}\n", 2, "unknown receiver 'email'; choose from slack, pagerduty"),
        ("routes:\n  - {receiver: slack}\n", 2, "a slack route needs a target"),
        ("routes:\n  - receiver: pagerduty\n    mode: hourly\n", 2, "is for receivers that keep digests (slack)"),
        ("routes:\n  - receiver: webhook\n    match: {colour: red}\n", 3, "unknown matcher"),
        ("routes:\n  - {receiver: slack, target: '#x', mode: hourly}\nsubscriptions:\n  - {channel: '#x', mode: daily}\n",
         4, "must share"),
    ]:
        assert_refused(text, line, fragment)


def test_a_route_to_a_target_without_its_secret_stops_start_up_with_its_line() -> None:
    """The policy names secrets, the settings hold them: checked against the receivers that
    are on (the worker's start and every reload), never echoing a secret."""
    from pydantic import SecretStr

    from alerts.receivers.pagerduty import PagerDutyConfig
    from alerts.receivers.slack import SlackConfig

    both = {"pagerduty": PagerDutyConfig(routing_key=SecretStr("rk-default-SECRET"),
                                         routing_keys={"ads-oncall": SecretStr("rk-ads-SECRET")})}
    assert len(parse_policy(ROUTES, "p.yaml", receivers=both).routes) == 4
    # Slack off: its routes are unused, as without a token before; no secret is named by a channel
    assert parse_policy(ROUTES, "p.yaml", receivers={**both, "slack": SlackConfig(token=SecretStr("xoxb-x"))})
    for receivers, line, fragment in [
        ({"pagerduty": PagerDutyConfig(routing_key=SecretStr("rk-default-SECRET"))}, 4,
         "routes.0.target: no PagerDuty routing key named 'ads-oncall': add it to TOKENPULSE_PAGERDUTY_ROUTING_KEYS"),
        ({"pagerduty": PagerDutyConfig(routing_keys={"ads-oncall": SecretStr("rk-ads-SECRET")})}, 9,
         "routes.2.target: no PagerDuty routing key named 'default'"),
        ({}, 4, "routes.0.receiver: pagerduty is not configured: set TOKENPULSE_PAGERDUTY_ROUTING_KEY or "
                "TOKENPULSE_PAGERDUTY_ROUTING_KEYS"),
    ]:
        with pytest.raises(PolicyError) as err:
            parse_policy(ROUTES, "p.yaml", receivers=receivers)
        assert f"p.yaml:{line}: {fragment}" in str(err.value), str(err.value)
        assert "SECRET" not in str(err.value)


def test_feedback_bounds_reach_the_stream_config_and_bad_ones_name_their_line() -> None:
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import Settings

    cfg = stream_config(Settings(), parse_policy(""), bootstrap="b:9092")
    assert (cfg.not_anomaly_step, cfg.not_anomaly_max_raise, cfg.not_anomaly_half_life_days) == (1.5, 4.0, 14.0)
    p = parse_policy("detector:\n  feedback: {not_anomaly_step: 2, max_raise: 0, floor_half_life_days: 0}\n")
    cfg = stream_config(Settings(), p, bootstrap="b:9092")
    assert (cfg.not_anomaly_step, cfg.not_anomaly_max_raise, cfg.not_anomaly_half_life_days) == (2.0, 0.0, 0.0)
    for text, line, fragment in [
        ("detector:\n  feedback:\n    max_raise: 0.5\n", 3, "detector.feedback.max_raise: must be 0 (off) or at least 1"),
        ("detector:\n  feedback:\n    not_anomaly_step: 0.5\n", 3, "detector.feedback.not_anomaly_step"),
        ("detector:\n  feedback:\n    not_anomaly_stp: 2\n", 3, "detector.feedback.not_anomaly_stp"),
        ("detector:\n  feedback:\n    floor_half_life_days: -1\n", 3, "detector.feedback.floor_half_life_days"),
    ]:
        assert_refused(text, line, fragment)


def test_new_series_settings_reach_the_judge_and_bad_ones_name_their_line() -> None:
    from streams.judge.core import new_series_settings
    from streams.org.newseries import NewSeriesSettings, TeamBurstSettings, WeekOverWeekSettings
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import Settings

    p = parse_policy("detector:\n  new_series: {enabled: true, ratio: 4, min_requests: 5, min_excess_usd: 1.5}\n")
    cfg = stream_config(Settings(), p, bootstrap="b:9092")
    assert new_series_settings(cfg) == NewSeriesSettings(ratio=4.0, min_requests=5, min_excess_usd=1.5,
                                                         week_over_week=WeekOverWeekSettings(),
                                                         team_burst=TeamBurstSettings())
    p = parse_policy("detector:\n  new_series: {dormant_days: 0, excess_team_days: 0.5, min_excess_floor_usd: 1}\n")
    got = new_series_settings(stream_config(Settings(), p, bootstrap="b:9092"))
    assert got is not None and (got.dormant_days, got.excess_team_days, got.min_excess_floor_usd) == (0.0, 0.5, 1.0)
    off = stream_config(Settings(), parse_policy("detector:\n  new_series: {enabled: false}\n"), bootstrap="b:9092")
    assert off.new_series is None and new_series_settings(off) is None
    # nothing to judge without the team x model series
    unwatched = stream_config(Settings(), parse_policy("watch: [org, team]\ndetector:\n  new_series: {enabled: true}\n"),
                              bootstrap="b:9092")
    assert new_series_settings(unwatched) is None
    for text, line, fragment in [
        ("detector:\n  new_series:\n    ratio: 0.5\n", 3, "detector.new_series.ratio"),
        ("detector:\n  new_series:\n    min_requests: 0\n", 3, "detector.new_series.min_requests"),
        ("detector:\n  new_series:\n    min_excess_usd: -1\n", 3, "detector.new_series.min_excess_usd"),
        ("detector:\n  new_series:\n    dormant_days: -1\n", 3, "detector.new_series.dormant_days"),
        ("detector:\n  new_series:\n    ratoi: 3\n", 3, "detector.new_series.ratoi"),
    ]:
        assert_refused(text, line, fragment)


def test_week_over_week_settings_reach_the_org_stage_and_bad_ones_name_their_line() -> None:
    from streams.judge.core import new_series_settings
    from streams.org.newseries import WeekOverWeekSettings
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import Settings

    def wow(text: str) -> WeekOverWeekSettings | None:
        got = new_series_settings(stream_config(Settings(), parse_policy(text), bootstrap="b:9092"))
        return None if got is None else got.week_over_week

    assert wow("{}") == WeekOverWeekSettings(hours=3, ratio=8.0, excess_hours=3.0, min_excess_usd=2.0, weeks=2, shift=1)
    assert wow("detector:\n  week_over_week: {hours: 2, ratio: 6, excess_hours: 2, min_excess_usd: 5, weeks: 1, "
               "shift: 0, growth: day}\n") == WeekOverWeekSettings(2, 6.0, 2.0, 5.0, 1, 0, "day")
    assert wow("detector:\n  week_over_week: {enabled: false}\n") is None
    assert wow("detector:\n  new_series: {enabled: false}\n") is None  # it reads the rule's hourly sums
    for text, line, fragment in [
        ("detector:\n  week_over_week:\n    hours: 0\n", 3, "detector.week_over_week.hours"),
        ("detector:\n  week_over_week:\n    ratio: 0.5\n", 3, "detector.week_over_week.ratio"),
        ("detector:\n  week_over_week:\n    weeks: 0\n", 3, "detector.week_over_week.weeks"),
        ("detector:\n  week_over_week:\n    shift: -1\n", 3, "detector.week_over_week.shift"),
        ("detector:\n  week_over_week:\n    growth: month\n", 3, "detector.week_over_week.growth"),
        ("detector:\n  week_over_week:\n    ratoi: 3\n", 3, "detector.week_over_week.ratoi"),
    ]:
        assert_refused(text, line, fragment)


def test_team_burst_settings_reach_the_org_stage_and_bad_ones_name_their_line() -> None:
    from streams.judge.core import new_series_settings
    from streams.org.newseries import TeamBurstSettings
    from tokenpulse.runtime import stream_config
    from tokenpulse.settings import Settings

    def burst(text: str) -> TeamBurstSettings | None:
        got = new_series_settings(stream_config(Settings(), parse_policy(text), bootstrap="b:9092"))
        return None if got is None else got.team_burst

    assert burst("{}") == TeamBurstSettings(windows=30, surprising=2, p=1e-4, ratio=3.0, mean_minutes=60.0,
                                            min_excess_usd=0.5)
    assert burst("detector:\n  team_burst: {windows: 20, surprising: 3, p: 0.00001, ratio: 4, mean_minutes: 30, "
                 "min_excess_usd: 1}\n") == TeamBurstSettings(20, 3, 1e-5, 4.0, 30.0, 1.0)
    assert burst("detector:\n  team_burst: {enabled: false}\n") is None
    assert burst("detector:\n  new_series: {enabled: false}\n") is None  # rides on the new-series rule
    for text, fragment in [
        ("detector:\n  team_burst:\n    windows: 0\n", "detector.team_burst.windows"),
        ("detector:\n  team_burst:\n    p: 0\n", "detector.team_burst.p"),
        ("detector:\n  team_burst:\n    ratio: 0.5\n", "detector.team_burst.ratio"),
        ("detector:\n  team_burst:\n    mean_minute: 60\n", "detector.team_burst.mean_minute"),
    ]:
        assert_refused(text, 3, fragment)
