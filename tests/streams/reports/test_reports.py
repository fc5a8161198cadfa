"""The spend-report core: periods due, per-partition parts merged exactly, changes, movers,
budgets, the weekly model mix, team scope, DST weeks, and the scheduler's once-per-period."""

from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from alerts.model import Notification
from streams.budgets.ledger import BudgetLedger, BudgetSpec
from streams.ingest.windows import NANO
from streams.reports.core import (
    ReportScheduler,
    ReportSpec,
    budget_row,
    build_report,
    report_notification,
    report_part,
)

BERLIN = ZoneInfo("Europe/Berlin")
W = 60


def ts(s: str, tz: ZoneInfo = BERLIN) -> int:
    return int(datetime.fromisoformat(s).replace(tzinfo=tz).timestamp())


def rec(nusd: int) -> dict[str, list[int]]:
    return {"s": [nusd, 0, 0, 0, 0, 1]}


def cells(t: int, team: str, model: str, provider: str, nusd: int) -> dict[str, dict[str, list[int]]]:
    """The spend records one window of one (team, model, provider) cell adds to the judge."""
    return {f"org|{t}": rec(nusd), f"team={team}|{t}": rec(nusd), f"team={team}|model={model}|{t}": rec(nusd),
            f"model={model}|{t}": rec(nusd), f"provider={provider}|{t}": rec(nusd), f"user=bob|{t}": rec(nusd)}


def spend_of(rows: list[tuple[int, str, str, str, int]]) -> dict[str, dict[str, list[int]]]:
    out: dict[str, dict[str, list[int]]] = {}
    for t, team, model, provider, nusd in rows:
        for k, v in cells(t - t % W, team, model, provider, nusd).items():
            if k in out:
                out[k] = rec(out[k]["s"][0] + v["s"][0])
            else:
                out[k] = v
    return out


DAY = ReportSpec(name="daily:#finops", channel="#finops", period="day", tz="Europe/Berlin")

# 2026-11-25 is the reported day, 2026-11-24 the one before (both 24 h in Berlin)
ROWS = [
    (ts("2026-11-25T10:00"), "ads", "gpt-4o", "openai", 3_000_000_001),
    (ts("2026-11-25T23:59"), "ads", "acme-llama", "acme", 1_000_000_000),
    (ts("2026-11-25T00:00"), "search", "claude-sonnet", "anthropic", 2_500_000_000),
    (ts("2026-11-25T12:00"), "data", "gpt-4o", "openai", 7),
    (ts("2026-11-24T09:00"), "ads", "gpt-4o", "openai", 1_000_000_000),
    (ts("2026-11-24T09:00"), "search", "claude-sonnet", "anthropic", 5_000_000_000),
    (ts("2026-11-24T09:00"), "legal", "claude-sonnet", "anthropic", 2_000_000_000),
    # outside both periods: the day after, and two days before
    (ts("2026-11-26T00:00"), "ads", "gpt-4o", "openai", 999 * NANO),
    (ts("2026-11-23T23:59"), "ads", "gpt-4o", "openai", 999 * NANO),
]


def split(spend: dict[str, dict[str, list[int]]], n: int) -> list[dict[str, dict[str, list[int]]]]:
    """The records as ``n`` judge partitions would hold them (by series)."""
    import zlib

    parts: list[dict[str, dict[str, list[int]]]] = [{} for _ in range(n)]
    for k, v in spend.items():
        parts[zlib.crc32(k.rpartition("|")[0].encode()) % n][k] = v
    return parts


def test_due_and_closed_periods() -> None:
    d = DAY.closed(ts("2026-11-26T08:00"))
    assert (d.period_id, d.prev_id) == ("2026-11-25", "2026-11-24")
    assert (d.start, d.end, d.prev_start) == (ts("2026-11-25T00:00"), ts("2026-11-26T00:00"), ts("2026-11-24T00:00"))
    assert DAY.due(ts("2026-11-26T00:00")) == d  # due at the period's end without `at`
    at9 = ReportSpec(name="x", channel="#x", period="day", tz="Europe/Berlin", at=9 * 60)
    assert at9.due(ts("2026-11-26T08:59")) is None
    assert at9.due(ts("2026-11-26T09:00")).period_id == "2026-11-25"  # type: ignore[union-attr]
    week = ReportSpec(name="w", channel="#x", period="week", tz="Europe/Berlin", at=9 * 60)
    wd = week.due(ts("2026-11-30T09:00"))  # Monday 09:00: last week is due
    assert wd is not None and (wd.period_id, wd.prev_id) == ("2026-W48", "2026-W47")
    assert week.due(ts("2026-11-30T08:00")) is None


