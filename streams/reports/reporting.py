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
   (``<o>|done|<key>``), so later parts of it are ignored.

A crash between the outbox write and the done mark builds the same report again with the
same key and seq, which the deliverer skips (it keeps the last delivered seq per key and
sink); two workers never both own a partition. The notification goes to the report's
channel (and to the webhook, like every notification) with the usual retries, and its
deliveries entry lives on the owner partition, where the retry timer looks for it
(``judge_partition(series)``). If partitioning moves to one partition per org, the owner is
still ``judge_partition`` of the report's series and the parts of the other partitions are
simply empty.

``GET /api/report`` (:mod:`streams.worker.web`) computes the same report on demand from this
worker's judge partitions with :meth:`Reporting.part`.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

import orjson

from streams.common.config import StreamConfig
from streams.common.partitioning import judge_partition
from streams.common.metrics import Metrics
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

__all__ = ["Reporting", "report_owner"]


def report_owner(spec: ReportSpec, n: int) -> int:
    """The judge partition that builds ``spec``'s reports: the one judging its series."""
    return judge_partition(spec.series, n)


class Reporting:
    """Registers the reports topic, table and merge agent on ``app``; the judge agent calls
    :meth:`after_judge` after each windows message."""

    def __init__(
        self, app: Any, cfg: StreamConfig, metrics: Metrics, outbox: Any,
        persist: Callable[[Any, int, str, Any], None], judges: dict[int, Any], ledgers: dict[int, Any],
    ) -> None:
        self.cfg = cfg
        self.n = cfg.usage_partitions
        self.specs: dict[str, ReportSpec] = {s.name: s for s in cfg.reports}
        self.metrics = metrics
        self.outbox = outbox
        self.persist = persist
        self.judges = judges
        self.ledgers = ledgers
        self.schedulers: dict[int, ReportScheduler] = {}
        if not self.specs:
            return  # nothing scheduled: no topic, table or agent
        self.topic = app.topic(cfg.topics["reports"], value_serializer="raw", key_serializer="raw",
                               partitions=self.n)
        self.table = app.Table("reports", default=None, partitions=self.n)

        @app.on_partitions_revoked.connect
        async def _revoked(app_: Any, revoked: Any, **kwargs: Any) -> None:
            for tp in revoked:
                if tp.topic == cfg.topics["windows"]:
                    self.schedulers.pop(tp.partition, None)

        @app.agent(self.topic, name="reports")
        async def merge(stream: Any) -> None:
            async for event in stream.events():
                await self.merge_part(event.message.partition, orjson.loads(event.value))

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
            body = {"key": spec.key(due.period_id), "name": spec.name, "q": q, "n": self.n, "due": due.to_dict(),
                    "part": part}
            await self.topic.send(key=body["key"].encode(), value=orjson.dumps(body),
                                  partition=report_owner(spec, self.n))
            key, value = sched.mark(spec.name, due.period_id)
            self.persist(self.table, q, f"{q}|{key}", value)

    def part(self, q: int, spec: ReportSpec, due: ReportDue, now: float) -> dict[str, Any]:
        j = self.judges.get(q)
        led = self.ledgers.get(q)
        budgets = [budget_row(led, name, due, now) for name in sorted(led.budgets)] if led is not None else []
        return report_part(list(j.spend.items()) if j is not None else [], spec, due, budgets,
                           self.cfg.internal_models)

    # -- the owner: merge, build, outbox ---------------------------------------------------
    async def merge_part(self, o: int, body: dict[str, Any]) -> None:
        key = str(body["key"])
        if self.table.data.get(f"{o}|done|{key}") is not None:
            return  # built already: a part sent again after a crash
        spec = self.specs.get(str(body["name"]))
        if spec is None:
            return  # the report left the policy
        parts = dict(self.table.data.get(f"{o}|parts|{key}") or {})
        parts[str(int(body["q"]))] = body["part"]
        n = int(body["n"])
        if len(parts) < n:
            self.persist(self.table, o, f"{o}|parts|{key}", parts)
            return
        due = ReportDue.from_dict(body["due"])
        report = build_report(spec, due, [parts[k] for k in sorted(parts, key=int)], self.cfg.internal_models)
        note = report_notification(report, spec, self.cfg.dashboard_url)
        await self.outbox.send(key=note.key.encode(), value=orjson.dumps(note.to_dict()), partition=o)
        self.metrics.inc("reports_sent_total", labels={"period": spec.period})
        log.info("report %s for %s: %d parts, total $%.2f", spec.name, due.period_id, n, report["total"]["usd"])
        self.persist(self.table, o, f"{o}|done|{key}", {"due_at": due.due_at, "built_at": time.time(),
                                                        "total_nusd": report["total"]["nusd"]})
        self.persist(self.table, o, f"{o}|parts|{key}", None)
        self._prune(o, spec)

    def _prune(self, o: int, spec: ReportSpec) -> None:
        """Keep the newest :data:`DONE_KEPT` done marks of a report, and drop parts of its
        periods older than the newest done one (a partition that skipped a period)."""
        done_prefix, parts_prefix = f"{o}|done|report:{spec.name}:", f"{o}|parts|report:{spec.name}:"
        done = sorted(k for k in list(self.table.data) if k.startswith(done_prefix))
        for k in done[:-DONE_KEPT]:
            self.persist(self.table, o, k, None)
        newest = done[-1][len(done_prefix):] if done else None
        for k in [k for k in list(self.table.data) if k.startswith(parts_prefix)]:
            if newest is not None and k[len(parts_prefix):] < newest:
                self.persist(self.table, o, k, None)
