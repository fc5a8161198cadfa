"""Slack digests: a channel subscribed in ``hourly`` or ``daily`` mode gets one message per
period listing what happened, instead of one message per notification.

Pure: the period a moment falls in (:class:`DigestSchedule`), the book of one channel's
collected notifications (:func:`collect`, :func:`due`, :func:`mark_sent`, :func:`mark_failed`,
all on a JSON-ready dict, so the stream layer keeps it in a table) and the Block Kit message
(:func:`digest_message`). The stream layer decides *when* (a wall-clock timer) and sends.

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

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any, Literal, get_args
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from alerts.model import SEVERITY_RANK, BudgetNotification, MixNotification, Notification, SpikeNotification
from alerts.receivers.slack.render import BLOCKS_MAX, HEADER_MAX, SECTION_MAX, escape_mrkdwn
from alerts.text import amount, clip, duration, pct, signed_usd, usd

__all__ = [
    "DIGEST_MODES",
    "DigestMode",
    "DigestPeriod",
    "DigestSchedule",
    "collect",
    "digest_message",
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
LINES_PER_SERIES = 12
NAME_MAX = 120
SERIES_MAX = 300


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
    periods are :class:`streams.periods.Period`."""

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

    def _local(self, ts: float) -> datetime:
        return datetime.fromtimestamp(ts, self._zone)

    def _daily_start(self, d: date) -> int:
        h, m, s = self._at
        return int(datetime(d.year, d.month, d.day, h, m, s, tzinfo=self._zone).timestamp())

    def period(self, ts: float) -> DigestPeriod:
        """The period holding ``ts`` (an instant on a boundary starts the next period)."""
        if self.mode == "hourly":
            # replace() keeps fold: the second 02:xx of a fall-back night floors to its own 02:00
            start = int(self._local(ts).replace(minute=0, second=0, microsecond=0).timestamp())
            end = start + 3600
            while end <= ts:  # zones whose offset changes by half an hour
                start, end = end, end + 3600
        else:
            d = self._local(ts).date()
            start = self._daily_start(d)
            if start > ts:
                d -= timedelta(days=1)
                start = self._daily_start(d)
            end = self._daily_start(d + timedelta(days=1))
        return DigestPeriod(self._local(start).isoformat(timespec="minutes"), start, end)

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


# -- the message -------------------------------------------------------------------------------
_RULES = {"cost_spike": "cost spike", "budget_threshold": "budget threshold", "budget_forecast": "budget forecast",
          "mix_share": "third-party share"}
_EMOJI = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}


def _name(text: Any, limit: int = NAME_MAX) -> str:
    return clip(escape_mrkdwn(str(text)), limit)