def test_report_numbers_are_exact_and_the_same_from_any_split() -> None:
    spend = spend_of(ROWS)
    due = DAY.closed(ts("2026-11-26T09:00"))
    one = build_report(DAY, due, [report_part(spend.items(), DAY, due)])
    four = build_report(DAY, due, [report_part(p.items(), DAY, due) for p in split(spend, 4)])
    assert one == four
    # an org report's parts fold team × model series into the mix: teams + models, not their product
    assert not any("|model=" in k for k in report_part(spend.items(), DAY, due)["series"])
    t = one["total"]
    assert t["nusd"] == 6_500_000_008 and t["prev_nusd"] == 8_000_000_000
    assert t["usd"] == 6.500000008 and t["prev_usd"] == 8.0
    assert t["change_usd"] == -1.499999992 and t["change_pct"] == -18.75
    teams = {r["team"]: r for r in one["by_team"]}
    assert [r["team"] for r in one["by_team"]] == ["ads", "search", "data", "legal"]  # by spend, then previous
    assert teams["ads"]["nusd"] == 4_000_000_001 and teams["ads"]["change_pct"] == 300.0
    assert teams["legal"]["nusd"] == 0 and teams["legal"]["change_pct"] == -100.0
    assert teams["data"]["prev_nusd"] == 0 and teams["data"]["change_pct"] is None  # new spend
    assert {r["model"]: r["nusd"] for r in one["by_model"]} == {
        "gpt-4o": 3_000_000_008, "claude-sonnet": 2_500_000_000, "acme-llama": 1_000_000_000}
    assert {r["provider"]: (r["nusd"], r["prev_nusd"]) for r in one["by_provider"]} == {
        "openai": (3_000_000_008, 1_000_000_000), "anthropic": (2_500_000_000, 7_000_000_000),
        "acme": (1_000_000_000, 0)}
    assert "mix" not in one  # daily: no model mix
    assert sum(r["nusd"] for r in one["by_team"]) == t["nusd"]


def test_movers() -> None:
    due = DAY.closed(ts("2026-11-26T09:00"))
    rep = build_report(DAY, due, [report_part(spend_of(ROWS).items(), DAY, due)])
    teams = rep["movers"]["team"]
    assert [m["team"] for m in teams["up"]] == ["ads", "data"]
    assert [m["team"] for m in teams["down"]] == ["search", "legal"]  # largest decrease first
    assert teams["down"][0]["change_usd"] == -2.5
    models = rep["movers"]["model"]
    assert [m["model"] for m in models["up"]] == ["gpt-4o", "acme-llama"]
    assert [m["model"] for m in models["down"]] == ["claude-sonnet"]
    many = [(ts("2026-11-25T10:00"), f"t{i}", "m", "p", (i + 1) * NANO) for i in range(6)]
    rep = build_report(DAY, due, [report_part(spend_of(many).items(), DAY, due)])
    assert [m["team"] for m in rep["movers"]["team"]["up"]] == ["t5", "t4", "t3"]  # top 3 only


def test_team_report_shows_only_that_team() -> None:
    spec = ReportSpec(name="daily:#ads:team=ads", channel="#ads", period="day", tz="Europe/Berlin", team="ads")
    due = spec.closed(ts("2026-11-26T09:00"))
    led = BudgetLedger(W, [
        BudgetSpec("ads-month", (("team", "ads"),), "usd", limit=100 * NANO, period="month", tz="Europe/Berlin"),
        BudgetSpec("search-month", (("team", "search"),), "usd", limit=100 * NANO, period="month", tz="Europe/Berlin"),
        BudgetSpec("org-month", (), "usd", limit=1000 * NANO, period="month", tz="Europe/Berlin"),
    ])
    budgets = [budget_row(led, b, due, due.due_at) for b in sorted(led.budgets)]
    rep = build_report(spec, due, [report_part(spend_of(ROWS).items(), spec, due, budgets)])
    assert rep["scope"] == {"team": "ads"}
    assert rep["total"]["nusd"] == 4_000_000_001 and rep["total"]["prev_nusd"] == 1_000_000_000
    assert [r["team"] for r in rep["by_team"]] == ["ads"] and rep["by_provider"] is None and "team" not in rep["movers"]
    assert {r["model"] for r in rep["by_model"]} == {"gpt-4o", "acme-llama"}
    assert [b["budget"] for b in rep["budgets"]] == ["ads-month"]
    assert "search" not in repr(rep) and "legal" not in repr(rep)


def test_budget_status_in_the_report() -> None:
    spec = BudgetSpec("ads-week", (("team", "ads"),), "usd", limit=10 * NANO, period="week", tz="Europe/Berlin")
    led = BudgetLedger(W, [spec])
    t0 = ts("2026-11-23T10:00")  # Monday
    for i in range(4):  # $2 a day, Monday to Thursday
        led.apply({"team": "ads"}, t0 + i * 86400, 2 * NANO, 0, source=0, seq=i)
    due = DAY.closed(ts("2026-11-27T00:00"))  # the Thursday report
    row = budget_row(led, "ads-week", due, due.due_at)
    assert row["period_id"] == "2026-W48" and row["spent_base"] == 8 * NANO and row["limit_base"] == 10 * NANO
    assert row["pct_used"] == 80.0 and row["spent"] == 8.0 and row["limit"] == 10.0
    assert row["projected_total"] > 10.0 and row["breach"] is True
    assert row["exhaustion_ts"] is not None and due.end <= row["exhaustion_ts"] < ts("2026-11-30T00:00")


