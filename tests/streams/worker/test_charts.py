"""The dashboard's chart endpoints (issue 13, item 3) on the real app: spend over time stacked by
team, model, provider or tool with alert markers, each budget's burn-down with its forecast, the
in-house share per team over time, and the top users by spend and by excess over their usual."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from streams.budgets.ledger import BudgetLedger, BudgetSpec
from streams.common.config import StreamConfig
from streams.ingest.windows import NANO
from streams.worker.app import create_app
from streams.worker.state import WorkerState

NOW = 1_769_860_800.0  # 2026-01-31T12:00:00Z


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[TestClient]:
    budget = BudgetSpec(name="ads-daily", scope=(("team", "ads"),), unit="usd", limit=100 * NANO, period="day")
    cfg = StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=1, data_dir=str(tmp_path), budgets=(budget,),
                       internal_models=("acme-*",))
    app = create_app(cfg)
    state: WorkerState = app.tokenpulse  # type: ignore[attr-defined]
    state.judging.ledgers[0] = BudgetLedger(cfg.window_seconds, list(cfg.budgets))
    spend = state.tables.spend.data
    for i in range(60):  # the last hour, a window a minute
        w = int(NOW) - 3600 + 60 * i
        spend[f"team=ads|{w}"] = {"s": [2 * NANO, 100, 50, 0, 0, 4]}
        spend[f"team=search|{w}"] = {"s": [NANO, 100, 50, 0, 0, 2]}
        spend[f"team=ads|model=acme-llama-70b|{w}"] = {"s": [NANO // 2, 50, 25, 0, 0, 2]}
        spend[f"team=ads|model=gpt-4o|{w}"] = {"s": [3 * NANO // 2, 50, 25, 0, 0, 2]}
        spend[f"model=gpt-4o|{w}"] = {"s": [3 * NANO // 2, 50, 25, 0, 0, 2]}
        spend[f"user=bob|{w}"] = {"s": [NANO * (10 if i >= 30 else 1), 10, 10, 0, 0, 1]}
        spend[f"user=ann|{w}"] = {"s": [2 * NANO, 10, 10, 0, 0, 1]}
        spend[f"tool=claude-code|{w}"] = {"s": [2 * NANO, 100, 50, 0, 0, 4]}
        spend[f"tool=(none)|{w}"] = {"s": [NANO, 100, 50, 0, 0, 2]}
    state.tables.alerts.data["cost_spike:team=ads"] = {
        "key": "cost_spike:team=ads", "kind": "spike", "series": "team=ads", "severity": "critical",
        "title": "Cost spike: team=ads", "started_at": NOW - 900, "ended_at": NOW - 300, "action": "resolve"}
    async with TestClient(TestServer(app.web.web_app)) as client:
        yield client


async def _get(client: TestClient, path: str) -> Any:
    resp = await client.get(path)
    assert resp.status == 200, await resp.text()
    return await resp.json()


async def test_spend_over_time_is_stacked_by_team_with_alert_markers(api: TestClient) -> None:
    body = await _get(api, f"/api/timeseries?by=team&range=1h&until={NOW}")
    assert [s["name"] for s in body["series"]] == ["ads", "search"]
    assert len(body["t"]) == 60 and body["step"] == 60
    assert sum(body["series"][0]["usd"]) == pytest.approx(2 * 60)
    assert [(m["state"], m["at"]) for m in body["alerts"]] == [("started", NOW - 900), ("resolved", NOW - 300)]
    body = await _get(api, f"/api/timeseries?by=model&range=24h&until={NOW}")
    assert [s["name"] for s in body["series"]] == ["gpt-4o"] and body["step"] == 900
    body = await _get(api, f"/api/timeseries?by=tool&range=1h&until={NOW}")  # events with no tool: "(none)"
    assert [(s["name"], s["total_usd"]) for s in body["series"]] == [("claude-code", 120.0), ("(none)", 60.0)]
    body = await _get(api, f"/api/spend?group_by=tool&since={NOW - 3600}&until={NOW}")
    assert [(r["tool"], r["events"]) for r in body["rows"]] == [("claude-code", 240), ("(none)", 120)]


async def test_burn_down_has_the_limit_and_the_forecast(api: TestClient) -> None:
    body = await _get(api, f"/api/burndown?at={NOW}")
    [b] = body["budgets"]
    assert b["budget"] == "ads-daily" and b["limit"] == 100 and b["thresholds"]
    assert b["cumulative"] and b["t"][-1] <= NOW and b["cumulative"] == sorted(b["cumulative"])
    assert b["cumulative"][-1] == pytest.approx(2 * 60)  # the hour of ads spend, all in today's period
    assert "exhaustion_at" in b["forecast"] and b["period_end_ts"] > NOW


async def test_inhouse_share_per_team_over_time(api: TestClient) -> None:
    body = await _get(api, f"/api/inhouse?range=1h&until={NOW}")
    [ads] = body["teams"]
    assert ads["team"] == "ads" and set(ads["pct"]) == {25.0}


async def test_top_users_by_spend_and_by_excess_over_their_usual(api: TestClient) -> None:
    body = await _get(api, f"/api/top_users?range=1h&until={NOW - 1800}")  # bob at his usual
    assert body["by_spend"][0]["user"] == "ann"
    body = await _get(api, f"/api/top_users?range=1h&until={NOW}")
    assert [u["user"] for u in body["by_excess"]] == ["bob", "ann"]
    bob = body["by_excess"][0]
    assert bob["requests"] == 60 and bob["input_tokens"] == 600 and bob["excess_usd"] > 0
