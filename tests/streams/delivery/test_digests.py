"""Digest channels through the Deliverer and the Digester, against the local Slack server with
the real slack-sdk: nothing posted per notification, one digest per period, retried on 429
and 5xx, never twice, and critical pages still immediate."""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from alerts import AlertEngine, Notification, Signal
from alerts.digest import DigestSchedule
from alerts.receivers.pagerduty import PagerDutyConfig
from alerts.receivers.slack import SlackConfig
from alerts.routing import Route
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.delivery.digests import Digester
from streams.delivery.outbox import Deliverer
from tests.alerts.policies import no_hold
from tests.fakes.pagerduty_server import FakePagerDutyServer
from tests.fakes.slack_server import FakeSlackServer, channel_id

T0 = 1_777_000_000.0  # 2026-04-24 03:06:40 UTC


def incident(team: str) -> list[Notification]:
    """A warning trigger, a critical (paged) worsened update, the resolve."""
    engine = AlertEngine(no_hold(warning_excess_usd=2, page_min_excess_usd=50))
    out: list[Notification] = []
    for i, spend in enumerate([20.0, 180.0, 3.0, 3.0, 3.0]):
        out.extend(engine.observe(Signal(
            series=f"team={team}", labels={"team": team}, window_start=T0 + 60 * i, window_end=T0 + 60 * (i + 1),
            observed_usd=spend, expected_usd=3.0, upper_usd=6.0, score=0.9, is_anomaly=spend > 6)))
    return out


class Clock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def config(slack: FakeSlackServer, pd: FakePagerDutyServer | None = None) -> StreamConfig:
    receivers: dict[str, Any] = {"slack": slack_cfg(slack)}
    if pd is not None:
        receivers["pagerduty"] = PagerDutyConfig(routing_key=SecretStr("rk-digest-test"), url=pd.enqueue_url)
    return StreamConfig(
        bootstrap="unused:9092",
        receivers=receivers,
        # critical ads alerts also go to #ads at once; everything of ads to its hourly digest
        routes=(Route("slack", "#ads", {"team": "ads"}, "critical"),
                Route("slack", "#ads", {"team": "ads"}, "info", "hourly", "UTC"),
                Route("slack", "#ads-digest", {"team": "ads"}, "info", "hourly", "UTC")),
    )


def slack_cfg(slack: FakeSlackServer) -> SlackConfig:
    return SlackConfig(token=SecretStr(slack.token), api_url=f"{slack.url}/api/", channel="#ai-spend",
                       pacing_seconds=0.0)


async def test_digest_channels_collect_and_post_one_digest_per_period() -> None:
    forwarded: list[tuple[str, dict[str, Any]]] = []

    async def forward(channel: str, record: dict[str, Any]) -> None:
        forwarded.append((channel, record))

    async with FakeSlackServer(token="xoxb-digest") as slack, FakePagerDutyServer() as pd:
        clock = Clock(T0 + 60)
        metrics = Metrics()
        d = Deliverer(config(slack, pd), metrics, backoff_base=0.01, backoff_cap=0.02,
                      forward_digest=forward)
        dig = Digester(d, metrics, clock=clock)
        notes = incident("ads")
        state: dict[str, Any] | None = None
        try:
            for n in [*notes, notes[0], notes[-1]]:  # with two redelivered outbox records
                state = await d.deliver(n.to_dict(), state)
            assert state is not None
            # each notification forwarded once; nothing of it posted to the digest channel
            assert [(c, r["note"]["seq"]) for c, r in forwarded if c == "#ads-digest"] == [(c, n.seq) for n in notes
                                                                                           for c in ["#ads-digest"]]
            assert not [c for c in slack.calls("chat.postMessage") if c["body"]["channel"] == "#ads-digest"]
            # what a digest subscription took is not the default channel's
            assert not [c for c in slack.calls("chat.postMessage") if c["body"]["channel"] == "#ai-spend"]
            # #ads takes the critical ones immediately (its own subscription), the rest in its
            # digest: the warning trigger goes to the digest only, the page is posted at once
            assert [n.severity for n in notes[:2]] == ["warning", "critical"] and notes[1].page
            immediate = [c for c in slack.calls("chat.postMessage") if c["body"]["channel"] in ("#ads", channel_id("#ads"))]
            assert immediate and "worsened" in immediate[0]["body"]["text"]
            assert next(r["note"]["seq"] for c, r in forwarded if c == "#ads") == notes[0].seq
            # PagerDuty pages at once, as before
            assert [e["event_action"] for e in pd.events()] == ["trigger", "resolve"]

            books: dict[str, Any] = {}
            for channel, record in [*forwarded, forwarded[0]]:  # a forward repeated after a crash
                book = dig.collect(record, books.get(channel))
                if book is not None:
                    books[channel] = book
            assert metrics.counters["digest_duplicates_total"][""] == 1
            book = books["#ads-digest"]
            [period] = book["periods"].values()
            assert len(period["items"]) == len(notes)

            # not over yet: nothing due
            assert not dig.due(book) and await dig.send_due("#ads-digest", book) is None
            clock.t = DigestSchedule("hourly").period(T0).end
            slack.rate_limit_next(retry_after=0)  # Slack says 429 first: retried
            book = await dig.send_due("#ads-digest", book)
            assert book is not None and book["periods"] == {} and book["sent"][-1]["ok"]
            assert await dig.send_due("#ads-digest", book) is None  # sent once
        finally:
            await d.close()
        posts = [c for c in slack.calls("chat.postMessage") if c["body"]["channel"] == "#ads-digest"]
        assert [c["status"] for c in posts] == [429, 200]
        digest = posts[-1]["body"]
        assert "Hourly digest: 3 notifications, 0 still firing" in digest["blocks"][0]["text"]["text"]
        assert "team=ads" in str(digest["blocks"]) and "resolved after" in str(digest["blocks"])
        assert metrics.counters["digests_sent_total"]['{mode="hourly"}'] == 1
        assert slack.messages[(channel_id("#ads-digest"), posts[-1]["response"]["ts"])]["blocks"] == digest["blocks"]


