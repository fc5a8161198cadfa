"""The worker's tables, and how its parts write and read them.

A table is anything with a ``data`` mapping and ``send_changelog(partition, key, value)``: a
Faust table in the worker, a plain object in tests (tests/streams/worker/fakes.py). The parts of
the worker (:mod:`streams.worker.judging`, :mod:`streams.worker.delivering`,
:mod:`streams.reports.reporting`) take them as arguments and never import Faust.

Keys of the per-partition state tables (``judge``, ``budgets``, ``reports``) start with the
judge partition: ``"<q>|<key of the core's checkpoint>"``.
"""

from __future__ import annotations

import asyncio
import inspect
import logging
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, MutableMapping
from dataclasses import dataclass
from typing import Any, Protocol

from streams.common.packing import pack, unpack
from streams.common.spend import SeriesSpend, spend_key, split_key

__all__ = ["STATE_TABLES", "TABLES", "Table", "Tables", "changelog_topics", "owned_partitions", "pack", "pack_local", "persist",
           "persist_spend", "restore_items", "table_names", "unpack", "written"]


class Table(Protocol):
    data: MutableMapping[str, Any]

    def send_changelog(self, partition: int, key: Any, value: Any) -> Any: ...


@dataclass(frozen=True)
class Tables:
    """Every table of the worker (one changelog topic each)."""

    judge: Table  # judge cores' state: "<q>|<JudgeCore.checkpoint key>"
    # exact spend: each series' SeriesSpend in data (JudgeCore.spend), a record per window and
    # day on the changelog (streams.common.spend); the API's source
    spend: Table
    alerts: Table  # latest notification per alert key, for /api/alerts
    deliveries: Table  # per alert key: each target's delivered seq, pending records, sink state
    budgets: Table  # budget ledgers' and mix watches' state: "<q>|<key>"
    digests: Table  # digest channel -> its book (alerts.digest)
    reports: Table | None = None  # report parts and done marks (only with reports in the policy)


# The tables every worker makes, in :class:`Tables` (streams.worker.app), and every table it can
# make: those, ``reports`` with reports in the policy, ``feedback`` with Slack's or PagerDuty's
# signing secret, ``org`` with TOKENPULSE_PLACEMENT=series (changelog_topics adds it).
STATE_TABLES = ("judge", "spend", "alerts", "deliveries", "budgets", "digests")
TABLES = (*STATE_TABLES, "reports", "feedback")


def table_names(reports: bool) -> list[str]:
    """The fields of :class:`Tables` a worker fills: the state tables, and ``reports`` when the
    policy schedules reports."""
    return [*STATE_TABLES, *(["reports"] if reports else [])]


def changelog_topics(app_id: str, placement: str) -> list[str]:
    """The changelog topics of the worker's tables (Faust's ``<app id>-<table>-changelog``).

    ``tokenpulse.runtime.prepare_topics`` creates them all before Faust starts. Left to Faust,
    a changelog is declared after the first group join, and a group leader whose metadata still
    lacks it ("Ignoring missing topic") assigns none of its partitions, then or at a later
    rebalance (aiokafka refreshes its metadata every 5 minutes): the table is written but never
    recovered, and the survivor of a SIGKILL starts it empty (the ``budgets`` table: the org's
    budget ledger counted only what came after the takeover, test_failover.py)."""
    names = [*TABLES, *(["org"] if placement == "series" else [])]
    return [f"{app_id}-{name}-changelog" for name in names]