def test_weekly_mix_per_team_with_trend() -> None:
    week = ReportSpec(name="weekly:#finops", channel="#finops", period="week", tz="Europe/Berlin")
    rows = [
        (ts("2026-11-24T10:00"), "ads", "gpt-4o", "openai", 3 * NANO),
        (ts("2026-11-25T10:00"), "ads", "acme-llama", "acme", 1 * NANO),
        (ts("2026-11-17T10:00"), "ads", "gpt-4o", "openai", 1 * NANO),
        (ts("2026-11-18T10:00"), "ads", "acme-llama", "acme", 1 * NANO),
        (ts("2026-11-26T10:00"), "search", "acme-llama", "acme", 2 * NANO),
    ]
    due = week.closed(ts("2026-11-30T09:00"))
    parts = [report_part(p.items(), week, due, internal_models=["acme-*"]) for p in split(spend_of(rows), 3)]
    rep = build_report(week, due, parts, ["acme-*"])
    mix = {m["team"]: m for m in rep["mix"]}
    assert mix["ads"]["third_party_share_pct"] == 75.0 and mix["ads"]["internal_usd"] == 1.0
    assert mix["ads"]["previous"]["third_party_share_pct"] == 50.0 and mix["ads"]["change_pct_points"] == 25.0
    assert mix["search"]["third_party_share_pct"] == 0.0 and mix["search"]["change_pct_points"] is None
    assert rep["internal_models"] == ["acme-*"]


@pytest.mark.parametrize(
    ("week_of", "hours", "prev_hours"),
    [("2026-03-30T09:00", 167, 168),  # 2026-W13: the clocks go forward on Sunday 29 March
     ("2026-10-26T09:00", 169, 168)],  # 2026-W43: back on Sunday 25 October
)
def test_dst_weeks(week_of: str, hours: int, prev_hours: int) -> None:
    week = ReportSpec(name="w", channel="#c", period="week", tz="Europe/Berlin", at=9 * 60)
    due = week.due(ts(week_of))
    assert due is not None
    assert ((due.end - due.start) // 3600, (due.prev_end - due.prev_start) // 3600) == (hours, prev_hours)
    first, last = due.start, due.end - W  # the week's first and last minute (local Monday 00:00, Sunday 23:59)
    assert datetime.fromtimestamp(first, BERLIN).strftime("%a %H:%M") == "Mon 00:00"
    assert datetime.fromtimestamp(last, BERLIN).strftime("%a %H:%M") == "Sun 23:59"
    rows = [(first, "ads", "m", "p", 1), (last, "ads", "m", "p", 10), (due.end, "ads", "m", "p", 100),
            (first - W, "ads", "m", "p", 1000), (due.prev_start, "ads", "m", "p", 10000),
            (due.prev_start - W, "ads", "m", "p", 100000)]
    rep = build_report(week, due, [report_part(spend_of(rows).items(), week, due)])
    assert (rep["total"]["nusd"], rep["total"]["prev_nusd"]) == (11, 11000)


def test_scheduler_once_per_period_no_backlog_and_restore() -> None:
    spec = ReportSpec(name="d", channel="#c", period="day", tz="Europe/Berlin", at=9 * 60)
    s = ReportScheduler([spec])
    assert s.due(ts("2026-11-26T08:59")) == []
    [(got, due)] = s.due(ts("2026-11-26T09:00"))
    assert due.period_id == "2026-11-25"
    record = s.mark("d", due.period_id)
    assert s.due(ts("2026-11-26T23:00")) == []
    again = ReportScheduler([spec])  # a restart: the record comes back from the table
    again.restore([record])
    assert again.due(ts("2026-11-26T10:00")) == []
    # a week of downtime: only the latest closed day is due, not seven
    assert [d.period_id for _, d in again.due(ts("2026-12-03T12:00"))] == ["2026-12-02"]


def test_notification_key_seq_and_round_trip() -> None:
    due = DAY.closed(ts("2026-11-26T09:00"))
    rep = build_report(DAY, due, [report_part(spend_of(ROWS).items(), DAY, due)])
    n = report_notification(rep, DAY, "https://dash.example")
    assert n.key == "report:daily:#finops:2026-11-25" and n.seq == due.due_at * 1000
    assert n.rule == "spend_report" and not n.page and n.severity == "info" and n.labels == {}
    assert n.channel == "#finops" and n.report["total"]["usd"] == 6.500000008 and n.report["total"]["prev_usd"] == 8.0
    back = Notification.from_dict(n.to_dict())
    assert back == n and type(back) is type(n)
    # built again (a replay, another worker): the same key and seq, which delivery skips
    again = report_notification(build_report(DAY, due, [report_part(spend_of(ROWS).items(), DAY, due)]), DAY)
    assert (again.key, again.seq) == (n.key, n.seq)
