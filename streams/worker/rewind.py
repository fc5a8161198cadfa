"""Read a never-committed partition from its beginning whenever Faust seeks to the committed
offsets (issue 15).

Use :func:`install_rewind` from the Faust app's ``on_rebalance_complete`` signal, on the topics
its agents read.

Why: Faust drops records it fetched while its flow is stopped (a rebalance, table recovery) or
as the consumer generation changed (``Consumer.getmany``), and reads them again only by seeking
every partition to its committed offset (``perform_seek``, from ``getmany`` itself and at the end
of each recovery). aiokafka's ``seek_to_committed`` seeks only where the committed offset is
above 0: a partition with no committed offset keeps its fetch position, past the records
dropped, and those records are never read. Seeking such a partition to its beginning is what
``auto_offset_reset=earliest`` means anyway; what is read twice is recognised downstream (the
judge by the windows messages' seqs, the org stage by the verdicts' (judge partition, seq)).

Every ``perform_seek``, not once after recovery: a fetch started before the rebalance stopped
the flow (while the changelogs were read) can return a partition's first records after that
(its partitions resumed, the flow not yet), and ``getmany`` drops them and seeks to the
committed offsets again. That happened to the judge on Apache Kafka: a worker given windows
partitions 0 and 1 after the first rebalance logged them read from the beginning, yet never
judged the 30-window history their first 4 messages held (test_failover.py[kafka-series], no
page: the ads detector was still cold when the spike came).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Mapping
from typing import Any

log = logging.getLogger(__name__)


async def seek_to_committed_or_beginning(consumer: Any, topics: set[str]) -> Mapping[Any, Any]:
    """aiokafka's ``seek_to_committed`` on ``consumer``, and the partitions of ``topics`` it left
    where they were (no committed offset, or 0) sought to their beginning. Returns the committed
    offsets, as ``seek_to_committed`` does (what Faust's ``perform_seek`` takes its read offsets
    from: None for those, so that nothing read again is dropped as read)."""
    committed: Mapping[Any, Any] = await consumer.seek_to_committed()
    fresh = sorted((tp for tp, offset in committed.items() if tp.topic in topics and not offset),
                   key=lambda tp: (tp.topic, tp.partition))
    await _to_beginning(consumer, fresh)
    return committed


async def _to_beginning(consumer: Any, fresh: list[Any]) -> None:
    """Seek ``fresh`` to their log start offsets: looked up, then set at once (``seek``), rather
    than ``seek_to_beginning``, which leaves each partition without a position until the
    fetcher has reset it (Faust's livelock check reads the position of every assigned partition
    once a rebalance is over, and aiokafka asserts there is one)."""
    if fresh:
        starts = await consumer.beginning_offsets(fresh)
        assigned = consumer.assignment()  # a rebalance may have taken one meanwhile
        for tp in fresh:
            if tp in assigned:
                consumer.seek(tp, starts[tp])
        log.info("read from the beginning (no committed offset): %s",
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in fresh))


def install_rewind(app: Any, topics: set[str]) -> None:
    """Have every seek of the Faust ``app``'s consumer to the committed offsets (``perform_seek``)
    seek the never-committed partitions of ``topics`` to their beginning
    (:func:`seek_to_committed_or_beginning`, in Faust's consumer thread, where the aiokafka
    consumer belongs). Idempotent; call it before the first recovery ends."""
    thread = app.consumer._thread
    if getattr(thread, "_rewinds", None) == topics:
        return

    def run() -> Awaitable[Mapping[Any, Any]]:  # in the consumer thread
        return seek_to_committed_or_beginning(thread._ensure_consumer(), topics)

    async def seek_to_committed() -> Mapping[Any, Any]:
        return dict(await thread.call_thread(run))

    thread.seek_to_committed = seek_to_committed
    thread._rewinds = topics
