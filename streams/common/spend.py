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

Those are the records of the spend table's changelog (what a restore reads, old checkpoints
included). In memory, a judge and the worker's spend table hold one :class:`SeriesSpend` (a
*book*) per series instead, under ``"<series>|spend"`` (:func:`spend_key`): the same windows, hours and days
in typed columns, about 80 bytes a window rather than 700 for a dict (benchmarks/scale.py).
:func:`load_records` reads records into it; its ``window_wire`` and ``day_wire`` give them back.

Use :func:`spend_windows` to read spend, from records or books alike; never split keys by
hand, or rolled-up records are silently skipped.

>>> items = [("team=ads|120", {"s": [1, 2, 3, 0, 0, 1], "v": {"0": [4]}}),
...          ("team=ads|day:0", {"h": {"1": [5, 1, 1, 0, 0, 2, 0, 3]}}),
...          ("team=ads|day:86400", {"d": [7, 1, 1, 0, 0, 1, 0, 9]})]
>>> [(s, w, span, sums[0]) for s, w, span, sums in spend_windows(items, 60)]
[('team=ads', 120, 60, 1), ('team=ads', 3600, 3600, 5), ('team=ads', 86400, 86400, 7)]
"""

from __future__ import annotations

from array import array
from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["DAY", "DAY_TAG", "HOUR", "SeriesSpend", "coarsest", "day_key", "load_records", "spend_key", "spend_windows",
           "split_key"]

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
    read-only (for a day record, a slice of it).

    A record whose window or day a :class:`SeriesSpend` of ``items`` holds too is left out:
    between a rebalance's recovery, which puts the changelog's latest records back in the
    table, and the judge's next restore, which folds them into its books, both are there.

    >>> b = SeriesSpend()
    >>> b.add_window(60, [5, 0, 0, 0, 0, 1], {0: 1})
    True
    >>> items = [("org|spend", b), ("org|60", {"s": [5, 0, 0, 0, 0, 1]}), ("org|120", {"s": [2, 0, 0, 0, 0, 1]})]
    >>> [(w, sums[0]) for _, w, _, sums in spend_windows(items, 60)]
    [(60, 5), (120, 2)]
    """
    items = list(items)
    books = {key.rpartition("|")[0]: rec for key, rec in items if isinstance(rec, SeriesSpend)}
    for key, rec in items:
        if not rec:
            continue
        if isinstance(rec, SeriesSpend):  # the in-memory form: every span of the series
            series = key.rpartition("|")[0]
            for start, span, sums in rec.spans(window_seconds):
                yield series, start, span, sums
            continue
        got = split_key(key)
        if got is None:
            continue
        series, start, day = got
        book = books.get(series) if books else None
        if book is not None and book.holds(start, day):
            continue
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


# -- the compact form -------------------------------------------------------------------------
# A window row of SeriesSpend.w: start, the six sums, the number of (src, seq) pairs in .wp.
_WROW = 8
# A rolled row of SeriesSpend.r: start, kind (HOUR_ROW or DAY_ROW), the six sums, the number
# of (src, highest seq) pairs in .rp.
_RROW = 9
HOUR_ROW, DAY_ROW = 1, 2
SPEND_TAG = "spend"

Row = tuple[int, list[int], list[tuple[int, int]]]  # (start, six sums, sorted (src, seq) pairs)


def spend_key(series: str) -> str:
    """The key of ``series``' :class:`SeriesSpend` in a judge's ``spend`` and the spend table.

    >>> spend_key("team=ads|model=m")
    'team=ads|model=m|spend'
    """
    return f"{series}|{SPEND_TAG}"


