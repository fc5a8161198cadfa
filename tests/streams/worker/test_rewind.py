"""Every seek of Faust's consumer to the committed offsets reads a never-committed partition of the
agents' topics from its beginning (streams.worker.rewind).

The consumer here keeps aiokafka's rule (``seek_to_committed`` moves only partitions whose
committed offset is above 0); tests/integration/test_rewind.py runs a real aiokafka consumer on
both brokers. The sequence is the one that lost the judge's history on Apache Kafka: the
partition sought to its beginning once (after recovery), its first records fetched and dropped
by Faust's ``getmany`` while the flow was still stopped, and Faust's ``perform_seek`` again."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiokafka import TopicPartition

from streams.common.config import StreamConfig
from streams.worker.app import create_app
from streams.worker.rewind import install_rewind, seek_to_committed_or_beginning

T = "p.windows"
W0, W1, OTHER = TopicPartition(T, 0), TopicPartition(T, 1), TopicPartition("p.outbox", 0)


class Consumer:
    """aiokafka's positions and seeks, and a fetch that reads a partition to its end."""

    def __init__(self, ends: dict[TopicPartition, int], committed: dict[TopicPartition, int | None]) -> None:
        self.ends, self._committed = ends, committed
        self.pos = dict.fromkeys(ends, 0)

    def assignment(self) -> set[TopicPartition]:
        return set(self.ends)

    async def committed(self, tp: TopicPartition) -> int | None:
        return self._committed.get(tp)

    async def seek_to_committed(self) -> dict[TopicPartition, int | None]:
        out = {tp: self._committed.get(tp) for tp in self.ends}
        for tp, off in out.items():
            if off and off > 0:  # aiokafka: "if offset and offset > 0"
                self.pos[tp] = off
        return out

    async def beginning_offsets(self, tps: list[TopicPartition]) -> dict[TopicPartition, int]:
        return dict.fromkeys(tps, 0)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.pos[tp] = offset

    def fetch(self, tp: TopicPartition) -> list[int]:
        got = list(range(self.pos[tp], self.ends[tp]))
        self.pos[tp] = self.ends[tp]
        return got


def test_records_dropped_after_the_rewind_are_read_again_at_the_next_seek() -> None:
    async def run() -> None:
        c = Consumer({W0: 4, W1: 4, OTHER: 4}, {W1: 2})
        c.fetch(OTHER)
        # after recovery: read from the beginning, W1 from its committed offset
        assert await seek_to_committed_or_beginning(c, {T}) == {W0: None, W1: 2, OTHER: None}
        assert c.fetch(W0) == [0, 1, 2, 3]  # fetched while the flow is stopped, and dropped
        c.fetch(W1)
        # Faust's perform_seek again: aiokafka's seek_to_committed alone leaves W0 past them
        committed = await seek_to_committed_or_beginning(c, {T})
        assert committed == {W0: None, W1: 2, OTHER: None}  # Faust's read offsets: None for W0
        assert c.fetch(W0) == [0, 1, 2, 3]
        assert c.fetch(W1) == [2, 3]  # a committed partition from its committed offset
        assert c.fetch(OTHER) == []  # a topic not named: as aiokafka leaves it
        c._committed[W0] = 0  # 0: aiokafka skips it too
        c.fetch(W0)
        await seek_to_committed_or_beginning(c, {T})
        assert c.fetch(W0) == [0, 1, 2, 3]

    asyncio.run(run())


def test_the_app_s_perform_seek_rewinds_once_installed(tmp_path: Path) -> None:
    """Faust's own ``perform_seek`` (what recovery and ``getmany`` call) goes through the
    installed seek, run in Faust's consumer thread (here its ``call_thread`` runs it in place)."""
    app = create_app(StreamConfig(bootstrap="127.0.0.1:1", usage_partitions=2, data_dir=str(tmp_path),
                                  placement="series"))
    c = Consumer({W0: 3, W1: 3}, {W1: 1})
    thread = app.consumer._thread

    async def call_thread(fn: Any, *args: Any, **kw: Any) -> Any:
        return await fn(*args, **kw)

    thread.call_thread = call_thread  # type: ignore[method-assign]
    thread._ensure_consumer = lambda: c  # type: ignore[method-assign]
    install_rewind(app, {T})
    install_rewind(app, {T})  # every rebalance installs it again: once is what counts

    async def run() -> None:
        c.fetch(W0)
        c.fetch(W1)
        await app.consumer.perform_seek()
        assert c.fetch(W0) == [0, 1, 2] and c.fetch(W1) == [1, 2]
        # nothing read again is dropped as read: Faust's read offset of W0 is None
        assert app.consumer._read_offset[W0] is None

    asyncio.run(run())
