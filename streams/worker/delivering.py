"""The delivery side of the worker: outbox records delivered to every receiver, what a sink could
not take retried on a timer, and the Slack digests collected and posted.

What the Faust app calls (:mod:`streams.worker.app`): the ``deliver`` agent
:meth:`DeliveryWorker.deliver` per outbox record, the ``deliver_retry`` timer
:meth:`DeliveryWorker.retry`, the ``digest`` agent :meth:`DeliveryWorker.collect` per record of
the digest topic and the ``digest_tick`` timer :meth:`DeliveryWorker.post_digests`. The
decisions are :class:`streams.delivery.outbox.Deliverer`'s and
:class:`streams.delivery.digests.Digester`'s; this class holds their state in the
``deliveries`` and ``digests`` tables and serialises the agents and timers per key.

Plain Python: the tables, the digest topic's send and the partition assignment are handed in.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson

from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.common.partitioning import judge_partition
from streams.delivery.digests import Digester
from streams.delivery.outbox import Deliverer, pending_keys
from streams.worker.tables import Tables, persist

__all__ = ["DeliveryWorker"]


class DeliveryWorker:
    """Delivers the outbox, retries what is pending, keeps and posts the digests.

    ``send_digest(key, value, partition)`` writes to the digest topic and returns the broker's
    future (awaited before the deliveries entry says the record was forwarded); ``owned(topic)``
    says which partitions of a topic this worker holds (``None``: not known yet); ``settling()``
    is true while the worker rebalances or recovers its tables.
    """

    def __init__(
        self,
        cfg: StreamConfig,
        metrics: Metrics,
        tables: Tables,
        *,
        send_digest: Callable[[bytes, bytes, int], Awaitable[Any]] | None = None,
        owned: Callable[[str], set[int] | None] = lambda topic: None,
        settling: Callable[[], bool] = lambda: False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.tables = tables
        self.send_digest = send_digest
        self.owned = owned
        self.settling = settling
        self.n = cfg.usage_partitions
        forward = None if send_digest is None else self.forward_digest
        self.deliverer = Deliverer(cfg, metrics, forward_digest=forward, clock=clock)
        self.digester = Digester(self.deliverer, metrics, interval=self.deliverer.retry_interval, clock=clock)

    @property
    def retry_interval(self) -> float:
        return self.deliverer.retry_interval

    def sinks_status(self) -> list[dict[str, Any]]:
        """Health of every receiver, for ``/api/sinks``."""
        return self.deliverer.sinks_status()

    # -- the outbox --------------------------------------------------------------------------
    async def deliver(self, q: int, record: dict[str, Any]) -> None:
        """Deliver one outbox record of partition ``q`` (and whatever is pending for its key)."""
        key = record["key"]
        deliveries = self.tables.deliveries
        # The retry timer delivers too: one of them at a time per key.
        async with self.deliverer.lock(key):
            prior = deliveries.data.get(key)
            state = await self.deliverer.deliver(record, prior)
            persist(deliveries, q, key, state)

    async def retry(self) -> None:
        """Notifications a sink could not take stay pending in the deliveries table; try them
        again, so an outage delays them and loses none."""
        owned = self.owned(self.cfg.topics["outbox"])
        deliveries = self.tables.deliveries
        for key in pending_keys(list(deliveries.data.items())):
            async with self.deliverer.lock(key):
                prior = deliveries.data.get(key)
                self.deliverer.note_state(key, prior)  # also counts what a restart recovered
                waiting = [p for e in (prior or {}).values() if isinstance(e, dict) for p in e.get("pending") or ()]
                if not waiting:
                    continue
                q = judge_partition(waiting[0]["series"], self.n)
                if owned is not None and q not in owned:
                    continue  # another worker's key since a rebalance
                state = await self.deliverer.retry_pending(key, prior)
                if state is not None:
                    persist(deliveries, q, key, state)

    # -- digests ---------------------------------------------------------------------------
    async def forward_digest(self, channel: str, record: dict[str, Any]) -> None:
        """The deliverer's way to a digest channel: the digest topic, partitioned by channel."""
        assert self.send_digest is not None  # the deliverer gets this method only with a topic
        # sent now, not attached to the outbox event (that would wait for its ack); awaited:
        # the broker has it before the deliveries entry says it was forwarded
        fut = await self.send_digest(channel.encode(), orjson.dumps(record), judge_partition(channel, self.n))
        await fut

    async def collect(self, q: int, record: dict[str, Any]) -> None:
        """One record of the digest topic into its channel's book."""
        channel = record["channel"]
        digests = self.tables.digests
        async with self.digester.lock(channel):
            book = self.digester.collect(record, digests.data.get(channel))
            if book is not None:
                persist(digests, q, channel, book)

    async def post_digests(self) -> None:
        """Post the digest of every period that is over (wall clock), and retry failed ones."""
        if self.settling():
            return  # a half-recovered book would post a digest missing what is still being read
        owned = self.owned(self.cfg.topics["digest"])
        digests = self.tables.digests
        for channel, book in list(digests.data.items()):
            q = judge_partition(channel, self.n)
            if not self.digester.due(book) or (owned is not None and q not in owned):
                continue
            async with self.digester.lock(channel):
                book = await self.digester.send_due(channel, digests.data.get(channel))
                if book is not None:
                    persist(digests, q, channel, book)

    async def close(self) -> None:
        await self.deliverer.close()
