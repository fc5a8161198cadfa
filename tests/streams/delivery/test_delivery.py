"""The Deliverer routes outbox records to the receivers that are on, idempotently per
(receiver, target, key, seq)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from pydantic import SecretStr

from alerts import AlertEngine, Notification, Signal
from alerts.receivers.pagerduty import PagerDutyConfig
from alerts.receivers.slack import SlackConfig
from alerts.receivers.webhook import WebhookConfig
from alerts.routing import Route
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.delivery.outbox import Deliverer
from tests.alerts.policies import no_hold
from tests.fakes.pagerduty_server import FakePagerDutyServer
from tests.fakes.webhook_server import FakeWebhookServer

SECRET = "whsec-deliverer-SeCrEt"


def webhook_cfg(url: str) -> WebhookConfig:
    return WebhookConfig(url=url, secret=SecretStr(SECRET))


def pager(url: str, key: str = "rk-deliverer", **named: str) -> PagerDutyConfig:
    return PagerDutyConfig(routing_key=SecretStr(key) if key else None, url=url,
                           routing_keys={k: SecretStr(v) for k, v in named.items()})


def slack_at(url: str, token: str) -> SlackConfig:
    return SlackConfig(token=SecretStr(token), api_url=f"{url}/api/", channel="#ai-spend", pacing_seconds=0.0)


def notifications() -> list[Notification]:
    engine = AlertEngine(no_hold())
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
    cfg = StreamConfig(bootstrap="unused:9092", receivers={"webhook": webhook_cfg(hook.hook_url),
                                                           "pagerduty": pager(pd.enqueue_url)})
    metrics = Metrics()
    d = Deliverer(cfg, metrics)
    notes = notifications()
    state: dict | None = None
    try:
        for n in notes:
            state = await d.deliver(n.to_dict(), state)
            assert state["webhook:default"]["ok"] and state["webhook:default"]["seq"] == n.seq
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
    d = Deliverer(StreamConfig(bootstrap="unused:9092", receivers={"webhook": webhook_cfg(hook.hook_url)}), Metrics())
    n = notifications()[0]
    try:
        state = await d.deliver(n.to_dict(), None)
        assert state["webhook:default"] == {"seq": -1, "ok": False, "detail": "webhook: HTTP 400: nope", "state": {},
                                            "pending": [], "dropped": 1}
        state = await d.deliver(n.to_dict(), state)
        assert state["webhook:default"]["ok"] and state["webhook:default"]["seq"] == n.seq
    finally:
        await d.close()
    assert set(state) == {"webhook:default"}


async def test_no_webhook_configured_means_no_webhook_state() -> None:
    d = Deliverer(StreamConfig(bootstrap="unused:9092"), Metrics())
    try:
        assert await d.deliver(notifications()[0].to_dict(), None) == {}
    finally:
        await d.close()


# -- sink health, pending notifications, the retry timer ----------------------------------
async def test_a_sink_outage_keeps_notifications_pending_and_delivers_them_in_order(
    servers: tuple[FakeWebhookServer, FakePagerDutyServer],
) -> None:
    """PagerDuty down for a whole incident: nothing is lost, the trigger still goes before the
    resolve, the sink is reported down with a secret-free error, and the webhook is not held up."""
    hook, pd = servers
    rk = "rk-SeCrEt-routing-key"
    cfg = StreamConfig(bootstrap="unused:9092", receivers={"webhook": webhook_cfg(hook.hook_url),
                                                           "pagerduty": pager(pd.enqueue_url, rk)})
    metrics = Metrics()
    d = Deliverer(cfg, metrics, max_attempts=2, backoff_base=0.01, backoff_cap=0.02)
    notes = notifications()
    paged = [n for n in notes if n.page]
    assert [n.action for n in paged] == ["trigger", "update", "resolve"]
    pd.fail_next(500, {"message": f"overloaded, key {rk}"})  # an error that echoes the key
    pd.outage_for(3600)
    state: dict | None = None
    try:
        for n in notes:
            state = await d.deliver(n.to_dict(), state)
        assert state is not None
        entry = state["pagerduty:default"]
        [health] = [h for h in d.sinks_status() if h["sink"] == "pagerduty"]
        assert not health["up"] and health["consecutive_failures"] >= 2
        assert health["pending_notifications"] == len(entry["pending"]) >= 1
        assert health["last_error"] and rk not in str(d.sinks_status())
        assert metrics.gauges["sink_up"]['{sink="pagerduty"}'] == 0
        assert metrics.gauges["sink_up"]['{sink="webhook"}'] == 1
        assert metrics.gauges["sink_consecutive_failures"]['{sink="pagerduty"}'] == health["consecutive_failures"]
        assert len(hook.deliveries()) == len(notes)  # the other sink went on
        # a down sink gets one try per notification: no full backoff while it is known down
        before = len(pd.requests)
        again = await d.retry_pending(notes[0].key, state)
        assert again is not None and len(pd.requests) == before + 1
        # back up: the timer's retry sends what was missed, in order, once
        pd.outage_until(None)
        state = await d.retry_pending(notes[0].key, again)
        assert state is not None and state["pagerduty:default"]["pending"] == [] and state["pagerduty:default"]["ok"]
        assert await d.retry_pending(notes[0].key, state) is None
    finally:
        await d.close()
    # Events v2 has no "update": an in-incident update is another trigger of the dedup_key
    assert [e["event_action"] for e in pd.events()] == ["trigger", "trigger", "resolve"]
    assert metrics.gauges["sink_up"]['{sink="pagerduty"}'] == 1
    assert metrics.gauges["sink_pending_notifications"]['{sink="pagerduty"}'] == 0
    [health] = [h for h in d.sinks_status() if h["sink"] == "pagerduty"]
    assert health["up"] and health["last_success_at"] is not None


async def test_the_next_notification_of_a_key_flushes_what_is_pending_first(
    servers: tuple[FakeWebhookServer, FakePagerDutyServer],
) -> None:
    hook, _ = servers
    d = Deliverer(StreamConfig(bootstrap="unused:9092", receivers={"webhook": webhook_cfg(hook.hook_url)}),
                  Metrics(), max_attempts=1)
    notes = notifications()
    hook.outage_for(3600)
    try:
        state = await d.deliver(notes[0].to_dict(), None)
        assert [p["seq"] for p in state["webhook:default"]["pending"]] == [notes[0].seq]
        hook.outage_until(None)
        state = await d.deliver(notes[1].to_dict(), state)
        state = await d.deliver(notes[1].to_dict(), state)  # redelivered: nothing new
    finally:
        await d.close()
    assert [b["notification"]["seq"] for b in hook.deliveries()] == [notes[0].seq, notes[1].seq]
    assert len(hook.accepted()) == 2 and state["webhook:default"]["pending"] == []


async def test_slack_subscriptions_route_by_labels_and_severity_and_resolves_follow() -> None:
    from tests.fakes.slack_server import FakeSlackServer, channel_id

    async with FakeSlackServer(token="xoxb-routes") as slack:
        cfg = StreamConfig(bootstrap="unused:9092", receivers={"slack": slack_at(slack.url, "xoxb-routes")},
                           routes=(Route("slack", "#ads", {"team": "ads"}), Route("slack", "#finops", {}, "critical")))
        d = Deliverer(cfg, Metrics())
        notes = notifications()  # a critical trigger, a worsened update, then the resolve
        state: dict | None = None
        try:
            for n in notes:
                state = await d.deliver(n.to_dict(), state)
            assert set(state) == {"slack:#ads", "slack:#finops"}
            assert all(e["ok"] and e["seq"] == notes[-1].seq for e in state.values())
            # a quiet team's info alert goes to the default channel only
            info = Notification.from_dict({**notes[0].to_dict(), "key": "cost_spike:team=legal",
                                           "series": "team=legal", "labels": {"team": "legal"}, "severity": "info"})
            assert set(await d.deliver(info.to_dict(), None)) == {"slack:#ai-spend"}
        finally:
            await d.close()
        roots = [c for c in slack.calls("chat.postMessage") if not c["body"].get("thread_ts")]
        assert sorted(c["body"]["channel"] for c in roots) == ["#ads", "#ai-spend", "#finops"]
        # each channel that heard of the incident got its resolve in its own thread
        for ch in ("#ads", "#finops"):
            root = next(m for (c, ts), m in slack.messages.items() if c == channel_id(ch) and not m.get("thread_ts"))
            assert any("Resolved" in (r.get("text") or "") for r in slack.thread(channel_id(ch), root["ts"]))


async def test_a_group_is_one_slack_thread_and_one_pagerduty_incident(
    servers: tuple[FakeWebhookServer, FakePagerDutyServer],
) -> None:
    from tests.fakes.slack_server import FakeSlackServer, channel_id

    _, pd = servers
    engine = AlertEngine(no_hold(group_interval_s=0))
    labels = {"team=ads": {"team": "ads"}, "team=ads|model=x": {"team": "ads", "model": "x"},
              "team=ads|model=y": {"team": "ads", "model": "y"}}
    notes: list[Notification] = []
    for i, spend in enumerate([{"team=ads": 90.0, "team=ads|model=x": 80.0},
                               {"team=ads": 90.0, "team=ads|model=x": 80.0, "team=ads|model=y": 30.0}, {}, {}, {}]):
        notes += engine.observe_window([Signal(
            series=s, labels=lab, window_start=60.0 * i, window_end=60.0 * (i + 1), observed_usd=spend.get(s, 3.0),
            expected_usd=3.0, upper_usd=6.0, score=0.9, is_anomaly=spend.get(s, 3.0) > 6) for s, lab in labels.items()],
            60.0 * (i + 1))
    assert [(n.action, len(n.members)) for n in notes] == [("trigger", 2), ("update", 3), ("resolve", 3)]
    async with FakeSlackServer(token="xoxb-group") as slack:
        cfg = StreamConfig(bootstrap="unused:9092",
                           receivers={"pagerduty": pager(pd.enqueue_url, "rk-group"),
                                      "slack": slack_at(slack.url, "xoxb-group")},
                           routes=(Route("slack", "#ads", {"team": "ads"}), Route("slack", "#model-y", {"model": "y"})))
        d = Deliverer(cfg, Metrics())
        state: dict | None = None
        try:
            for n in notes:
                state = await d.deliver(n.to_dict(), state)
            again = await d.deliver(notes[0].to_dict(), state)  # a redelivered outbox record
        finally:
            await d.close()
        assert again == state
        assert [(e["dedup_key"], e["event_action"]) for e in pd.events()] == [
            ("cost_spike:team=ads", "trigger"), ("cost_spike:team=ads", "trigger"), ("cost_spike:team=ads", "resolve")]
        roots = [c["body"]["channel"] for c in slack.calls("chat.postMessage") if not c["body"].get("thread_ts")]
        assert sorted(roots) == ["#ads", "#model-y"]  # one message per channel; #model-y from the join on
        for ch, replies in (("#ads", 2), ("#model-y", 1)):
            root = next(m for (c, ts), m in slack.messages.items() if c == channel_id(ch) and not m.get("thread_ts"))
            thread = slack.thread(channel_id(ch), root["ts"])
            assert len(thread) == replies and "Resolved" in (thread[-1].get("text") or "")


async def test_a_team_pages_its_own_service_and_the_resolve_follows_the_incident_after_a_reload(
    servers: tuple[FakeWebhookServer, FakePagerDutyServer],
) -> None:
    """Routes name a PagerDuty routing key by name: team ads pages its own service, everyone
    else the default one; after a reload routes ads elsewhere, the open incident still
    resolves where it was opened."""
    from dataclasses import replace

    _, pd = servers
    cfg = StreamConfig(bootstrap="unused:9092", receivers={"pagerduty": pager(pd.enqueue_url, "rk-default", ads="rk-ads")},
                       routes=(Route("pagerduty", "ads", {"team": "ads"}),))
    d = Deliverer(cfg, Metrics())
    trigger, update, resolve = notifications()
    other = Notification.from_dict({**trigger.to_dict(), "key": "cost_spike:team=ml", "series": "team=ml",
                                    "labels": {"team": "ml"}})
    try:
        state = await d.deliver(trigger.to_dict(), None)
        assert set(state) == {"pagerduty:ads"}
        assert set(await d.deliver(other.to_dict(), None)) == {"pagerduty:default"}
        d.reconfigure(replace(cfg, routes=()))  # ads no longer routed: its new incidents page the default
        state = await d.deliver(update.to_dict(), state)
        state = await d.deliver(resolve.to_dict(), state)
        assert set(state) == {"pagerduty:ads", "pagerduty:default"}
    finally:
        await d.close()
    got = [(e["routing_key"], e["event_action"]) for e in pd.events()]
    assert got[:2] == [("rk-ads", "trigger"), ("rk-default", "trigger")]
    # the update and the resolve reach the incident opened with rk-ads (and, routed now, the default)
    assert ("rk-ads", "resolve") in got and got.count(("rk-ads", "trigger")) == 2


async def test_a_target_whose_secret_is_gone_is_not_sent_to(servers: tuple[FakeWebhookServer, FakePagerDutyServer]) -> None:
    _, pd = servers
    d = Deliverer(StreamConfig(bootstrap="unused:9092", receivers={"pagerduty": pager(pd.enqueue_url, "rk-default")}),
                  Metrics())
    try:
        assert d.sink("pagerduty", "ads") is None and d.sink("opsgenie", "default") is None
        assert d.sink("pagerduty", "default") is not None
    finally:
        await d.close()
