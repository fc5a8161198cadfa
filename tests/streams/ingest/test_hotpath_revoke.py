"""The hot path's revoke against a checkpoint the loop has begun: the revoke returns only once
that checkpoint's state is written and its partials sent, so the partition's next owner, which
reads the changelog as soon as the group has rebalanced, restores it and sends nothing of it
again (issue 15: the two-worker start-up rebalance)."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

import orjson

from streams.ingest.windows import IngestPartition
from tests.streams.ingest.test_hotpath_poison import RecordingProducer, loop_with
from tests.streams.ingest.test_poison import T, good


class GatedProducer(RecordingProducer):
    """Sends to the windows topic wait for ``gate`` (a broker slow to take a backlog's partials)."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()

    async def send(self, topic: str, value: Any = None, key: Any = None, headers: Any = None,
                   partition: Any = None) -> asyncio.Future[Any]:
        if topic.endswith(".windows"):
            await self.gate.wait()
        return await super().send(topic, value=value, key=key, headers=headers, partition=partition)


async def test_a_revoke_waits_for_the_checkpoint_the_loop_is_sending() -> None:
    producer = GatedProducer()
    loop = loop_with(producer)
    core = loop.cores[0] = IngestPartition(partition=0, limits=loop.cfg.limits)
    loop._apply(core, 0, [SimpleNamespace(offset=i, value=orjson.dumps(good(i))) for i in range(3)], T)
    # the loop's checkpoint: it closes the windows, writes the state that holds their partials
    # and is sending them
    sending = asyncio.ensure_future(loop.checkpoint(0, T + 3600))
    await asyncio.sleep(0.01)
    assert 0 in loop.in_ckpt and producer.to(".ingest.state") and not producer.to(".windows")

    revoke = asyncio.ensure_future(loop.revoke({0}))
    await asyncio.sleep(0.05)
    assert not revoke.done()  # not before the partials went out

    producer.gate.set()
    await asyncio.wait_for(revoke, 5)
    await sending
    meta = [orjson.loads(v) for _, k, v, _ in producer.to(".ingest.state") if k == b"meta"]
    assert meta and meta[-1]["applied_offset"] == 2
    assert producer.to(".windows")
    assert 0 not in loop.cores and not loop.in_ckpt
