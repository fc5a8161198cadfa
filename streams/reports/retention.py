"""Spend retention: a judge partition's window records roll up into hours, then days.

Use one :class:`SpendRollup` per judge partition, next to its :class:`~streams.judge.core.JudgeCore`:
tell it each message's ``(src, seq)`` (:meth:`SpendRollup.seen`), and at each checkpoint
:meth:`SpendRollup.roll` the judge's ``spend`` (its :class:`~streams.common.spend.SeriesSpend`
per series); write what it returns to the spend table's changelog, in its order.
Right after a restore, roll once with ``force=True`` before the first message is applied.

What it does, in event time (the judge's ``done_until``):

- a window whose hour ended more than ``hourly_after`` ago is added into that hour of its
  series (on the changelog: its UTC day record, in that hour; ``streams.common.spend`` has the
  shapes);
- a day whose hours ended more than ``daily_after`` ago becomes one sum for the day.

A user's series (``user=…``, of any org) has horizons of its own, shorter by default
(``user_hourly_after``, ``user_daily_after``): its windows become hours after 24 h, its hours
days after 7 days. Teams, models, tools and the org keep the windows their minute charts and
budgets read; what reads a user's spend reads it at most 24 h back by the window (the
dashboard's top users over 1 h and 24 h, a daily user budget's burn-down) and at most 7 days
back by the hour (top users over 7 d).

Exactness. Every sum moves at most once: the day record keeps, per hour (per day once
compacted), the highest seq of each source it absorbed (``hw``). A window record is only ever
absorbed whole, in one roll of its hour, and only once its sources have sent a later message
than the ones in it (a message may come in chunks sharing one seq: a later seq means every
chunk of it has been applied). So after a roll every message a source sends has a seq above
that hour's ``hw``, and a window record whose seqs are all at or below ``hw`` is one already
counted: one restored from a checkpoint whose roll-up was only partly written (the rolled
record is written before the deletions, so a crash between them leaves such a copy), or one
re-created by a redelivered message. It is dropped, not added again.

Late events keep counting: a window of a rolled hour gets a new window record, rolled into
the same hour at the next roll.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from streams.common.dimensions import USER, parse_series
from streams.common.spend import DAY, HOUR, SeriesSpend, day_key

__all__ = ["HOURLY_AFTER", "DAILY_AFTER", "USER_HOURLY_AFTER", "USER_DAILY_AFTER", "SpendRollup", "is_user_series"]

HOURLY_AFTER = 48 * HOUR  # TOKENPULSE_SPEND_HOURLY_AFTER_SECONDS
DAILY_AFTER = 35 * DAY  # TOKENPULSE_SPEND_DAILY_AFTER_SECONDS
USER_HOURLY_AFTER = 24 * HOUR  # TOKENPULSE_SPEND_USER_HOURLY_AFTER_SECONDS
USER_DAILY_AFTER = 7 * DAY  # TOKENPULSE_SPEND_USER_DAILY_AFTER_SECONDS


def is_user_series(series: str) -> bool:
    """Whether ``series`` is a user's (``user=bob``, ``org=acme|user=bob``): the series that
    roll up on the user horizons.

    >>> is_user_series("user=bob"), is_user_series("org=acme|user=bob"), is_user_series("team=ads")
    (True, True, False)
    """
    got = parse_series(series)
    return got is not None and got[0] is USER


@dataclass
class SpendRollup:
    """Rolls one judge partition's spend records up (see the module's docstring).

    ``hourly_after`` / ``daily_after``: event-time seconds after which a window's spend is
    kept only by the hour, an hour's only by the day (0: never); ``user_hourly_after`` /
    ``user_daily_after``: the same for users' series (:func:`is_user_series`). Windows that
    do not divide an hour (``window_seconds`` 7 or 5400) are never rolled into hours.
    """

    window_seconds: int
    hourly_after: int = HOURLY_AFTER
    daily_after: int = DAILY_AFTER
    latest: dict[int, int] = field(default_factory=dict)  # highest seq seen per source
    user_hourly_after: int = USER_HOURLY_AFTER
    user_daily_after: int = USER_DAILY_AFTER
    # the roll is due once a cut-off reaches the hour or day held here (by horizon, in seconds)
    _next: dict[int, int] = field(default_factory=dict)

    def seen(self, src: int, seq: int) -> None:
        """A message of source ``src`` with ``seq`` is about to be applied."""
        if seq > self.latest.get(src, -1):
            self.latest[src] = seq

    def restored(self, spend: Mapping[str, SeriesSpend]) -> None:
        """After a restore: the seqs already applied stand in for the messages seen."""
        for book in spend.values():
            for src, seq in book.seqs():
                self.seen(src, seq)

    def due(self, now: float) -> bool:
        """Whether a roll at event time ``now`` has anything new to do (one pass per hour)."""
        return any(now - after >= at for after, at in self._next.items())

    def roll(self, spend: Mapping[str, SeriesSpend], now: float | None, force: bool = False) -> dict[str, Any]:
        """Roll ``spend`` up in place as of event time ``now``; the changelog records to write,
        in order (the rolled day records first, then the window records' deletions as ``None``)."""
        if now is None or not (force or not self._next or self.due(now)):
            return {}
        written: dict[str, Any] = {}
        deleted: list[str] = []
        self._next.clear()
        hour_cuts: dict[bool, int | None] = {False: None, True: None}
        if HOUR % self.window_seconds == 0:
            hour_cuts = self._cuts(now, self.hourly_after, self.user_hourly_after, HOUR)
        day_cuts = self._cuts(now, self.daily_after, self.user_daily_after, DAY)
        # which series are users', only where their cut-offs differ from the others' (with every
        # horizon 0 a roll runs at every checkpoint: no name is parsed then)
        users = ({key: is_user_series(key.rpartition("|")[0]) for key in spend}
                 if hour_cuts[False] != hour_cuts[True] or day_cuts[False] != day_cuts[True] else {})
        # Book by book, each packed before the next is rolled: a roll inflates a cold book whole
        # (SeriesSpend: ~23 KB of rows for a sparse user's week), so rolling every book before
        # packing any would hold every book's rows at once (~2.3 GB for 100k user series).
        for key, book in list(spend.items()):
            user = users.get(key, False)
            series = key.rpartition("|")[0]
            cut = hour_cuts[user]  # hours ending by it are rolled
            if cut is not None:
                self._roll_hours(series, book, cut, written, deleted)
            cut = day_cuts[user]
            if cut is not None:
                for day in book.compact_days(cut):
                    written[day_key(series, day)] = book.day_wire(day)
            book.pack()  # what gathered in the arrays since the last roll, deflated
        return written | {k: None for k in deleted}

    def _cuts(self, now: float, after: int, user_after: int, span: int) -> dict[bool, int | None]:
        """The cut-off of each horizon (by whether the series is a user's; None: never rolled),
        and when the roll is next due for it."""
        cuts: dict[bool, int | None] = {}
        for user, ahead in ((False, after), (True, user_after)):
            cuts[user] = None
            if ahead:
                cut = cuts[user] = int(now - ahead) // span * span
                self._next[ahead] = min(self._next.get(ahead, cut + span), cut + span)
        return cuts

    def _roll_hours(self, series: str, book: SeriesSpend, cut: int, written: dict[str, Any],
                    deleted: list[str]) -> None:
        """Absorb ``book``'s windows of the hours ending by ``cut``: each hour of a series whole."""
        W = self.window_seconds
        old = book.pop_windows(cut - W + 1)  # the windows ending by the cut
        if not old:
            return
        waiting = []
        groups: dict[int, list[tuple[list[int], dict[int, int]]]] = {}
        hws: dict[int, dict[int, int]] = {}
        for w, sums, pairs in old:
            hour = w // HOUR * HOUR
            seqs: dict[int, int] = {}
            for src, seq in pairs:
                seqs[src] = max(seqs.get(src, -1), seq)
            hw = hws.get(hour)
            if hw is None:
                hw = hws[hour] = book.hw(hour)  # as the hour stood before this roll
            if seqs and hw and all(s in hw and x <= hw[s] for s, x in seqs.items()):
                deleted.append(f"{series}|{w}")  # counted already (a copy restored or re-created)
            elif not any(x >= 0 and x >= self.latest.get(s, -1) for s, x in seqs.items()):
                groups.setdefault(hour, []).append((sums, seqs))
                deleted.append(f"{series}|{w}")
            else:  # its message may have more chunks to come; the next roll takes it
                waiting.append((w, sums, pairs))
        book.put_windows(waiting)
        days: list[int] = []
        for hour, rows in groups.items():
            total = [0] * 6
            top: dict[int, int] = {}
            for sums, seqs in rows:
                for i in range(6):
                    total[i] += sums[i]
                for s, x in seqs.items():
                    top[s] = max(top.get(s, -1), x)
            book.absorb(hour, total, top)
            if hour // DAY * DAY not in days:
                days.append(hour // DAY * DAY)
        for day in days:
            written[day_key(series, day)] = book.day_wire(day)