class SeriesSpend:
    """All the exact spend one series has on a judge partition, in four typed columns.

    Use it where spend is kept in memory (the judge's ``spend``, the worker's spend table): one
    per series, in place of a dict per window (about 80 bytes a window instead of 700). The
    spend table's changelog keeps the per-window and per-day records of the module docstring
    (:meth:`window_wire`, :meth:`day_wire`; :meth:`load` reads them back), so checkpoints
    written before this form and after it read the same.

    Rows: the windows (``w``: start, six sums, pair count; ``wp``: their ``(src, seq)`` pairs,
    every message seq applied), sorted by start; the rolled hours and days (``r``: start, kind,
    six sums, pair count; ``rp``: the highest seq of each source absorbed), sorted by start.
    A day is held either by its hours or by one day row, never both.

    >>> b = SeriesSpend()
    >>> b.add_window(120, [5, 1, 1, 0, 0, 1], {0: 4}), b.add_window(120, [5, 1, 1, 0, 0, 1], {0: 4})
    (True, False)
    >>> b.add_window(60, [2, 1, 1, 0, 0, 1], {1: 3, 0: 2})
    True
    >>> b.window_wire(60)
    {'s': [2, 1, 1, 0, 0, 1], 'v': {'0': [2], '1': [3]}}
    >>> [(start, span, list(sums)) for start, span, sums in b.spans(60)]
    [(60, 60, [2, 1, 1, 0, 0, 1]), (120, 60, [5, 1, 1, 0, 0, 1])]
    """

    __slots__ = ("w", "wp", "r", "rp")

    def __init__(self) -> None:
        self.w = array("q")
        self.wp = array("q")
        self.r = array("q")
        self.rp = array("q")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeriesSpend):
            return NotImplemented
        return self.w == other.w and self.wp == other.wp and self.r == other.r and self.rp == other.rp

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"SeriesSpend({len(self.w) // _WROW} windows, {len(self.r) // _RROW} hours or days)"

    def __bool__(self) -> bool:
        return bool(self.w or self.r)

    def copy(self) -> SeriesSpend:
        out = SeriesSpend()
        out.w, out.wp, out.r, out.rp = array("q", self.w), array("q", self.wp), array("q", self.r), array("q", self.rp)
        return out

    # -- windows ------------------------------------------------------------------------------
    def _wfind(self, start: int) -> tuple[int, bool]:
        """(row index, found) of the window starting at ``start``."""
        w = self.w
        n = len(w) // _WROW
        if n:
            last = w[(n - 1) * _WROW]
            if last < start:  # the usual case: a new latest window
                return n, False
            if last == start:
                return n - 1, True
        i = bisect_left(range(n), start, key=lambda k: w[k * _WROW])
        return i, i < n and w[i * _WROW] == start

    @staticmethod
    def _off(rows: array[int], stride: int, pairs: array[int], i: int) -> int:
        """Where row ``i``'s pairs begin in ``pairs``: counted from the nearer end."""
        n = len(rows) // stride
        if i <= n // 2:
            return 2 * sum(rows[k * stride + stride - 1] for k in range(i))
        return len(pairs) - 2 * sum(rows[k * stride + stride - 1] for k in range(i, n))

    @staticmethod
    def _pairs(pairs: array[int], off: int, k: int) -> list[tuple[int, int]]:
        return [(pairs[off + 2 * j], pairs[off + 2 * j + 1]) for j in range(k)]

    def add_window(self, start: int, sums: Sequence[int], seqs: Mapping[int, int]) -> bool:
        """Add one contribution to the window at ``start``, once per (source, message seq):
        False when every one of ``seqs`` was applied already (a redelivered message).

        Every seq applied is kept, not just the highest: a source's late partial (a later
        message) can be applied while its earlier partial of the same window is still pending,
        and that earlier one must count when the window is judged."""
        i, found = self._wfind(start)
        w, wp = self.w, self.wp
        if not found:
            flat = [x for pair in sorted(seqs.items()) for x in pair]
            row = [start, *sums[:6], len(seqs)]
            if i * _WROW == len(w):
                w.extend(row)
                wp.extend(flat)
            else:
                off = self._off(w, _WROW, wp, i)
                w[i * _WROW:i * _WROW] = array("q", row)
                wp[off:off] = array("q", flat)
            return True
        base = i * _WROW
        k = w[base + _WROW - 1]
        off = self._off(w, _WROW, wp, i)
        have = self._pairs(wp, off, k)
        new = [pair for pair in seqs.items() if pair not in have]
        if seqs and not new:
            return False
        for j in range(6):
            w[base + 1 + j] += int(sums[j])
        if new:
            merged = sorted(have + new)
            wp[off:off + 2 * k] = array("q", [x for pair in merged for x in pair])
            w[base + _WROW - 1] = len(merged)
        return True

    def window_wire(self, start: int) -> dict[str, Any] | None:
        """The window's record as the changelog holds it (None: no such window)."""
        i, found = self._wfind(start)
        if not found:
            return None
        base = i * _WROW
        v: dict[str, list[int]] = {}
        for src, seq in self._pairs(self.wp, self._off(self.w, _WROW, self.wp, i), self.w[base + _WROW - 1]):
            v.setdefault(str(src), []).append(seq)
        return {"s": list(self.w[base + 1:base + 7]), "v": v}

    def holds(self, start: int, day: bool) -> bool:
        """Whether the rows hold the window at ``start`` (``day``: any of the UTC day's spend
        rolled up, by the hour or whole)."""
        if not day:
            return self._wfind(start)[1]
        r = self.r
        i = bisect_left(range(len(r) // _RROW), start, key=lambda k: r[k * _RROW])
        return i * _RROW < len(r) and r[i * _RROW] < start + DAY

    def window_starts(self) -> list[int]:
        return list(self.w[::_WROW])

    def pop_windows(self, before: int) -> list[Row]:
        """Remove and return the windows starting before ``before`` (oldest first)."""
        w, wp = self.w, self.wp
        n = bisect_left(range(len(w) // _WROW), before, key=lambda k: w[k * _WROW])
        out: list[Row] = []
        off = 0
        for i in range(n):
            base = i * _WROW
            k = w[base + _WROW - 1]
            out.append((w[base], list(w[base + 1:base + 7]), self._pairs(wp, off, k)))
            off += 2 * k
        del w[:n * _WROW]
        del wp[:off]
        return out

    def put_windows(self, rows: list[Row]) -> None:
        """Put back windows taken by :meth:`pop_windows`."""
        for start, sums, pairs in rows:
            self._insert_window(start, sums, pairs)

    def _insert_window(self, start: int, sums: Sequence[int], pairs: list[tuple[int, int]]) -> None:
        i, _ = self._wfind(start)
        off = self._off(self.w, _WROW, self.wp, i)
        self.w[i * _WROW:i * _WROW] = array("q", [start, *sums[:6], len(pairs)])
        self.wp[off:off] = array("q", [x for pair in sorted(pairs) for x in pair])

    # -- rolled hours and days ------------------------------------------------------------------
    def _rfind(self, start: int, kind: int) -> tuple[int, bool]:
        r = self.r
        n = len(r) // _RROW
        i = bisect_left(range(n), start, key=lambda k: r[k * _RROW])
        while i < n and r[i * _RROW] == start:
            if r[i * _RROW + 1] == kind:
                return i, True
            i += 1
        return i, False

    def rolled(self) -> list[tuple[int, int, list[int], dict[int, int]]]:
        """Every rolled row: (start, kind, six sums, highest seq per source)."""
        r, rp = self.r, self.rp
        out = []
        off = 0
        for i in range(len(r) // _RROW):
            base = i * _RROW
            k = r[base + _RROW - 1]
            out.append((r[base], r[base + 1], list(r[base + 2:base + 8]), dict(self._pairs(rp, off, k))))
            off += 2 * k
        return out

    def _set_rolled(self, rows: list[tuple[int, int, list[int], dict[int, int]]]) -> None:
        r, rp = array("q"), array("q")
        for start, kind, sums, hw in sorted(rows, key=lambda row: (row[0], row[1])):
            r.extend([start, kind, *sums, len(hw)])
            rp.extend([x for pair in sorted(hw.items()) for x in pair])
        self.r, self.rp = r, rp

    def hw(self, hour: int) -> dict[int, int]:
        """The highest seq per source already counted in ``hour`` (by its hour or its day)."""
        day = hour // DAY * DAY
        for start, kind in ((day, DAY_ROW), (hour, HOUR_ROW)):
            i, found = self._rfind(start, kind)
            if found:
                return dict(self._pairs(self.rp, self._off(self.r, _RROW, self.rp, i), self.r[i * _RROW + _RROW - 1]))
        return {}

    def absorb(self, hour: int, sums: Sequence[int], hw: Mapping[int, int]) -> None:
        """Add ``sums`` into ``hour`` (into its day when the day is one row already), its
        sources' highest seqs raised to ``hw``."""
        day = hour // DAY * DAY
        i, found = self._rfind(day, DAY_ROW)
        start, kind = (day, DAY_ROW) if found else (hour, HOUR_ROW)
        if not found:
            i, found = self._rfind(hour, HOUR_ROW)
        r, rp = self.r, self.rp
        if not found:
            off = self._off(r, _RROW, rp, i)
            r[i * _RROW:i * _RROW] = array("q", [start, kind, *sums[:6], len(hw)])
            rp[off:off] = array("q", [x for pair in sorted(hw.items()) for x in pair])
            return
        base = i * _RROW
        for j in range(6):
            r[base + 2 + j] += int(sums[j])
        k = r[base + _RROW - 1]
        off = self._off(r, _RROW, rp, i)
        merged = dict(self._pairs(rp, off, k))
        for src, seq in hw.items():
            merged[src] = max(merged.get(src, -1), seq)
        rp[off:off + 2 * k] = array("q", [x for pair in sorted(merged.items()) for x in pair])
        r[base + _RROW - 1] = len(merged)

    def compact_days(self, cut: int) -> list[int]:
        """Each day ending by ``cut`` still held by its hours becomes one row; the days done."""
        rows = self.rolled()
        days = sorted({s // DAY * DAY for s, kind, _, _ in rows if kind == HOUR_ROW and s // DAY * DAY + DAY <= cut})
        if not days:
            return []
        merged: dict[int, tuple[list[int], dict[int, int]]] = {}
        kept = []
        for start, kind, sums, hw in rows:
            day = start // DAY * DAY
            if kind != HOUR_ROW or day not in days:
                kept.append((start, kind, sums, hw))
                continue
            acc, top = merged.setdefault(day, ([0] * 6, {}))
            for j in range(6):
                acc[j] += sums[j]
            for src, seq in hw.items():
                top[src] = max(top.get(src, -1), seq)
        self._set_rolled(kept + [(day, DAY_ROW, acc, top) for day, (acc, top) in merged.items()])
        return days

    def day_wire(self, day: int) -> dict[str, Any] | None:
        """The day's record as the changelog holds it (None: nothing rolled into it)."""
        hours: dict[str, list[int]] = {}
        for start, kind, sums, hw in self.rolled():
            if start // DAY * DAY != day:
                continue
            row = [*sums, *[x for pair in sorted(hw.items()) for x in pair]]
            if kind == DAY_ROW:
                return {"d": row}
            hours[HOUR_KEYS[(start - day) // HOUR]] = row
        return {"h": hours} if hours else None

    # -- reading ------------------------------------------------------------------------------
    def spans(self, window_seconds: int) -> Iterator[tuple[int, int, Sequence[int]]]:
        """``(start, seconds, sums)`` of every row: days and hours, then windows."""
        r = self.r
        for base in range(0, len(r), _RROW):
            yield r[base], DAY if r[base + 1] == DAY_ROW else HOUR, r[base + 2:base + 8]
        w = self.w
        for base in range(0, len(w), _WROW):
            yield w[base], window_seconds, w[base + 1:base + 7]

    def seqs(self) -> Iterator[tuple[int, int]]:
        """Every (source, seq) pair held: the windows' seqs and the rolled rows' highest."""
        for pairs in (self.wp, self.rp):
            for j in range(0, len(pairs), 2):
                yield pairs[j], pairs[j + 1]

    def load(self, start: int, day: bool, rec: Mapping[str, Any]) -> None:
        """Read one changelog record (a window's or a day's, as the key says) into the rows,
        replacing what they held for it."""
        if not day:
            pairs = [(int(src), int(seq)) for src, seqs in (rec.get("v") or {}).items() for seq in seqs]
            sums = [int(x) for x in rec["s"][:6]]
            if len(sums) != 6:
                raise ValueError(f"{len(sums)} sums, not 6")
            i, found = self._wfind(start)
            if found:
                self.pop_row(i)
            self._insert_window(start, sums, pairs)
            return
        rows = [row for row in self.rolled() if row[0] // DAY * DAY != start]
        if "d" in rec:
            rows.append((start, DAY_ROW, *_sums_hw(rec["d"])))
        else:
            rows += [(start + int(h) * HOUR, HOUR_ROW, *_sums_hw(row)) for h, row in rec["h"].items()]
        self._set_rolled(rows)

    def pop_row(self, i: int) -> None:
        """Remove window row ``i``."""
        k = self.w[i * _WROW + _WROW - 1]
        off = self._off(self.w, _WROW, self.wp, i)
        del self.w[i * _WROW:(i + 1) * _WROW]
        del self.wp[off:off + 2 * k]


def load_records(books: dict[str, SeriesSpend], items: Iterable[tuple[str, Any]]) -> tuple[list[str], list[str]]:
    """Read changelog records (per window and day, as the spend table's changelog and a
    recovered table hold them) into ``books`` (by :func:`spend_key`), each replacing what its
    book held for that window or day; :class:`SeriesSpend` values are taken as they are.
    The keys of the records read, and ``"<key>: <why>"`` for each record that could not be.

    >>> books: dict[str, SeriesSpend] = {}
    >>> load_records(books, [("org|60", {"s": [1, 0, 0, 0, 0, 1], "v": {"0": [3]}}), ("org|x", {}),
    ...                      ("org|120", {"s": "?"})])
    (['org|60'], ["org|120: ValueError: invalid literal for int() with base 10: '?'"])
    >>> books["org|spend"].window_wire(60)
    {'s': [1, 0, 0, 0, 0, 1], 'v': {'0': [3]}}
    """
    records: list[tuple[str, tuple[str, int, bool], Any]] = []
    for key, value in items:
        if isinstance(value, SeriesSpend):
            books[key] = value
        elif value:
            got = split_key(key)
            if got is not None:
                records.append((key, got, value))
    done: list[str] = []
    bad: list[str] = []
    for key, (series, start, day), value in records:  # after the books: a record wins over its book
        book = books.get(spend_key(series))
        fresh = book is None
        if book is None:
            book = SeriesSpend()
        try:
            book.load(start, day, value)
        except (KeyError, TypeError, ValueError, OverflowError, AttributeError, IndexError) as e:
            bad.append(f"{key}: {type(e).__name__}: {e}")
            continue
        if fresh:
            books[spend_key(series)] = book
        done.append(key)
    return done, bad


def _sums_hw(row: Sequence[Any]) -> tuple[list[int], dict[int, int]]:
    if len(row) < 6 or len(row) % 2:
        raise ValueError(f"a rolled row of {len(row)} numbers, not 6 sums and (src, seq) pairs")
    it = iter(row[6:])
    return [int(x) for x in row[:6]], {int(src): int(seq) for src, seq in zip(it, it, strict=False)}
