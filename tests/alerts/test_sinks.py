"""The sinks against local servers that speak the Slack Web API and PagerDuty Events v2,
through the real slack-sdk AsyncWebClient and aiohttp."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import AsyncIterator

import aiohttp
import pytest
from slack_sdk.web.async_client import AsyncWebClient

from alerts import (
    AlertEngine,
    DeliveryResult,
    Notification,
    PagerDutySink,
    Signal,
    Sink,
    SlackSink,
    deliver_all,
    deliver_with_retry,
)
from tests.alerts.policies import no_hold
from tests.fakes.pagerduty_server import FakePagerDutyServer
from tests.fakes.slack_server import FakeSlackServer, channel_id

TOKEN = "xoxb-111-222-SeCrEtToKeN"
ROUTING_KEY = "R0UT1NGKEY0123456789abcdefSECRET"
CHANNEL = "#ai-spend"


def sig(i: int, usd: float, series: str = "team=ads") -> Signal:
    return Signal(
        series=series, labels={"team": "ads"}, window_start=60.0 * i, window_end=60.0 * (i + 1),
        observed_usd=usd, expected_usd=3.0, upper_usd=6.0, score=0.9, is_anomaly=usd > 6,
        top_contributors=[{"kind": "user", "name": "alice", "usd": usd / 2}], detector="ewma",
    )


def incident(peak: float = 90.0) -> list[Notification]:
    """trigger, worsened update, resolve."""
    engine = AlertEngine(no_hold(), dashboard_url="https://dash.example/")
    out: list[Notification] = []
    for i, usd in enumerate([peak, peak * 2, 3.0, 3.0, 3.0]):
        out.extend(engine.observe(sig(i, usd)))
    assert [n.action for n in out] == ["trigger", "update", "resolve"]
    return out


class Sleeps:
    """An injected sleep that records instead of waiting."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackServer]:
    async with FakeSlackServer(token=TOKEN) as server:
        yield server


@pytest.fixture
async def pd() -> AsyncIterator[FakePagerDutyServer]:
    async with FakePagerDutyServer() as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


def slack_client(server: FakeSlackServer, token: str = TOKEN) -> AsyncWebClient:
    # retry_handlers=[]: retries belong to deliver_with_retry, not to slack-sdk.
    return AsyncWebClient(token=token, base_url=f"{server.url}/api/", retry_handlers=[], timeout=5)


# -- Slack ---------------------------------------------------------------------------------
async def test_slack_posts_then_threads_updates_and_marks_the_root_resolved(slack: FakeSlackServer) -> None:
    sink = SlackSink(slack_client(slack), CHANNEL)
    trigger, update, resolve = incident()

    r1 = await sink.send(trigger, None)
    assert r1.ok, r1.detail
    assert r1.state["channel"] == channel_id(CHANNEL) and r1.state["ts"]
    root_ts = r1.state["ts"]

    r2 = await sink.send(update, r1.state)
    assert r2.ok and r2.state["ts"] == root_ts and r2.state["seq"] == update.seq
    r3 = await sink.send(resolve, r2.state)
    assert r3.ok, r3.detail

    posts = slack.calls("chat.postMessage")
    assert [p["body"].get("thread_ts") for p in posts] == [None, root_ts, root_ts]
    assert all(p["authorized"] for p in posts)
    [upd] = slack.calls("chat.update")
    assert upd["body"]["ts"] == root_ts and upd["response"]["ok"]
    root = slack.messages[(channel_id(CHANNEL), root_ts)]
    assert root["edited"] and root["blocks"][0]["text"]["text"].startswith("✅ Resolved")
    replies = slack.thread(channel_id(CHANNEL), root_ts)
    assert len(replies) == 2 and "Back to normal" in replies[1]["blocks"][0]["text"]["text"]


async def test_slack_redelivery_is_skipped_and_a_new_incident_gets_a_new_root(slack: FakeSlackServer) -> None:
    sink = SlackSink(slack_client(slack), CHANNEL)
    trigger, _, resolve = incident()
    r1 = await sink.send(trigger, None)
    again = await sink.send(trigger, r1.state)  # the outbox was redelivered
    assert again.ok and again.detail == "already delivered"
    assert len(slack.calls("chat.postMessage")) == 1

    r3 = await sink.send(resolve, r1.state)
    # The next incident of the same key must not thread under the old one.
    nxt = Notification.from_dict({**trigger.to_dict(), "started_at": 10_000.0})
    r4 = await sink.send(nxt, r3.state)
    assert r4.ok and r4.state["ts"] != r1.state["ts"]
    assert slack.calls("chat.postMessage")[-1]["body"].get("thread_ts") is None


async def test_slack_update_without_a_root_posts_one(slack: FakeSlackServer) -> None:
    _, update, _ = incident()
    r = await SlackSink(slack_client(slack), CHANNEL).send(update, None)
    assert r.ok and r.state["ts"]
    assert slack.calls("chat.postMessage")[0]["body"].get("thread_ts") is None


