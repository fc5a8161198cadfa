"""Digests: a channel subscribed in ``hourly`` or ``daily`` mode gets one message per period
listing what happened, instead of one message per notification.

Pure: the period a moment falls in (:class:`DigestSchedule`) and the book of one channel's
collected notifications (:func:`collect`, :func:`due`, :func:`mark_sent`, :func:`mark_failed`,
all on a JSON-ready dict, so the stream layer keeps it in a table). The message is Slack's
(:func:`alerts.receivers.slack.render.digest_message`); the stream layer decides *when* (a
wall-clock timer) and sends.

Periods are calendar periods in the subscription's time zone: an hourly period is a local
clock hour, a daily one runs from ``daily_at`` (local, default 09:00) to the same time the next
day, 23 or 25 hours across a DST change. A ``daily_at`` that does not exist on a
spring-forward day (02:30 in Berlin) is read with the offset before the jump, i.e. an hour
later (03:30); one that happens twice is the first.

>>> s = DigestSchedule("daily", "Europe/Berlin", "09:00")
>>> p = s.period(1_774_796_400)  # 2026-03-29 17:00 Berlin, the spring-forward day
>>> p.id, (p.end - p.start) / 3600
('2026-03-29T09:00+02:00', 24.0)
>>> s.period(1_774_740_000).id, (s.period(1_774_740_000).end - s.period(1_774_740_000).start) / 3600
('2026-03-28T09:00+01:00', 23.0)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.model import Notification

__all__ = [
    "DIGEST_MODES",
    "DigestMode",
    "DigestPeriod",
    "DigestSchedule",
    "collect",
    "due",
    "item_of",
    "mark_failed",
    "mark_sent",
    "parse_clock",
]

DigestMode = Literal["hourly", "daily"]
DIGEST_MODES: tuple[str, ...] = get_args(DigestMode)

ITEMS_MAX = 300  # kept per period; beyond it only counted (a table value stays well under 1 MB)
SEEN_MAX = 2000  # ids of recently sent items, to recognise a redelivered one
SENT_MAX = 20  # sent periods remembered per channel (for the API)


# -- periods ---------------------------------------------------------------------------------
def parse_clock(text: str) -> tuple[int, int, int]:
    """``"09:00"`` or ``"09:00:30"`` as (hour, minute, second); ValueError naming the text."""
    parts = str(text).strip().split(":")
    try:
        if len(parts) not in (2, 3) or not all(p.isdigit() and len(p) == 2 for p in parts):
            raise ValueError
        h, m, s = (int(p) for p in (*parts, "00")[:3])
        if h > 23 or m > 59 or s > 59:
            raise ValueError
    except ValueError:
        raise ValueError(f"time of day must be HH:MM (or HH:MM:SS), 00:00 to 23:59, got {text!r}") from None
    return h, m, s


def _zone(name: str) -> ZoneInfo:
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError) as exc:
        raise ValueError(f"unknown time zone {name!r} (an IANA name such as 'Europe/Berlin')") from exc


@dataclass(frozen=True, slots=True)
class DigestPeriod:
    """``[start, end)`` in epoch seconds; ``id`` is the local start with its offset, unique
    even for the hour that happens twice when clocks go back."""

    id: str
    start: int
    end: int


@dataclass(frozen=True, slots=True)
class DigestSchedule:
    """When a digest channel's periods start and end. Use it for Slack digests only; budget
    periods are :class:`streams.common.periods.Period`."""

    mode: str
    tz: str = "UTC"
    daily_at: str = "09:00"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)
    _at: tuple[int, int, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.mode not in DIGEST_MODES:
            raise ValueError(f"unknown digest mode {self.mode!r}; choose from {', '.join(DIGEST_MODES)}")
        object.__setattr__(self, "_zone", _zone(self.tz))
        object.__setattr__(self, "_at", parse_clock(self.daily_at))

    def local(self, ts: float) -> datetime:
        """``ts`` as a local time in the schedule's zone."""
        return datetime.fromtimestamp(ts, self._zone)

    def _daily_start(self, d: date) -> int:
        h, m, s = self._at
        return int(datetime(d.year, d.month, d.day, h, m, s, tzinfo=self._zone).timestamp())

    def period(self, ts: float) -> DigestPeriod:
        """The period holding ``ts`` (an instant on a boundary starts the next period)."""
        if self.mode == "hourly":
            # replace() keeps fold: the second 02:xx of a fall-back night floors to its own 02:00
            start = int(self.local(ts).replace(minute=0, second=0, microsecond=0).timestamp())
            end = start + 3600
            while end <= ts:  # zones whose offset changes by half an hour
                start, end = end, end + 3600
        else:
            d = self.local(ts).date()
            start = self._daily_start(d)
            if start > ts:
                d -= timedelta(days=1)
                start = self._daily_start(d)
            end = self._daily_start(d + timedelta(days=1))
        return DigestPeriod(self.local(start).isoformat(timespec="minutes"), start, end)

    def to_dict(self) -> dict[str, str]:
        return {"mode": self.mode, "tz": self.tz, "daily_at": self.daily_at}


