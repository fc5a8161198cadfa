"""Scheduled spend reports in the worker: the Faust glue around :mod:`streams.reports.core`.

Who builds a report. The spend of one org is spread over every judge partition (each series
is judged, and its exact spend kept, on ``judge_partition(series)``), so no partition can
build an org report alone, and with several workers no worker holds all of it. So:

1. every judge partition, when its watermark passes a report's due time (the period's end
   plus ``at``), computes its *part* -- its series summed over the period and the one
   before, and the budgets it holds -- and sends it to the report's owner on the topic
   ``<prefix>.reports``; it records the period as sent (table ``reports``,
   ``<q>|sent|<name>``), after the send, so a crash in between re-sends the same part;
2. the owner is the partition that judges the report's own series (``org``, or ``team=x``
   for a team report). It keeps the parts it got (``<o>|parts|<key>``); when all
   ``n`` are in, it builds the report, writes one notification to the outbox (key
   ``report:<name>:<period id>``, seq = the due time in ms) and marks the key done
   (``<o>|done|<key>``), so later parts of it are ignored;
3. the owner does not wait forever for a partition that never answers (its worker lost, a
   partition stuck): once its own watermark is ``TOKENPULSE_REPORT_DEADLINE_SECONDS`` past
   the due time, *and* as long has passed on the wall clock since it sent its own part (so a
   catching-up owner whose event time races ahead of the other partitions still waits for
   them), it sends itself a *close* on the reports topic. The close goes to the same
   partition as the parts, after them, so every part sent before it is merged first; if the
   report is still not done, it is built from the parts that came, with ``complete: false``
   and ``missing`` naming the partitions (in the report, so in the Slack message's context,
   and in the done mark). A part that comes after the report went out sends nothing: it is
   logged, counted (``reports_late_parts_total``) and noted in the done mark (``late``); the
   full numbers are in ``GET /api/report``.

A crash between the outbox write and the done mark builds the same report again with the same
key and seq (a close is sent again after a restart, the wall-clock wait restarting), which the
deliverer skips (it keeps the last delivered seq per key and sink); two workers never both own
a partition. The notification goes to the report's channel (and to the webhook, like every
notification) with the usual retries, and its deliveries entry lives on the owner partition,
where the retry timer looks for it (``judge_partition(series)``). If partitioning moves to one
partition per org, the owner is still ``judge_partition`` of the report's series and the parts
of the other partitions are simply empty.

``GET /api/report`` (:mod:`streams.worker.web`) computes the same report on demand from this
worker's judge partitions with :meth:`Reporting.part`.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import orjson

from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.common.partitioning import judge_partition
from streams.reports.core import (
    ReportDue,
    ReportScheduler,
    ReportSpec,
    budget_row,
    build_report,
    report_notification,
    report_part,
)

log = logging.getLogger("tokenpulse.reports")

DONE_KEPT = 60  # done marks kept per report (older ones pruned): far beyond any redelivery
# Periods of a report waiting for the parts of a partition that does not answer, kept per report:
# a report that never completes (a partition lost for good) does not grow the table forever.
PENDING_KEPT = 7

__all__ = ["Reporting", "report_owner"]


def report_owner(spec: ReportSpec, n: int) -> int:
    """The judge partition that builds ``spec``'s reports: the one judging its series."""
    return judge_partition(spec.series, n)


# (key, value, partition): a send to a topic of the worker
Send = Callable[[bytes, bytes, int], Awaitable[Any]]


