"""Rendering a spend report: the numbers people read, escaping of user text, Slack's limits
with overflow summarised, and the dispatch from ``slack_blocks``."""

from __future__ import annotations

from typing import Any

from alerts.model import ReportNotification
from alerts.receivers.slack.render import SECTION_MAX, report_blocks, slack_blocks
from alerts.report import ROWS_SHOWN, report_text
from tests.fakes.slack_server import check_blocks


def row(kind: str, name: str, usd: float, prev: float) -> dict[str, Any]:
    return {kind: name, "nusd": round(usd * 1e9), "prev_nusd": round(prev * 1e9), "usd": usd, "prev_usd": prev,
            "change_usd": round(usd - prev, 9), "change_pct": None if prev == 0 else round(100 * (usd - prev) / prev, 2)}


def report(**over: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "name": "weekly:#finops", "channel": "#finops", "period": "week", "tz": "Europe/Berlin", "scope": {},
        "period_id": "2026-W48", "start": 1795388400, "end": 1795993200, "prev_id": "2026-W47",
        "prev_start": 1794783600, "prev_end": 1795388400, "due_at": 1796025600.0,
        "total": row("x", "", 1235.0, 1000.0),
        "by_team": [row("team", "ads", 1000.0, 500.0), row("team", "search", 234.5, 500.0)],
        "by_model": [row("model", "gpt-4o", 1234.5, 1000.0)],
        "by_provider": [row("provider", "openai", 1234.5, 1000.0)],
        "movers": {"team": {"up": [row("team", "ads", 1000.0, 500.0)], "down": [row("team", "search", 234.5, 500.0)]},
                   "model": {"up": [row("model", "gpt-4o", 1234.5, 1000.0)], "down": []}},
        "budgets": [{"budget": "ads-monthly", "scope": {"team": "ads"}, "unit": "usd", "period": "month",
                     "period_id": "2026-11", "spent": 4100.0, "limit": 5000.0, "pct_used": 82.0,
                     "projected_total": 5300.0, "projected_pct": 106.0, "exhaustion_ts": 1795863600.0, "breach": True},
                    {"budget": "bob-tokens", "scope": {"user": "bob"}, "unit": "tokens", "period": "day",
                     "period_id": "2026-11-30", "spent": 1500.0, "limit": 2000.0, "pct_used": 75.0,
                     "projected_total": 1800.0, "projected_pct": 90.0, "exhaustion_ts": None, "breach": False}],
        "mix": [{"team": "ads", "internal_usd": 250.0, "third_party_usd": 750.0, "third_party_share_pct": 75.0,
                 "previous": {"internal_usd": 250, "third_party_usd": 250, "third_party_share_pct": 50.0},
                 "change_pct_points": 25.0}],
        "internal_models": ["acme-*"],
    }
    base.update(over)
    return base


def all_text(blocks: list[dict[str, Any]]) -> str:
    out = []
    for b in blocks:
        if "text" in b:
            out.append(b["text"]["text"])
        for e in b.get("elements", ()):
            out.append(e["text"])
    return "\n".join(out)


def test_the_numbers() -> None:
    text, blocks = report_blocks(report())
    assert check_blocks(blocks) is None
    assert blocks[0]["text"]["text"] == "📊 Weekly spend report 2026-W48"
    body = all_text(blocks)
    assert "*Total:* $1,235.00 · the week before (2026-W47): $1,000.00 · change +$235.00, +23.5%" in body
    assert "• ads — $1,000.00 (+$500.00, +100.0%)" in body
    assert "• search — $234.50 (-$265.50, -53.1%)" in body
    assert "▲ Teams: ads +$500.00, +100.0%" in body and "▼ Teams: search -$265.50, -53.1%" in body
    assert "• ads-monthly (2026-11) — $4,100.00 of $5,000.00 (82.0% used) · forecast $5,300.00 (106%)" in body
    assert "runs out 2026-11-28 12:00 Europe/Berlin" in body and "⚠️" in body
    assert "1,500 tokens of 2,000 tokens (75.0% used)" in body and "does not run out this period" in body
    assert "• ads — 75.0% third-party (internal $250.00, third-party $750.00) · +25.0 pts vs the week before" in body
    assert "(2026-11-23 00:00 Europe/Berlin – 2026-11-30 00:00 Europe/Berlin)" in body
    assert text.startswith("📊 Weekly spend report 2026-W48: $1,235.00 (+$235.00, +23.5%)")
    plain = report_text(report())
    assert plain.startswith("Weekly spend report 2026-W48\n") and "Total: $1,235.00" in plain and "*" not in plain


