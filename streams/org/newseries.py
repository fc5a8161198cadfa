"""The ``new-series`` rule: a team's new model judged by its price per request against the team's.

A model switch (or a leaked key spending on a model the team never used) shows first as a new
team x model series, and its detector is in its cold start exactly then: it has no history to
call anything unusual. What the new series' spend can be held against is its *team's* price per
request. No detector sees another series, so the rule lives here, in the org stage, which sees
the spend rows of every series of the org under both placements
(docs/detection-log.md, "The new-series rule").

The rule, per team x model series first seen at least ``team_age_days`` (2) after its team
(event time, in the rule's own state: a worker started without state does not take every series
for new), or seen again after ``dormant_days`` (2) without a request (a switch back to a model
the team used once before): over the series' first day, its spend summed since its first
request against the team's spend per request of the 7 days before it appeared (whole UTC days,
frozen when the series appears) -- ``spend >= ratio x price x requests`` on at least
``min_requests`` requests, and the excess ``spend - price x requests >= min_excess_usd``, or,
for a team that usually spends less than that in ``excess_team_days`` (1) days, that spend, but
at least ``min_excess_floor_usd`` ($0.50; frozen when the series appears). While that holds and the series
still spends (a request within the last ``HOLD_S``; once flagged, until its team's requests since
its last say it stopped, ``STOP_MISSED``, or ``HOLD_MAX_S`` without one), its windows are anomalous: a
:class:`~alerts.Signal` of its own (``detector="new-series"``) goes to the org's alert engine with
the judges' signals, through the same inhibition and grouping. After the first day the series is
its own detector's again.

State (:meth:`NewSeriesRule.get_state` / :meth:`set_state`, one record per team): the team's
first request, its spend and requests per day for the last 8 days, the models it has used and
when each last had a request, and per new series its first-day sums. Compact: no per-window history.

Beside it, on the same hourly team sums, the week-over-week hourly judge of each team series
(``NewSeriesSettings.week_over_week``, :func:`wow_verdict`; docs/detection-log.md, "Week-over-week
hourly evidence"): in the first window of each UTC hour, a team whose last 3 hours cost 8x the
larger of the same hours (or an hour either side) one and two weeks before, and $2 and 3 hours
of its mean spend more, in hours none of its series alerted in, is anomalous for that hour (a
signal of its own, ``detector="week-over-week"``). With it on, the hourly sums are kept for two
weeks and the span it reads.

And the team burst rule (``NewSeriesSettings.team_burst``, :class:`TeamBurstSettings`;
docs/detection-log.md, "A team-scaled floor for short bursts"): a team series whose own detector
found at least 2 of its last 30 windows surprising (p <= 1e-4) but whose incident stayed under
the detectors' $2 money gate alerts when its spend since the first of them is 3x what its
detector expected there and more by an hour of the team's mean spend over the week before (at
least $0.50), in the windows it still spends at or above that expectation: the $2 a burst must
reach is hours of spend for a team of $40 a day. It reads
the team series' expected spend and p-value of each window (``judge_window``'s ``expected`` and
``team_p``, which the judges send while the rule is on, whatever the team-scale gate and the
team corroboration: ``JudgeCore.sends_team_numbers``).

Use it where both the team and the team x model dimensions are watched; with another layout of
series it has nothing to judge and stays quiet. Pure Python, no I/O.

>>> rule = NewSeriesRule()
>>> day, W, T, M = 86400, 60, "team=ads", "team=ads|model=big"
>>> for d in range(3):  # a team at $0.01 a request for three days
...     _ = rule.judge_window(d * day, d * day + W, [(T, 10 * NANO_USD // 100, 10)], [])
>>> rule.judge_window(3 * day, 3 * day + W, [(M, 3 * NANO_USD, 10), (T, 3 * NANO_USD, 10)], [])[0].explanation[:60]
'new model big on team ads: $3.00 over 10 requests in the 0.0'
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from alerts import Signal
from streams.common.dimensions import parse_series, series_key

__all__ = ["BURST_DETECTOR", "DETECTOR", "HOLD_MAX_S", "HOLD_S", "NANO_USD", "STOP_MISSED", "WEEK_SHIFT_MAX_H", "WOW_DETECTOR",
           "NewSeriesRule", "NewSeriesSettings", "TeamBurstSettings", "WeekOverWeekSettings", "burst_verdict",
           "week_ratio", "wow_verdict"]

NANO_USD = 1_000_000_000  # spend sums are nano-dollars (streams.ingest.windows.NANO)
DETECTOR = "new-series"
WOW_DETECTOR = "week-over-week"  # the week-over-week hourly judge's signals (wow_verdict)
BURST_DETECTOR = "team-burst"  # the team burst rule's signals (TeamBurstSettings)
DAY_S = 86400
PRICE_DAYS = 7  # the team's price: these whole days before the series appeared, and the day so far
# A series stays anomalous this long after its last request (a sparse team sends one request
# every few minutes: without it the alert would resolve and start again between them).
HOLD_S = 1800.0
# Once flagged, a quiet series stays anomalous past HOLD_S until its team's own requests say it
# stopped: the team's requests since the series' last, times the series' share of the team's
# requests up to then, reach this many (missed by luck under steady arrivals: e^-10; bursty
# arrivals miss more -- 5 was too few for independent seed 1's search-eval). A gap is judged by
# the team's traffic, not the clock: a sparse team's nights and lulls hold the alert (the new
# series flagged on independent seeds 1-3 have median gaps of 1-8 min and first-day gaps of up
# to 2.2 h), and a series that stops while its team goes on spending resolves within minutes.
STOP_MISSED = 10.0
# ... and at most this long after its last request, whatever its team does: a series whose team
# went quiet too (a revoked key, a night) is not held for the rest of its first day.
HOLD_MAX_S = 3 * 3600.0
HOUR_S = 3600
WEEK_HOURS = 7 * 24  # the team corroboration's week-ago reference (week_ratio)
# ... taken up to this many hours either side (policy detector.team_week_shift_h at most this):
# the hourly sums are kept this much longer
WEEK_SHIFT_MAX_H = 1

# A row the rule takes: (series, spend in nano-dollars, requests) of one window.
Row = tuple[str, int, int]


def week_ratio(hours: Mapping[int, float], at: float, shifts: Sequence[int] = (0,)) -> float | None:
    """A team's spend over the hour before ``at`` against the same hour a week before, from its
    spend per UTC hour (``hours``: epoch hour -> spend; any unit). The hour before ``at`` is the
    hour ``at`` falls in so far plus the share of the hour before it that the last 60 minutes
    cover; a week before, the same shares of those two hours (spread evenly over each: the
    reference is not kept by the minute), or with ``shifts`` (hours; 0: the same hour) the
    largest of those 60 minutes moved by each shift: (-1, 0, 1) takes the hour before and after
    too, so a job that runs at a local hour and moved an hour in UTC with daylight saving is
    not new money. None: nothing spent in those hours a week ago.

    >>> week_ratio({0: 20, 1: 10, 168: 20, 169: 5}, 169 * 3600 + 1800)  # half of hour 169 so far
    1.0
    >>> week_ratio({0: 20, 1: 10, 168: 60, 169: 30}, 169 * 3600 + 1800)
    4.0
    >>> week_ratio({0: 20, 1: 10, 2: 110, 168: 60, 169: 30}, 169 * 3600 + 1800, (-1, 0, 1))  # and the hour after
    1.0
    """
    h = int(at // HOUR_S)
    f = (at - h * HOUR_S) / HOUR_S  # of hour h, elapsed
    now = hours.get(h, 0) + hours.get(h - 1, 0) * (1.0 - f)
    ago = max(hours.get(h - WEEK_HOURS + s, 0) * f + hours.get(h - WEEK_HOURS - 1 + s, 0) * (1.0 - f)
              for s in shifts)
    if ago <= 0:
        return None
    return now / ago


def wow_verdict(hours: Mapping[int, int], h: int, first_hour: int, s: WeekOverWeekSettings) -> tuple[int, float] | None:
    """The week-over-week hourly judge of a team at the end of UTC hour ``h`` (docs/detection-log.md,
    "Week-over-week hourly evidence"), from its spend per UTC hour (``hours``: epoch hour ->
    nano-dollars; hours absent spent nothing) and its first spending hour: ``(now, reference)``
    in nano-dollars when it flags, else None. The last ``s.hours`` hours (``now``) against the same
    hours a week before, each week's reference the largest of those hours and the same span up to
    ``s.shift`` hours either side, and with ``s.weeks`` 2 the larger of the one- and two-week
    references once the team is known two weeks; each scaled by the team's growth with
    ``s.growth`` ``"day"`` (the 24 hours before the span against the same a week before) or
    ``"week"`` (the 168 hours before it), never below 1 (``"none"``, the measured default). A
    flag: ``now`` at least ``s.ratio`` x the reference, and above it by at least ``s.excess_hours``
    x ``s.hours`` hours of the team's mean hourly spend over the week before them, and by
    ``s.min_excess_usd``. The team must be known a week and ``s.hours`` hours. As
    ``benchmarks.detect_fast._week_over_week`` (whose flags it gives to the hour), less its
    experiments' options; the quiet condition is the caller's.

    >>> s = WeekOverWeekSettings()
    >>> hours = {h: NANO_USD // 10 for h in range(400)}  # $0.10 an hour for 400 hours
    >>> wow_verdict(hours, 399, 0, s) is None
    True
    >>> hours.update({397: 2 * NANO_USD, 398: 2 * NANO_USD, 399: 2 * NANO_USD})  # $6 in 3 hours
    >>> [x / NANO_USD for x in wow_verdict(hours, 399, 0, s)]
    [6.0, 0.3]
    """
    k = s.hours
    if h < first_hour + WEEK_HOURS + k:
        return None

    def span(a: int, b: int) -> int:  # hours a..b, both included
        return sum(hours.get(x, 0) for x in range(a, b + 1))

    def reference(lag: int) -> float:
        base = max(span(h - k + 1 - lag + sh, h - lag + sh) for sh in range(-s.shift, s.shift + 1))
        if s.growth == "none":
            return base
        g = 24 if s.growth == "day" else WEEK_HOURS  # the span before the k hours against a week before
        a, b = span(h - k - g + 1, h - k), span(h - k - g + 1 - lag, h - k - lag)
        return base * max(a / b, 1.0) if b > 0 and h - k - g + 1 - lag >= first_hour else base

    now = span(h - k + 1, h)
    ref = reference(WEEK_HOURS)
    for w in range(2, s.weeks + 1):
        if h - k + 1 - w * WEEK_HOURS >= first_hour + 1:  # known that long (its first hour is a part)
            ref = max(ref, reference(w * WEEK_HOURS))
    mean_hour = span(h - k - WEEK_HOURS + 1, h - k) / WEEK_HOURS
    if now >= s.ratio * ref and now - ref >= max(s.excess_hours * k * mean_hour, s.min_excess_usd * NANO_USD):
        return now, ref
    return None


@dataclass(frozen=True, slots=True)
class WeekOverWeekSettings:
    """The week-over-week hourly judge's thresholds: the policy's ``detector.week_over_week``
    (docs/policy.md; the defaults measured in docs/detection-log.md, "Week-over-week hourly evidence")."""

    hours: int = 3  # the span judged at each hour's end (k)
    ratio: float = 8.0  # its spend over the reference's
    excess_hours: float = 3.0  # its excess over the reference, in hours of the team's mean spend
    min_excess_usd: float = 2.0  # ... and at least this
    weeks: int = 2  # references: the same hours 1..weeks weeks before (the largest)
    shift: int = 1  # each reference also the same span this many hours either side (the largest)
    growth: str = "none"  # "day", "week": each reference scaled by the team's growth since (at least 1)

    def keep_hours(self) -> int:
        """Closed hours a verdict reads before the hour it is given in."""
        span = self.hours + self.shift if self.growth == "none" else self.hours + (24 if self.growth == "day" else WEEK_HOURS)
        return max(self.weeks, 1) * WEEK_HOURS + span


@dataclass(frozen=True, slots=True)
class TeamBurstSettings:
    """The team burst rule's thresholds: the policy's ``detector.team_burst`` (docs/policy.md;
    the defaults measured in docs/detection-log.md, "A team-scaled floor for short bursts")."""

    windows: int = 30  # the span: the team series' windows ending within this many windows
    surprising: int = 2  # of them at least this many with the team's surprise p ...
    p: float = 1e-4  # ... at most this (the detectors' own alert level)
    ratio: float = 3.0  # spend since the first of them over the detector's expected spend there
    mean_minutes: float = 60.0  # its excess: at least this many minutes of the team's mean spend
    min_excess_usd: float = 0.5  # ... and at least this


def burst_verdict(ring: Sequence[Sequence[int]], mean_hour: float | None, s: TeamBurstSettings,
                  end: int | None = None) -> tuple[int, int, int] | None:
    """The team burst rule's verdict on a team's last windows (``ring``: ``[end, nano-dollars,
    expected nano-dollars, surprising 0/1]`` of each window of the span the team spent in, in
    order) and its mean spend an hour over the week before (nano-dollars; None: not known a
    day) in the window ending at ``end`` (None: the ring's last): ``(spend, expected, first
    end)`` since the first surprising window when it flags, else None. It flags only a window
    the team spent in at or above its detector's expectation (the ring's last), so that an
    alert of it does not go on through the quiet windows after the burst. As
    ``benchmarks.detect_fast._team_burst``.

    >>> s = TeamBurstSettings()
    >>> ring = [[60 * i, NANO_USD // 10, NANO_USD // 100, int(i in (3, 5))] for i in range(10)]
    >>> burst_verdict(ring, NANO_USD / 2, s)  # $0.70 since the first, 10x, over an hour at $0.50
    (700000000, 70000000, 180)
    >>> burst_verdict(ring, 2.0 * NANO_USD, s) is None  # the team spends $2 an hour
    True
    """
    if mean_hour is None or not ring or sum(x[3] for x in ring) < s.surprising:
        return None
    last = ring[-1]
    if (end is not None and last[0] != end) or last[1] < last[2]:
        return None
    first = next(i for i, x in enumerate(ring) if x[3])
    spend = sum(x[1] for x in ring[first:])
    expected = sum(x[2] for x in ring[first:])
    need = max(s.mean_minutes / 60.0 * mean_hour, s.min_excess_usd * NANO_USD)
    if spend >= s.ratio * expected and spend - expected >= need:
        return spend, expected, ring[first][0]
    return None


@dataclass(frozen=True, slots=True)
class NewSeriesSettings:
    """The rule's thresholds: the policy's ``detector.new_series`` (docs/policy.md)."""

    ratio: float = 3.0  # the new series' price per request over the team's
    min_requests: int = 3  # requests of the new series before it can alert
    min_excess_usd: float = 2.0  # its first day's spend over the team's price x its requests
    team_age_days: float = 2.0  # the team must be known this long (in the rule's state) first
    # A model the team has not used for this long is new again (0: only a never-seen model is):
    # a switch back to a model used once before shows in the team's price just as a new one
    # does (independent seed 1: docs-bot's second switch, 5 days after its first).
    dormant_days: float = 2.0
    # A team that usually spends less than min_excess_usd in this many days needs only that
    # much excess, but at least min_excess_floor_usd (0: the floor is min_excess_usd for every
    # team): $2 is days of spend for a team of cents an hour (independent seed 2: sandbox).
    excess_team_days: float = 1.0
    min_excess_floor_usd: float = 0.5
    # the week-over-week hourly judge of each team series (None: off), kept here because it
    # reads the rule's hourly team sums (policy detector.week_over_week)
    week_over_week: WeekOverWeekSettings | None = None
    # the team burst rule (None: off), kept here because it reads the rule's hourly team sums
    # for the team's mean spend (policy detector.team_burst)
    team_burst: TeamBurstSettings | None = None


@dataclass(slots=True)
class _New:
    """A new team x model series in its first day."""

    t0: int  # the start of its first window with requests
    price: float  # the team's nano-dollars a request when it appeared
    nusd: int = 0
    requests: int = 0
    last_req: int = 0  # the end of its last window with requests
    flagged: bool = False  # the rule flagged it at least once (its alert may be tracked)
    team_requests: int = 0  # its team's requests since its first window (its own included)
    team_since: int = 0  # its team's requests in the windows after its last request
    min_excess: float | None = None  # USD of excess it needs (None: the settings' min_excess_usd)

    def to_wire(self) -> list[Any]:
        return [self.t0, self.price, self.nusd, self.requests, self.last_req, self.flagged, self.team_requests,
                self.team_since, self.min_excess]

    @classmethod
    def from_wire(cls, row: Sequence[Any]) -> _New:
        # rows written before the team's counts were kept have 6 fields: counts from 0 (the
        # series is held by the clock alone until its team has sent requests since)
        extra = (int(row[6]), int(row[7])) if len(row) >= 8 else (0, 0)
        floor = None if len(row) < 9 or row[8] is None else float(row[8])  # absent before team-scaled floors
        return cls(int(row[0]), float(row[1]), int(row[2]), int(row[3]), int(row[4]), bool(row[5]), *extra, floor)

    def stopped(self) -> bool:
        """Whether its team's requests since its last say it stopped (see ``STOP_MISSED``)."""
        # its share of the team's requests up to its last one (those since would dilute it)
        return self.team_since * self.requests >= STOP_MISSED * max(self.team_requests - self.team_since, 1)


@dataclass(slots=True)
class _Team:
    first: int | None = None  # the start of the team's first window with requests seen
    days: dict[int, list[int]] = field(default_factory=dict)  # UTC day -> [nano-dollars, requests]
    # models with requests seen (new or not) -> the end of their last window with requests
    # (-1: unknown, from a state written before it was kept; not dormant until seen again)
    models: dict[str, int] = field(default_factory=dict)
    new: dict[str, _New] = field(default_factory=dict)  # model series -> its first day
    # UTC hour (epoch seconds // 3600) -> the team series' nano-dollars in it, for the last
    # WEEK_HOURS + 2 + WEEK_SHIFT_MAX_H hours: the week-ago reference of the team corroboration
    # (week_ratio)
    hours: dict[int, int] = field(default_factory=dict)
    # the week-over-week judge (NewSeriesSettings.week_over_week): the UTC hours of the last few
    # in which one of the team's series had an anomalous signal other than the judge's own (it
    # speaks only for hours the team did not alert in), the last hour it gave a verdict for,
    # and its last flag: [the hour it holds the alert in, the k hours' nano-dollars, the
    # reference's], kept after the hold while the alert is tracked (its quiet windows resolve it)
    busy: set[int] = field(default_factory=set)
    judged: int | None = None
    wow: list[int] | None = None
    # the team burst rule (NewSeriesSettings.team_burst): [end, nano-dollars, the team detector's
    # expected nano-dollars, surprising 0/1] of the windows of the span the team spent in, and
    # whether it flagged the team (kept while its alert is tracked: its quiet windows resolve it)
    ring: list[list[int]] = field(default_factory=list)
    burst: bool = False

    def mean_hour(self, hour: int) -> float | None:
        """The team's mean spend an hour (nano-dollars) over the (at most 168) hours before
        ``hour`` since its first (None: known for under a day)."""
        if self.first is None or hour - self.first // HOUR_S < 24:
            return None
        n = min(hour - self.first // HOUR_S, WEEK_HOURS)
        return sum(self.hours.get(h, 0) for h in range(hour - n, hour)) / n

    def price(self, day: int) -> float | None:
        """Nano-dollars a request over the 7 days before ``day`` and ``day`` so far (None: no
        request in them)."""
        usd = req = 0
        for d, (u, r) in self.days.items():
            if day - PRICE_DAYS <= d <= day:
                usd += u
                req += r
        return usd / req if req > 0 and usd > 0 else None

    def add_hour(self, hour: int, nusd: int, keep: int = WEEK_HOURS + 1 + WEEK_SHIFT_MAX_H) -> bool:
        """Add a window's spend to its UTC hour's sum, keeping ``keep`` hours before it (the week,
        an hour and the shift of the team corroboration's reference; the week-over-week judge's two weeks
        and its span). True: a new hour began (the hours before it are closed: their record is
        to be written)."""
        got = self.hours.get(hour)
        if got is None:
            self.hours[hour] = nusd
            for h in [h for h in self.hours if h < hour - keep]:
                del self.hours[h]
            return True
        self.hours[hour] = got + nusd
        return False

    def closed_hours(self) -> list[list[int]]:
        """The hourly sums but the latest hour's (which the team's own record carries)."""
        latest = max(self.hours, default=None)
        return [[h, u] for h, u in sorted(self.hours.items()) if h != latest]

    def daily_usd(self, day: int) -> float | None:
        """The team's mean spend a day (USD) over the whole days of the 7 before ``day`` that it
        spent on (None: none)."""
        got = [u for d, (u, _) in self.days.items() if day - PRICE_DAYS <= d < day]
        return sum(got) / len(got) / NANO_USD if got else None

    def to_state(self) -> dict[str, Any]:
        return {"first": self.first, "days": [[d, u, r] for d, (u, r) in sorted(self.days.items())],
                "models": sorted(self.models), "last": [self.models[m] for m in sorted(self.models)],
                "new": {k: v.to_wire() for k, v in sorted(self.new.items())},
                # the latest hour only: the closed ones are a record of their own (``newserw``),
                # written when an hour begins, not with every window the team spends in
                "hour": [[h, u] for h, u in sorted(self.hours.items())][-1:],
                "busy": sorted(self.busy), "judged": self.judged, "wow": self.wow,
                "ring": self.ring, "burst": self.burst}

    @classmethod
    def from_state(cls, st: dict[str, Any]) -> _Team:
        first = st.get("first")
        names = [str(m) for m in st.get("models", ())]
        last = st.get("last")  # absent in states written before dormant models were new again
        seen = [int(t) for t in last] if isinstance(last, list) and len(last) == len(names) else [-1] * len(names)
        return cls(first=None if first is None else int(first),
                   days={int(d): [int(u), int(r)] for d, u, r in st.get("days", ())},
                   models=dict(zip(names, seen, strict=True)),
                   new={str(k): _New.from_wire(v) for k, v in (st.get("new") or {}).items()},
                   # "hours": every hour, as states before the closed hours' own record had it;
                   # neither: a state from before the week-ago reference (the old rule)
                   hours={int(h): int(u) for h, u in [*st.get("hours", ()), *st.get("hour", ())]},
                   # absent in states written before the week-over-week judge
                   busy={int(h) for h in st.get("busy") or ()},
                   judged=None if st.get("judged") is None else int(st["judged"]),
                   wow=None if not st.get("wow") else [int(x) for x in st["wow"]],
                   # absent in states written before the team burst rule
                   ring=[[int(x) for x in e] for e in st.get("ring") or ()], burst=bool(st.get("burst")))


def _place(out: list[Signal], index: dict[str, int], key: str, sg: Signal, over_quiet: bool = True) -> None:
    """A rule's signal ``sg`` of series ``key`` into a window's signals ``out`` (``index``:
    series -> position in ``out``, kept up to date): appended when ``out`` has none of the
    series; in place of a quiet one when ``sg`` is a flag or ``over_quiet``; a judge's flag
    stands."""
    i = index.get(key)
    if i is None:
        index[key] = len(out)
        out.append(sg)
    elif (sg.is_anomaly or over_quiet) and not out[i].is_anomaly:
        out[i] = sg


class NewSeriesRule:
    """The ``new-series`` rule of one org partition (see the module's docstring).

    Drive it once per window, in window order, with the window's spend rows of every series
    (:meth:`judge_window`); it returns the window's signals with its own merged in.
    :attr:`dirty` names the teams whose state changed since :meth:`take_dirty`."""

    def __init__(self, settings: NewSeriesSettings | None = None) -> None:
        self.settings = settings if settings is not None else NewSeriesSettings()
        self.teams: dict[str, _Team] = {}  # team series key -> its state
        self.dirty: set[str] = set()
        self.week_dirty: set[str] = set()  # teams whose closed hours changed (a new hour began)
        # closed hours restored before their team's own record (records restore in any order)
        self._weeks: dict[str, dict[int, int]] = {}
        wow = self.settings.week_over_week
        self._keep = WEEK_HOURS + 1 + WEEK_SHIFT_MAX_H
        if wow is not None:
            self._keep = max(self._keep, wow.keep_hours())
        self._wow_hour: int | None = None  # the hour of the last window the judge saw
        # series key -> (team series key, model or "" for the team series itself), None: not
        # a team or team x model series (derived, not persisted)
        self._kind: dict[str, tuple[str, str, dict[str, str]] | None] = {}

    # -- what a series is -------------------------------------------------------------------
    def _classify(self, series: str) -> tuple[str, str, dict[str, str]] | None:
        got = self._kind.get(series, False)
        if got is not False:
            return got  # type: ignore[return-value]
        kind: tuple[str, str, dict[str, str]] | None = None
        parsed = parse_series(series)
        if parsed is not None:
            labels = parsed[1]
            names = set(labels) - {"org"}
            if names == {"team"}:
                kind = (series, "", labels)
            elif names == {"team", "model"}:
                team = {k: v for k, v in labels.items() if k != "model"}
                kind = (series_key(team), labels["model"], labels)
        self._kind[series] = kind
        return kind

    def _min_excess(self, team: _Team, day: int) -> float | None:
        """The excess a new series of ``team`` needs: the settings' ``min_excess_usd``, or what
        the team usually spends in ``excess_team_days`` if that is less (not under the floor)."""
        s = self.settings
        daily = team.daily_usd(day) if s.excess_team_days > 0 else None
        if daily is None:
            return None
        return max(s.min_excess_floor_usd, min(s.min_excess_usd, daily * s.excess_team_days))

    def wants(self, series: str) -> bool:
        """Whether the rule reads ``series``' spend rows (a team or team x model series)."""
        return self._classify(series) is not None

    # -- the window step --------------------------------------------------------------------
    def judge_window(
        self, start: int, end: int, rows: Iterable[Row], signals: Sequence[Signal],
        tracks: Callable[[str], bool] | None = None, expected: Mapping[str, float] | None = None,
        team_p: Mapping[str, float] | None = None,
    ) -> list[Signal]:
        """Fold one window's spend rows in and return ``signals`` with the rule's: a flagged
        window of a new series replaces the judge's signal of it (unless the judge flagged it
        too), and so does a quiet one of a series the rule flagged whose alert the engine still
        ``tracks`` (by series), so that its alert resolves alike under both placements.
        ``expected`` and ``team_p``: the team series' expected spend (USD) and surprise p-value
        in the window (team series key -> value; teams that spent in it), for the team burst
        rule (None: it does not judge the window)."""
        s = self.settings
        day = start // DAY_S
        team_rows: list[tuple[_Team, str, int, int]] = []
        by_series: dict[str, tuple[int, int]] = {}
        for series, nusd, req in rows:
            kind = self._classify(series)
            if kind is None or (req <= 0 and nusd <= 0):
                continue
            team_key, model, _ = kind
            team = self.teams.get(team_key)
            if team is None:
                team = self.teams[team_key] = _Team()
                self.dirty.add(team_key)
            if not model:
                team_rows.append((team, team_key, nusd, req))
                continue
            by_series[series] = (nusd, req)
            if req <= 0:
                continue
            new = team.new.get(series)
            if new is None:
                last = team.models.get(model)
                team.models[model] = end
                self.dirty.add(team_key)
                # a model seen before is new again only after dormant_days without a request
                if last is not None and (s.dormant_days <= 0 or last < 0 or start - last < s.dormant_days * DAY_S):
                    continue
                # the team must be old enough in the rule's own state, so that a worker without
                # state (or a team's first days) does not take every model for a new one
                first = start if team.first is None else team.first
                price = team.price(day)  # before this window's team row: the days before it appeared
                if start - first < s.team_age_days * DAY_S or price is None:
                    continue
                new = team.new[series] = _New(start, price, min_excess=self._min_excess(team, day))
            new.nusd += nusd
            new.requests += req
            new.last_req = end
            team.models[model] = end
            self.dirty.add(team_key)
        for team, team_key, nusd, req in team_rows:
            if req > 0 and team.first is None:
                team.first = start
            got = team.days.get(day)
            if got is None:
                team.days[day] = [nusd, req]
                for d in [d for d in team.days if d < day - PRICE_DAYS]:
                    del team.days[d]
            else:
                got[0] += nusd
                got[1] += req
            if team.add_hour(start // HOUR_S, nusd, self._keep):
                self.week_dirty.add(team_key)
            for new in team.new.values():  # the team's traffic, the measure of a new series' gaps
                new.team_requests += req
                new.team_since = 0 if new.last_req == end else new.team_since + req
            self._burst_window(team, team_key, end, nusd, expected, team_p)
            self.dirty.add(team_key)
        out = self._week_over_week(start, end, self._signals(start, end, by_series, signals, tracks), tracks)
        return self._team_burst(start, end, out, tracks)

    def _signals(
        self, start: int, end: int, by_series: dict[str, tuple[int, int]], signals: Sequence[Signal],
        tracks: Callable[[str], bool] | None,
    ) -> list[Signal]:
        s = self.settings
        out = list(signals)
        index = {sg.series: i for i, sg in enumerate(out)}
        for team_key, team in self.teams.items():
            if not team.new:
                continue
            for series, new in list(team.new.items()):
                nusd, req = by_series.get(series, (0, 0))
                in_day = start < new.t0 + DAY_S
                flag = False
                if in_day:
                    expected = new.price * new.requests
                    excess = (new.nusd - expected) / NANO_USD
                    # still spending: a request within HOLD_S, or flagged before and its team's
                    # requests since do not say it stopped (one alert through a sparse team's lulls)
                    gap = end - new.last_req
                    spending = gap < HOLD_S or (new.flagged and gap < HOLD_MAX_S and not new.stopped())
                    need = s.min_excess_usd if new.min_excess is None else new.min_excess
                    flag = (new.requests >= s.min_requests and new.nusd >= s.ratio * expected
                            and excess >= need and spending)
                if flag:
                    if not new.flagged:
                        new.flagged = True
                        self.dirty.add(team_key)
                    _place(out, index, series, self._signal(series, start, end, nusd, req, new, True, excess))
                    continue
                tracked = new.flagged and tracks is not None and tracks(series)
                if tracked:
                    # the rule's alert: its quiet windows are the rule's too (the judge beside
                    # the org stage sends its detector's, a judge apart none), so that it
                    # resolves alike under both placements; a window the detector flags is its own
                    _place(out, index, series, self._signal(series, start, end, nusd, req, new, False, 0.0))
                if not in_day and not tracked:
                    del team.new[series]  # its first day is over: its own detector judges it
                    self.dirty.add(team_key)
        return out

    def _signal(self, series: str, start: int, end: int, nusd: int, req: int, new: _New, anomalous: bool,
                excess: float) -> Signal:
        kind = self._classify(series)
        labels = dict(kind[2]) if kind is not None else {}
        price = new.price / NANO_USD
        observed = nusd / NANO_USD
        expected = price * req
        why = ""
        if anomalous:
            # a flagged window carries the first day so far (what the rule judges), not the
            # window's own spend: a window of cheap requests, or none, inside the incident is no
            # reason for the engine to resolve it (a window's negative excess is not material),
            # and "worsened" then means the incident's excess grew, not one window's
            observed, expected = new.nusd / NANO_USD, price * new.requests
            mine = new.nusd / max(new.requests, 1) / NANO_USD
            hours = (end - new.t0) / 3600
            why = (f"new model {labels.get('model', '?')} on team {labels.get('team', '?')}: "
                   f"${new.nusd / NANO_USD:,.2f} over {new.requests} requests in the {hours:.1f} h "
                   f"since its first, ${mine:.4f} a request against the team's ${price:.4f} "
                   f"over the 7 days before ({mine / price:.1f}x); ${excess:,.2f} over the team's price")
        return Signal(series=series, labels=labels, window_start=float(start), window_end=float(end),
                      observed_usd=observed, expected_usd=expected,
                      upper_usd=self.settings.ratio * expected, score=1.0 if anomalous else 0.0,
                      is_anomaly=anomalous, detector=DETECTOR, impact_usd=excess if anomalous else None,
                      explanation=why)

    def _week_over_week(self, start: int, end: int, signals: list[Signal],
                        tracks: Callable[[str], bool] | None) -> list[Signal]:
        """The week-over-week hourly judge's step (:func:`wow_verdict`): in a window of a new UTC
        hour, each team's verdict on the hour before it; a flag holds the team series anomalous
        (a :class:`~alerts.Signal` of the judge's, ``detector="week-over-week"``, unless its own
        judge flagged the window) for the windows of that hour, and while the engine still
        ``tracks`` its alert after that, a quiet signal of the judge's stands in for a team series
        no judge sent one of, so the alert resolves. The hours the team's series were anomalous
        in (but by this judge) are noted: a verdict needs ``hours`` quiet ones (``quiet``).
        Off (``week_over_week`` None): ``signals`` as they are."""
        wow = self.settings.week_over_week
        if wow is None:
            return signals
        hour = start // HOUR_S
        out = signals
        index = {sg.series: i for i, sg in enumerate(out)}
        for sg in out:  # the team's alerting hours (its minute detectors', gated, and the new-series rule's)
            if sg.is_anomaly and sg.detector != WOW_DETECTOR:
                kind = self._classify(sg.series)
                t = self.teams.get(kind[0]) if kind is not None else None
                if t is not None and hour not in t.busy:
                    t.busy.add(hour)
                    self.dirty.add(kind[0])  # type: ignore[index]
        new_hour = self._wow_hour is None or hour > self._wow_hour
        self._wow_hour = hour if self._wow_hour is None else max(hour, self._wow_hour)
        for team_key, team in self.teams.items():
            if new_hour and team.first is not None and (team.judged is None or team.judged < hour - 1):
                self._wow_verdict(team_key, team, hour, wow)
            if team.wow is None:
                continue
            if team.wow[0] == hour:
                _place(out, index, team_key, self._wow_signal(team_key, start, end, team.wow, True))
            elif team.wow[0] < hour and tracks is not None and tracks(team_key):
                # the hold is over: quiet, so that its alert resolves
                _place(out, index, team_key, self._wow_signal(team_key, start, end, team.wow, False), over_quiet=False)
            elif team.wow[0] < hour:
                team.wow = None  # its alert resolved (or was never tracked)
                self.dirty.add(team_key)
        return out

    def _wow_verdict(self, team_key: str, team: _Team, hour: int, wow: WeekOverWeekSettings) -> None:
        """The team's verdict on the hour before ``hour`` (a flag: held in ``hour``)."""
        assert team.first is not None
        h = team.judged = hour - 1
        for b in [b for b in team.busy if b < hour - wow.hours]:
            team.busy.discard(b)
        quiet = not any(b in team.busy for b in range(h - wow.hours + 1, h + 1))
        got = wow_verdict(team.hours, h, team.first // HOUR_S, wow) if quiet else None
        if got is not None:
            team.wow = [hour, got[0], int(got[1])]
        self.dirty.add(team_key)

    def _wow_signal(self, team_key: str, start: int, end: int, wow: list[int], anomalous: bool) -> Signal:
        s = self.settings.week_over_week
        assert s is not None
        kind = self._classify(team_key)
        labels = dict(kind[2]) if kind is not None else {}
        now, ref = wow[1] / NANO_USD, wow[2] / NANO_USD
        why = ""
        if anomalous:
            times = f"{now / ref:.1f}x" if ref > 0 else "nothing spent then"
            why = (f"week over week: team {labels.get('team', '?')} spent ${now:,.2f} in the {s.hours} hours to "
                   f"{time.strftime('%H:%M', time.gmtime(wow[0] * HOUR_S))} UTC against ${ref:,.2f} in the same "
                   f"hours a week or two before, or an hour either side ({times})")
        return Signal(series=team_key, labels=labels, window_start=float(start), window_end=float(end),
                      observed_usd=now if anomalous else 0.0, expected_usd=ref if anomalous else 0.0,
                      upper_usd=s.ratio * ref if anomalous else 0.0, score=1.0 if anomalous else 0.0,
                      is_anomaly=anomalous, detector=WOW_DETECTOR, impact_usd=now - ref if anomalous else None,
                      explanation=why)

    def _burst_window(self, team: _Team, team_key: str, end: int, nusd: int, expected: Mapping[str, float] | None,
                      team_p: Mapping[str, float] | None) -> None:
        """A window the team spent in, for the team burst rule (with the judges' expected spend
        and p-value of its team series; without them the window is not the rule's)."""
        burst = self.settings.team_burst
        if burst is not None and expected is not None and team_p is not None and team_key in expected:
            team.ring.append([end, nusd, round(expected[team_key] * NANO_USD), int(team_p.get(team_key, 1.0) <= burst.p)])

    def _team_burst(self, start: int, end: int, signals: list[Signal],
                    tracks: Callable[[str], bool] | None) -> list[Signal]:
        """The team burst rule's step (:func:`burst_verdict`; after the week-over-week judge,
        whose quiet hours do not count its flags): each team whose last windows flag holds its
        team series anomalous in this window (a :class:`~alerts.Signal` of the rule's,
        ``detector="team-burst"``, unless a judge flagged the window), and while the engine
        still ``tracks`` the alert after that, a quiet signal of the rule's stands in for a team
        series no judge sent one of, so the alert resolves. Off (``team_burst`` None):
        ``signals`` as they are."""
        burst = self.settings.team_burst
        if burst is None:
            return signals
        out = signals
        index: dict[str, int] | None = None
        since = end - burst.windows * (end - start)
        for team_key, team in self.teams.items():
            if not team.ring and not team.burst:
                continue
            if team.ring and team.ring[0][0] <= since:
                team.ring = [x for x in team.ring if x[0] > since]
                self.dirty.add(team_key)
            # the team's mean hour (a sum over up to a week of hours) only for a ring with a
            # surprising window: most teams' rings have none, and none flags without one
            got = (burst_verdict(team.ring, team.mean_hour(start // HOUR_S), burst, end)
                   if team.ring and any(x[3] for x in team.ring) else None)
            if got is None and not team.burst:
                continue
            if index is None:
                index = {sg.series: i for i, sg in enumerate(out)}
            if got is not None:
                if not team.burst:
                    team.burst = True
                    self.dirty.add(team_key)
                _place(out, index, team_key, self._burst_signal(team_key, start, end, got))
            elif tracks is not None and tracks(team_key):  # quiet, so that its alert resolves
                _place(out, index, team_key, self._burst_signal(team_key, start, end, None), over_quiet=False)
            else:
                team.burst = False  # its alert resolved (or was never tracked)
                self.dirty.add(team_key)
        return out

    def _burst_signal(self, team_key: str, start: int, end: int, got: tuple[int, int, int] | None) -> Signal:
        s = self.settings.team_burst
        assert s is not None
        kind = self._classify(team_key)
        labels = dict(kind[2]) if kind is not None else {}
        if got is None:
            return Signal(series=team_key, labels=labels, window_start=float(start), window_end=float(end),
                          observed_usd=0.0, expected_usd=0.0, upper_usd=0.0, score=0.0, is_anomaly=False,
                          detector=BURST_DETECTOR, impact_usd=None, explanation="")
        now, ref = got[0] / NANO_USD, got[1] / NANO_USD
        times = f"{now / ref:.1f}x" if ref > 0 else "nothing expected"
        why = (f"team burst: team {labels.get('team', '?')} spent ${now:,.2f} since "
               f"{time.strftime('%H:%M', time.gmtime(got[2] - (end - start)))} UTC, where its windows turned "
               f"surprising (p <= {s.p:g}), against ${ref:,.2f} expected ({times}); ${now - ref:,.2f} over, at "
               f"least {s.mean_minutes:g} minutes of its mean spend")
        return Signal(series=team_key, labels=labels, window_start=float(start), window_end=float(end),
                      observed_usd=now, expected_usd=ref, upper_usd=s.ratio * ref, score=1.0, is_anomaly=True,
                      detector=BURST_DETECTOR, impact_usd=now - ref, explanation=why)

    def week_ratio(self, team: str, at: int, shift_h: int = 0) -> float | None:
        """The team series' spend over the hour before ``at`` against the same hour a week
        before (the team corroboration's week-ago reference, :func:`week_ratio` over the team's
        hourly sums), or with ``shift_h`` the largest of the same hour and up to that many hours
        either side of it (at most ``WEEK_SHIFT_MAX_H``). None: the team is not known here for a
        week and an hour (a worker started without state, a young team), or spent nothing in
        those hours a week ago."""
        t = self.teams.get(team)
        if t is None or t.first is None or at - t.first < WEEK_HOURS * HOUR_S + HOUR_S:
            return None
        k = min(max(shift_h, 0), WEEK_SHIFT_MAX_H)
        return week_ratio(t.hours, at, range(-k, k + 1))

    # -- persistence --------------------------------------------------------------------------
    def take_dirty(self) -> set[str]:
        """The teams whose state changed since the last call (their records to write)."""
        out, self.dirty = self.dirty, set()
        return out

    def take_week_dirty(self) -> set[str]:
        """The teams whose closed hours changed since the last call (their ``newserw`` records)."""
        out, self.week_dirty = self.week_dirty, set()
        return out

    def get_week(self, team: str) -> list[list[int]] | None:
        """One team's closed hourly sums, JSON-able (None: nothing known of it)."""
        t = self.teams.get(team)
        return None if t is None else t.closed_hours()

    def set_week(self, team: str, hours: list[list[int]] | None) -> None:
        """Take back what :meth:`get_week` gave, before or after the team's own record."""
        got = {int(h): int(u) for h, u in hours or ()}
        t = self.teams.get(team)
        if t is None:
            self._weeks[team] = got
            return
        latest = max(t.hours, default=None)
        t.hours = {**got, **({latest: t.hours[latest]} if latest is not None else {})}

    def get_state(self, team: str) -> dict[str, Any] | None:
        """One team's state, JSON-able (None: nothing known of it)."""
        t = self.teams.get(team)
        return None if t is None else t.to_state()

    def set_state(self, team: str, state: dict[str, Any] | None) -> None:
        """Take back what :meth:`get_state` gave (None forgets the team)."""
        if state is None:
            self.teams.pop(team, None)
            return
        t = self.teams[team] = _Team.from_state(state)
        week = self._weeks.pop(team, None)
        if week is not None and "hours" not in state:
            t.hours = {**week, **t.hours}