def persist(table: Table, partition: int, key: str, value: Any, packed: bool | bytes = False) -> Any:
    """Write ``key`` (``None`` deletes it) to the table and its changelog partition; returns
    the changelog write (Faust's future, done once the broker has the record), which a caller
    that acknowledges input on the strength of it awaits first (:func:`written`).

    The partition is explicit: checkpoints also run from timers, outside stream iteration,
    where Faust cannot tell it.

    ``packed``: the table's local data keeps the value packed (:func:`pack`: deflated JSON)
    rather than as Python objects (the changelog record is the same). For big values that are
    only read back by a restore (:func:`restore_items` unpacks them): a series' detector state
    is ~16 KiB of JSON and took ~40 KiB as lists of Python floats, ~4-5 KiB deflated, beside the
    live detector, for every series (benchmarks/scale.py). Bytes: ``value`` already packed
    (a parked series' state, which its judge holds as these very bytes:
    :attr:`streams.judge.core.JudgeCore.packed_out`), kept as they are."""
    data = table.data
    # Faust's in-memory store drops, once a rebalance's recovery completes, the keys of the
    # partitions this worker no longer holds -- those it knows the partition of, i.e. those its
    # recovery read from a changelog. Told the partition of what this worker writes itself too,
    # it drops those as well: else an alert, delivery, answer or digest of a partition that moved
    # to another worker stays here, and the API's merged answers count it twice (/api/feedback's
    # summary) or answer with this stale copy (/api/alerts' delivery status on a tie).
    owners = getattr(data, "_key_partition", None)
    if value is None:
        data.pop(key, None)
        if owners is not None:
            owners.pop(key, None)
    else:
        data[key] = packed if isinstance(packed, bytes) else pack(value) if packed else value
        if owners is not None:
            owners[key] = partition
    return table.send_changelog(partition, key, value)


def pack_local(table: Table, prefix: str) -> int:
    """Pack (:func:`pack`) the local data's values under ``prefix``, as :func:`persist` with
    ``packed`` keeps them: for what a changelog recovery put there as Python objects, once it
    has been restored. Returns how many were packed."""
    data = table.data
    todo = [k for k, v in list(data.items()) if k.startswith(prefix) and v is not None and not isinstance(v, bytes)]
    for k in todo:
        data[k] = pack(data[k])
    return len(todo)


async def written(writes: Iterable[Any]) -> list[BaseException]:
    """Wait until the broker has every changelog write of ``writes`` (what :func:`persist`
    returned; anything not awaitable, as the tests' tables return, counts as written) and
    return the failures. Faust's ``send_changelog`` only buffers the record: input must not be
    acknowledged (and its offset committed) before its state is on the broker, or a crash in
    between loses what that input changed."""
    futs = [w for w in writes if inspect.isawaitable(w)]
    if not futs:
        return []
    results = await asyncio.gather(*futs, return_exceptions=True)
    return [r for r in results if isinstance(r, BaseException)]


