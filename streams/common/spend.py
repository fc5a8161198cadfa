"""The spend records' keys and values, and how every reader walks them at any resolution.

The judge keeps exact spend (:class:`streams.judge.core.JudgeCore` ``spend``, the worker's
``spend`` table) in three shapes; :mod:`streams.reports.retention` turns the first into the
second after ``TOKENPULSE_SPEND_HOURLY_AFTER_SECONDS`` and the second into the third after
``TOKENPULSE_SPEND_DAILY_AFTER_SECONDS`` of event time:

- ``"<series>|<window start>"`` → ``{"s": [6 sums], "v": {src: [seqs]}}``: one window;
- ``"<series>|day:<UTC day start>"`` → ``{"h": {"<hour 0..23>": [6 sums, src, seq, …]}}``: the
  series' day by UTC hour (only hours with spend);
- the same key → ``{"d": [6 sums, src, seq, …]}``: the series' whole UTC day.

The six sums are ``[nano-USD, input, output, cache read, cache write, events]``. The
``src, seq`` pairs after them are the highest message seq of each source already counted in
that hour or day: what makes a roll-up exact across a crash (see the retention module).

Use :func:`spend_windows` to read spend; never split keys by hand, or rolled-up records are
silently skipped.

>>> items = [("team=ads|120", {"s": [1, 2, 3, 0, 0, 1], "v": {"0": [4]}}),
...          ("team=ads|day:0", {"h": {"1": [5, 1, 1, 0, 0, 2, 0, 3]}}),
...          ("team=ads|day:86400", {"d": [7, 1, 1, 0, 0, 1, 0, 9]})]
>>> [(s, w, span, sums[0]) for s, w, span, sums in spend_windows(items, 60)]
[('team=ads', 120, 60, 1), ('team=ads', 3600, 3600, 5), ('team=ads', 86400, 86400, 7)]
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Sequence
from typing import Any

__all__ = ["DAY", "DAY_TAG", "HOUR", "coarsest", "day_key", "spend_windows", "split_key"]

HOUR = 3600
DAY = 86400
DAY_TAG = "day:"
# The hours' keys in a day record: one interned string each, shared by every record.
HOUR_KEYS = tuple(str(h) for h in range(24))


def day_key(series: str, day_start: int) -> str:
    """The key of ``series``' rolled-up UTC day.

    >>> day_key("team=ads", 86400)
    'team=ads|day:86400'
    """
    return f"{series}|{DAY_TAG}{day_start}"


def split_key(key: str) -> tuple[str, int, bool] | None:
    """``(series, start, is_day_record)`` of a spend key, None when it is not one.

    >>> split_key("team=ads|model=m|60"), split_key("org|day:0"), split_key("org|x")
    (('team=ads|model=m', 60, False), ('org', 0, True), None)
    """
    series, _, tail = key.rpartition("|")
    day = tail.startswith(DAY_TAG)
    try:
        start = int(tail[len(DAY_TAG):] if day else tail)
    except ValueError:
        return None
    return series, start, day


def spend_windows(items: Iterable[tuple[str, Any]], window_seconds: int) -> Iterator[tuple[str, int, int, Sequence[int]]]:
    """``(series, start, seconds, sums)`` for every span of spend held in ``items`` (a spend
    table's or a judge's items): windows, hours of rolled-up days, whole days. ``sums`` is
    read-only (for a day record, a slice of it)."""
    for key, rec in items:
        if not rec:
            continue
        got = split_key(key)
        if got is None:
            continue
        series, start, day = got
        try:
            if not day:
                yield series, start, window_seconds, rec["s"]
            elif "d" in rec:
                yield series, start, DAY, rec["d"][:6]
            else:
                for h, row in rec["h"].items():
                    yield series, start + int(h) * HOUR, HOUR, row[:6]
        except (KeyError, TypeError, ValueError):
            continue


def coarsest(items: Iterable[tuple[str, Any]], window_seconds: int, since: float | None, until: float | None) -> int:
    """The longest span of the records that start in ``[since, until)``: the resolution an
    answer over that range was computed at (``window_seconds`` when it holds none).

    >>> coarsest([("org|60", {"s": [1]}), ("org|day:0", {"d": [1]})], 60, 0, None)
    86400
    >>> coarsest([("org|60", {"s": [1]}), ("org|day:0", {"d": [1]})], 60, 50, None)
    60
    """
    out = window_seconds
    for _, start, span, _ in spend_windows(items, window_seconds):
        if span > out and (since is None or start >= since) and (until is None or start < until):
            out = span
    return out
