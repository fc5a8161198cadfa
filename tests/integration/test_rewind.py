"""Records dropped during a rebalance on a never-committed partition are read again (issue 15).

Faust drops records it fetched for a partition paused for table recovery, then seeks every
partition to its committed offset (``perform_seek``: aiokafka's ``seek_to_committed``), which
does not move a partition that has no committed offset. This test runs that sequence with a
real aiokafka consumer in a real group: records fetched and dropped, then the seek the worker
installs in Faust's place (:func:`streams.worker.rewind.seek_to_committed_or_beginning`), twice.
The never-committed partition is read again from its beginning (with aiokafka's
``seek_to_committed`` alone it is not read again at all), the committed one from its committed
offset."""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.structs import OffsetAndMetadata

from streams.worker.rewind import seek_to_committed_or_beginning

pytestmark = pytest.mark.integration

N = 5


def _create(bootstrap: str, topic: str) -> None:
    from kafka.admin import KafkaAdminClient, NewTopic

    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, num_partitions=2, replication_factor=1)])
    finally:
        admin.close()


async def _read(consumer: AIOKafkaConsumer, want: int, timeout: float = 15.0) -> dict[int, list[int]]:
    """Fetch until ``want`` records came (or the timeout): offsets by partition."""
    got: dict[int, list[int]] = {}
    end = time.monotonic() + timeout
    while sum(map(len, got.values())) < want and time.monotonic() < end:
        for tp, records in (await consumer.getmany(timeout_ms=500)).items():
            got.setdefault(tp.partition, []).extend(r.offset for r in records)
    return got


async def test_a_never_committed_partition_is_read_again_from_its_beginning(broker: Any) -> None:
    topic = f"rewind-{uuid.uuid4().hex[:8]}"
    _create(broker.bootstrap, topic)
    from kafka import KafkaProducer

    p = KafkaProducer(bootstrap_servers=broker.bootstrap, acks=1)
    for q in (0, 1):
        for i in range(N):
            p.send(topic, value=f"{q}-{i}".encode(), partition=q)
    p.flush(30)
    p.close()

    consumer = AIOKafkaConsumer(topic, bootstrap_servers=broker.bootstrap, group_id=f"g-{topic}",
                                enable_auto_commit=False, auto_offset_reset="earliest")
    await consumer.start()
    try:
        first = await _read(consumer, 2 * N)
        assert first == {0: list(range(N)), 1: list(range(N))}
        p0, p1 = TopicPartition(topic, 0), TopicPartition(topic, 1)
        await consumer.commit({p1: OffsetAndMetadata(2, "")})  # partition 1 judged up to offset 2

        # Faust dropped the fetched records (paused for recovery); aiokafka's position is past
        # them, and seek_to_committed alone leaves partition 0 there: the records are lost.
        assert await consumer.position(p0) == N
        await consumer.seek_to_committed()  # aiokafka's own: partition 0 stays past them
        assert await consumer.position(p0) == N
        # Faust's perform_seek, as the worker installs it
        assert await seek_to_committed_or_beginning(consumer, {topic}) == {p0: None, p1: 2}
        again = await _read(consumer, N + (N - 2))
        assert again == {0: list(range(N)), 1: list(range(2, N))}
        # read and dropped again (Faust's getmany while its flow is stopped), then Faust's next
        # perform_seek: the seek the worker installs reads partition 0 again from its beginning
        assert await seek_to_committed_or_beginning(consumer, {topic}) == {p0: None, p1: 2}
        assert await _read(consumer, N + (N - 2)) == {0: list(range(N)), 1: list(range(2, N))}
        # once committed, a partition is left to seek_to_committed
        await consumer.commit({p0: OffsetAndMetadata(N, "")})
        assert await seek_to_committed_or_beginning(consumer, {topic}) == {p0: N, p1: 2}
        assert await consumer.position(p0) == N
    finally:
        await consumer.stop()
