"""What the dashboard shows of on-call's answers (issue 14, item 5): each alert of
``GET /api/alerts`` with its answers (who chose what, when), and per team in ``GET /api/feedback``
the incidents of the last 30 days, how many were acknowledged, called a new normal or not an
anomaly, and the precision that follows. The worker app is the real one, not started (the
views read its tables)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from alerts.receivers.slack.config import SlackConfig
from streams.common.config import StreamConfig
from streams.common.periods import rfc3339
from streams.worker.app import create_app
from streams.worker.feedback import feedback_summary
from streams.worker.state import WorkerState

T0 = 1_769_860_800.0  # 2026-01-31T12:00:00Z
DAY = 86400.0


def alert(team: str, started: float, key: str | None = None) -> dict[str, Any]:
    return {"key": key or f"cost_spike:team={team}", "kind": "spike", "series": f"team={team}",
            "labels": {"team": team}, "started_at": started, "fired_at": started + 60, "action": "trigger"}


def answer(n: int, action: str, team: str, started: float, user: str = "ana", key: str | None = None) -> dict[str, Any]:
    return {"id": f"slack:C1:{n}", "action": action, "key": key or f"cost_spike:team={team}", "series": f"team={team}",
            "started_at": started, "team": team, "user": user, "user_id": "U" + user, "at": started + 300 + n,
            "outcome": "recorded", "channel": "C1", "message_ts": f"{n}.0", "applied_at": started + 301 + n}


def test_summary_counts_incidents_once_per_kind_of_answer_within_30_days() -> None:
    alerts = [alert("ads", T0 - DAY), alert("search", T0 - 2 * DAY), alert("legal", T0 - 40 * DAY)]
    answers = [
        answer(1, "tokenpulse_ack", "ads", T0 - DAY), answer(2, "tokenpulse_ack", "ads", T0 - DAY, "bo"),
        answer(3, "tokenpulse_new_normal", "ads", T0 - DAY),
        # an earlier incident of the same key, no longer in the alerts table: known by its answer
        answer(4, "tokenpulse_not_anomaly", "ads", T0 - 5 * DAY),
        answer(5, "tokenpulse_not_anomaly", "legal", T0 - 40 * DAY),  # older than 30 days
    ]
    rows = {r["team"]: r for r in feedback_summary(alerts, answers, T0)}
    assert set(rows) == {"ads", "search"}
    assert rows["ads"] == {"org": None, "team": "ads", "alerts": 2, "answered": 2, "acknowledged": 1, "new_normal": 1,
                           "not_anomaly": 1, "snoozed": 0, "precision": 0.5}
    assert rows["search"]["alerts"] == 1 and rows["search"]["answered"] == 0 and rows["search"]["precision"] is None
    assert [r["team"] for r in feedback_summary(alerts, answers, T0, team="search")] == ["search"]
    # 40 days later nothing of it is in the span
    assert feedback_summary(alerts, answers, T0 + 40 * DAY) == []


def test_summary_keeps_two_orgs_teams_of_the_same_name_apart() -> None:
    acme = {**alert("ads", T0 - DAY, key="cost_spike:org=acme|team=ads"), "series": "org=acme|team=ads",
            "labels": {"org": "acme", "team": "ads"}}
    alerts = [alert("ads", T0 - DAY), acme]
    answers = [{**answer(1, "tokenpulse_not_anomaly", "ads", T0 - DAY, key="cost_spike:org=acme|team=ads"),
                "series": "org=acme|team=ads", "org": "acme"}]
    rows = {(r["org"], r["team"]): r for r in feedback_summary(alerts, answers, T0)}
    assert set(rows) == {(None, "ads"), ("acme", "ads")}
    assert rows[("acme", "ads")]["not_anomaly"] == 1 and rows[("acme", "ads")]["alerts"] == 1
    assert rows[(None, "ads")]["answered"] == 0


@pytest.fixture
async def api(tmp_path: Path) -> AsyncIterator[tuple[WorkerState, TestClient]]:
    slack = SlackConfig(token=SecretStr("xoxb-made-up"), signing_secret=SecretStr("made-up-signing-secret"))
    cfg = StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=1, data_dir=str(tmp_path), receivers={"slack": slack})
    app = create_app(cfg)
    state: WorkerState = app.tokenpulse  # type: ignore[attr-defined]
    assert state.feedback is not None
    async with TestClient(TestServer(app.web.web_app)) as client:
        yield state, client


async def test_each_alert_lists_its_answers_and_the_summary_says_the_precision(
        api: tuple[WorkerState, TestClient]) -> None:
    state, client = api
    assert state.feedback is not None
    now = T0
    state.tables.alerts.data["cost_spike:team=ads"] = alert("ads", now - 3600)
    state.tables.alerts.data["cost_spike:team=search"] = alert("search", now - 7200)
    table = state.feedback.table.data
    for rec in (answer(1, "tokenpulse_ack", "ads", now - 3600, "ana"),
                answer(2, "tokenpulse_new_normal", "ads", now - 3600, "bo"),
                answer(3, "tokenpulse_not_anomaly", "search", now - 7200, "cy"),
                answer(4, "tokenpulse_ack", "ads", now - 9 * DAY, "dee")):  # an earlier incident of the key
        table[rec["id"]] = rec
    resp = await client.get("/api/alerts")
    assert resp.status == 200
    alerts = {a["key"]: a for a in (await resp.json())["alerts"]}
    ads = alerts["cost_spike:team=ads"]["feedback"]
    assert [(a["action"], a["user"]) for a in ads] == [("tokenpulse_ack", "ana"), ("tokenpulse_new_normal", "bo")]
    assert ads[0]["at"] == "2026-01-31T11:05:01Z"  # when, as on every other time of the API
    assert [a["user"] for a in alerts["cost_spike:team=search"]["feedback"]] == ["cy"]

    resp = await client.get("/api/feedback", params={"at": str(now)})
    body = await resp.json()
    assert body["enabled"] and len(body["feedback"]) == 4
    teams = {r["team"]: r for r in body["summary"]["teams"]}
    assert body["summary"]["days"] == 30 and body["summary"]["until"] == "2026-01-31T12:00:00Z"
    assert (teams["ads"]["alerts"], teams["ads"]["acknowledged"], teams["ads"]["new_normal"]) == (2, 2, 1)
    assert (teams["search"]["not_anomaly"], teams["search"]["precision"]) == (1, 0.0)
    resp = await client.get("/api/feedback", params={"at": str(now), "team": "search"})
    body = await resp.json()
    assert [r["team"] for r in body["summary"]["teams"]] == ["search"] and len(body["feedback"]) == 1


async def test_feedback_lists_the_series_whose_floor_was_raised_with_why(api: tuple[WorkerState, TestClient]) -> None:
    from streams.judge.core import SeriesInfo

    state, client = api
    j = state.judging.judge_for(0)
    for team in ("ads", "search"):
        j.series[f"team={team}"] = SeriesInfo(labels={"team": team}, peak_usd=40.0, peak_end=int(T0))
    j.done_until = int(T0)
    assert j.raise_floor("team=ads", 1.5, 4.0, {"id": "slack:C1:9", "by": "ana", "at": T0, "window_end": T0 - 60}) is not None
    resp = await client.get("/api/feedback", params={"team": "ads"})
    body = await resp.json()
    assert body["bounds"] == {"not_anomaly_step": 1.5, "max_raise": 4.0, "floor_half_life_days": 14.0}
    [row] = body["raised"]
    assert (row["series"], row["floor_usd"], row["first_excess_usd"], row["answers_total"]) == ("team=ads", 60.0, 40.0, 1)
    assert row["answers"][0]["by"] == "ana" and row["answers"][0]["at"] == "2026-01-31T12:00:00Z"
    j.done_until = int(T0) + 14 * 86400  # two weeks of windows later, no other answer: the floor as it stands
    [row] = (await (await client.get("/api/feedback", params={"team": "ads"})).json())["raised"]
    assert row["floor_usd"] == 30.0 and row["answers"][0]["floor_usd"] == 60.0
    body = await (await client.get("/api/feedback", params={"team": "search"})).json()
    assert body["raised"] == []


async def test_each_alert_says_who_acknowledged_or_snoozed_it_and_the_state_filter_knows(
        api: tuple[WorkerState, TestClient]) -> None:
    """On-call sees an acknowledged incident as acknowledged, by whom and since when, and a snoozed
    one as snoozed until when (the alerts table only ever said firing or resolved)."""
    import time

    from alerts.model import Silence

    state, client = api
    assert state.feedback is not None
    now = time.time()
    for team in ("ads", "ml", "search", "legal"):
        state.tables.alerts.data[f"cost_spike:team={team}"] = {**alert(team, now - 3600), "rule": "cost_spike"}
    state.tables.alerts.data["cost_spike:team=legal"]["action"] = "resolve"
    snooze = Silence(matchers={"series": "team=ml"}, starts_at=now - 600, ends_at=now + 4 * 3600,
                     reason="snoozed for 4 h from Slack", created_by="feedback:bo", id="slack:C1:3")
    table = state.feedback.table.data
    for rec in (answer(1, "tokenpulse_ack", "ads", now - 3600, "ana"),
                answer(2, "tokenpulse_ack", "ml", now - 3600, "cy"),
                {**answer(3, "tokenpulse_snooze_4h", "ml", now - 3600, "bo"), "silence": snooze.to_dict()},
                # pressed after the incident had resolved: it acknowledged nothing
                {**answer(4, "tokenpulse_ack", "search", now - 3600, "dee"),
                 "outcome": "the alert had already resolved: nothing changed"},
                answer(5, "tokenpulse_ack", "legal", now - 3600, "eve"),
                # an earlier incident of ads, snoozed long ago: over, and not this incident's answer
                {**answer(6, "tokenpulse_snooze_4h", "ads", now - 9 * DAY, "fay"),
                 "silence": Silence(matchers={"series": "team=ads"}, starts_at=now - 9 * DAY,
                                    ends_at=now - 9 * DAY + 4 * 3600, reason="old", created_by="feedback:fay").to_dict()}):
        table[rec["id"]] = rec
    alerts = {a["key"]: a for a in (await (await client.get("/api/alerts")).json())["alerts"]}
    got = {k.split("=")[1]: (a["state"], a["acknowledged_by"], a["snoozed_by"]) for k, a in alerts.items()}
    assert got == {"ads": ("acknowledged", "ana", None), "ml": ("snoozed", "cy", "bo"),
                   "search": ("firing", None, None), "legal": ("resolved", "eve", None)}
    ads, ml = alerts["cost_spike:team=ads"], alerts["cost_spike:team=ml"]
    assert ads["acknowledged_at"] == ads["feedback"][0]["at"] and ads["acknowledged_at"].endswith("Z")
    assert ml["snoozed_until"] == rfc3339(now + 4 * 3600) and ads["snoozed_until"] is None
    for asked, keys in (("acknowledged", ["ads"]), ("snoozed", ["ml"]), ("firing", ["search"]), ("resolved", ["legal"]),
                        ("open", ["ads", "ml", "search"])):
        body = await (await client.get("/api/alerts", params={"state": asked})).json()
        assert sorted(a["key"].split("=")[1] for a in body["alerts"]) == keys, asked