def _num(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


def _pct1(x: float) -> str:
    return f"{x:,.1f}%" if math.isfinite(x) else "n/a"


def _excess(n: Notification) -> float:
    """How far over its line a notification is, in USD, to rank the groups of a section."""
    if isinstance(n, SpikeNotification):
        return n.excess_usd
    if isinstance(n, BudgetNotification):
        return n.spent - n.limit if n.unit == "usd" else 0.0
    if isinstance(n, MixNotification):
        return n.third_party_usd - n.line_pct / 100 * (n.third_party_usd + n.internal_usd)
    return 0.0


@dataclass
class _Group:
    """One series (or one budget) of the period: its notifications in order."""

    title: str
    items: list[Notification]
    budget: bool = False

    @property
    def last(self) -> Notification:
        return self.items[-1]

    @property
    def open(self) -> bool:
        return self.last.action != "resolve" and not (self.budget and self.last.rule == "budget_threshold")

    @property
    def rank(self) -> tuple[float, float]:
        excess = [x for x in map(_excess, self.items) if math.isfinite(x)]
        return (-max(SEVERITY_RANK.get(n.severity, 0) for n in self.items), -max(excess, default=0.0))


def _groups(items: Iterable[Notification]) -> list[_Group]:
    by: dict[str, _Group] = {}
    for n in sorted(items, key=lambda n: (n.fired_at, n.seq)):
        if isinstance(n, BudgetNotification):
            g = by.setdefault("b:" + n.budget, _Group(n.budget, [], budget=True))
        else:
            g = by.setdefault("s:" + n.series, _Group(n.series, []))
        g.items.append(n)
    return list(by.values())


class _Clock:
    def __init__(self, schedule: DigestSchedule, start: float) -> None:
        self.schedule = schedule
        self.day = schedule._local(start).date()

    def at(self, ts: float) -> str:
        try:
            d = self.schedule._local(ts)
        except (OverflowError, OSError, ValueError):
            return "?"
        return d.strftime("%H:%M") if d.date() == self.day and self.schedule.mode == "hourly" else d.strftime("%a %d %H:%M")


def _line(n: Notification, clock: _Clock) -> str:
    if isinstance(n, BudgetNotification):
        return _budget_line(n, clock)
    if isinstance(n, MixNotification):
        return (f"{_EMOJI.get(n.severity, '')} {clock.at(n.fired_at)} third-party models at {_pct1(n.share_pct)} "
                f"of the team's spend (line {_pct1(n.line_pct)})")
    if isinstance(n, SpikeNotification):
        return _spike_line(n, clock)
    return f"{_EMOJI.get(n.severity, '')} {clock.at(n.fired_at)} {_name(n.title, 200)}"


def _spike_line(n: SpikeNotification, clock: _Clock) -> str:
    when = clock.at(n.fired_at)
    numbers = (f"{usd(n.observed_usd)} vs expected {usd(n.expected_usd)} per window, "
               f"excess {signed_usd(n.excess_usd)} ({pct(n.excess_pct)})")
    if n.action == "resolve":
        back = n.ended_at if n.ended_at is not None else n.fired_at
        line = f"✅ {when} resolved after {duration(back - n.started_at)}; worst window {numbers}"
        if n.impact_usd:
            line += f"; incident total {signed_usd(n.impact_usd)}"
    else:
        what = {"first": "triggered", "worsened": "worsened", "repeat": "still firing"}.get(n.reason, n.reason)
        line = f"{_EMOJI.get(n.severity, '')} {when} {what} ({n.severity}{', paged' if n.page else ''}): {numbers}"
        if n.impact_usd:
            line += f"; incident so far {signed_usd(n.impact_usd)}"
    return line


def _budget_line(n: BudgetNotification, clock: _Clock) -> str:
    spent = f"spent {amount(_num(n.spent), n.unit)} of {amount(_num(n.limit), n.unit)} ({_pct1(_num(n.pct_used))})"
    forecast = f"forecast {amount(_num(n.projected_total), n.unit)} ({_pct1(_num(n.projected_pct))})"
    when = clock.at(n.fired_at)
    th = _num(n.threshold)
    if n.action == "resolve":
        return f"✅ {when} back on track: {spent}, {forecast}"
    if n.rule == "budget_threshold" and math.isfinite(th):
        return f"{_EMOJI.get(n.severity, '')} {when} {th:g}% reached: {spent}, {forecast}"
    return f"{_EMOJI.get(n.severity, '')} {when} projected to overrun: {spent}, {forecast}"


def _group_text(g: _Group, clock: _Clock) -> str:
    last = g.last
    if isinstance(last, BudgetNotification):
        head = f"*Budget {_name(g.title)}* · {_name(last.series, SERIES_MAX)} · {_name(last.period_id, 40)}"
    else:
        state = "resolved" if last.action == "resolve" else "still firing"
        head = f"*{_name(g.title, SERIES_MAX)}* · {_name(_RULES.get(last.rule, last.rule), 40)} · {state}"
    lines = [head]
    used = len(head)
    for i, n in enumerate(g.items):
        line = "• " + _line(n, clock)
        rest = len(g.items) - i
        if len(lines) > LINES_PER_SERIES or used + len(line) + 40 > SECTION_MAX:
            lines.append(f"…and {rest} more")
            break
        lines.append(line)
        used += len(line) + 1
    return clip("\n".join(lines), SECTION_MAX)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_MAX)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, 2000)}]}