class AckChain:
    """Acknowledges a stage's input per partition, in order, once the broker has its state:
    what the judge and the org stage share (:meth:`JudgeWorker.checkpoint` says why).

    A checkpoint's messages are acknowledged once its changelog ``writes`` are on the broker
    and the partition's previous checkpoint acknowledged its own; not at all if either failed,
    nor when a revoke (:meth:`revoke`) came in between."""

    def __init__(self, stage: str, log: logging.Logger) -> None:
        self.stage = stage
        self.log = log
        # Bumped by every revoke. A message judged, or a checkpoint taken, across a revoke (the
        # agent and the timer await sends while Faust rebalances) belongs to state the revoke
        # threw away: it must not be held or acknowledged afterwards, or its offset would be
        # committed with nothing of it persisted.
        self.generation = 0
        self._tasks: set[asyncio.Task[bool]] = set()  # acknowledgements waiting for their writes
        # each partition's latest acknowledgement task: the next one waits for it
        self._tail: dict[int, asyncio.Task[bool]] = {}

    def revoke(self) -> None:
        """Every acknowledgement in flight belongs to the generation just ended and
        acknowledges nothing now: the next ones must not wait behind them."""
        self.generation += 1
        self._tail.clear()

    async def after(self, p: int, writes: list[Any], to_ack: list[Any], generation: int,
                    ack: Callable[[Any], Awaitable[Any]] | None) -> None:
        """Acknowledge ``to_ack`` (partition ``p``'s messages of a checkpoint taken in
        ``generation``) with ``ack`` once ``writes`` are on the broker: at once when nothing
        is left to wait for, else in a task of its own (the stage goes on meanwhile)."""
        if not to_ack or ack is None:
            return
        pending = [w for w in writes if isinstance(w, asyncio.Future) and not w.done()]
        before = self._tail.get(p)
        if not pending and (before is None or (before.done() and _acknowledged(before))):
            await self._acknowledge(p, writes, to_ack, generation, ack)
            return
        task = asyncio.ensure_future(self._acknowledge(p, writes, to_ack, generation, ack, before))
        self._tasks.add(task)
        self._tail[p] = task
        task.add_done_callback(self._tasks.discard)

    async def _acknowledge(self, p: int, writes: list[Any], to_ack: list[Any], generation: int,
                           ack: Callable[[Any], Awaitable[Any]],
                           before: asyncio.Task[bool] | None = None) -> bool:
        """Acknowledge ``to_ack`` once ``writes`` are on the broker and ``before`` (the
        partition's previous acknowledgement) has acknowledged its own; whether it did."""
        failed = await written(writes)
        if before is not None:
            await asyncio.wait([before])  # not cancelled with this task
            if not _acknowledged(before):
                self.log.error("%s partition %d: %d messages stay unacknowledged behind earlier ones that were not",
                               self.stage, p, len(to_ack))
                return False
        if failed:
            # not acknowledged: read again after a restart or rebalance, onto this state
            self.log.error("%s partition %d: %d changelog writes failed (%r); %d messages stay unacknowledged",
                           self.stage, p, len(failed), failed[0], len(to_ack))
            return False
        if generation != self.generation:
            return False  # revoked meanwhile: Faust reads them again
        for message in to_ack:
            await ack(message)
        return True


def _acknowledged(task: asyncio.Task[bool]) -> bool:
    """Whether a finished acknowledgement task acknowledged its messages."""
    return not task.cancelled() and task.exception() is None and task.result()


def persist_spend(table: Table, partition: int, books: Mapping[str, SeriesSpend], changes: Mapping[str, Any]) -> list[Any]:
    """Write a judge's spend ``changes`` (records per window and day, ``None`` deletes) to the
    spend table's changelog; its ``data`` holds each changed series' book itself
    (``books``, a judge's ``spend``), not the records.

    In memory one :class:`SeriesSpend` per series; on the changelog the records a restore
    reads back (:meth:`~streams.judge.core.JudgeCore.restore_spend`), as before the books.
    Returns the changelog writes, for :func:`written`."""
    data = table.data
    writes: list[Any] = []
    for key, value in changes.items():
        writes.append(table.send_changelog(partition, key, value))
        data.pop(key, None)  # a record recovery put there: the book holds it now
        got = split_key(key)
        if got is None:
            continue
        bk = spend_key(got[0])
        book = books.get(bk)
        if book:
            if data.get(bk) is not book:
                data[bk] = book
        else:
            data.pop(bk, None)
    return writes


def restore_items(table: Table, q: int, raw: bool = False) -> Iterator[tuple[str, Any]]:
    """The entries of judge partition ``q`` in a per-partition table, without their ``"<q>|"``
    prefix (what a core's ``restore`` takes); values kept packed (:func:`persist`) unpacked,
    or with ``raw`` left packed (a judge core takes a series' state packed: a parked series
    keeps these very bytes)."""
    prefix = f"{q}|"
    return ((k[len(prefix):], unpack(v) if isinstance(v, bytes) and not raw else v)
            for k, v in list(table.data.items()) if k.startswith(prefix))


def owned_partitions(app: Any, topic: str) -> set[int] | None:
    """Partitions of ``topic`` assigned to this worker (``None``: not known yet)."""
    try:
        return {tp.partition for tp in app.assignor.assigned_actives() if tp.topic == topic}
    except Exception:  # noqa: BLE001 - before the first assignment
        return None
