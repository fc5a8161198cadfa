"""A hot path killed in the middle of a checkpoint counts every event exactly once after its
partition's next owner takes over (issue 15: spend and budgets exact after a SIGKILL).

A checkpoint sends the window partials it closed to the judges and writes the partition's
state (the open windows, the offset applied, the seq of its last message to the judges). A
process killed between the two used to leave the judges holding partials the restored state
did not know it had sent: the next owner counted the same events again, in other messages
(windows closed in other groupings, late events folded into the closed window), and a judge
applying each (source, seq) once either counted a window twice or dropped the events that a
reused seq carried. Here the kill falls after each send of the checkpoint in turn: the records
acknowledged before it are on the broker, none after it. The next owner restores the state the
broker holds, reads the partition again from the offset it records and goes on; the judges get
every message either process sent, in order.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson

from streams.common.config import StreamConfig
from streams.common.spend import spend_windows
from streams.ingest.hotpath import IngestLoop
from streams.ingest.pricing import Pricer
from streams.ingest.windows import NANO, IngestPartition, Partial
from streams.judge.core import judge_factory
from tests.streams.ingest.test_poison import T, good

CFG = StreamConfig(bootstrap="127.0.0.1:1", topic_prefix="t", usage_partitions=1)

# (offset, event time, cost): window T closes in the second checkpoint, with a late-ish event of
# it read just before; the next owner reads more of both windows, one of them late for window T
FIRST = [(0, T + 1, 0.11), (1, T + 5, 0.13)]
SECOND = [(2, T + 61, 0.17), (3, T + 30, 0.19), (4, T + 75, 0.23)]
THIRD = [(5, T + 40, 0.29), (6, T + 80, 0.31), (7, T + 140, 0.37)]


class Broker:
    """What was acknowledged, in order; after ``cut`` sends the process is dead: nothing more
    reaches the broker and no acknowledgement comes back."""

    def __init__(self, cut: int | None = None) -> None:
        self.sent: list[tuple[str, Any, Any]] = []
        self.cut = cut
        self.calls = 0

    async def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None,
                   partition: Any = None) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.calls += 1
        if self.cut is not None and self.calls > self.cut:
            return fut  # never acknowledged: the process died
        self.sent.append((topic, key, value))
        fut.set_result(None)
        return fut


def records(rows: list[tuple[int, float, float]]) -> list[Any]:
    return [SimpleNamespace(offset=o, value=orjson.dumps(good(o, ts=ts, cost_usd=c))) for o, ts, c in rows]


def loop_on(broker: Broker) -> IngestLoop:
    loop = IngestLoop(CFG, Pricer())
    loop.producer = broker
    loop.consumer = SimpleNamespace(highwater=lambda tp: None)
    return loop


def state_of(sent: list[tuple[str, Any, Any]]) -> dict[str, Any]:
    """The partition's state as the broker holds it: the latest value of every key."""
    state: dict[str, Any] = {}
    for topic, key, value in sent:
        if topic.endswith(".ingest.state"):
            if value is None:
                state.pop(key.decode(), None)
            else:
                state[key.decode()] = orjson.loads(value)
    return state


async def settle(loop: IngestLoop) -> None:
    for _ in range(5):
        await asyncio.sleep(0)


def judged(sent: list[tuple[str, Any, Any]]) -> dict[str, int]:
    """Each series' spend (nano-dollars) after the judges took every windows message."""
    judges = {q: judge_factory(60, "default", {}, CFG.alert_policy)(q) for q in range(CFG.usage_partitions)}
    for topic, key, value in sent:
        if topic.endswith(".windows"):
            body = orjson.loads(value)
            judges[int(key)].receive(int(body["src"]), int(body["n_src"]), body["closed_until"],
                                     [Partial.from_wire(r) for r in body["partials"]],
                                     int(body["seq"]), bool(body["wm"]))
    totals: dict[str, int] = {}
    for j in judges.values():
        for series, _, _, sums in spend_windows(j.spend.items(), 60):
            totals[series] = totals.get(series, 0) + int(sums[0])
    return totals


async def run(cut: int | None) -> tuple[dict[str, int], int]:
    """The first owner counts FIRST and SECOND, checkpointing after each, and dies after ``cut``
    sends of the second checkpoint; the next owner restores and reads on to the end."""
    first = Broker()
    a = loop_on(first)
    a.cores[0] = IngestPartition(partition=0, limits=CFG.limits)
    a._apply(a.cores[0], 0, records(FIRST), T + 6)
    await a.checkpoint(0, T + 20)
    await a.drain()
    before = first.calls
    if cut is not None:
        first.cut = before + cut
    a._apply(a.cores[0], 0, records(SECOND), T + 76)
    await a.checkpoint(0, T + 90)
    await settle(a)
    sends = first.calls - before
    for task in list(a._tasks.values()):
        task.cancel()

    second = Broker()
    b = loop_on(second)
    core = b.cores[0] = IngestPartition(partition=0, limits=CFG.limits)
    b.restore(core, state_of(first.sent), T + 100)
    rows = [r for r in FIRST + SECOND + THIRD if r[0] > core.applied_offset]
    b._apply(core, 0, records(rows), T + 141)
    await b.checkpoint(0, T + 150)
    await b.drain()
    await b.checkpoint(0, T + 10_000)  # idle long enough: every window closes
    await b.drain()
    return judged(first.sent + second.sent), sends


