"""The generic webhook sink against a local receiver that checks signatures on its own,
through the real aiohttp client; and the receiver-side helper ``verify_signature``."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest

from alerts import AlertEngine, DeliveryResult, Notification, Signal, WebhookSink, deliver_with_retry, verify_signature
from alerts.receivers.webhook.render import SIGNATURE_HEADER, TIMESTAMP_HEADER, idempotency_header, sign
from tests.alerts.policies import no_hold
from tests.fakes.webhook_server import FakeWebhookServer

SECRET = "whsec-0123456789-SeCrEt"
T0 = 1_767_225_600  # 2026-01-01T00:00:00Z


def sig(i: int, usd: float) -> Signal:
    return Signal(
        series="team=ads", labels={"team": "ads"}, window_start=60.0 * i, window_end=60.0 * (i + 1),
        observed_usd=usd, expected_usd=3.0, upper_usd=6.0, score=0.9, is_anomaly=usd > 6,
        top_contributors=[{"kind": "user", "name": "alice", "usd": usd / 2}], detector="ewma",
    )


def incident() -> list[Notification]:
    """trigger, worsened update, resolve."""
    engine = AlertEngine(no_hold(), dashboard_url="https://dash.example/")
    out: list[Notification] = []
    for i, usd in enumerate([90.0, 180.0, 3.0, 3.0, 3.0]):
        out.extend(engine.observe(sig(i, usd)))
    assert [n.action for n in out] == ["trigger", "update", "resolve"]
    return out


class Sleeps:
    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


@pytest.fixture
async def hook() -> AsyncIterator[FakeWebhookServer]:
    async with FakeWebhookServer(secret=SECRET) as server:
        yield server


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as s:
        yield s


# -- verify_signature ----------------------------------------------------------------------
BODY = b'{"version":1,"notification":{"key":"cost_spike:team=ads"}}'


def test_verify_accepts_a_good_signature_as_bytes_or_text() -> None:
    header = sign(SECRET, T0, BODY)
    assert verify_signature(SECRET, str(T0), BODY, header, now=T0 + 10)
    assert verify_signature(SECRET, T0, BODY.decode(), header, now=T0 - 10)  # a little clock skew is fine


@pytest.mark.parametrize(
    ("secret", "timestamp", "body", "now"),
    [
        (SECRET, T0, BODY.replace(b"ads", b"adz"), T0),  # tampered body
        ("whsec-someone-else", T0, BODY, T0),  # wrong secret
        (SECRET, T0 + 1, BODY, T0),  # the timestamp is signed too
        (SECRET, T0, BODY, T0 + 301),  # stale: a replay
        (SECRET, T0, BODY, T0 - 301),  # from the future
    ],
    ids=["tampered-body", "wrong-secret", "other-timestamp", "stale", "future"],
)
def test_verify_rejects(secret: str, timestamp: int, body: bytes, now: float) -> None:
    assert not verify_signature(secret, timestamp, body, sign(SECRET, T0, BODY), now=now)


@pytest.mark.parametrize("header", [None, "", "sha256=", "md5=abc", sign(SECRET, T0, BODY)[7:], "sha256=é"])
def test_verify_rejects_malformed_headers_without_raising(header: str | None) -> None:
    assert not verify_signature(SECRET, T0, BODY, header, now=T0)


def test_verify_rejects_a_malformed_timestamp_or_empty_secret() -> None:
    header = sign(SECRET, T0, BODY)
    assert not verify_signature(SECRET, "yesterday", BODY, header, now=T0)
    assert not verify_signature("", T0, BODY, sign("", T0, BODY), now=T0)


def test_verify_tolerance_is_configurable() -> None:
    header = sign(SECRET, T0, BODY)
    assert verify_signature(SECRET, T0, BODY, header, tolerance_s=3600, now=T0 + 3000)
    assert not verify_signature(SECRET, T0, BODY, header, tolerance_s=5, now=T0 + 6)


# -- delivery through aiohttp --------------------------------------------------------------
async def test_every_action_is_delivered_signed_with_the_documented_schema(
    hook: FakeWebhookServer, session: aiohttp.ClientSession
) -> None:
    sink = WebhookSink(session, hook.hook_url, SECRET)
    notes = incident()
    for n in notes:
        r = await sink.send(n, None)
        assert r.ok, r.detail
        assert r.state == {"seq": n.seq}
    got = hook.accepted()
    assert len(got) == 3 and not any(g["duplicate"] for g in got)
    for req, n in zip(got, notes):
        body = req["body"]
        assert set(body) == {"version", "type", "sent_at", "idempotency_key", "notification"}
        assert body["version"] == 2 and body["type"] == "tokenpulse.notification" and body["notification"]["kind"] == "spike"
        assert body["notification"] == orjson.loads(orjson.dumps(n.to_dict()))
        assert body["idempotency_key"] == req["idempotency_key"] == f"{n.key}:{n.seq}"
        assert req["content_type"] == "application/json"
        # what a receiver does with the library helper, on the raw bytes
        assert verify_signature(SECRET, req["timestamp"], req["raw"], req["signature"])
        from datetime import datetime

        assert datetime.fromisoformat(body["sent_at"]).timestamp() == int(req["timestamp"])
    assert [g["body"]["notification"]["action"] for g in got] == ["trigger", "update", "resolve"]


async def test_every_notification_is_sent_whether_it_pages_or_not(
    hook: FakeWebhookServer, session: aiohttp.ClientSession
) -> None:
    n = Notification.from_dict({**incident()[0].to_dict(), "page": False, "severity": "warning"})
    assert (await WebhookSink(session, hook.hook_url, SECRET).send(n, None)).ok
    assert hook.deliveries()[0]["notification"]["page"] is False


async def test_a_redelivered_notification_is_not_sent_again(hook: FakeWebhookServer, session: aiohttp.ClientSession) -> None:
    sink = WebhookSink(session, hook.hook_url, SECRET)
    trigger, update, _ = incident()
    r1 = await sink.send(trigger, None)
    again = await sink.send(trigger, r1.state)
    assert again.ok and again.detail == "already delivered" and len(hook.requests) == 1
    assert (await sink.send(update, r1.state)).ok and len(hook.requests) == 2


async def test_hostile_keys_make_a_safe_idempotency_header(hook: FakeWebhookServer, session: aiohttp.ClientSession) -> None:
    base = incident()[0].to_dict()
    for key in ("cost_spike:team=données équipe", "cost_spike:team=a\r\nX-Evil: 1", "cost_spike:team=" + "x" * 5000):
        n = Notification.from_dict({**base, "key": key})
        r = await WebhookSink(session, hook.hook_url, SECRET).send(n, None)
        assert r.ok, r.detail
        header = hook.accepted()[-1]["idempotency_key"]
        assert header == idempotency_header(n) and header.isascii() and len(header) <= 200
        assert "\n" not in header and " " not in header and header.endswith(f":{n.seq}")
        assert hook.accepted()[-1]["body"]["idempotency_key"] == f"{key}:{n.seq}"  # the raw one is in the body


# -- retries -------------------------------------------------------------------------------
async def test_429_retry_after_is_honoured_and_each_attempt_is_signed_afresh(
    hook: FakeWebhookServer, session: aiohttp.ClientSession
) -> None:
    import time

    hook.rate_limit_next(retry_after=7)
    ticks = iter([time.time() - 10, time.time()])
    sleeps = Sleeps()
    sink = WebhookSink(session, hook.hook_url, SECRET, clock=lambda: next(ticks))
    r = await deliver_with_retry(sink, incident()[0], None, sleep=sleeps, rand=lambda: 0.0)
    assert r.ok, r.detail
    assert sleeps.delays == [7.0]
    first, second = hook.requests
    assert [first["status"], second["status"]] == [429, 200]
    assert first["idempotency_key"] == second["idempotency_key"]
    assert first["timestamp"] != second["timestamp"] and first["signature"] != second["signature"]


async def test_5xx_burst_is_retried_with_backoff(hook: FakeWebhookServer, session: aiohttp.ClientSession) -> None:
    hook.fail_next(500, times=2)
    hook.fail_next(503)
    sleeps = Sleeps()
    r = await deliver_with_retry(WebhookSink(session, hook.hook_url, SECRET), incident()[0], None,
                                 sleep=sleeps, rand=lambda: 1.0, base=0.5, cap=1.5)
    assert r.ok, r.detail
    assert sleeps.delays == [0.5, 1.0, 1.5]
    assert [x["status"] for x in hook.requests] == [500, 500, 503, 200]
    assert len(hook.deliveries()) == 1


async def test_outage_exhausts_attempts_as_retryable(hook: FakeWebhookServer, session: aiohttp.ClientSession) -> None:
    hook.outage_for(3600)
    sleeps = Sleeps()
    r = await deliver_with_retry(WebhookSink(session, hook.hook_url, SECRET), incident()[0], None,
                                 max_attempts=3, sleep=sleeps)
    assert not r.ok and r.retryable and "HTTP 503" in r.detail
    assert len(hook.requests) == 3 and len(sleeps.delays) == 2


async def test_a_receiver_that_is_down_is_retried_until_it_is_back(session: aiohttp.ClientSession) -> None:
    server = FakeWebhookServer(secret=SECRET)
    await server.start_async()
    await server.stop_async()  # down: connection refused on its port
    sink = WebhookSink(session, server.hook_url, SECRET)
    n = incident()[0]
    down = await sink.send(n, None)
    assert not down.ok and down.retryable and "Connect" in down.detail

    async def back_up(_: float) -> None:
        await server.start_async()

    try:
        r = await deliver_with_retry(sink, n, None, sleep=back_up)
        assert r.ok, r.detail
        assert len(server.deliveries()) == 1
    finally:
        await server.stop_async()


async def test_a_timeout_is_retryable(hook: FakeWebhookServer, session: aiohttp.ClientSession) -> None:
    hook.delay = 0.5
    r = await WebhookSink(session, hook.hook_url, SECRET, timeout_s=0.05).send(incident()[0], None)
    assert not r.ok and r.retryable and r.detail == "webhook: timed out"


# -- permanent failures ----------------------------------------------------------------------
async def test_400_is_permanent_with_the_receivers_reason(hook: FakeWebhookServer, session: aiohttp.ClientSession) -> None:
    hook.fail_next(400, {"error": "unknown_team", "message": "team ads is not mapped"})
    sleeps = Sleeps()
    r = await deliver_with_retry(WebhookSink(session, hook.hook_url, SECRET), incident()[0], None, sleep=sleeps)
    assert not r.ok and not r.retryable
    assert r.detail == "webhook: HTTP 400: unknown_team: team ads is not mapped"
    assert sleeps.delays == [] and len(hook.requests) == 1


async def test_wrong_secret_is_a_permanent_401(session: aiohttp.ClientSession) -> None:
    async with FakeWebhookServer(secret="whsec-the-receivers-own") as server:
        sleeps = Sleeps()
        r = await deliver_with_retry(WebhookSink(session, server.hook_url, SECRET), incident()[0], None, sleep=sleeps)
        assert not r.ok and not r.retryable and r.detail == "webhook: HTTP 401: invalid signature"
        assert sleeps.delays == []


async def test_a_skewed_clock_is_rejected_as_stale(hook: FakeWebhookServer, session: aiohttp.ClientSession) -> None:
    import time

    sink = WebhookSink(session, hook.hook_url, SECRET, clock=lambda: time.time() - 3600)
    r = await sink.send(incident()[0], None)
    assert not r.ok and not r.retryable and "stale timestamp" in r.detail


async def test_no_secret_is_permanent_without_a_request(hook: FakeWebhookServer, session: aiohttp.ClientSession) -> None:
    r = await WebhookSink(session, hook.hook_url, "").send(incident()[0], None)
    assert not r.ok and not r.retryable and "no secret" in r.detail and hook.requests == []


# -- secrets -------------------------------------------------------------------------------
async def test_secret_and_url_token_never_reach_details_or_logs(
    caplog: pytest.LogCaptureFixture, session: aiohttp.ClientSession
) -> None:
    from pydantic import SecretStr

    caplog.set_level(logging.DEBUG)
    results: list[DeliveryResult] = []
    trigger = incident()[0]
    async with FakeWebhookServer(secret=SECRET) as server, FakeWebhookServer(secret="whsec-other") as wrong:
        # A receiver that echoes the secret back in its errors must not get it into our logs.
        server.fail_next(400, {"error": "bad", "message": f"secret was {SECRET}"})
        server.fail_next(500, f"<pre>{SECRET}</pre>")
        sink = WebhookSink(session, server.hook_url, SecretStr(SECRET))
        results.append(await deliver_with_retry(sink, trigger, None, sleep=Sleeps()))
        results.append(await deliver_with_retry(sink, trigger, None, sleep=Sleeps()))
        results.append(await deliver_with_retry(WebhookSink(session, wrong.hook_url, SECRET), trigger, None, sleep=Sleeps()))
        # A token in the URL's path (as in many incoming-webhook URLs) is not logged either.
        token_url = f"{server.url}/T0/B0/url-token-XYZ"
        results.append(await deliver_with_retry(WebhookSink(session, token_url, SECRET), trigger, None, sleep=Sleeps()))
        reprs = [repr(sink), repr(WebhookSink(session, token_url, SECRET))]
    assert [r.ok for r in results] == [False, True, False, False]
    assert "[redacted]" in results[0].detail and "HTTP 404" in results[3].detail
    texts = [r.detail for r in results] + [repr(r.state) for r in results] + reprs
    texts += [rec.getMessage() for rec in caplog.records] + [repr(rec.args) for rec in caplog.records]
    assert caplog.records, "expected the failures to be logged"
    for secret in (SECRET, "url-token-XYZ"):
        assert not [t for t in texts if secret in t]
    assert "127.0.0.1" in reprs[1]  # the origin is still there to debug with
    # The server saw the signature, never the secret itself.
    assert not [r for r in server.requests if SECRET.encode() in r["raw"] or SECRET in str(r["signature"])]


def test_the_header_names_are_the_documented_ones() -> None:
    assert (SIGNATURE_HEADER, TIMESTAMP_HEADER) == ("X-Tokenpulse-Signature", "X-Tokenpulse-Timestamp")
