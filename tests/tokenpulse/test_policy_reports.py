from __future__ import annotations

import pytest

from streams.reports.core import ReportSpec
from tokenpulse.policy import PolicyError, parse_policy

FULL = """\
budget_timezone: Europe/Berlin
reports:
  - channel: "#finops"
    period: weekly
    at: 09:00
  - channel: "#ads-spend"
    period: daily
    match: {team: ads}
    at: 10:30
    timezone: America/New_York
  - channel: "#finops"
    period: day
    name: finops-daily
"""


def test_reports_parse_into_specs() -> None:
    specs = parse_policy(FULL).report_specs()
    assert specs == [
        ReportSpec(name="weekly:#finops", channel="#finops", period="week", tz="Europe/Berlin", team=None, at=540),
        # unquoted 10:30 is YAML 1.1's base-60 integer 630: read back as the time it was written as
        ReportSpec(name="daily:#ads-spend:team=ads", channel="#ads-spend", period="day", tz="America/New_York",
                   team="ads", at=630),
        ReportSpec(name="finops-daily", channel="#finops", period="day", tz="Europe/Berlin", team=None, at=0),
    ]
    assert parse_policy("").report_specs() == []


@pytest.mark.parametrize(
    ("entry", "line", "what"),
    [
        ('  - {channel: "#x", period: monthly}', 3, "reports.0.period"),
        ('  - {channel: "#x", period: daily, match: {model: gpt-4o}}', 3, "report matches on team only"),
        ('  - {channel: "#x", period: daily, at: "9 am"}', 3, "at must be a local time of day HH:MM"),
        ('  - {channel: "#x", period: daily, at: "24:00"}', 3, "at must be a local time of day HH:MM"),
        ('  - {channel: "#x", period: daily, timezone: Mars/Olympus}', 3, "unknown time zone 'Mars/Olympus'"),
        ('  - {channel: "", period: daily}', 3, "reports.0.channel"),
        ('  - {channel: "#x", period: daily, every: 2}', 3, "reports.0.every"),
        ('  - {channel: "#x", period: daily}\n  - {channel: "#x", period: day}', 4, "defined twice"),
    ],
)
def test_bad_reports_name_the_line(entry: str, line: int, what: str) -> None:
    text = f"watch: [team]\nreports:\n{entry}\n"
    with pytest.raises(PolicyError) as err:
        parse_policy(text, "p.yaml")
    msg = str(err.value)
    assert msg.startswith(f"p.yaml:{line}:") and what in msg, msg


def test_commented_reports_example_in_repo_is_valid() -> None:
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "policy.example.yaml").read_text(encoding="utf-8")
    start = text.index("# reports:")
    block = "\n".join(line[2:] for line in text[start:].splitlines()[:3])
    specs = parse_policy(block, "policy.example.yaml (reports)").report_specs()
    assert [(s.name, s.period, s.team, s.at) for s in specs] == [
        ("weekly:#finops", "week", None, 540), ("daily:#ads:team=ads", "day", "ads", 540)]
