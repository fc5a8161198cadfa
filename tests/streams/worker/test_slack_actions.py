"""Slack's interactivity endpoint (issue 14, item 2): only a request Slack signed, recently, once,
and of a bounded size reaches the worker's answer queue; everything else is refused with 401
(413 for the size) and a metric, and the endpoint does not exist without the signing secret."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import orjson
import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from alerts.model import SpikeNotification
from alerts.receivers.slack.config import SlackConfig
from alerts.receivers.slack.render import action_value
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.worker.app import create_app
from streams.worker.slack_actions import BODY_MAX, PATH, Press, SlackVerifier, parse_press, register_slack_actions

SECRET = "8f742231b10e8888abcd99yyyzzz85a5"
NOW = 1_790_000_000.0


def verifier(now: float = NOW, **kw: Any) -> SlackVerifier:
    return SlackVerifier(SECRET, clock=lambda: now, **kw)


def note(**kw: Any) -> SpikeNotification:
    base: dict[str, Any] = dict(
        key="cost_spike:team=ads", seq=1, action="trigger", severity="critical", reason="first", series="team=ads",
        labels={"team": "ads"}, title="Cost spike: team=ads", started_at=NOW - 600, fired_at=NOW - 540,
        observed_usd=12.5, expected_usd=1.25, excess_usd=11.25, excess_pct=900.0, window_start=NOW - 600,
        window_end=NOW - 540)
    base.update(kw)
    return SpikeNotification(**base)


def press_body(action: str = "tokenpulse_ack", *, n: SpikeNotification | None = None, user: str = "U024BE7LH",
               action_ts: str = "1790000000.123456") -> bytes:
    payload = {
        "type": "block_actions",
        "user": {"id": user, "username": "ana", "name": "ana"},
        "container": {"type": "message", "channel_id": "C0ADS00001", "message_ts": "1790000000.000100"},
        "channel": {"id": "C0ADS00001"},
        "message": {"ts": "1790000000.000100", "blocks": [{"type": "section", "block_id": "x",
                                                           "text": {"type": "mrkdwn", "text": "spike"}}]},
        "actions": [{"action_id": action, "block_id": "tokenpulse_feedback", "type": "button",
                     "value": action_value(n or note()), "action_ts": action_ts}],
    }
    return urlencode({"payload": orjson.dumps(payload).decode()}).encode()


def signed(body: bytes, ts: float = NOW, secret: str = SECRET) -> dict[str, str]:
    t = str(int(ts))
    return {"X-Slack-Request-Timestamp": t, "X-Slack-Signature": SlackVerifier(secret).signature(t, body),
            "Content-Type": "application/x-www-form-urlencoded"}


# -- the verifier ----------------------------------------------------------------------------
def test_slacks_documented_example_signature() -> None:
    # The example of Slack's "Verifying requests from Slack" page: this secret, timestamp and
    # body give this signature.
    v = SlackVerifier("8f742231b10e8888abcd99yyyzzz85a5", clock=lambda: 1531420618)
    body = (b"token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V"
            b"&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text="
            b"&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN"
            b"&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c")
    sig = "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
    assert v.signature("1531420618", body) == sig
    assert v.check("1531420618", sig, body) is None


def test_a_signed_fresh_request_passes_once_then_is_a_replay() -> None:
    v, body = verifier(), press_body()
    h = signed(body)
    assert v.check(h["X-Slack-Request-Timestamp"], h["X-Slack-Signature"], body) is None
    assert v.check(h["X-Slack-Request-Timestamp"], h["X-Slack-Signature"], body) == "replay"


@pytest.mark.parametrize("case", ["forged", "other secret", "body changed", "no signature", "bad timestamp",
                                  "stale", "future"])
def test_refused_requests(case: str) -> None:
    v, body = verifier(), press_body()
    h = signed(body)
    ts, sig = h["X-Slack-Request-Timestamp"], h["X-Slack-Signature"]
    got = {
        "forged": lambda: v.check(ts, "v0=" + "0" * 64, body),
        "other secret": lambda: v.check(ts, signed(body, secret="another-secret")["X-Slack-Signature"], body),
        "body changed": lambda: v.check(ts, sig, body.replace(b"tokenpulse_ack", b"tokenpulse_new_normal")),
        "no signature": lambda: v.check(ts, None, body),
        "bad timestamp": lambda: v.check("17900000e0", sig, body),
        "stale": lambda: v.check(str(int(NOW - 301)), signed(body, NOW - 301)["X-Slack-Signature"], body),
        "future": lambda: v.check(str(int(NOW + 301)), signed(body, NOW + 301)["X-Slack-Signature"], body),
    }[case]()
    want = {"forged": "forged", "other secret": "forged", "body changed": "forged", "no signature": "missing",
            "bad timestamp": "malformed", "stale": "stale", "future": "stale"}[case]
    assert got == want
    # a refused request is not remembered: the genuine one still passes afterwards
    assert v.check(ts, sig, body) is None


def test_the_replay_memory_is_bounded() -> None:
    v = verifier(keep=3)
    for i in range(10):
        body = press_body(action_ts=f"1790000000.{i:06d}")
        h = signed(body)
        assert v.check(h["X-Slack-Request-Timestamp"], h["X-Slack-Signature"], body) is None
    assert len(v._seen) == 3
    assert "SECRET" not in repr(v) and SECRET not in repr(v)


def test_old_signatures_are_forgotten_as_time_passes() -> None:
    clock = [NOW]
    v = SlackVerifier(SECRET, clock=lambda: clock[0])
    body = press_body()
    h = signed(body)
    assert v.check(h["X-Slack-Request-Timestamp"], h["X-Slack-Signature"], body) is None
    clock[0] += 3600
    b2 = press_body(action_ts="1790003600.1")
    h2 = signed(b2, clock[0])
    assert v.check(h2["X-Slack-Request-Timestamp"], h2["X-Slack-Signature"], b2) is None
    assert list(v._seen) == [h2["X-Slack-Signature"]]


# -- the press ---------------------------------------------------------------------------------
def test_parse_press_reads_the_answer_the_alert_and_who() -> None:
    p = parse_press(press_body("tokenpulse_new_normal"))
    assert (p.action, p.key, p.series, p.user_id, p.user_name, p.channel, p.message_ts) == (
        "tokenpulse_new_normal", "cost_spike:team=ads", "team=ads", "U024BE7LH", "ana", "C0ADS00001",
        "1790000000.000100")
    assert p.started_at == NOW - 600 and p.window_end == NOW - 540 and p.at == pytest.approx(1790000000.123456)
    assert p.to_event()["action"] == "tokenpulse_new_normal"


@pytest.mark.parametrize(("body", "field"), [
    (b"payload=%7B", "payload: not JSON"),
    (b"nothing=1", "payload: missing"),
    (urlencode({"payload": '{"type":"view_submission"}'}).encode(), "payload.type"),
    (press_body("someone_elses_button"), "actions[0].action_id"),
    (b"\xff\xfe", "body"),
])
def test_parse_press_names_what_is_wrong(body: bytes, field: str) -> None:
    with pytest.raises(ValueError, match=field.replace("[", r"\[").replace("]", r"\]")):
        parse_press(body)


# -- the endpoint ------------------------------------------------------------------------------
@pytest.fixture
async def endpoint() -> AsyncIterator[tuple[TestClient, list[Press], Metrics]]:
    app = web.Application()
    got: list[Press] = []
    metrics = Metrics()
    register_slack_actions(app, SlackVerifier(SECRET), got.append, metrics)
    async with TestClient(TestServer(app)) as client:
        yield client, got, metrics


async def test_a_signed_press_is_answered_at_once_and_enqueued(endpoint: Any) -> None:
    client, got, metrics = endpoint
    body = press_body("tokenpulse_snooze_4h")
    headers = signed(body, time.time())
    r = await client.post(PATH, data=body, headers=headers)
    assert r.status == 200 and await r.text() == ""
    assert [p.action for p in got] == ["tokenpulse_snooze_4h"]
    # the same request again, byte for byte (signed anew, it would be another request once the
    # clock passed a second): a replay, refused, not enqueued twice
    r = await client.post(PATH, data=body, headers=headers)
    assert r.status == 401 and len(got) == 1
    assert 'tokenpulse_slack_actions_rejected_total{reason="replay"} 1' in metrics.render()


async def test_forged_stale_and_huge_requests_never_reach_the_queue(endpoint: Any) -> None:
    client, got, metrics = endpoint
    body = press_body()
    forged = {**signed(body, time.time()), "X-Slack-Signature": "v0=" + "ab" * 32}
    assert (await client.post(PATH, data=body, headers=forged)).status == 401
    assert (await client.post(PATH, data=body, headers=signed(body, time.time() - 3600))).status == 401
    huge = b"payload=" + b"a" * (2 * 1024 * 1024)
    r = await client.post(PATH, data=huge, headers=signed(huge, time.time()))
    assert r.status == 413
    text = await r.text()
    assert "aaaa" not in text
    assert got == []
    m = metrics.render()
    for reason in ("forged", "stale", "too_large"):
        assert f'tokenpulse_slack_actions_rejected_total{{reason="{reason}"}} 1' in m


async def test_a_huge_chunked_body_is_cut_at_the_cap(endpoint: Any) -> None:
    client, got, _ = endpoint

    async def chunks() -> AsyncIterator[bytes]:  # no Content-Length: the read itself is bounded
        for _ in range(32):
            yield b"a" * 65536

    r = await client.post(PATH, data=chunks(), headers={"X-Slack-Request-Timestamp": str(int(time.time())),
                                                       "X-Slack-Signature": "v0=00"})
    assert r.status == 413 and got == []
    assert BODY_MAX == 64 * 1024


# -- in the worker -----------------------------------------------------------------------------
TOKEN = "api-token-for-the-slack-test-0123"


def worker_cfg(tmp_path: Path, secret: str | None) -> StreamConfig:
    slack = SlackConfig(token="xoxb-test", signing_secret=secret)  # type: ignore[arg-type]
    return StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=1, data_dir=str(tmp_path), api_token=TOKEN,
                        receivers={"slack": slack})


async def test_without_the_secret_the_endpoint_does_not_exist(tmp_path: Path) -> None:
    app = create_app(worker_cfg(tmp_path, None))
    async with TestClient(TestServer(app.web.web_app)) as client:
        body = press_body()
        r = await client.post(PATH, data=body, headers=signed(body, time.time()))
        assert r.status == 404


async def test_in_the_worker_it_passes_the_api_token_guard_and_checks_the_signature(tmp_path: Path) -> None:
    app = create_app(worker_cfg(tmp_path, SECRET))
    async with TestClient(TestServer(app.web.web_app)) as client:
        body = press_body()
        forged = {**signed(body, time.time()), "X-Slack-Signature": "v0=" + "cd" * 32}
        r = await client.post(PATH, data=body, headers=forged)  # no API token: Slack cannot send it
        assert r.status == 401
        assert (await r.json()) == {"error": "refused: forged"}  # the signature's refusal, not the token's
        m = await client.get("/metrics", headers={"Authorization": f"Bearer {TOKEN}"})
        assert 'tokenpulse_slack_actions_rejected_total{reason="forged"} 1' in await m.text()
        # the rest of the API still wants the token
        assert (await client.get("/api/alerts")).status == 401