# -- the book of one channel -------------------------------------------------------------------
_NOT_KEPT = ("top_contributors", "members", "explanation", "dashboard_url", "report")


def item_of(n: Notification) -> dict[str, Any]:
    """What a digest keeps of a notification: its record without contributors, members or
    prose (it reads back with :meth:`Notification.from_dict`)."""
    return {k: v for k, v in n.to_dict().items() if k not in _NOT_KEPT}


def _id(item: dict[str, Any]) -> str:
    return f"{item['key']}#{item['seq']}"


def collect(
    book: dict[str, Any] | None, n: Notification, schedule: DigestSchedule, now: float
) -> tuple[dict[str, Any], bool]:
    """Add ``n`` to the period of ``now``; ``(book, False)`` when it is already in (a
    redelivery), in an open period or a recently sent one."""
    out: dict[str, Any] = dict(book or {})
    periods: dict[str, Any] = {k: dict(v) for k, v in (out.get("periods") or {}).items()}
    item = item_of(n)
    iid = _id(item)
    if iid in set(out.get("seen") or ()) or any(iid in (p.get("ids") or ()) for p in periods.values()):
        return out, False
    p = schedule.period(now)
    rec = periods.get(p.id) or {**schedule.to_dict(), "start": p.start, "end": p.end, "items": [], "ids": [],
                                "more": 0, "failures": 0}
    rec["ids"] = [*rec.get("ids", ()), iid]
    if len(rec.get("items") or ()) < ITEMS_MAX:
        rec["items"] = [*rec.get("items", ()), item]
    else:
        rec["more"] = int(rec.get("more", 0)) + 1
    periods[p.id] = rec
    out["periods"] = periods
    return out, True


def due(book: dict[str, Any] | None, now: float) -> list[str]:
    """Ids of the periods that are over and not sent yet, oldest first."""
    periods = (book or {}).get("periods") or {}
    return sorted((k for k, v in periods.items() if float(v["end"]) <= now), key=lambda k: periods[k]["start"])


def mark_sent(book: dict[str, Any], period_id: str, detail: str, at: float, *, ok: bool = True) -> dict[str, Any]:
    """The period is done (posted, or given up on when ``ok`` is false): it leaves the book,
    its item ids are remembered so a late redelivery is not digested again."""
    out = dict(book)
    periods = {k: v for k, v in (out.get("periods") or {}).items() if k != period_id}
    rec = (out.get("periods") or {}).get(period_id) or {}
    out["periods"] = periods
    out["seen"] = [*(out.get("seen") or ()), *(rec.get("ids") or ())][-SEEN_MAX:]
    sent = {"period": period_id, "mode": rec.get("mode"), "start": rec.get("start"), "end": rec.get("end"),
            "notifications": len(rec.get("ids") or ()), "ok": ok, "detail": detail, "at": at}
    out["sent"] = [*(out.get("sent") or ()), sent][-SENT_MAX:]
    return out


def mark_failed(book: dict[str, Any], period_id: str, detail: str) -> dict[str, Any]:
    """A try that failed but is worth another: the period stays, with the error."""
    out = dict(book)
    periods = {k: dict(v) for k, v in (out.get("periods") or {}).items()}
    if period_id in periods:
        periods[period_id]["failures"] = int(periods[period_id].get("failures", 0)) + 1
        periods[period_id]["detail"] = detail
    out["periods"] = periods
    return out