def test_new_spend_and_a_team_report() -> None:
    r = report(scope={"team": "ads"}, by_provider=None, mix=None, period="day", period_id="2026-11-30",
               total=row("x", "", 5.0, 0.0), movers={"model": {"up": [], "down": []}}, budgets=[])
    _, blocks = report_blocks(r)
    body = all_text(blocks)
    assert blocks[0]["text"]["text"] == "📊 Daily spend report 2026-11-30 · team ads"
    assert "change +$5.00, new" in body and "the day before" in body
    assert "By team" not in body and "By provider" not in body and "Model mix" not in body and "Budgets" not in body
    assert "Top movers*\nno change" in body


def test_user_text_is_escaped() -> None:
    evil = "<!channel> & <https://evil.example|click>"
    r = report(by_team=[row("team", evil, 1.0, 0.0)], by_model=[row("model", "<@U123>", 1.0, 0.0)],
               movers={"team": {"up": [row("team", evil, 1.0, 0.0)], "down": []}},
               budgets=[{**report()["budgets"][0], "budget": "<!here>"}],
               mix=[{**report()["mix"][0], "team": evil}], scope={"team": "<!everyone>"})
    text, blocks = report_blocks(r)
    body = all_text(blocks[1:]) + text
    assert "<!" not in body and "<@" not in body and "<https" not in body
    assert "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;" in body and "&lt;!here&gt;" in body
    # the header is plain_text, which Slack shows literally
    assert blocks[0]["text"]["type"] == "plain_text" and "<!everyone>" in blocks[0]["text"]["text"]


def test_slack_limits_with_overflow_summarised() -> None:
    long = "ü" * 300 + "😀" * 50
    teams = [row("team", f"{i:04d}{long}", 1.0 + i % 7, 1.0) for i in range(2000)]
    r = report(by_team=teams, by_model=[row("model", f"m{i}", 1.0, 0.0) for i in range(500)],
               budgets=[{**report()["budgets"][0], "budget": f"b{i}{long}", "pct_used": 100.0 + i} for i in range(300)],
               mix=[{**report()["mix"][0], "team": f"t{i}{long}"} for i in range(300)],
               period_id="2026-W48" + "y" * 200)
    text, blocks = report_blocks(r)
    assert check_blocks(blocks) is None and len(blocks) <= 50
    for b in blocks:
        if b["type"] == "section":
            assert len(b["text"]["text"].encode("utf-16-le")) // 2 <= SECTION_MAX
    body = all_text(blocks)
    by_team = next(b["text"]["text"] for b in blocks if b["text"]["text"].startswith("*By team*"))
    shown = by_team.count("\n• ")
    assert 1 <= shown <= ROWS_SHOWN
    rest = teams[shown:]
    assert by_team.endswith(f"…and {len(rest)} more (${sum(t['usd'] for t in rest):,.2f})")
    assert f"…and {500 - ROWS_SHOWN} more ($" in body  # models: the row cap
    assert "more budgets (" in body and "more teams" in body
    assert len(text) <= 3000


def test_slack_blocks_dispatches_reports() -> None:
    n = ReportNotification(key="report:weekly:#finops:2026-W48", seq=1, action="trigger", severity="info",
                           reason="first", series="org", labels={}, title="Weekly spend report 2026-W48",
                           started_at=0.0, fired_at=1.0, channel="#finops", report=report())
    assert slack_blocks(n) == report_blocks(report())
