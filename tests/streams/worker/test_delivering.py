"""The delivery side of the worker without Faust: outbox records delivered and their state kept
in the deliveries table, what a sink could not take retried by the timer on the partition that
owns it, digests held back while the worker settles (tests/integration/ runs it in a real
worker)."""

from __future__ import annotations

import asyncio

from pydantic import SecretStr

from alerts import AlertEngine, Notification, Signal
from alerts.receivers.webhook import WebhookConfig
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.common.partitioning import judge_partition
from streams.worker.delivering import DeliveryWorker
from tests.fakes.webhook_server import FakeWebhookServer
from tests.streams.worker.fakes import MemoryTable, memory_tables

SECRET = "whsec-delivery-worker"
N = 2
Q = judge_partition("team=ads", N)


def notes() -> list[Notification]:
    engine = AlertEngine()
    out: list[Notification] = []
    for i, usd in enumerate([90.0, 180.0, 3.0, 3.0, 3.0]):
        out += engine.observe(Signal(series="team=ads", labels={"team": "ads"}, window_start=60.0 * i,
                                     window_end=60.0 * (i + 1), observed_usd=usd, expected_usd=3.0, upper_usd=6.0,
                                     score=0.9, is_anomaly=usd > 6))
    return out


async def test_deliveries_are_kept_per_key_and_the_timer_retries_only_its_own_partitions() -> None:
    async with FakeWebhookServer(secret=SECRET) as hook:
        cfg = StreamConfig(bootstrap="unused:9092", usage_partitions=N,
                           receivers={"webhook": WebhookConfig(url=hook.hook_url, secret=SecretStr(SECRET))})
        owned: set[int] = set()
        tables = memory_tables()
        d = DeliveryWorker(cfg, Metrics(), tables, owned=lambda topic: owned)
        d.deliverer.max_attempts, d.deliverer.backoff_base, d.deliverer.backoff_cap = 1, 0.0, 0.0
        first, *rest = notes()
        try:
            hook.outage_for(3600)
            await d.deliver(Q, first.to_dict())
            entry = tables.deliveries.data[first.key]["webhook:default"]
            assert [p["seq"] for p in entry["pending"]] == [first.seq] and not entry["ok"]
            deliveries: MemoryTable = tables.deliveries  # type: ignore[assignment]
            assert deliveries.changelog[-1][:2] == (Q, first.key)
            hook.outage_until(None)
            await d.retry()  # the partition is another worker's (a rebalance): not ours to send
            assert hook.deliveries() == []
            owned.add(Q)
            await d.retry()
            assert [b["notification"]["seq"] for b in hook.deliveries()] == [first.seq]
            assert tables.deliveries.data[first.key]["webhook:default"]["pending"] == []
            for n in rest:
                await d.deliver(Q, n.to_dict())
            await d.deliver(Q, first.to_dict())  # a redelivered outbox record: not sent again
            assert [b["notification"]["seq"] for b in hook.deliveries()] == [n.seq for n in [first, *rest]]
            assert d.sinks_status()[0]["up"]
        finally:
            await d.close()


async def test_digests_wait_while_the_worker_settles() -> None:
    settling = True
    tables = memory_tables()
    d = DeliveryWorker(StreamConfig(bootstrap="unused:9092", usage_partitions=N), Metrics(), tables,
                       settling=lambda: settling, clock=lambda: 10_000.0)
    tables.digests.data["#ads"] = {"periods": {"p": {"start": 0, "end": 60, "ids": ["x"], "items": [], "mode": "hourly"}}}
    try:
        await d.post_digests()
        digests: MemoryTable = tables.digests  # type: ignore[assignment]
        assert digests.changelog == []  # not even tried: the book may be half recovered
        settling = False
        await d.post_digests()  # Slack is off: the period is given up, and the book says so
        assert digests.changelog and digests.changelog[-1][1] == "#ads"
    finally:
        await d.close()


async def test_a_revoke_waits_for_the_deliveries_in_flight_and_their_entries() -> None:
    """:meth:`DeliveryWorker.drain` (the revoke's wait): True once the delivery in flight has
    its deliveries entry written; False after its timeout while one is still posting."""
    async with FakeWebhookServer(secret=SECRET) as hook:
        cfg = StreamConfig(bootstrap="unused:9092", usage_partitions=N,
                           receivers={"webhook": WebhookConfig(url=hook.hook_url, secret=SecretStr(SECRET))})
        tables = memory_tables()
        d = DeliveryWorker(cfg, Metrics(), tables, owned=lambda topic: {Q})
        first, second, *_ = notes()
        try:
            assert await d.drain(0.01)  # nothing in flight
            hook.delay = 0.3
            flying = asyncio.create_task(d.deliver(Q, first.to_dict()))
            await asyncio.sleep(0.05)
            assert d.in_flight == 1
            assert await d.drain(2.0)
            assert flying.done() and tables.deliveries.data[first.key]["webhook:default"]["seq"] == first.seq
            deliveries: MemoryTable = tables.deliveries  # type: ignore[assignment]
            assert deliveries.changelog[-1][:2] == (Q, first.key)
            flying = asyncio.create_task(d.deliver(Q, second.to_dict()))
            await asyncio.sleep(0.05)
            assert not await d.drain(0.05)  # still posting: the caller is told (and it is logged)
            await flying
            assert d.in_flight == 0 and await d.drain(0.01)
        finally:
            await d.close()