def _count(k: int, one: str, many: str) -> str:
    return f"{k} {one if k == 1 else many}"


def _range(schedule: DigestSchedule, start: float, end: float) -> str:
    a, b = schedule._local(start), schedule._local(end)
    tail = b.strftime("%H:%M") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M")
    return f"{a.strftime('%Y-%m-%d %H:%M')}–{tail} {schedule.tz}"


def digest_message(period: dict[str, Any], channel: str = "") -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and Block Kit blocks for one period of a digest channel (a book entry
    from :func:`collect`).

    Series still firing at the end of the period come first (worst first), then the
    resolved ones, then budgets; each lists its notifications in order with their numbers.
    What does not fit Slack's 50 blocks or a section's 3,000 characters is summarised as
    "…and N more". Everything that came from usage events is escaped.
    """
    schedule = DigestSchedule(str(period.get("mode", "hourly")), str(period.get("tz", "UTC")),
                              str(period.get("daily_at", "09:00")))
    start, end = float(period["start"]), float(period["end"])
    notes: list[Notification] = []
    more = int(period.get("more", 0))
    unread = 0  # records of another version that this one cannot read: counted, not shown
    for item in period.get("items") or ():
        try:
            notes.append(Notification.from_dict(item))
        except ValueError:
            unread += 1
    total = len(notes) + more + unread
    groups = _groups(notes)
    firing = sorted((g for g in groups if not g.budget and g.open), key=lambda g: g.rank)
    resolved = sorted((g for g in groups if not g.budget and not g.open), key=lambda g: g.rank)
    budgets = sorted((g for g in groups if g.budget), key=lambda g: g.rank)
    clock = _Clock(schedule, start)
    kind = "Hourly" if schedule.mode == "hourly" else "Daily"
    when = _range(schedule, start, end)
    plural = "" if total == 1 else "s"
    header = f"🗞️ {kind} digest: {total} notification{plural}, {len(firing)} still firing"
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(header, HEADER_MAX), "emoji": True}},
        _context(f"{when} · {_count(len(firing) + len(resolved), 'series', 'series')}, "
                 f"{_count(len(budgets), 'budget', 'budgets')}"
                 + (f" · for {_name(channel, 80)}" if channel else "")),
    ]
    footer = _context(f"tokenpulse · {kind.lower()} digest · times in {_name(schedule.tz, 60)}")
    sections = [("*🔥 Still firing*", firing), ("*✅ Resolved*", resolved), ("*💰 Budgets*", budgets)]
    left_groups = sum(len(gs) for _, gs in sections)
    left_notes = len(notes)
    for title, gs in sections:
        if not gs:
            continue
        # room for the heading, one group, the "and N more" line and the footer
        if len(blocks) + 4 > BLOCKS_MAX:
            break
        blocks.append(_section(f"{title} ({len(gs)})"))
        for g in gs:
            if len(blocks) + 3 > BLOCKS_MAX:
                break
            blocks.append(_section(_group_text(g, clock)))
            left_groups -= 1
            left_notes -= len(g.items)
    if left_groups or more or unread:
        parts = []
        if left_groups:
            parts.append(f"{left_groups} more series or budgets ({left_notes} notifications)")
        if more:
            parts.append(f"{more} notifications beyond the {ITEMS_MAX} kept")
        if unread:
            parts.append(f"{unread} notifications of another tokenpulse version")
        blocks.append(_section("…and " + " and ".join(parts) + " not shown here: see the dashboard."))
    blocks.append(footer)
    names = ", ".join(_name(g.title, 60) for g in firing[:5])
    text = f"{kind} digest {when}: {total} notification{plural}, {len(firing)} still firing"
    if names:
        text += f" ({names}{', …' if len(firing) > 5 else ''})"
    return clip(text, 3000), blocks[:BLOCKS_MAX]
