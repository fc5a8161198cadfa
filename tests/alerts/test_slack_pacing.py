"""Slack's ~1 message per second per channel: posts to one channel are spaced, other channels
are not held back, and nothing is dropped."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest
from slack_sdk.web.async_client import AsyncWebClient

from alerts import AlertEngine, Notification, Signal
from alerts.receivers.slack import ChannelPacer, SlackSink
from alerts.retry import deliver_with_retry
from tests.alerts.policies import no_hold
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
        engine = AlertEngine(no_hold())
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


class ManualClock:
    """A clock that moves only when the test says: ``sleep`` parks the caller until
    :meth:`advance` reaches its wake time, so what was released when is exact on any machine."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.parked: list[tuple[float, asyncio.Future[None]]] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        wake: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.parked.append((self.now + seconds, wake))
        await wake

    def wakes(self) -> list[float]:
        return sorted(at for at, _ in self.parked)

    def advance(self, to: float) -> None:
        self.now = to
        for at, wake in [p for p in self.parked if p[0] <= to]:
            self.parked.remove((at, wake))
            wake.set_result(None)


async def until(cond: Callable[[], bool], what: str, timeout: float = 10.0) -> None:
    """Wait for ``cond`` (HTTP round trips to the fake Slack take what the machine gives them);
    ``timeout`` only bounds a failure."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not cond():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"not within {timeout} s: {what}")
        await asyncio.sleep(0.005)


async def test_posts_to_one_channel_are_a_second_apart_against_the_fake_slack(slack: FakeSlackServer) -> None:
    client = AsyncWebClient(token=TOKEN, base_url=f"{slack.url}/api/", retry_handlers=[])
    clock = ManualClock()
    pacer = ChannelPacer(1.0, clock=clock, sleep=clock.sleep)
    a, b = SlackSink(client, "#a", pacer=pacer), SlackSink(client, "#b", pacer=pacer)

    def posted(channel: str) -> list[str]:
        return [c["body"]["text"] for c in slack.calls("chat.postMessage")
                if c["status"] == 200 and c["body"]["channel"] == channel]

    def posts_to_a(n: int) -> Callable[[], bool]:
        return lambda: len(posted("#a")) == n

    # three posts to #a at once (three incidents), one to #b alongside them
    notes = [n for n in incidents(["x", "y", "z"]) if n.action == "trigger"]
    other = incidents(["w"])[0]
    sending = asyncio.gather(*(a.send(n, None) for n in notes), b.send(other, None))
    try:
        # at once: #a's first post and #b's (#b did not wait for #a); #a's others wait their turn
        await until(lambda: posts_to_a(1)() and len(posted("#b")) == 1 and len(clock.parked) == 2,
                    "#a's first post and #b's sent, #a's other two waiting")
        assert clock.wakes() == [1001.0, 1002.0]  # a second apart
        clock.advance(1000.999)  # just before the next slot: nothing is released
        assert clock.wakes() == [1001.0, 1002.0] and len(posted("#a")) == 1
        for k, slot in enumerate([1001.0, 1002.0], start=2):
            clock.advance(slot)
            await until(posts_to_a(k), f"#a's post {k} sent at its slot")
        results = await sending
    finally:
        sending.cancel()  # a no-op once it is done; on a failure, no task is left behind
        await client.session.close() if client.session else None
    assert all(r.ok for r in results), [r.detail for r in results]
    texts = posted("#a")
    # nothing dropped, and in arrival order: x's alert first, z's last
    assert len(texts) == 3 and len(posted("#b")) == 1
    assert [next(t for t in ("team=x", "team=y", "team=z") if t in text) for text in texts] == [
        "team=x", "team=y", "team=z"]
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