class Reporting:
    """Each judge partition's part of the scheduled reports, and the owner's merge of them.

    The judge side of the worker calls :meth:`after_judge` after each windows message; the
    ``reports`` agent calls :meth:`merge_part` for each part it reads. The worker declares the
    topic, table and agent (:func:`streams.worker.app.create_app`) only when the policy has
    reports, and hands in how to write them: ``send_part`` to the reports topic, ``send_note``
    to the outbox, ``persist(table, partition, key, value)`` to the ``reports`` table ``table``.
    ``judges`` and ``ledgers`` are the worker's judge cores and budget ledgers by partition
    (read, never changed).
    """

    def __init__(
        self, cfg: StreamConfig, metrics: Metrics, judges: Mapping[int, Any], ledgers: Mapping[int, Any], *,
        table: Any = None, send_part: Send | None = None, send_note: Send | None = None,
        persist: Callable[[Any, int, str, Any], None] | None = None, clock: Callable[[], float] = time.time,
    ) -> None:
        self.cfg = cfg
        self.n = cfg.usage_partitions
        self.specs: dict[str, ReportSpec] = {s.name: s for s in cfg.reports}
        self.metrics = metrics
        self.judges = judges
        self.ledgers = ledgers
        self.table = table
        self.send_part = send_part
        self.send_note = send_note
        self.persist = persist
        self.schedulers: dict[int, ReportScheduler] = {}
        self.deadline = float(cfg.report_deadline)
        self.clock = clock
        # the owner's wait for the parts, per (owner partition, report name): the period it
        # waits for and when (wall clock) it started waiting; the watermark before which there
        # is nothing to check; the last period it sent a close for
        self._waiting: dict[tuple[int, str], tuple[str, float]] = {}
        self._next_check: dict[tuple[int, str], float] = {}
        self._closed: dict[tuple[int, str], str] = {}

    def revoke(self, q: int) -> None:
        """Judge partition ``q`` went to another worker: its scheduler goes (rebuilt from the
        table if it comes back)."""
        self.schedulers.pop(q, None)
        for d in (self._waiting, self._next_check, self._closed):
            for k in [k for k in d if k[0] == q]:
                del d[k]

    # -- every judge partition: its parts --------------------------------------------------
    def _scheduler(self, q: int) -> ReportScheduler:
        s = self.schedulers.get(q)
        if s is None:
            s = self.schedulers[q] = ReportScheduler(self.specs.values())
            prefix = f"{q}|"
            s.restore((k[len(prefix):], v) for k, v in list(self.table.data.items()) if k.startswith(prefix))
        return s

    async def after_judge(self, q: int, wm: float | None) -> None:
        """Send this partition's part of every report due at ``wm`` (its judge's watermark)."""
        if not self.specs or wm is None:
            return
        sched = self._scheduler(q)
        for spec, due in sched.due(float(wm)):
            part = self.part(q, spec, due, now=due.due_at)
            rkey = spec.key(due.period_id)
            body = {"key": rkey, "name": spec.name, "q": q, "n": self.n, "due": due.to_dict(), "part": part}
            assert self.send_part is not None and self.persist is not None
            await self.send_part(rkey.encode(), orjson.dumps(body), report_owner(spec, self.n))
            key, value = sched.mark(spec.name, due.period_id)
            self.persist(self.table, q, f"{q}|{key}", value)
            if report_owner(spec, self.n) == q:  # the owner's wait for the others starts now
                self._waiting[(q, spec.name)] = (due.period_id, self.clock())
        await self._close_overdue(q, float(wm))

    async def _close_overdue(self, o: int, wm: float) -> None:
        """Send a close for each report owned by ``o`` whose parts are overdue: ``o``'s
        watermark :attr:`deadline` past the due time and as long on the wall clock since the
        owner's wait began. Cheap per call while nothing is overdue (one float per report)."""
        dl = self.deadline
        for spec in self.specs.values():
            if report_owner(spec, self.n) != o:
                continue
            k = (o, spec.name)
            if wm < self._next_check.get(k, -math.inf):
                continue
            d = spec.due(wm - dl)
            if d is None:
                self._next_check[k] = spec.closed(wm - dl).due_at + dl
                continue
            key = spec.key(d.period_id)
            if self._closed.get(k) == d.period_id or self.table.data.get(f"{o}|done|{key}") is not None:
                # nothing to do until the next period is overdue
                self._next_check[k] = spec.closed(spec.calendar.bounds(d.end)[1]).due_at + dl
                continue
            waiting = self._waiting.get(k)
            if self.table.data.get(f"{o}|parts|{key}") is None:
                if waiting is None or waiting[0] != d.period_id:
                    # no part came and the owner sent none: a period before the reports began
                    self._next_check[k] = spec.closed(spec.calendar.bounds(d.end)[1]).due_at + dl
                continue  # else the owner's own part is still on its way
            if waiting is None or waiting[0] != d.period_id:
                # the owner's part went out before a restart (or this worker just got the
                # partition): wait a deadline on the wall clock from now
                self._waiting[k] = (d.period_id, self.clock())
                continue
            if self.clock() - waiting[1] < dl:
                continue
            self._closed[k] = d.period_id
            body = {"key": key, "name": spec.name, "n": self.n, "due": d.to_dict(), "close": True}
            assert self.send_part is not None
            await self.send_part(key.encode(), orjson.dumps(body), o)

    def part(self, q: int, spec: ReportSpec, due: ReportDue, now: float) -> dict[str, Any]:
        j = self.judges.get(q)
        led = self.ledgers.get(q)
        budgets = [budget_row(led, name, due, now) for name in sorted(led.budgets)] if led is not None else []
        return report_part(list(j.spend.items()) if j is not None else [], spec, due, budgets,
                           self.cfg.internal_models)

    # -- the owner: merge, build, outbox ---------------------------------------------------
    async def merge_part(self, o: int, body: dict[str, Any]) -> None:
        assert self.send_note is not None and self.persist is not None
        key = str(body["key"])
        close = bool(body.get("close"))
        done = self.table.data.get(f"{o}|done|{key}")
        if done is not None:
            if not close:
                self._late_part(o, key, done, int(body["q"]))
            return  # built already: a part sent again after a crash, or a close after the last part
        spec = self.specs.get(str(body["name"]))
        if spec is None:
            return  # the report left the policy
        parts = dict(self.table.data.get(f"{o}|parts|{key}") or {})
        if not close:
            parts[str(int(body["q"]))] = body["part"]
        n = int(body["n"])
        if len(parts) < n and not close:
            self.persist(self.table, o, f"{o}|parts|{key}", parts)
            self._prune_pending(o, spec)
            return
        due = ReportDue.from_dict(body["due"])
        missing = [q for q in range(n) if str(q) not in parts]
        report = build_report(spec, due, [parts[k] for k in sorted(parts, key=int)], self.cfg.internal_models)
        report["complete"] = not missing
        report["missing"] = [{"partitions": missing, "peer": None,
                              "reason": f"no part within {self.deadline:g} s of the due time"}] if missing else []
        note = report_notification(report, spec, self.cfg.dashboard_url)
        await self.send_note(note.key.encode(), orjson.dumps(note.to_dict()), o)
        self.metrics.inc("reports_sent_total", labels={"period": spec.period})
        if missing:
            self.metrics.inc("reports_partial_total", labels={"period": spec.period})
            log.warning("report %s for %s sent partial: partitions %s did not report within %g s", spec.name,
                        due.period_id, ", ".join(map(str, missing)), self.deadline)
        log.info("report %s for %s: %d parts, total $%.2f", spec.name, due.period_id, len(parts),
                 report["total"]["usd"])
        self.persist(self.table, o, f"{o}|done|{key}", {"due_at": due.due_at, "built_at": time.time(),
                                                        "total_nusd": report["total"]["nusd"],
                                                        "complete": not missing, "missing": missing})
        self.persist(self.table, o, f"{o}|parts|{key}", None)
        self._prune(o, spec)

    def _late_part(self, o: int, key: str, done: Mapping[str, Any], q: int) -> None:
        """A part of partition ``q`` came after its report went out: the report is not sent
        again (on-call would get two messages for one day); logged, counted and noted."""
        if q not in (done.get("missing") or ()) or q in (done.get("late") or ()):
            return  # a part sent again after a crash, of a report it was in
        assert self.persist is not None
        log.warning("%s: partition %d reported after the report was sent partial; not sent again "
                    "(GET /api/report has the full numbers)", key, q)
        self.metrics.inc("reports_late_parts_total")
        self.persist(self.table, o, f"{o}|done|{key}", {**done, "late": sorted({*(done.get("late") or ()), q})})

    def _prune_pending(self, o: int, spec: ReportSpec) -> None:
        """Keep the parts of the newest :data:`PENDING_KEPT` incomplete periods of a report."""
        assert self.persist is not None
        prefix = f"{o}|parts|report:{spec.name}:"
        waiting = sorted(k for k in list(self.table.data) if k.startswith(prefix))
        for k in waiting[:-PENDING_KEPT]:
            log.warning("report %s: dropping the parts of %s, still waiting for a partition", spec.name,
                        k[len(prefix):])
            self.persist(self.table, o, k, None)

    def _prune(self, o: int, spec: ReportSpec) -> None:
        """Keep the newest :data:`DONE_KEPT` done marks of a report, and drop parts of its
        periods older than the newest done one (a partition that skipped a period)."""
        assert self.persist is not None
        done_prefix, parts_prefix = f"{o}|done|report:{spec.name}:", f"{o}|parts|report:{spec.name}:"
        done = sorted(k for k in list(self.table.data) if k.startswith(done_prefix))
        for k in done[:-DONE_KEPT]:
            self.persist(self.table, o, k, None)
        newest = done[-1][len(done_prefix):] if done else None
        for k in [k for k in list(self.table.data) if k.startswith(parts_prefix)]:
            if newest is not None and k[len(parts_prefix):] < newest:
                self.persist(self.table, o, k, None)
