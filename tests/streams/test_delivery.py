"""The Deliverer routes outbox records to the configured sinks, idempotently per (sink, key, seq)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from alerts import AlertEngine, Notification, Signal
from streams.config import PagerDutyConfig, StreamConfig, WebhookConfig
from streams.delivery import Deliverer
from streams.metrics import Metrics
from tests.fakes.pagerduty_server import FakePagerDutyServer
from tests.fakes.webhook_server import FakeWebhookServer

SECRET = "whsec-deliverer-SeCrEt"


def notifications() -> list[Notification]:
    engine = AlertEngine()
    out: list[Notification] = []
    for i, usd in enumerate([90.0, 180.0, 3.0, 3.0, 3.0]):
        out.extend(engine.observe(Signal(
            series="team=ads", labels={"team": "ads"}, window_start=60.0 * i, window_end=60.0 * (i + 1),
            observed_usd=usd, expected_usd=3.0, upper_usd=6.0, score=0.9, is_anomaly=usd > 6,
        )))
    return out


@pytest.fixture
async def servers() -> AsyncIterator[tuple[FakeWebhookServer, FakePagerDutyServer]]:
    async with FakeWebhookServer(secret=SECRET) as hook, FakePagerDutyServer() as pd:
        yield hook, pd


async def test_webhook_gets_every_notification_once(servers: tuple[FakeWebhookServer, FakePagerDutyServer]) -> None:
    hook, pd = servers
    cfg = StreamConfig(bootstrap="unused:9092", webhook=WebhookConfig(url=hook.hook_url, secret=SECRET),
                       pagerduty=PagerDutyConfig(routing_key="rk-deliverer", url=pd.enqueue_url))
    metrics = Metrics()
    d = Deliverer(cfg, metrics)
    notes = notifications()
    state: dict | None = None
    try:
        for n in notes:
            state = await d.deliver(n.to_dict(), state)
            assert state["webhook"]["ok"] and state["webhook"]["seq"] == n.seq
        # a redelivered outbox record is not sent again
        state = await d.deliver(notes[0].to_dict(), state)
    finally:
        await d.close()
    assert [b["notification"]["action"] for b in hook.deliveries()] == [n.action for n in notes]
    assert len(hook.requests) == len(notes)
    # PagerDuty behaves as before: only what pages
    assert len(pd.events()) == sum(n.page for n in notes)
    assert metrics.counters["alerts_sent_total"]['{action="trigger",sink="webhook"}'] == 1
    assert SECRET not in repr(cfg)


async def test_a_failed_webhook_delivery_is_recorded_and_retried_next_time(
    servers: tuple[FakeWebhookServer, FakePagerDutyServer],
) -> None:
    hook, _ = servers
    hook.fail_next(400, {"error": "nope"})
    d = Deliverer(StreamConfig(bootstrap="unused:9092", webhook=WebhookConfig(url=hook.hook_url, secret=SECRET)), Metrics())
    n = notifications()[0]
    try:
        state = await d.deliver(n.to_dict(), None)
        assert state["webhook"] == {"seq": -1, "ok": False, "detail": "webhook: HTTP 400: nope", "state": {}}
        state = await d.deliver(n.to_dict(), state)
        assert state["webhook"]["ok"] and state["webhook"]["seq"] == n.seq
    finally:
        await d.close()
    assert set(state) == {"webhook"}


async def test_no_webhook_configured_means_no_webhook_state() -> None:
    d = Deliverer(StreamConfig(bootstrap="unused:9092"), Metrics())
    try:
        assert await d.deliver(notifications()[0].to_dict(), None) == {}
    finally:
        await d.close()
