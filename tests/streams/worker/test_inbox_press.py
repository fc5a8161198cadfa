"""The dev inbox's answer buttons (issue 14, item 2: a stand-in that lets ``make run`` show the
buttons working without Slack): a press in the dashboard is signed with the run's made-up
signing secret and goes through the handler of ``POST /slack/actions``, so it is verified like
Slack's, reaches the same queue as the same :class:`Press`, and is refused when the signature
does not hold; the route exists only when the dev inbox stands in for Slack."""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from pydantic import SecretStr

from alerts.model import SpikeNotification
from alerts.receivers.slack.config import SlackConfig
from alerts.receivers.slack.render import slack_blocks
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.worker.app import create_app
from streams.worker.inbox import DEV_USER, PRESS_PATH, DevInbox, DevInboxSpec, register_inbox, register_inbox_press
from streams.worker.slack_actions import Press, SlackVerifier, register_slack_actions

NOW = 1_790_000_000.0


def note() -> SpikeNotification:
    return SpikeNotification(
        key="cost_spike:team=ads", seq=1, action="trigger", severity="critical", reason="first", series="team=ads",
        labels={"team": "ads"}, title="Cost spike: team=ads", started_at=NOW - 600, fired_at=NOW - 540,
        observed_usd=12.5, expected_usd=1.25, excess_usd=11.25, excess_pct=900.0, window_start=NOW - 600,
        window_end=NOW - 540)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> float:
        self.now += 0.25  # every press its own action_ts
        return self.now


async def served(inbox_secret: str, verifier_secret: str) -> tuple[TestClient, DevInbox, list[Press], Metrics, str]:
    spec = dataclasses.replace(DevInboxSpec.new(), signing_secret=inbox_secret)
    clock = Clock()
    inbox = DevInbox(spec, clock=clock)
    presses: list[Press] = []
    metrics = Metrics()
    app = web.Application()
    register_inbox(app, inbox)
    handle = register_slack_actions(app, SlackVerifier(verifier_secret, clock=clock), presses.append, metrics)
    register_inbox_press(app, inbox, handle)
    text, blocks = slack_blocks(note(), interactive=True)
    ts = inbox.slack("chat.postMessage", spec.slack_token, {"channel": "#ai-spend", "text": text, "blocks": blocks})["ts"]
    client = TestClient(TestServer(app))
    await client.start_server()
    return client, inbox, presses, metrics, ts


@pytest.fixture
async def good() -> AsyncIterator[tuple[TestClient, DevInbox, list[Press], Metrics, str]]:
    got = await served("made-up-secret", "made-up-secret")
    yield got
    await got[0].close()


async def test_a_press_in_the_panel_is_a_verified_press_of_that_button(
        good: tuple[TestClient, DevInbox, list[Press], Metrics, str]) -> None:
    client, inbox, presses, metrics, ts = good
    assert inbox.view()["pressable"]
    for action in ("tokenpulse_ack", "tokenpulse_new_normal", "tokenpulse_not_anomaly", "tokenpulse_snooze_4h"):
        resp = await client.post(PRESS_PATH, json={"channel": "#ai-spend", "ts": ts, "action_id": action})
        assert resp.status == 200, await resp.text()
    assert [p.action for p in presses] == ["tokenpulse_ack", "tokenpulse_new_normal", "tokenpulse_not_anomaly",
                                           "tokenpulse_snooze_4h"]
    p = presses[0]
    assert (p.key, p.series, p.started_at, p.window_end) == ("cost_spike:team=ads", "team=ads", NOW - 600, NOW - 540)
    assert (p.channel, p.message_ts, p.user_id) == ("#ai-spend", ts, DEV_USER["id"])
    assert len({p.id for p in presses}) == 4  # four presses, four answers
    assert metrics.counters["slack_actions_total"]['{action="tokenpulse_ack"}'] == 1


async def test_what_is_not_a_button_of_a_message_is_refused(
        good: tuple[TestClient, DevInbox, list[Press], Metrics, str]) -> None:
    client, _, presses, _, ts = good
    cases = [({"channel": "#ai-spend", "ts": "1.000", "action_id": "tokenpulse_ack"}, 404, "message_not_found"),
             ({"channel": "#ai-spend", "ts": ts, "action_id": "tokenpulse_reboot"}, 404, "button_not_found"),
             ({"channel": "#ai-spend", "ts": ts}, 400, "action_id: missing"),
             ([1, 2], 400, "not a JSON object")]
    for body, status, why in cases:
        resp = await client.post(PRESS_PATH, json=body)
        assert (resp.status, why in (await resp.json())["error"]) == (status, True), body
    # a form post (what a page elsewhere could send without a CORS preflight) is not taken
    resp = await client.post(PRESS_PATH, data={"channel": "#ai-spend", "ts": ts, "action_id": "tokenpulse_ack"})
    assert resp.status == 415
    assert presses == []


async def test_a_press_signed_with_another_secret_is_refused_like_a_forged_slack_request() -> None:
    client, _, presses, metrics, ts = await served("not-the-secret", "made-up-secret")
    try:
        resp = await client.post(PRESS_PATH, json={"channel": "#ai-spend", "ts": ts, "action_id": "tokenpulse_ack"})
        assert resp.status == 401 and (await resp.json())["error"] == "refused: forged"
        assert presses == [] and metrics.counters["slack_actions_rejected_total"]['{reason="forged"}'] == 1
    finally:
        await client.close()


def _config(tmp_path: Path, spec: DevInboxSpec, slack_secret: str) -> StreamConfig:
    slack = SlackConfig(token=SecretStr(spec.slack_token), signing_secret=SecretStr(slack_secret))
    return StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=1, data_dir=str(tmp_path),
                        receivers={"slack": slack}, dev_inbox=spec)


@pytest.mark.parametrize("stand_in", [True, False])
async def test_the_press_route_exists_only_when_the_inbox_stands_in_for_slack(tmp_path: Path, stand_in: bool) -> None:
    spec = DevInboxSpec.new()
    assert spec.signing_secret and spec.signing_secret not in repr(spec)
    app = create_app(_config(tmp_path, spec, spec.signing_secret if stand_in else "the-real-slack-apps-secret"))
    async with TestClient(TestServer(app.web.web_app)) as client:
        resp = await client.get("/api/inbox")
        assert (await resp.json())["pressable"] is stand_in
        resp = await client.post(PRESS_PATH, json={"channel": "#ai-spend", "ts": "1.0", "action_id": "tokenpulse_ack"})
        assert resp.status == 404
        # the route says no such message; without it, aiohttp says there is no such route
        assert (await resp.text()) == ('{"error": "message_not_found"}' if stand_in else "404: Not Found")
