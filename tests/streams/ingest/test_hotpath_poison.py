"""The hot path's loop with poison messages, against a producer that records what it is given
(the integration tier runs the same on a real broker: tests/integration/test_poison.py).

Every message is applied once whatever became of it, each reject is queued for the
dead-letter topic once, and a checkpoint is written only after its dead-letter records were
acknowledged: one whose send failed is sent again by the next checkpoint, which only then
records the offsets past it.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson

from streams.common.config import StreamConfig
from streams.ingest.hotpath import IngestLoop
from streams.ingest.windows import IngestPartition
from streams.ingest.pricing import Pricer
from tests.streams.ingest.test_poison import CRASHES, T, good


class RecordingProducer:
    """aiokafka's ``send`` (returns a future that resolves on delivery); the first
    ``fail_dlq`` dead-letter sends fail as a broker error would."""

    def __init__(self, fail_dlq: int = 0) -> None:
        self.sent: list[tuple[str, Any, Any, Any]] = []
        self.fail_dlq = fail_dlq

    async def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None,
                   partition: Any = None) -> asyncio.Future[Any]:
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if topic.endswith(".dlq") and self.fail_dlq > 0:
            self.fail_dlq -= 1
            fut.set_exception(ConnectionError("the broker went away"))
        else:
            self.sent.append((topic, key, value, headers))
            fut.set_result(None)
        return fut

    def to(self, suffix: str) -> list[tuple[str, Any, Any, Any]]:
        return [s for s in self.sent if s[0].endswith(suffix)]


def loop_with(producer: RecordingProducer) -> IngestLoop:
    loop = IngestLoop(StreamConfig(bootstrap="127.0.0.1:1", topic_prefix="t", dlq_max_bytes=1024), Pricer())
    loop.producer = producer
    loop.consumer = SimpleNamespace(highwater=lambda tp: None)
    return loop


async def test_poison_is_dead_lettered_once_and_skipped_even_when_the_first_send_fails() -> None:
    producer = RecordingProducer(fail_dlq=1)
    loop = loop_with(producer)
    core = loop.cores[0] = IngestPartition(partition=0, limits=loop.cfg.limits)
    values = [orjson.dumps(good(0))] + [raw for _, raw, _ in CRASHES] + [orjson.dumps(good(1))]
    records = [SimpleNamespace(offset=i, value=v) for i, v in enumerate(values)]
    loop._apply(core, 0, records, T)
    assert core.applied_offset == len(values) - 1  # applied once each, whatever became of them
    assert core.counters.accepted == 3  # the two good events and the good element of the batch

    await loop.checkpoint(0, T)
    await loop.drain()
    # the first dead-letter send failed: no state written, that record queued again
    assert not producer.to(".ingest.state")

    await loop.checkpoint(0, T + 1)
    await loop.drain()
    dlq = producer.to(".dlq")
    assert len(dlq) == len(CRASHES)
    sources = sorted(dict(h)["tokenpulse.source"] for _, _, _, h in dlq)
    assert sources == sorted(f"t.usage/0/{i}".encode() for i in range(1, len(CRASHES) + 1))
    assert all(len(v) <= 1024 for _, _, v, _ in dlq)
    meta = [orjson.loads(v) for _, k, v, _ in producer.to(".ingest.state") if k == b"meta"]
    assert meta[-1]["applied_offset"] == len(values) - 1
