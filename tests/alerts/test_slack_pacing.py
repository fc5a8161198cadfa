"""Slack's ~1 message per second per channel: posts to one channel are spaced, other channels
are not held back, and nothing is dropped."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from alerts import AlertEngine, Notification, Signal
from alerts.receivers.slack import ChannelPacer, SlackSink
from alerts.retry import deliver_with_retry
from tests.fakes.slack_server import FakeSlackServer, channel_id

TOKEN = "xoxb-pacing-SeCrEt"


class FakeClock:
    """A clock that only moves when the code under test sleeps."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        await asyncio.sleep(0)


async def test_pacer_spaces_one_channel_and_leaves_others_alone() -> None:
    clock = FakeClock()
    pacer = ChannelPacer(1.0, clock=clock, sleep=clock.sleep)
    assert await pacer.wait("#a") == 0
    assert await pacer.wait("#b") == 0  # another channel: not held back
    assert await pacer.wait("#a") == pytest.approx(1.0)
    clock.now += 5  # long after: no wait
    assert await pacer.wait("#a") == 0
    clock.now += 0.25
    assert await pacer.wait("#a") == pytest.approx(0.75)


async def test_pacer_queues_concurrent_posts_in_arrival_order() -> None:
    """Slots are reserved before sleeping, so a burst is spaced and none overtakes another."""
    clock = FakeClock()
    sleeps: list[float] = []

    async def sleep(s: float) -> None:  # time stands still: all four arrive at once
        sleeps.append(s)
        await asyncio.sleep(0)

    pacer = ChannelPacer(1.0, clock=clock, sleep=sleep)
    waits = await asyncio.gather(*(pacer.wait("#a") for _ in range(4)), pacer.wait("#b"))
    assert waits == pytest.approx([0.0, 1.0, 2.0, 3.0, 0.0])
    assert sleeps == pytest.approx([1.0, 2.0, 3.0])


def incidents(teams: list[str]) -> list[Notification]:
    out: list[Notification] = []
    for team in teams:
        engine = AlertEngine()
        for i, usd in enumerate([90.0, 180.0, 3.0, 3.0, 3.0]):
            out.extend(engine.observe(Signal(
                series=f"team={team}", labels={"team": team}, window_start=60.0 * i,
                window_end=60.0 * (i + 1), observed_usd=usd, expected_usd=3.0, upper_usd=6.0,
                score=0.9, is_anomaly=usd > 6,
            )))
    return out


@pytest.fixture
async def slack() -> AsyncIterator[FakeSlackServer]:
    async with FakeSlackServer(token=TOKEN) as server:
        yield server


async def test_posts_to_one_channel_are_a_second_apart_against_the_fake_slack(slack: FakeSlackServer) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=f"{slack.url}/api/", retry_handlers=[])
    pacer = ChannelPacer(1.0)
    a, b = SlackSink(client, "#a", pacer=pacer), SlackSink(client, "#b", pacer=pacer)
    try:
        # three posts to #a at once (three incidents), one to #b alongside them
        notes = [n for n in incidents(["x", "y", "z"]) if n.action == "trigger"]
        other = incidents(["w"])[0]
        results = await asyncio.gather(*(a.send(n, None) for n in notes), b.send(other, None))
    finally:
        await client.session.close() if client.session else None
    assert all(r.ok for r in results), [r.detail for r in results]
    posts = [c for c in slack.calls("chat.postMessage") if c["status"] == 200]
    at_a = sorted(c["at"] for c in posts if c["body"]["channel"] == "#a")
    at_b = [c["at"] for c in posts if c["body"]["channel"] == "#b"]
    assert len(at_a) == 3 and len(at_b) == 1  # nothing dropped
    gaps = [y - x for x, y in itertools.pairwise(at_a)]
    assert all(g >= 0.95 for g in gaps), gaps
    assert at_b[0] - at_a[0] < 0.5  # #b did not wait for #a
    assert len(slack.messages) == 4 and {c for c, _ in slack.messages} == {channel_id("#a"), channel_id("#b")}


async def test_thread_replies_are_paced_and_a_429_is_still_honoured(slack: FakeSlackServer) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=f"{slack.url}/api/", retry_handlers=[])
    clock = FakeClock()
    pacer = ChannelPacer(1.0, clock=clock, sleep=clock.sleep)
    sink = SlackSink(client, "#a", pacer=pacer)
    slack.rate_limit_next(retry_after=3)
    sleeps: list[float] = []

    async def record(s: float) -> None:
        sleeps.append(s)
        clock.now += s

    prior = None
    try:
        for n in incidents(["x"]):
            r = await deliver_with_retry(sink, n, prior, sleep=record, rand=lambda: 0.0)
            assert r.ok, r.detail
            prior = r.state
    finally:
        await client.session.close() if client.session else None
    assert sleeps == [3.0]  # the Retry-After, then the pacer had nothing left to wait
    # root (429 then ok) + two replies, each posted a paced second after the previous one
    assert [c["status"] for c in slack.calls("chat.postMessage")] == [429, 200, 200, 200]
    assert clock.sleeps == pytest.approx([1.0, 1.0])