def test_every_cut_of_a_checkpoint_counts_each_event_once() -> None:
    want = round(sum(c for _, _, c in FIRST + SECOND + THIRD) * NANO)
    _, sends = asyncio.run(run(None))
    assert sends >= 3  # partials to the judges and state records: cut after each in turn
    for cut in range(sends + 1):
        totals = asyncio.run(run(cut))[0]
        assert totals, cut
        wrong = {s: v / NANO for s, v in totals.items() if v != want}
        assert not wrong, f"cut after send {cut} of {sends}: {wrong} (want {want / NANO})"


def test_without_a_crash_the_same_totals() -> None:
    want = round(sum(c for _, _, c in FIRST + SECOND + THIRD) * NANO)
    totals, _ = asyncio.run(run(None))
    assert totals and set(totals.values()) == {want}


class FailingOnce(Broker):
    """The first send to the windows topic fails, as a broker error after the retries would."""

    def __init__(self) -> None:
        super().__init__()
        self.failed = False

    async def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None,
                   partition: Any = None) -> asyncio.Future[Any]:
        if topic.endswith(".windows") and not self.failed:
            self.failed = True
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_exception(ConnectionError("the broker went away"))
            return fut
        return await super().send(topic, value=value, key=key, headers=headers, partition=partition)


def test_partials_whose_send_failed_go_again_with_the_next_checkpoint_and_the_same_seq() -> None:
    async def go() -> None:
        broker = FailingOnce()
        loop = loop_on(broker)
        core = loop.cores[0] = IngestPartition(partition=0, limits=CFG.limits)
        loop._apply(core, 0, records(FIRST + SECOND), T + 76)
        await loop.checkpoint(0, T + 90)  # closes window T: its send fails
        await loop.drain()
        assert broker.failed and [e.seq for e in loop._unsent[0]] == [1]
        loop._apply(core, 0, records(THIRD), T + 141)
        await loop.checkpoint(0, T + 10_000)
        await loop.drain()
        assert not loop._unsent
        seqs = [orjson.loads(v)["seq"] for t, _, v in broker.sent if t.endswith(".windows")]
        assert seqs == [1, 2]
        # the state of the second checkpoint named both until they were acknowledged
        assert state_of(broker.sent)["meta"]["emit"] == [1, 2]
        want = round(sum(c for _, _, c in FIRST + SECOND + THIRD) * NANO)
        assert set(judged(broker.sent).values()) == {want}

    asyncio.run(go())


class StateFails(Broker):
    """Every write to the partition's state fails while ``failing``."""

    failing = True

    async def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None,
                   partition: Any = None) -> asyncio.Future[Any]:
        if topic.endswith(".ingest.state") and self.failing:
            fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            fut.set_exception(ConnectionError("the broker went away"))
            return fut
        return await super().send(topic, value=value, key=key, headers=headers, partition=partition)


def test_a_state_whose_write_failed_is_written_with_the_next_checkpoint() -> None:
    """The open window and the ids of a failed checkpoint's state go out with the next one,
    though nothing changed in between: a crash after it restores them with its offset."""
    async def go() -> None:
        broker = StateFails()
        a = loop_on(broker)
        core = a.cores[0] = IngestPartition(partition=0, limits=CFG.limits)
        a._apply(core, 0, records(FIRST), T + 6)
        await a.checkpoint(0, T + 20)
        await a.drain()
        assert not state_of(broker.sent)
        broker.failing = False
        await a.checkpoint(0, T + 21)  # nothing new: only the meta record would be written
        await a.drain()
        state = state_of(broker.sent)
        assert state["meta"]["applied_offset"] == 1

        b = loop_on(Broker())
        restored = b.cores[0] = IngestPartition(partition=0, limits=CFG.limits)
        b.restore(restored, state, T + 30)
        assert restored.windows and restored.remembers("good-0", T + 1)
        rows = [r for r in FIRST + SECOND + THIRD if r[0] > restored.applied_offset]
        b._apply(restored, 0, records(rows), T + 141)
        await b.checkpoint(0, T + 10_000)
        await b.drain()
        want = round(sum(c for _, _, c in FIRST + SECOND + THIRD) * NANO)
        assert set(judged(broker.sent + b.producer.sent).values()) == {want}

    asyncio.run(go())
