"""The answer buttons on Slack alerts (issue 14, item 1): four on a cost spike's root message,
Acknowledge alone on a budget or third-party share one, none on a resolve, a thread reply or a
report, and none at all unless interactivity is set up; after a press the message is rewritten
in place without them, saying who chose what and when, and the thread says so too."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from alerts.model import BudgetNotification, MixNotification, Notification, SpikeNotification
from alerts.receivers.slack import SlackConfig, SlackConnection, SlackSink
from alerts.receivers.slack.render import (
    ACTIONS_BLOCK_ID,
    FEEDBACK_ACTIONS,
    action_value,
    answered_blocks,
    answered_message,
    answered_text,
    parse_action_value,
    slack_blocks,
)
from tests.fakes.slack_server import FakeSlackServer, channel_id, check_blocks

T0 = 1_717_200_000.0
TOKEN = "xoxb-buttons-test"


def spike(**kw: Any) -> SpikeNotification:
    base: dict[str, Any] = dict(
        key="cost_spike:team=ads", seq=1, action="trigger", severity="critical", reason="first", series="team=ads",
        labels={"team": "ads"}, title="Cost spike: team=ads", observed_usd=90.0, expected_usd=3.0, excess_usd=87.0,
        excess_pct=2900.0, window_start=T0, window_end=T0 + 60, started_at=T0, fired_at=T0 + 60)
    base.update(kw)
    return SpikeNotification(**base)


def budget() -> BudgetNotification:
    return BudgetNotification(
        key="budget:ads-monthly:2024-05:80", seq=1, action="trigger", severity="warning", reason="first",
        series="team=ads", labels={"team": "ads"}, title="Budget ads-monthly: 80% used", started_at=T0,
        fired_at=T0 + 60, rule="budget_threshold", budget="ads-monthly", unit="usd", period="month", tz="UTC",
        period_id="2024-05", period_start=T0, period_end=T0 + 31 * 86400, spent=812.5, limit=1000.0, pct_used=81.25,
        days_left=12.5, threshold=80.0, thresholds=[50.0, 80.0, 100.0], projected_total=1420.0, projected_pct=142.0)


def mix() -> MixNotification:
    return MixNotification(
        key="mix_share:team=ads", seq=1, action="trigger", severity="warning", reason="first", series="team=ads",
        labels={"team": "ads"}, title="Third-party share", started_at=T0, fired_at=T0 + 60, rule="mix_share",
        period="week", tz="UTC", period_id="2024-W22", period_start=T0, period_end=T0 + 7 * 86400, share_pct=80.0,
        line_pct=50.0, previous_period_id="2024-W21", previous_share_pct=40.0, internal_usd=20.0,
        third_party_usd=80.0)


def buttons(n: Notification, **kw: Any) -> list[str] | None:
    blocks = slack_blocks(n, **kw)[1]
    assert check_blocks(blocks) is None, check_blocks(blocks)
    found = [b for b in blocks if b["type"] == "actions"]
    if not found:
        return None
    [block] = found
    assert block["block_id"] == ACTIONS_BLOCK_ID and blocks[-1] is block  # under the footer
    assert all(json.loads(e["value"])["k"] == n.key for e in block["elements"])
    return [e["text"]["text"] for e in block["elements"]]


def test_a_cost_spike_gets_four_answers() -> None:
    assert buttons(spike(), interactive=True) == ["Acknowledge", "Expected, new normal", "Not an anomaly", "Snooze 4 h"]
    assert list(FEEDBACK_ACTIONS) == ["tokenpulse_ack", "tokenpulse_new_normal", "tokenpulse_not_anomaly",
                                      "tokenpulse_snooze_4h"]


def test_budget_and_share_notifications_get_acknowledge_only() -> None:
    assert buttons(budget(), interactive=True) == ["Acknowledge"]
    assert buttons(mix(), interactive=True) == ["Acknowledge"]


@pytest.mark.parametrize("case", ["not interactive", "resolve", "thread reply"])
def test_no_buttons(case: str) -> None:
    n = spike(action="resolve", reason="resolved", ended_at=T0 + 600) if case == "resolve" else spike()
    assert buttons(n, interactive=case != "not interactive", compact=case == "thread reply") is None


def test_a_key_too_long_for_a_button_gets_no_buttons_rather_than_a_refused_message() -> None:
    long = "team=" + "x" * 3000
    assert buttons(spike(key="cost_spike:" + long, series=long), interactive=True) is None


def test_the_value_round_trips_and_is_checked() -> None:
    n = spike(series='team=a"d<s>', key='cost_spike:team=a"d<s>')
    assert parse_action_value(action_value(n)) == {"key": n.key, "series": n.series, "started_at": T0,
                                                   "window_end": T0 + 60}
    for bad in ("nope", "[]", '{"k": 1, "s": "x"}'):
        with pytest.raises(ValueError, match=r"actions\[0\]\.value"):
            parse_action_value(bad)


def test_answered_blocks_drop_the_buttons_and_say_who_and_when() -> None:
    _, blocks = slack_blocks(spike(), interactive=True)
    out = answered_blocks(blocks, "tokenpulse_new_normal", "U024BE7LH", T0 + 120)
    assert check_blocks(out) is None
    assert not [b for b in out if b["type"] == "actions"]
    assert out[:-1] == blocks[:-1]
    line = out[-1]["elements"][0]["text"]
    assert "new normal" in line and "<@U024BE7LH>" in line and "2024-06-01" in line
    # a user id that is not one cannot mention anyone
    weird = answered_blocks(blocks, "tokenpulse_ack", "<!channel>", T0)[-1]["elements"][0]["text"]
    assert "<!channel>" not in weird and "&lt;!channel&gt;" in weird


# -- through the sink, against the local Slack --------------------------------------------------
@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackServer]:
    async with FakeSlackServer(token=TOKEN) as server:
        yield server


async def test_the_connection_renders_buttons_only_with_the_signing_secret(slack: FakeSlackServer) -> None:
    for secret, want in ((None, False), ("a-signing-secret", True)):
        conn = SlackConnection(SlackConfig(token=TOKEN, api_url=f"{slack.url}/api/",  # type: ignore[arg-type]
                                           signing_secret=secret, pacing_seconds=0))
        try:
            r = await conn.sink("#ads").send(spike(), None)
            assert r.ok, r.detail
            [post] = slack.calls("chat.postMessage")[-1:]
            assert any(b["type"] == "actions" for b in post["body"]["blocks"]) is want
        finally:
            await conn.close()


async def test_answer_rewrites_the_root_in_place_and_replies_in_the_thread(slack: FakeSlackServer) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=f"{slack.url}/api/", retry_handlers=[], timeout=5)
    sink = SlackSink(client, "#ads", interactive=True)
    r = await sink.send(spike(), None)
    cid, ts = r.state["channel"], r.state["ts"]
    assert cid == channel_id("#ads")
    root = slack.messages[(cid, ts)]
    answers = [{"action": "tokenpulse_ack", "user_id": "U024BE7LH", "at": T0 + 90}]
    text, blocks = answered_message(spike(reason="repeat", action="update"), answers)
    got = await sink.answer(cid, ts, text, blocks, answered_text("tokenpulse_ack", "U024BE7LH", T0 + 90))
    assert got.ok, got.detail
    root = slack.messages[(cid, ts)]
    assert root["edited"] and not [b for b in root["blocks"] if b["type"] == "actions"]
    assert "acknowledged by <@U024BE7LH>" in root["blocks"][-1]["elements"][0]["text"]
    [reply] = slack.thread(cid, ts)
    assert reply["text"].startswith("✔️ acknowledged by <@U024BE7LH>")
    # an unknown message (deleted in Slack): the rewrite fails for good, the thread reply is still sent
    await sink.answer(cid, "1.000001", text, blocks, "✔️")
    assert slack.calls("chat.update")[-1]["response"] == {"ok": False, "error": "message_not_found"}
    assert slack.calls("chat.postMessage")[-1]["body"]["thread_ts"] == "1.000001"


def test_answered_message_keeps_every_answer_in_order() -> None:
    answers = [{"action": "tokenpulse_ack", "user_id": "U1", "at": T0},
               {"action": "tokenpulse_snooze_4h", "user_id": "U2", "at": T0 + 60}]
    _, blocks = answered_message(spike(), answers)
    lines = [b["elements"][0]["text"] for b in blocks if b.get("block_id", "").startswith("tokenpulse_answered")]
    assert len(lines) == 2 and "acknowledged by <@U1>" in lines[0] and "snoozed for 4 h by <@U2>" in lines[1]
    assert check_blocks(blocks) is None and not [b for b in blocks if b["type"] == "actions"]
    # interactive: the buttons not pressed yet stay, last
    _, blocks = answered_message(spike(), answers[:1], interactive=True)
    assert blocks[-1]["type"] == "actions" and check_blocks(blocks) is None
    assert [e["action_id"] for e in blocks[-1]["elements"]] == [
        "tokenpulse_new_normal", "tokenpulse_not_anomaly", "tokenpulse_snooze_4h"]
    assert "acknowledged by <@U1>" in blocks[-2]["elements"][0]["text"]
    # a resolved alert: no buttons left to press
    _, blocks = answered_message(spike(action="resolve", reason="resolved", ended_at=T0 + 600), answers,
                                 interactive=True)
    assert not [b for b in blocks if b["type"] == "actions"]