async def test_slack_accepts_absurd_alerts_within_block_kit_limits(slack: FakeSlackServer) -> None:
    team = "<!channel>" + "t" * 10_000
    n = incident()[0]
    n = Notification.from_dict({
        **n.to_dict(), "series": f"team={team}", "labels": {"team": team}, "title": f"Cost spike: team={team}",
        "top_contributors": [{"kind": "user", "name": f"<@U{i}>" * 40, "usd": 1.0} for i in range(200)],
    })
    r = await SlackSink(slack_client(slack), CHANNEL).send(n, None)
    assert r.ok, r.detail  # the fake rejects what Slack would reject (invalid_blocks)


async def test_slack_429_retry_after_is_honoured(slack: FakeSlackServer) -> None:
    slack.rate_limit_next(retry_after=7)
    sleeps = Sleeps()
    r = await deliver_with_retry(SlackSink(slack_client(slack), CHANNEL), incident()[0], None,
                                 sleep=sleeps, rand=lambda: 0.0)
    assert r.ok, r.detail
    assert sleeps.delays == [7.0]
    assert [c["status"] for c in slack.calls("chat.postMessage")] == [429, 200]


async def test_slack_500_burst_is_retried_with_backoff(slack: FakeSlackServer) -> None:
    slack.fail_next(500, times=3)
    sleeps = Sleeps()
    r = await deliver_with_retry(SlackSink(slack_client(slack), CHANNEL), incident()[0], None,
                                 sleep=sleeps, rand=lambda: 1.0, base=0.5, cap=1.5)
    assert r.ok
    assert sleeps.delays == [0.5, 1.0, 1.5]  # exponential, capped; rand=1 is the top of the jitter


async def test_slack_outage_exhausts_attempts_then_recovers(slack: FakeSlackServer) -> None:
    slack.outage_for(3600)
    sink = SlackSink(slack_client(slack), CHANNEL)
    sleeps = Sleeps()
    r = await deliver_with_retry(sink, incident()[0], None, max_attempts=4, sleep=sleeps)
    assert not r.ok and r.retryable and "503" in r.detail
    assert len(sleeps.delays) == 3 and len(slack.calls()) == 4
    slack.outage_until(None)
    assert (await deliver_with_retry(sink, incident()[0], None, sleep=sleeps)).ok


@pytest.mark.parametrize("error", ["channel_not_found", "invalid_auth"])
async def test_slack_permanent_errors_are_not_retried(error: str) -> None:
    async with FakeSlackServer(token="xoxb-other" if error == "invalid_auth" else TOKEN, channels={"#elsewhere"}) as server:
        channel = CHANNEL if error == "channel_not_found" else "#elsewhere"
        sleeps = Sleeps()
        r = await deliver_with_retry(SlackSink(slack_client(server), channel), incident()[0], None, sleep=sleeps)
        assert not r.ok and not r.retryable and error in r.detail
        assert sleeps.delays == [] and len(server.calls()) == 1


async def test_slack_unreachable_is_retryable() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed again when the block ends: nobody listens there
    client = AsyncWebClient(token=TOKEN, base_url=f"http://127.0.0.1:{port}/api/", retry_handlers=[])
    r = await SlackSink(client, CHANNEL).send(incident()[0], None)
    assert not r.ok and r.retryable


async def test_slack_resolve_survives_a_deleted_root(slack: FakeSlackServer) -> None:
    sink = SlackSink(slack_client(slack), CHANNEL)
    trigger, _, resolve = incident()
    r1 = await sink.send(trigger, None)
    slack.messages.clear()  # someone deleted the message
    r = await sink.send(resolve, r1.state)
    assert r.ok  # chat.update fails with message_not_found; the thread reply still goes out
    assert slack.calls("chat.update")[0]["response"]["error"] == "message_not_found"


# -- PagerDuty -----------------------------------------------------------------------------
async def test_pagerduty_one_incident_triggered_and_resolved(pd: FakePagerDutyServer, session: aiohttp.ClientSession) -> None:
    sink = PagerDutySink(session, pd.enqueue_url, ROUTING_KEY)
    trigger, update, resolve = incident()
    for n in (trigger, update, resolve):
        r = await sink.send(n, None)
        assert r.ok, r.detail
        assert r.state["dedup_key"] == "cost_spike:team=ads"
    assert [e["event_action"] for e in pd.events()] == ["trigger", "trigger", "resolve"]
    inc = pd.incidents["cost_spike:team=ads"]
    assert inc["status"] == "resolved" and inc["opened"] == 1


async def test_pagerduty_skips_what_does_not_page(pd: FakePagerDutyServer, session: aiohttp.ClientSession) -> None:
    n = Notification.from_dict({**incident()[0].to_dict(), "page": False, "severity": "warning"})
    r = await PagerDutySink(session, pd.enqueue_url, ROUTING_KEY).send(n, None)
    assert r.ok and r.detail == "not paged" and pd.requests == []


