"""Slack digests in the worker: collect the notifications of digest channels, post one digest
per channel and period.

The path of a notification to a digest channel: outbox -> deliver agent (entry
``digest:<channel>`` in the ``deliveries`` table: forwarded once per ``seq``) -> digest topic
``<p>.alerts.digest``, keyed and partitioned by channel so that exactly one worker owns a
channel's digest -> ``digest`` agent -> :meth:`Digester.collect` into the channel's book in the
``digests`` table (changelog-backed: a restart loses nothing) -> the digest timer ->
:meth:`Digester.send_due` posts each period that is over, once, and records it in the book.

Which clock: a notification joins the period that is open (wall clock, in the subscription's
time zone) when the collector receives it, normally a second after the alert was decided; the
timer notices a period's end by the wall clock too. Event time is not used: digests are about
when people read Slack, and a backfill of last week's traffic then gives one digest, not a
hundred and sixty-eight. The message still shows each alert's own (event) time. The offline
replay has no digests.

Exactly once per (channel, period): the agent skips a notification already in an open or
recently sent period (a forward repeated after a crash), and a period leaves the book in the
same table write that records its post. Like every Slack post, a crash in the instant between
Slack's answer and that write would post it again. A post that fails is retried on the next
tick (with backoff while Slack is up, one try per tick while it is down), paced per channel
like the other posts; a permanent error (e.g. ``channel_not_found``) gives the period up,
visible in ``/api/digests`` and ``tokenpulse_digests_failed_total``.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from alerts import Notification
from alerts.digest import DigestSchedule, collect, due, mark_failed, mark_sent
from alerts.receivers.slack import SlackSink
from alerts.receivers.slack.render import digest_message
from alerts.retry import retry_call
from alerts.sinks import DeliveryResult, redact
from streams.delivery.outbox import Deliverer
from streams.common.metrics import Metrics

log = logging.getLogger("tokenpulse.digests")


class Digester:
    """Keeps digest books (one JSON dict per channel, stored by the caller) and posts them.

    Callers serialise work on one channel with :meth:`lock` (the agent collects while the
    timer posts) and read the book inside it.
    """

    def __init__(
        self,
        deliverer: Deliverer,
        metrics: Metrics,
        *,
        clock: Callable[[], float] = time.time,
        interval: float = 5.0,
    ) -> None:
        self.deliverer = deliverer
        self.metrics = metrics
        self.clock = clock
        self.interval = interval
        self._locks: dict[str, asyncio.Lock] = {}

    def lock(self, channel: str) -> asyncio.Lock:
        lk = self._locks.get(channel)
        if lk is None:
            lk = self._locks[channel] = asyncio.Lock()
        return lk

    def collect(self, record: dict[str, Any], book: dict[str, Any] | None) -> dict[str, Any] | None:
        """The book with ``record`` (from the digest topic) added; ``None`` when it was
        already in (nothing to write)."""
        try:
            sched = record.get("schedule") or {}
            schedule = DigestSchedule(str(sched.get("mode", "daily")), str(sched.get("tz", "UTC")),
                                      str(sched.get("daily_at", "09:00")))
            n = Notification.from_dict(record["note"])
            channel = str(record["channel"])
        except (KeyError, TypeError, ValueError) as exc:
            # written by another version, or a zone this one's tzdata lacks: not worth a crash loop
            log.warning("digest record skipped: %s: %s", type(exc).__name__, exc)
            self.metrics.inc("digest_records_rejected_total")
            return None
        new, added = collect(book, n, schedule, self.clock())
        if not added:
            self.metrics.inc("digest_duplicates_total")
            return None
        self.metrics.inc("digest_notifications_total", labels={"mode": schedule.mode})
        self._gauge(channel, new)
        return new

    def due(self, book: dict[str, Any] | None) -> bool:
        return bool(due(book, self.clock()))

    async def send_due(self, channel: str, book: dict[str, Any] | None) -> dict[str, Any] | None:
        """Post every period of ``channel`` that is over, oldest first; the new book, or
        ``None`` when nothing was due. Stops at the first retryable failure (the next tick
        comes back), so periods go out in order."""
        now = self.clock()
        ids = due(book, now)
        if not ids or book is None:
            return None
        d = self.deliverer
        h = d.health_of("digest")
        sink = d.sink("slack", channel)
        for pid in ids:
            period = book["periods"][pid]
            text, blocks = digest_message(period, channel)
            attempts = d.max_attempts if h.up else 1

            async def post(text: str = text, blocks: list[dict[str, Any]] = blocks) -> DeliveryResult:
                if not isinstance(sink, SlackSink):  # Slack turned off since the period began
                    return DeliveryResult.permanent("digest: Slack is not configured")
                return await sink.post(text, blocks)

            result = await retry_call(post, "digest", f"{channel} {pid}", max_attempts=attempts,
                                      base=d.backoff_base, cap=d.backoff_cap)
            mode = str(period.get("mode", ""))
            detail = redact(result.detail, *d.secrets())
            d.note_result("digest", result.ok, detail)
            if result.ok:
                book = mark_sent(book, pid, detail, self.clock())
                self.metrics.inc("digests_sent_total", labels={"mode": mode})
                log.info("digest %s of %s posted (%d notifications)", pid, channel, len(period.get("ids") or ()))
                continue
            self.metrics.inc("digests_failed_total", labels={"mode": mode})
            if result.retryable:
                book = mark_failed(book, pid, detail)
                log.warning("digest %s of %s not posted yet: %s", pid, channel, detail)
                break
            book = mark_sent(book, pid, detail, self.clock(), ok=False)
            log.warning("digest %s of %s given up: %s", pid, channel, detail)
        self._gauge(channel, book)
        return book

    def _gauge(self, channel: str, book: dict[str, Any]) -> None:
        waiting = sum(len(p.get("ids") or ()) for p in (book.get("periods") or {}).values())
        self.metrics.set("digest_waiting_notifications", float(waiting), {"channel": channel})

    @staticmethod
    def status(channel: str, book: dict[str, Any]) -> dict[str, Any]:
        """One channel for ``/api/digests``: the open periods and the last ones sent."""
        def iso(ts: Any) -> str | None:
            return None if ts is None else datetime.fromtimestamp(float(ts), tz=UTC).isoformat(timespec="seconds")

        periods = sorted((book.get("periods") or {}).items(), key=lambda kv: kv[1]["start"])
        return {
            "channel": channel,
            "open": [{"period": pid, "mode": p.get("mode"), "tz": p.get("tz"), "start": iso(p["start"]),
                      "end": iso(p["end"]), "notifications": len(p.get("ids") or ()),
                      "actions": _count(p.get("items") or (), "action"), "failures": p.get("failures", 0),
                      "last_error": p.get("detail")} for pid, p in periods],
            "sent": [{**s, "start": iso(s.get("start")), "end": iso(s.get("end")), "at": iso(s.get("at"))}
                     for s in (book.get("sent") or ())[-5:]],
        }


def _count(items: Any, field: str) -> dict[str, int]:
    out: dict[str, int] = {}
    for i in items:
        out[str(i.get(field))] = out.get(str(i.get(field)), 0) + 1
    return out
