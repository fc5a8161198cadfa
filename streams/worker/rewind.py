"""Read a never-committed partition from its beginning after a rebalance (issue 15).

Use it from the Faust app's ``on_rebalance_complete`` signal, on the topics its agents read.

Why: Faust drops records it fetched for a partition that got paused (table recovery) or that
arrived as the consumer generation changed (``Consumer.getmany``), and reads them again after
recovery only by seeking every partition to its committed offset (``perform_seek``). aiokafka's
``seek_to_committed`` seeks only where the committed offset is above 0: a partition with no
committed offset keeps its fetch position, past the records dropped, and those records are
never read. Seeking such a partition to its beginning is what ``auto_offset_reset=earliest``
means anyway; what is read twice is recognised downstream (the judge drops windows messages
by their seq).
"""

from __future__ import annotations

import logging
from typing import Any

log = logging.getLogger(__name__)


async def rewind_uncommitted(consumer: Any, topics: set[str]) -> list[Any]:
    """Seek each partition of ``topics`` assigned to the aiokafka ``consumer`` that has no
    committed offset (None, or 0: aiokafka's ``seek_to_committed`` skips both) to its beginning,
    and return those partitions. Call it in the consumer's own event loop (Faust's consumer
    thread: :func:`rewind_faust_consumer`)."""
    tps = sorted((tp for tp in consumer.assignment() if tp.topic in topics), key=lambda tp: (tp.topic, tp.partition))
    fresh = [tp for tp in tps if not await consumer.committed(tp)]
    if fresh:
        await consumer.seek_to_beginning(*fresh)
        log.info("read from the beginning (no committed offset): %s",
                 ", ".join(f"{tp.topic}[{tp.partition}]" for tp in fresh))
    return fresh


async def rewind_faust_consumer(app: Any, topics: set[str]) -> list[Any]:
    """:func:`rewind_uncommitted` on a Faust app's aiokafka consumer, run in Faust's consumer
    thread (the aiokafka consumer belongs to that thread's event loop)."""
    thread = app.consumer._thread
    return list(await thread.call_thread(lambda: rewind_uncommitted(thread._ensure_consumer(), topics)))