async def test_pagerduty_400_is_not_retried(pd: FakePagerDutyServer, session: aiohttp.ClientSession) -> None:
    pd.fail_next(400, {"status": "invalid event", "message": "Event object is invalid",
                       "errors": ["'payload.summary' is missing or blank"]})
    sleeps = Sleeps()
    r = await deliver_with_retry(PagerDutySink(session, pd.enqueue_url, ROUTING_KEY), incident()[0], None, sleep=sleeps)
    assert not r.ok and not r.retryable
    assert "HTTP 400" in r.detail and "'payload.summary' is missing or blank" in r.detail
    assert sleeps.delays == [] and len(pd.requests) == 1


async def test_pagerduty_blank_routing_key_is_rejected_by_the_server(pd: FakePagerDutyServer, session: aiohttp.ClientSession) -> None:
    from alerts.receivers.pagerduty import pagerduty_event

    event = pagerduty_event(incident()[0], "")
    async with session.post(pd.enqueue_url, json=event) as resp:
        assert resp.status == 400
        assert "routing_key" in (await resp.json())["errors"][0]


async def test_pagerduty_429_and_5xx_are_retried(pd: FakePagerDutyServer, session: aiohttp.ClientSession) -> None:
    pd.rate_limit_next(retry_after=2)
    pd.fail_next(502)
    sleeps = Sleeps()
    r = await deliver_with_retry(PagerDutySink(session, pd.enqueue_url, ROUTING_KEY), incident()[0], None,
                                 sleep=sleeps, rand=lambda: 0.0)
    assert r.ok and sleeps.delays == [2.0, 0.0]
    assert [x["status"] for x in pd.requests] == [429, 502, 202]


# -- secrets -------------------------------------------------------------------------------
async def test_secrets_never_reach_details_or_logs(caplog: pytest.LogCaptureFixture, session: aiohttp.ClientSession) -> None:
    caplog.set_level(logging.DEBUG)
    results: list[DeliveryResult] = []
    trigger = incident()[0]
    # A server that knows another token: invalid_auth.
    async with FakeSlackServer(token="xoxb-other") as wrong, FakeSlackServer(token=TOKEN) as slack, \
            FakePagerDutyServer() as pd:
        results.append(await deliver_with_retry(SlackSink(slack_client(wrong), CHANNEL), trigger, None, sleep=Sleeps()))
        slack.rate_limit_next(1)
        slack.fail_next(500, times=2)
        results.append(await deliver_with_retry(SlackSink(slack_client(slack), CHANNEL), trigger, None, sleep=Sleeps()))
        # A server that echoes the key back in its error must not get it into our logs.
        pd.fail_next(400, {"status": "invalid event", "message": f"bad key {ROUTING_KEY}", "errors": [ROUTING_KEY]})
        pd.fail_next(503)
        sink = PagerDutySink(session, pd.enqueue_url, ROUTING_KEY)
        results.append(await deliver_with_retry(sink, trigger, None, sleep=Sleeps()))
        results.append(await deliver_with_retry(sink, trigger, None, sleep=Sleeps()))
    assert [r.ok for r in results] == [False, True, False, True]
    assert "invalid_auth" in results[0].detail and "[redacted]" in results[2].detail
    assert ROUTING_KEY not in repr(sink)
    texts = [r.detail for r in results] + [repr(r.state) for r in results]
    texts += [rec.getMessage() for rec in caplog.records] + [repr(rec.args) for rec in caplog.records]
    assert caplog.records, "expected the failures to be logged"
    for secret in (TOKEN, ROUTING_KEY):
        assert not [t for t in texts if secret in t]


# -- fan-out and the threaded servers --------------------------------------------------------
async def test_deliver_all_fans_out(slack: FakeSlackServer, pd: FakePagerDutyServer, session: aiohttp.ClientSession) -> None:
    sinks: list[Sink] = [SlackSink(slack_client(slack), CHANNEL), PagerDutySink(session, pd.enqueue_url, ROUTING_KEY)]
    res = await deliver_all(sinks, incident()[0], {}, sleep=Sleeps())
    assert set(res) == {"slack", "pagerduty"} and all(r.ok for r in res.values())


def test_threaded_servers_serve_a_synchronous_caller() -> None:
    slack = FakeSlackServer(token=TOKEN)
    pd = FakePagerDutyServer()
    slack_url, pd_url = slack.start(), pd.start()
    try:
        async def go() -> list[DeliveryResult]:
            async with aiohttp.ClientSession() as s:
                client = AsyncWebClient(token=TOKEN, base_url=f"{slack_url}/api/", retry_handlers=[])
                sinks: list[Sink] = [SlackSink(client, CHANNEL), PagerDutySink(s, f"{pd_url}/v2/enqueue", ROUTING_KEY)]
                trigger, _, resolve = incident()
                first = await deliver_all(sinks, trigger, {})
                priors = {k: r.state for k, r in first.items()}
                second = await deliver_all(sinks, resolve, priors)
                return [*first.values(), *second.values()]

        results = asyncio.run(go())
        assert all(r.ok for r in results)
        assert len(slack.calls("chat.postMessage")) == 2 and len(slack.calls("chat.update")) == 1
        assert pd.incidents["cost_spike:team=ads"]["status"] == "resolved"
    finally:
        slack.stop()
        pd.stop()