async def test_a_failing_slack_keeps_the_period_until_it_is_posted_and_a_permanent_error_gives_it_up() -> None:
    async with FakeSlackServer(token="xoxb-digest", channels={"#ads-digest", "#ai-spend"}) as slack:
        clock = Clock(T0)
        metrics = Metrics()
        d = Deliverer(config(slack), metrics, max_attempts=2, backoff_base=0.01, backoff_cap=0.02)
        dig = Digester(d, metrics, clock=clock)
        sched = {"mode": "hourly", "tz": "UTC", "daily_at": "09:00"}
        books: dict[str, Any] = {}
        try:
            for ch in ("#ads-digest", "#gone"):
                for n in incident("ads"):
                    books[ch] = dig.collect({"channel": ch, "schedule": sched, "note": n.to_dict()}, books.get(ch))
            clock.t = T0 + 3600
            slack.outage_for(3600)
            book = await dig.send_due("#ads-digest", books["#ads-digest"])
            assert book is not None and len(book["periods"]) == 1
            [period] = book["periods"].values()
            assert period["failures"] == 1 and "HTTP 503" in period["detail"]
            [health] = [h for h in d.sinks_status() if h["sink"] == "digest"]
            assert not health["up"] and "xoxb" not in str(health)
            assert metrics.gauges["digest_waiting_notifications"]['{channel="#ads-digest"}'] == 3
            before = len(slack.calls())
            book = await dig.send_due("#ads-digest", book)  # while down: one try per tick
            assert book is not None and len(slack.calls()) == before + 1
            slack.outage_until(None)
            book = await dig.send_due("#ads-digest", book)
            assert book is not None and book["periods"] == {} and book["sent"][-1]["ok"]
            assert metrics.gauges["digest_waiting_notifications"]['{channel="#ads-digest"}'] == 0
            # channel_not_found is permanent: given up, recorded, not retried forever
            gone = await dig.send_due("#gone", books["#gone"])
            assert gone is not None and gone["periods"] == {} and not gone["sent"][-1]["ok"]
            assert "channel_not_found" in gone["sent"][-1]["detail"]
        finally:
            await d.close()
        ok = [c for c in slack.calls("chat.postMessage") if c["status"] == 200 and c["response"].get("ok")]
        assert [c["body"]["channel"] for c in ok] == ["#ads-digest"]
        assert next(h for h in d.sinks_status() if h["sink"] == "digest")["up"] is False  # the last was #gone


async def test_without_a_digest_collector_a_digest_channel_gets_nothing_rather_than_everything() -> None:
    async with FakeSlackServer(token="xoxb-digest") as slack:
        d = Deliverer(config(slack), Metrics())
        try:
            n = Notification.from_dict({**incident("ads")[0].to_dict(), "severity": "warning"})
            state = await d.deliver(n.to_dict(), None)
        finally:
            await d.close()
        assert state["digest:#ads-digest"]["dropped"] == 1 and "no digest collector" in state["digest:#ads-digest"]["detail"]
        assert not slack.calls("chat.postMessage")


def test_an_unreadable_digest_record_is_skipped_not_fatal() -> None:
    metrics = Metrics()
    dig = Digester(Deliverer(StreamConfig(bootstrap="unused:9092"), metrics), metrics, clock=Clock(T0))
    note = incident("ads")[0].to_dict()
    assert dig.collect({"channel": "#x", "schedule": {"mode": "daily", "tz": "Mars/Base"}, "note": note}, None) is None
    assert dig.collect({"channel": "#x", "note": {"key": "k"}}, None) is None
    assert metrics.counters["digest_records_rejected_total"][""] == 2
    assert dig.collect({"channel": "#x", "note": note}, None) is not None  # the schedule defaults to daily UTC


async def test_a_resolve_below_min_severity_follows_its_incident_into_the_digest() -> None:
    forwarded: list[tuple[str, int]] = []

    async def forward(channel: str, record: dict[str, Any]) -> None:
        forwarded.append((channel, record["note"]["seq"]))

    async with FakeSlackServer(token="xoxb-digest") as slack:
        cfg = StreamConfig(bootstrap="unused:9092", receivers={"slack": slack_cfg(slack)},
                           routes=(Route("slack", "#crit", {}, "critical", "daily", "UTC"),))
        d = Deliverer(cfg, Metrics(), forward_digest=forward)
        trigger, worsened, resolve = incident("ads")
        low = Notification.from_dict({**resolve.to_dict(), "severity": "info"})
        state: dict[str, Any] | None = None
        try:
            for n in (trigger, worsened, low):
                state = await d.deliver(n.to_dict(), state)
        finally:
            await d.close()
        # the warning trigger is below #crit's minimum: the default channel has it, at once
        assert forwarded == [("#crit", worsened.seq), ("#crit", low.seq)]
        assert [c["body"]["channel"] for c in slack.calls("chat.postMessage") if not c["body"].get("thread_ts")] == ["#ai-spend"]
