"""The delivery side of the worker: outbox records delivered to every receiver, what a sink could
not take retried on a timer, and the Slack digests collected and posted.

What the Faust app calls (:mod:`streams.worker.app`): the ``deliver`` agent
:meth:`DeliveryWorker.deliver` per outbox record, the ``deliver_retry`` timer
:meth:`DeliveryWorker.retry`, the ``digest`` agent :meth:`DeliveryWorker.collect` per record of
the digest topic and the ``digest_tick`` timer :meth:`DeliveryWorker.post_digests`. The
decisions are :class:`streams.delivery.outbox.Deliverer`'s and
:class:`streams.delivery.digests.Digester`'s; this class holds their state in the
``deliveries`` and ``digests`` tables and serialises the agents and timers per key.

A rebalance does not send a notification twice: a redelivered outbox record is skipped on the
strength of its key's ``deliveries`` entry, and the partition's next owner (this worker again, or
another) rebuilds that table from its changelog. Faust does not wait for the agents on a revoke
(``stream_wait_empty=False``: the judge holds its acknowledgements until a checkpoint), so a
delivery still posting when the revoke came wrote its entry after the next owner had read the
changelog, and the outbox record, never acknowledged, was delivered again. So the revoke waits
for every delivery in flight (the agent's, the retry timer's, a digest post) and then for the
changelog writes of their entries (:meth:`DeliveryWorker.drain`, at most :data:`REVOKE_WAIT_S`).

Plain Python: the tables, the digest topic's send and the partition assignment are handed in.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any

import orjson

from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.common.partitioning import judge_partition
from streams.delivery.digests import Digester
from streams.delivery.outbox import Deliverer, pending_keys
from streams.worker.tables import Tables, persist, written

__all__ = ["REVOKE_WAIT_S", "DeliveryWorker"]

log = logging.getLogger("tokenpulse.delivery")

# How long a revoke waits for the deliveries in flight. Well inside the group's rebalance
# timeout (Faust's broker_rebalance_timeout, 60 s), which is how long the broker waits for this
# worker to rejoin; a delivery that takes longer (a sink timing out through its retries) may be
# sent again by the partition's next owner, as after a crash.
REVOKE_WAIT_S = 15.0


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
        self.in_flight = 0  # deliveries (and digest posts) started and not done
        self._writes: list[Any] = []  # their changelog writes the broker may not have yet
        self._idle = asyncio.Event()
        self._idle.set()

    @property
    def retry_interval(self) -> float:
        return self.deliverer.retry_interval

    def sinks_status(self) -> list[dict[str, Any]]:
        """Health of every receiver, for ``/api/sinks``."""
        return self.deliverer.sinks_status()

    # -- in flight ---------------------------------------------------------------------------
    @asynccontextmanager
    async def _flying(self) -> AsyncIterator[None]:
        self.in_flight += 1
        self._idle.clear()
        try:
            yield
        finally:
            self.in_flight -= 1
            if not self.in_flight:
                self._idle.set()

    def _persist(self, table: Any, q: int, key: str, value: dict[str, Any]) -> None:
        """Write ``key``'s entry; the changelog write is kept until the broker has it, for
        :meth:`drain`. Not awaited here: the agent goes on while Faust's producer sends it."""
        w = persist(table, q, key, value)
        if inspect.isawaitable(w):
            self._writes = [f for f in self._writes if not _done(f)]
            self._writes.append(w)

    async def drain(self, timeout: float = REVOKE_WAIT_S) -> bool:
        """Wait (at most ``timeout`` seconds) until no delivery is in flight and the broker has
        the deliveries entries (and digest books) they wrote; for a revoke, before the
        partitions' next owner reads the changelog. False (and a warning) when some were not
        done in time."""
        writes = [f for f in self._writes if not _done(f)]
        if self._idle.is_set() and not writes:
            return True
        log.info("partitions revoked: waiting for %d deliveries in flight and %d changelog writes (at most "
                 "%.0f s), so that the next owner finds them sent", self.in_flight, len(writes), timeout)
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
                writes = self._writes
                self._writes = []
                failed = await written(writes)
        except TimeoutError:
            log.warning("partitions revoked with %d deliveries still in flight or their changelog writes not "
                        "done after %.0f s: the partition's next owner may send them again", self.in_flight, timeout)
            return False
        for exc in failed:
            # the entry stays in this worker's table; the partition's next owner may send it again
            log.error("a deliveries entry was not written to the changelog: %s", exc)
        return not failed

    # -- the outbox --------------------------------------------------------------------------
    async def deliver(self, q: int, record: dict[str, Any]) -> None:
        """Deliver one outbox record of partition ``q`` (and whatever is pending for its key)."""
        key = record["key"]
        deliveries = self.tables.deliveries
        # The retry timer delivers too: one of them at a time per key.
        async with self._flying(), self.deliverer.lock(key):
            prior = deliveries.data.get(key)
            state = await self.deliverer.deliver(record, prior)
            self._persist(deliveries, q, key, state)

    async def retry(self) -> None:
        """Notifications a sink could not take stay pending in the deliveries table; try them
        again, so an outage delays them and loses none."""
        deliveries = self.tables.deliveries
        for key in pending_keys(list(deliveries.data.items())):
            # Not while the worker rebalances: the assignment it would check is about to change,
            # and the partition's next owner may be reading the changelog already.
            if self.settling():
                return
            owned = self.owned(self.cfg.topics["outbox"])
            async with self._flying(), self.deliverer.lock(key):
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
                    self._persist(deliveries, q, key, state)

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
        owned = self.owned(self.cfg.topics["digest"])
        digests = self.tables.digests
        for channel, book in list(digests.data.items()):
            if self.settling():
                return  # a half-recovered book would post a digest missing what is still being read
            q = judge_partition(channel, self.n)
            if not self.digester.due(book) or (owned is not None and q not in owned):
                continue
            # in flight like a delivery: a revoke waits until the book that says it was posted
            # is on the changelog, or the channel's next owner posts the digest again
            async with self._flying(), self.digester.lock(channel):
                book = await self.digester.send_due(channel, digests.data.get(channel))
                if book is not None:
                    self._persist(digests, q, channel, book)

    async def close(self) -> None:
        await self.deliverer.close()


def _done(fut: Any) -> bool:
    done = getattr(fut, "done", None)
    return bool(done()) if callable(done) else False
