"""The budget ledger in ``tokenpulse replay``: each budget's spend per period exact, the
thresholds fired with their event times, budget notifications as ``--alerts-out`` lines with
their kind, a threshold that late spend reaches in a period long over recorded but not told,
and the same result with the judge forked into a second process."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson
import pytest
from typer.testing import CliRunner

import tokenpulse.replay as replay_mod
from tokenpulse.cli import app
from tokenpulse.policy import parse_policy
from tokenpulse.replay import replay_lines
from tokenpulse.runtime import stream_config
from tokenpulse.settings import Settings

DAY1 = 1_767_571_200  # 2026-01-05 00:00 UTC, a Monday
POLICY = """
budgets:
  - name: ads-daily
    scope: {team: ads}
    amount: 100
    period: day
    thresholds: [50, 80, 100, 150]
    forecast: {enabled: false}
  - name: ads-tokens
    scope: team=ads
    unit: tokens
    amount: 2000000
    period: day
    thresholds: [100]
    forecast: {enabled: false}
"""


def ev(i: int, ts: float, cost: float = 0.05, team: str = "ads") -> bytes:
    return orjson.dumps({"event_id": f"e{i}", "ts": ts, "org": "default", "team": team, "user": "u1",
                         "provider": "openai", "model": "gpt-4o", "input_tokens": 1000, "output_tokens": 200,
                         "cache_read_tokens": 300, "cost_usd": cost})


def history() -> list[bytes]:
    """Two days of ads at 0.05 $ and 1,200 tokens every 30 s (144 $, 3.456 M tokens a day),
    some lines sent twice, another team, and on day 2 at noon a very late 10 $ for day 1."""
    lines = []
    for i in range(2 * 2880):
        t = DAY1 + 30 * i + 1
        lines.append(ev(i, t))
        if i % 97 == 0:
            lines.append(ev(i, t))  # a producer retry
        if i % 10 == 0:
            lines.append(ev(10**6 + i, t, 1.0, team="search"))
        if i == 2880 + 1440:
            lines.append(ev(10**7, DAY1 + 6 * 3600, 10.0))  # day 1's 154 %: past, not told
    return lines


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat().replace("+00:00", "Z")


def epoch(s: str) -> float:
    return datetime.fromisoformat(s.replace("Z", "+00:00")).timestamp()


def cfg() -> Any:
    return stream_config(Settings(), parse_policy(POLICY), bootstrap="", partitions=1)


def check(res: Any) -> None:
    budgets = {b["budget"]: b for b in res.budgets}
    usd, tok = budgets["ads-daily"], budgets["ads-tokens"]
    assert (usd["unit"], usd["limit"], usd["period"], usd["scope"]) == ("usd", 100.0, "day", {"team": "ads"})
    assert [p["period_id"] for p in usd["periods"]] == ["2026-01-05", "2026-01-06"]
    d1, d2 = usd["periods"]
    assert d1["spent_base"] == 2880 * 50_000_000 + 10 * 10**9 and d1["spent"] == 154.0
    assert d2["spent_base"] == 2880 * 50_000_000 and d2["pct_used"] == 144.0
    # each threshold fired at the event time its window was judged: 50 $ is the 1000th event
    # (08:19:31), 80 $ the 1600th, 100 $ the 2000th
    for day, period in ((DAY1, d1), (DAY1 + 86400, d2)):
        fired = {f["threshold"]: f for f in period["fired"]}
        for th, nth in ((50.0, 1000), (80.0, 1600), (100.0, 2000)):
            at = epoch(fired[th]["at"])
            assert day + 30 * (nth - 1) + 1 < at <= day + 30 * (nth - 1) + 1 + 4 * 60, (th, fired[th])
            assert fired[th]["notified"]
    assert [f["threshold"] for f in d1["fired"]] == [50.0, 80.0, 100.0, 150.0]
    late = d1["fired"][-1]  # reached by day 1's late 10 $, counted on day 2 at noon
    assert not late["notified"] and epoch(late["at"]) >= DAY1 + 86400 + 12 * 3600
    assert [f["threshold"] for f in d2["fired"]] == [50.0, 80.0, 100.0]
    t1, t2 = tok["periods"]
    assert t1["spent_base"] == 2881 * 1200 and t2["spent_base"] == 2880 * 1200 and t2["spent"] == 3_456_000.0
    assert [f["threshold"] for f in t1["fired"]] == [100.0]  # 2 M tokens: the 1667th event
    assert DAY1 + 30 * 1666 < epoch(t1["fired"][0]["at"]) <= DAY1 + 30 * 1666 + 5 * 60
    # the --alerts-out lines: one per told threshold, with the kind and the budget's numbers
    lines = res.budget_firings
    assert [(x["kind"], x["budget"]["name"], x["budget"]["period_id"], x["budget"]["threshold"]) for x in lines] == [
        ("budget_threshold", "ads-daily", "2026-01-05", 50.0),
        ("budget_threshold", "ads-daily", "2026-01-05", 80.0),
        ("budget_threshold", "ads-tokens", "2026-01-05", 100.0),
        ("budget_threshold", "ads-daily", "2026-01-05", 100.0),
        ("budget_threshold", "ads-daily", "2026-01-06", 50.0),
        ("budget_threshold", "ads-daily", "2026-01-06", 80.0),
        ("budget_threshold", "ads-tokens", "2026-01-06", 100.0),
        ("budget_threshold", "ads-daily", "2026-01-06", 100.0),
    ]
    assert all(x["action"] == "trigger" and x["team"] == "ads" and not x["page"] for x in lines)
    assert lines[0]["fired_at"] == d1["fired"][0]["at"]
    assert not [f for f in res.firings if f["kind"].startswith("budget")]  # not scored as cost spikes


def test_replay_reports_each_budgets_ledger_and_notifications() -> None:
    check(replay_lines(history(), cfg(), fork=False))


@pytest.mark.skipif(not replay_mod._can_fork(), reason="needs two cores and fork")
def test_the_forked_judge_carries_the_ledger(monkeypatch: pytest.MonkeyPatch) -> None:
    lines = history()
    monkeypatch.setattr(replay_mod, "FORK_AFTER_LINES", 3000)  # mid day 1, between two thresholds
    forked = replay_lines(lines, cfg(), fork=True)
    check(forked)
    plain = replay_lines(lines, cfg(), fork=False)
    assert (forked.budgets, forked.budget_firings, forked.notifications) == (
        plain.budgets, plain.budget_firings, plain.notifications)


def test_cli_summary_and_alerts_out(tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join(history()) + b"\n")
    policy = tmp_path / "policy.yaml"
    policy.write_text(POLICY)
    out = tmp_path / "alerts.jsonl"
    res = CliRunner().invoke(app, ["replay", str(events), "--policy", str(policy), "--alerts-out", str(out),
                                   "--no-progress"])
    assert res.exit_code == 0, res.output
    summary = orjson.loads(res.stdout)
    assert summary["budget_notifications"] == 8
    [usd] = [b for b in summary["budgets"] if b["budget"] == "ads-daily"]
    assert [p["spent"] for p in usd["periods"]] == [154.0, 144.0]
    lines = [orjson.loads(x) for x in out.read_bytes().splitlines()]
    kinds = [x["kind"] for x in lines]
    assert kinds.count("budget_threshold") == 8 and all("budget" in x for x in lines if x["kind"] == "budget_threshold")
