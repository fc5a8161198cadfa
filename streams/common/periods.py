"""Calendar budget periods (day, week starting Monday, month) in a named time zone.

A budget's period is a *calendar* period in the budget's time zone, not "30 days from when it
was set": a Berlin day around a DST change is 23 or 25 hours long, a month is 28 to 31 days.
:meth:`Period.bounds` turns any instant into the epoch-second bounds ``[start, end)`` of the
period holding it, and :meth:`Period.period_id` into a stable name for it (a table key):
``"2026-03-29"`` (day), ``"2026-W13"`` (ISO week: Monday-based, ISO week-numbering year) or
``"2026-03"`` (month).

Local midnight is found with ``fold=0``: when a DST change skips midnight (the clock jumps from
23:59:59 to 01:00) that is the instant of the jump, and when midnight happens twice it is the
first one -- the day starts at its first instant either way.

>>> p = Period("day", "Europe/Berlin")
>>> start, end = p.bounds(1_774_746_000)  # 2026-03-29 01:00 UTC, the spring-forward day
>>> (end - start) / 3600, p.period_id(1_774_746_000)
(23.0, '2026-03-29')
>>> Period("week", "UTC").period_id(1_767_225_600)  # Thursday 2026-01-01: ISO week 1 of 2026
'2026-W01'
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date, datetime, timedelta, timezone
from functools import lru_cache
from typing import Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

__all__ = ["PERIOD_KINDS", "Period", "PeriodKind", "rfc3339", "zone"]

PeriodKind = Literal["day", "week", "month"]
PERIOD_KINDS: tuple[str, ...] = get_args(PeriodKind)


def rfc3339(ts: float) -> str:
    """Epoch seconds as RFC 3339 in UTC with a ``Z`` (the API's and the replay's times).

    >>> rfc3339(1767225600.5)
    '2026-01-01T00:00:00.500000Z'
    """
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@lru_cache(maxsize=256)
def zone(name: str) -> ZoneInfo:
    """The IANA zone ``name``; ValueError (naming it) when the zone database lacks it."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError) as exc:  # OSError: a name too long for a path
        shown = repr(name) if len(name) <= 80 else f"{name[:80]!r}… ({len(name)} characters)"
        raise ValueError(f"unknown time zone {shown} (an IANA name such as 'Europe/Berlin')") from exc


@dataclass(frozen=True, slots=True)
class Period:
    """A calendar period kind in a time zone. Immutable; cheap to build and hash.

    Use it for budget periods. Not for the detectors' windows, which are fixed-length epoch
    windows and ignore time zones on purpose.
    """

    kind: str
    tz: str = "UTC"
    _zone: ZoneInfo = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.kind not in PERIOD_KINDS:
            raise ValueError(f"unknown period {self.kind!r}; choose from {', '.join(PERIOD_KINDS)}")
        object.__setattr__(self, "_zone", zone(self.tz))

    # -- the period holding an instant ---------------------------------------------------
    def first_day(self, ts: float) -> date:
        """Local calendar date on which the period holding ``ts`` starts."""
        d = datetime.fromtimestamp(ts, self._zone).date()
        if self.kind == "week":
            return d - timedelta(days=d.weekday())
        if self.kind == "month":
            return d.replace(day=1)
        return d

    def _next_day(self, first: date) -> date:
        if self.kind == "day":
            return first + timedelta(days=1)
        if self.kind == "week":
            return first + timedelta(days=7)
        return date(first.year + 1, 1, 1) if first.month == 12 else date(first.year, first.month + 1, 1)

    def _midnight(self, d: date) -> int:
        # fold=0: a skipped midnight maps to the instant of the jump, a doubled one to the first
        return int(datetime(d.year, d.month, d.day, tzinfo=self._zone).timestamp())

    def bounds(self, ts: float) -> tuple[int, int]:
        """Epoch seconds ``[start, end)`` of the period holding ``ts`` (an instant exactly on
        a boundary belongs to the period it starts)."""
        first = self.first_day(ts)
        return self._midnight(first), self._midnight(self._next_day(first))

    def period_id(self, ts: float) -> str:
        """Stable name of the period holding ``ts``: ``2026-03-29``, ``2026-W13``, ``2026-03``."""
        return self.id_of(self.first_day(ts))

    def id_of(self, first: date) -> str:
        if self.kind == "day":
            return first.isoformat()
        if self.kind == "week":
            year, week, _ = first.isocalendar()
            return f"{year}-W{week:02d}"
        return f"{first.year}-{first.month:02d}"

    def locate(self, ts: float) -> tuple[str, int, int]:
        """``(period id, start, end)`` of the period holding ``ts``, in one call."""
        first = self.first_day(ts)
        return self.id_of(first), self._midnight(first), self._midnight(self._next_day(first))

    def bounds_of(self, period_id: str) -> tuple[int, int]:
        """The bounds of a period named by :meth:`period_id`."""
        try:
            if self.kind == "day":
                first = date.fromisoformat(period_id)
            elif self.kind == "week":
                year, _, week = period_id.partition("-W")
                first = date.fromisocalendar(int(year), int(week), 1)
            else:
                year, _, month = period_id.partition("-")
                first = date(int(year), int(month), 1)
        except ValueError as exc:
            raise ValueError(f"not a {self.kind} period id: {period_id!r}") from exc
        return self._midnight(first), self._midnight(self._next_day(first))
