"""The dev inbox (issue 13, item 2): the real Slack and PagerDuty receivers deliver to the
worker's own stand-in, over HTTP, and ``/api/inbox`` shows what Slack would show -- the root
message with its header, fields and context, rewritten on resolve, the thread replies -- and
the PagerDuty events beside them. The stand-in checks its made-up secrets and never shows them."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient, TestServer

from alerts.model import SpikeNotification
from alerts.receivers import RECEIVERS
from alerts.receivers.pagerduty.config import PagerDutyConfig
from alerts.receivers.slack.config import SlackConfig
from alerts.retry import deliver_with_retry
from streams.common.config import StreamConfig
from streams.worker.app import create_app
from streams.worker.inbox import PAGERDUTY_PATH, SLACK_PATH, DevInboxSpec

TOKEN = "api-token-for-the-inbox-test-0123"


@pytest.fixture
async def inbox(tmp_path: Path) -> AsyncIterator[tuple[TestClient, DevInboxSpec]]:
    spec = DevInboxSpec.new()
    cfg = StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=1, data_dir=str(tmp_path), dev_inbox=spec,
                       api_token=TOKEN)
    app = create_app(cfg)
    async with TestClient(TestServer(app.web.web_app)) as client:
        yield client, spec


def _note(action: str, seq: int, t0: float) -> SpikeNotification:
    return SpikeNotification(
        key="cost_spike:team=ads", seq=seq, action=action, severity="critical",  # type: ignore[arg-type]
        reason="resolved" if action == "resolve" else "first", series="team=ads", labels={"team": "ads"},
        title="Cost spike: team=ads", started_at=t0, fired_at=t0 + 60, page=True,
        ended_at=t0 + 600 if action == "resolve" else None, observed_usd=12.5, expected_usd=1.25,
        excess_usd=11.25, excess_pct=900.0, window_start=t0, window_end=t0 + 60,
        top_contributors=[{"kind": "user", "name": "<img src=x onerror=alert(1)>", "usd": 9.0}])


async def test_the_real_receivers_deliver_to_it_and_the_api_shows_it_as_slack_would(
        inbox: tuple[TestClient, DevInboxSpec]) -> None:
    client, spec = inbox
    base = str(client.make_url(""))
    slack_cfg = SlackConfig(token=spec.slack_token, api_url=base + SLACK_PATH, pacing_seconds=0)  # type: ignore[arg-type]
    pd_cfg = PagerDutyConfig(routing_key=spec.pagerduty_key, url=base + PAGERDUTY_PATH)  # type: ignore[arg-type]
    t0 = time.time() - 600
    async with aiohttp.ClientSession() as session:
        for name, cfg, target in (("slack", slack_cfg, "#ads-ai-spend"), ("pagerduty", pd_cfg, "default")):
            conn = RECEIVERS[name].connect(cfg, session)
            sink = conn.sink(target)
            prior = None
            for i, action in enumerate(("trigger", "resolve")):
                res = await deliver_with_retry(sink, _note(action, i + 1, t0), prior, max_attempts=1)
                assert res.ok, (name, action, res.detail)
                prior = res.state
            await conn.close()

    resp = await client.get("/api/inbox", headers={"Authorization": f"Bearer {TOKEN}"})
    body = await resp.json()
    assert resp.status == 200 and body["enabled"] is True
    [root] = body["slack"]
    assert root["channel"] == "#ads-ai-spend" and root["edited_at"] is not None  # rewritten on resolve
    kinds = [b["type"] for b in root["blocks"]]
    assert kinds[0] == "header" and "section" in kinds and "context" in kinds
    [reply] = root["replies"]
    assert reply["blocks"] and "back to normal" in reply["text"]
    actions = [e["event_action"] for e in body["pagerduty"]]
    assert actions == ["resolve", "trigger"]  # newest first
    assert body["pagerduty"][1]["payload"]["severity"] == "critical"
    text = await resp.text()
    assert spec.slack_token not in text and spec.pagerduty_key not in text and "routing_key" not in text


async def test_it_checks_its_own_secrets(inbox: tuple[TestClient, DevInboxSpec]) -> None:
    client, spec = inbox
    msg = {"channel": "#x", "text": "hi"}
    resp = await client.post(SLACK_PATH + "chat.postMessage", json=msg)
    assert (await resp.json()) == {"ok": False, "error": "not_authed"}
    resp = await client.post(SLACK_PATH + "chat.postMessage", json=msg, headers={"Authorization": "Bearer xoxb-guess"})
    assert (await resp.json())["error"] == "invalid_auth"
    resp = await client.post(PAGERDUTY_PATH, json={"routing_key": "guess", "event_action": "trigger"})
    assert resp.status == 400
    resp = await client.post(SLACK_PATH + "chat.update", json={"channel": "#x", "ts": "1.000001"},
                             headers={"Authorization": f"Bearer {spec.slack_token}"})
    assert (await resp.json())["error"] == "message_not_found"
    # the inbox itself is guarded like the rest of the API
    assert (await client.get("/api/inbox")).status == 401


async def test_without_it_the_api_says_so(tmp_path: Path) -> None:
    app = create_app(StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=1, data_dir=str(tmp_path)))
    async with TestClient(TestServer(app.web.web_app)) as client:
        body: dict[str, Any] = await (await client.get("/api/inbox")).json()
        assert body["enabled"] is False and body["slack"] == []
        assert (await client.post(SLACK_PATH + "chat.postMessage", json={})).status == 404
