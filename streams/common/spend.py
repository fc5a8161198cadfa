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
as int64 rows, the newest in typed arrays (about 80 bytes a window rather than 700 for a dict),
older ones deflated in chunks by column and byte plane (about 12 with the chunk's own cost;
benchmarks/scale.py, docs/benchmarks.md#spend-deflated).
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

import zlib
from array import array
from bisect import bisect_left, bisect_right
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Self

import numpy as np

from streams.common.dimensions import parse_series

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

def coarsest(items: Iterable[tuple[str, Any]], window_seconds: int, since: float | None, until: float | None,
             dimension: str | None = None) -> int:
    """The longest span of the records that start in ``[since, until)``: the resolution an
    answer over that range was computed at (``window_seconds`` when it holds none). With
    ``dimension`` (``team``, ``user``, ``team×model``, ...), only the records of its series
    count: the answer sums no other (users' spend is rolled up sooner than teams').

    >>> coarsest([("org|60", {"s": [1]}), ("org|day:0", {"d": [1]})], 60, 0, None)
    86400
    >>> coarsest([("org|60", {"s": [1]}), ("org|day:0", {"d": [1]})], 60, 50, None)
    60
    >>> coarsest([("team=ads|60", {"s": [1]}), ("user=bob|day:0", {"d": [1]})], 60, 0, None, "team")
    60
    """
    out = window_seconds
    of: dict[str, bool] = {}
    for series, start, span, _ in spend_windows(items, window_seconds):
        if span > out and (since is None or start >= since) and (until is None or start < until):
            if dimension is not None:
                ok = of.get(series)
                if ok is None:
                    got = parse_series(series)
                    ok = of[series] = got is not None and got[0].name == dimension
                if not ok:
                    continue
            out = span
    return out


# -- the compact form -------------------------------------------------------------------------
# A window row of SeriesSpend windows: start, the six sums, the number of (src, seq) pairs.
_WROW = 8
# A rolled row: start, kind (HOUR_ROW or DAY_ROW), the six sums, the number of (src, highest
# seq) pairs.
_RROW = 9
HOUR_ROW, DAY_ROW = 1, 2
SPEND_TAG = "spend"
# How many of a tier's newest rows stay in typed arrays after a pack (the windows the judge
# adds since then join them) and how many older rows go into one deflated chunk (_Tier.CHUNK;
# the newest chunk is open: it takes the next rows at each pack). A row is 80-90 bytes in the
# arrays and about 9-17 deflated; a chunk costs about 60 bytes of its own. Bigger chunks
# deflate better (48 windows and 64 hours: 0.9x the bytes of a sparse user's week) but a late
# partial thaws more and the open chunk is deflated again whole every hour
# (benchmarks/spend_cost.py, docs/benchmarks.md#spend-per-user-series). One window stays
# warm: four were ~240 bytes more per sparse user series after a week, and a partial to an
# older window comes late (after its window was judged) or redelivered, and thaws the open
# chunk (~1.6x the time of such a partial with four: docs/benchmarks.md#the-rest-of-a-user-series).
_WARM = 1
# Rows the arrays may gather before add_window deflates on its own: the roll-up packs every
# hour of event time (SeriesSpend.pack), so this only bounds a book nobody rolls up.
_BOUND = 200

Row = tuple[int, list[int], list[tuple[int, int]]]  # (start, six sums, sorted (src, seq) pairs)


def _find(rows: array[int], stride: int, start: int) -> tuple[int, bool]:
    """(row index, found) of the row starting at ``start`` in ``rows`` (sorted by start)."""
    n = len(rows) // stride
    if n:
        last = rows[(n - 1) * stride]
        if last < start:  # the usual case: a new latest row
            return n, False
        if last == start:
            return n - 1, True
    i = bisect_left(range(n), start, key=lambda k: rows[k * stride])
    return i, i < n and rows[i * stride] == start


def _off(rows: array[int], stride: int, pairs: array[int], i: int) -> int:
    """Where row ``i``'s pairs begin in ``pairs``: counted from the nearer end."""
    n = len(rows) // stride
    if i <= n // 2:
        return 2 * sum(rows[k * stride + stride - 1] for k in range(i))
    return len(pairs) - 2 * sum(rows[k * stride + stride - 1] for k in range(i, n))


def _pairs(pairs: array[int], off: int, k: int) -> list[tuple[int, int]]:
    return [(pairs[off + 2 * j], pairs[off + 2 * j + 1]) for j in range(k)]


def _pack(rows: array[int], pairs: array[int], stride: int) -> bytes:
    """Rows and their pairs deflated (raw deflate: no header), by column and byte plane: the
    values column after column (every row's start, then every row's first sum, ...; then the
    pairs' sources and seqs), and of those all the lowest bytes first, then all the second
    bytes, ... (Blosc's shuffle, in numpy). The starts and the seqs go in as the difference
    from the one before (an hour's start is the last one's plus 3600 and its seq a few dozen
    above: zeros in every plane but the lowest). A column's high bytes are mostly the same,
    so deflate finds long runs: about 12 bytes a window of a sparse user series in chunks of
    48, 15 an hour. Chunks live in memory only (never on a changelog), so their layout is
    free to change."""
    n = len(rows) // stride
    vals = np.concatenate((np.frombuffer(rows, np.int64).reshape(n, stride).T.ravel(),
                           np.frombuffer(pairs, np.int64).reshape(-1, 2).T.ravel()))
    seqs = n * stride + (len(vals) - n * stride) // 2
    # int64 differences wrap around (a source's seq below another's), and so does the sum
    # that undoes them: exact for any values
    vals[1:n] = np.diff(vals[:n])
    vals[seqs + 1:] = np.diff(vals[seqs:])
    return zlib.compress(vals.view(np.uint8).reshape(-1, 8).T.tobytes(), wbits=-15)


def _unpack_bytes(blob: bytes, n: int, stride: int) -> tuple[bytes, bytes]:
    """The bytes of the ``n`` rows and of the pairs that :func:`_pack` packed: the planes
    transposed back into values, the differences summed, the columns put back into rows (at
    C speed, as fast as the one gather through an index array per chunk shape used before,
    and with no such arrays to keep: the open chunk has any number of rows)."""
    planes = np.frombuffer(zlib.decompress(blob, wbits=-15), np.uint8)
    total = len(planes) // 8
    vals = planes.reshape(8, total).T.copy().view(np.int64).ravel()
    m = (total - n * stride) // 2
    np.cumsum(vals[:n], out=vals[:n])
    np.cumsum(vals[total - m:], out=vals[total - m:])
    return vals[:n * stride].reshape(stride, n).T.tobytes(), vals[n * stride:].reshape(2, m).T.tobytes()


def _unpack(blob: bytes, n: int, stride: int) -> tuple[array[int], array[int]]:
    """The ``n`` rows and the pairs of :func:`_pack`."""
    rb, pb = _unpack_bytes(blob, n, stride)
    rows, pairs = array("q"), array("q")
    rows.frombytes(rb)
    pairs.frombytes(pb)
    return rows, pairs


class _Tier:
    """One tier of a :class:`SeriesSpend` (its windows, or its rolled hours and days): rows of
    ``STRIDE`` int64 sorted by start, each row's ``(src, seq)`` pairs in ``pairs``.

    The newest rows sit in the typed arrays ``rows`` and ``pairs``, where the judge adds and
    checkpoints; older ones are deflated in chunks (``chunks``; ``index``: first start and row
    count of each), every chunked row older than every row in the arrays. Every chunk holds
    ``CHUNK`` rows but the newest, the open one, which :meth:`freeze` fills. The arrays are never
    empty while chunks exist, so "older than ``rows[0]``" is "in a chunk". A change to a
    chunked row (a late partial of an old window, a late window of a rolled hour) first thaws
    that chunk and the newer ones back into the arrays (:meth:`thaw`); :meth:`freeze` deflates
    them again. Chunks live in memory only: the changelog keeps its records per window and day.
    """

    __slots__ = ("rows", "pairs", "chunks", "index")
    STRIDE = _WROW
    CHUNK = 48
    WARM = _WARM

    def __init__(self) -> None:
        self.rows = array("q")
        self.pairs = array("q")
        self.chunks: list[bytes] | None = None
        self.index: array[int] | None = None

    def __bool__(self) -> bool:
        return bool(self.rows)  # chunks only with rows (the class docstring)

    def copy(self) -> Self:
        out = type(self)()
        out.rows, out.pairs = array("q", self.rows), array("q", self.pairs)
        if self.chunks is not None and self.index is not None:
            out.chunks, out.index = list(self.chunks), array("q", self.index)
        return out

    def n_rows(self) -> int:
        cold = sum(self.index[1::2]) if self.index is not None else 0
        return cold + len(self.rows) // self.STRIDE

    def first_start(self) -> int | None:
        if self.index is not None:
            return self.index[0]
        return self.rows[0] if self.rows else None

    def last_start(self) -> int | None:
        return self.rows[len(self.rows) - self.STRIDE] if self.rows else None

    def _unpack(self, j: int) -> tuple[array[int], array[int]]:
        assert self.chunks is not None and self.index is not None
        return _unpack(self.chunks[j], self.index[2 * j + 1], self.STRIDE)

    def _chunk_of(self, start: int) -> int:
        """The chunk that holds ``start`` if any row does (-1: older than every chunk)."""
        index = self.index
        assert index is not None
        return bisect_right(range(len(index) // 2), start, key=lambda c: index[2 * c]) - 1

    def locate(self, start: int) -> tuple[array[int], array[int], int, bool]:
        """``(rows, pairs, i, found)``: the arrays (the warm ones, or a chunk's thawed copy:
        read them, do not change them) where a row starting at ``start`` is or would go."""
        if self.chunks is None or start >= self.rows[0]:
            return (self.rows, self.pairs, *_find(self.rows, self.STRIDE, start))
        j = self._chunk_of(start)
        if j < 0:
            return self.rows, self.pairs, 0, False
        rows, pairs = self._unpack(j)
        return (rows, pairs, *_find(rows, self.STRIDE, start))

    def all(self) -> tuple[array[int], array[int]]:
        """Every row and pair, oldest first (the warm arrays themselves when nothing is
        chunked: read them, do not change them)."""
        if self.chunks is None or self.index is None:
            return self.rows, self.pairs
        index = self.index
        rb: list[Any] = []
        pb: list[Any] = []
        for j, blob in enumerate(self.chunks):
            r, p = _unpack_bytes(blob, index[2 * j + 1], self.STRIDE)
            rb.append(r)
            pb.append(p)
        rb.append(self.rows)
        pb.append(self.pairs)
        rows, pairs = array("q"), array("q")
        rows.frombytes(b"".join(rb))  # one copy each, whatever the number of chunks
        pairs.frombytes(b"".join(pb))
        return rows, pairs

    def thaw(self, start: int) -> None:
        """Bring back into the arrays every chunk that holds or follows ``start``, so that a
        row at ``start`` can be changed or inserted there."""
        if self.chunks is None or start >= self.rows[0]:
            return
        j = max(self._chunk_of(start), 0)
        rows, pairs = array("q"), array("q")
        for c in range(j, len(self.chunks)):
            r, p = self._unpack(c)
            rows += r
            pairs += p
        self.rows, self.pairs = rows + self.rows, pairs + self.pairs
        self._drop_chunks(j)

    def _drop_chunks(self, j: int) -> None:
        """Forget chunks ``j`` and after (their rows are elsewhere now)."""
        assert self.chunks is not None and self.index is not None
        del self.chunks[j:]
        del self.index[2 * j:]
        if not self.chunks:
            self.chunks = self.index = None

    def freeze(self, above: int = 0) -> None:
        """Deflate every row of the arrays but the newest ``_WARM``, ``CHUNK`` to a chunk;
        nothing unless more than ``max(_WARM, above)`` rows are there. The newest chunk may
        hold fewer than ``CHUNK`` rows: it is the open one, thawed and deflated again with the
        rows that join it (once an hour of event time, by :meth:`SeriesSpend.pack`), so that
        no more than ``_WARM`` rows wait in the arrays for a chunk to fill."""
        S, C, warm = self.STRIDE, self.CHUNK, self.WARM
        if len(self.rows) <= max(warm, above) * S:
            return
        chunks = self.chunks if self.chunks is not None else []
        index = self.index if self.index is not None else array("q")
        rows, pairs = self.rows, self.pairs
        if chunks and index[-1] < C:  # the open chunk takes the rows that follow it
            r, p = _unpack(chunks.pop(), index.pop(), S)
            index.pop()
            rows, pairs = r + rows, p + pairs
        n, at = len(rows) // S, 0
        while n - at > warm:
            c = min(C, n - at - warm)
            k = 2 * sum(rows[(at + i) * S + S - 1] for i in range(c))
            first = at * S
            chunks.append(_pack(rows[first:first + c * S], pairs[:k], S))
            index.extend((rows[first], c))
            pairs = pairs[k:]
            at += c
        # New arrays, not ``del``: an array keeps its allocation when it shrinks.
        self.rows, self.pairs = rows[at * S:], pairs
        self.chunks, self.index = chunks, index

    def replace(self, rows: array[int], pairs: array[int]) -> None:
        """Hold exactly ``rows`` and ``pairs`` (sorted), chunked as :meth:`freeze` does."""
        self.rows, self.pairs = rows, pairs
        self.chunks = self.index = None
        self.freeze()

    def pop_before(self, before: int) -> tuple[array[int], array[int]]:
        """Remove and return the rows starting before ``before`` (oldest first)."""
        S = self.STRIDE
        rows, pairs = array("q"), array("q")
        if self.chunks is not None and self.index is not None and self.index[0] < before:
            j = self._chunk_of(before - 1)
            for c in range(j + 1):
                r, p = self._unpack(c)
                rows += r
                pairs += p
            last = len(self.chunks) - 1
            del self.chunks[:j + 1]
            del self.index[:2 * (j + 1)]
            if not self.chunks:
                self.chunks = self.index = None
            i, _ = _find(rows, S, before)
            k = 2 * sum(rows[m * S + S - 1] for m in range(i))
            rest_rows, rest_pairs = rows[i * S:], pairs[k:]
            rows, pairs = rows[:i * S], pairs[:k]
            if rest_rows:
                self.prepend(rest_rows, rest_pairs)
            if j < last:  # the arrays hold only rows newer than the chunks kept
                return rows, pairs
        i, _ = _find(self.rows, S, before)
        if i:
            k = 2 * sum(self.rows[m * S + S - 1] for m in range(i))
            rows += self.rows[:i * S]
            pairs += self.pairs[:k]
            self.rows, self.pairs = self.rows[i * S:], self.pairs[k:]
        return rows, pairs

    def prepend(self, rows: array[int], pairs: array[int]) -> None:
        """Put ``rows`` (sorted, every one older than the tier's oldest row) in front."""
        if not rows:
            return
        if self.chunks is None or self.index is None:
            self.rows, self.pairs = rows + self.rows, pairs + self.pairs
            self.freeze(_BOUND)
            return
        self.chunks.insert(0, _pack(rows, pairs, self.STRIDE))
        self.index[0:0] = array("q", (rows[0], len(rows) // self.STRIDE))

    def insert(self, start: int, row: Sequence[int], pairs: Sequence[int]) -> None:
        """Insert one row that is not there yet (``row[0] == start``)."""
        S = self.STRIDE
        first = self.first_start()
        if first is not None and start < first and self.chunks is not None:
            self.prepend(array("q", row), array("q", pairs))
            return
        self.thaw(start)
        i, _ = _find(self.rows, S, start)
        if i * S == len(self.rows):
            self.rows.extend(row)
            self.pairs.extend(pairs)
        else:
            off = _off(self.rows, S, self.pairs, i)
            self.rows[i * S:i * S] = array("q", row)
            self.pairs[off:off] = array("q", pairs)
        self.freeze(_BOUND)

    def remove(self, start: int) -> bool:
        """Remove the row at ``start``; whether there was one."""
        S = self.STRIDE
        self.thaw(start)
        i, found = _find(self.rows, S, start)
        if not found:
            return False
        k = self.rows[i * S + S - 1]
        off = _off(self.rows, S, self.pairs, i)
        del self.rows[i * S:(i + 1) * S]
        del self.pairs[off:off + 2 * k]
        if not self.rows and self.chunks is not None:  # the arrays stay non-empty while chunks exist
            self.rows, self.pairs = self._unpack(len(self.chunks) - 1)
            self._drop_chunks(len(self.chunks) - 1)
        return True

    def equal(self, other: _Tier) -> bool:
        return self.all() == other.all()


class _Rolled(_Tier):
    __slots__ = ()
    STRIDE = _RROW
    CHUNK = 64
    WARM = 1  # hours change only at the roll-up (and by a late window of a rolled hour)


def spend_key(series: str) -> str:
    """The key of ``series``' :class:`SeriesSpend` in a judge's ``spend`` and the spend table.

    >>> spend_key("team=ads|model=m")
    'team=ads|model=m|spend'
    """
    return f"{series}|{SPEND_TAG}"


def _rfind(rows: array[int], start: int, kind: int) -> tuple[int, bool]:
    """(row index, found) of the rolled row ``(start, kind)`` in ``rows``."""
    n = len(rows) // _RROW
    i = bisect_left(range(n), start, key=lambda k: rows[k * _RROW])
    while i < n and rows[i * _RROW] == start:
        if rows[i * _RROW + 1] == kind:
            return i, True
        i += 1
    return i, False


def _flat(pairs: Iterable[tuple[int, int]]) -> list[int]:
    return [x for pair in sorted(pairs) for x in pair]


class SeriesSpend:
    """All the exact spend one series has on a judge partition: its windows, and its hours
    and days rolled up, as int64 rows.

    Use it where spend is kept in memory (the judge's ``spend``, the worker's spend table): one
    per series, in place of a dict per window. The spend table's changelog keeps the
    per-window and per-day records of the module docstring (:meth:`window_wire`,
    :meth:`day_wire`; :meth:`load` reads them back), so checkpoints written before this form
    and after it read the same.

    Rows: the windows (start, six sums, pair count; their ``(src, seq)`` pairs, every message
    seq applied), sorted by start; the rolled hours and days (start, kind, six sums, pair
    count; the highest seq of each source absorbed), sorted by start. A day is held either by
    its hours or by one day row, never both. In each of the two tiers the newest rows stay in
    typed arrays (about 80 bytes a window) and older ones are deflated in chunks (about 9
    bytes a window of a sparse user series): :class:`_Tier`.

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

    __slots__ = ("_w", "_r")

    def __init__(self) -> None:
        self._w = _Tier()
        self._r = _Rolled()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeriesSpend):
            return NotImplemented
        return self._w.equal(other._w) and self._r.equal(other._r)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"SeriesSpend({self._w.n_rows()} windows, {self._r.n_rows()} hours or days)"

    def __bool__(self) -> bool:
        return bool(self._w or self._r)

    def copy(self) -> SeriesSpend:
        out = SeriesSpend()
        out._w, out._r = self._w.copy(), self._r.copy()
        return out

    def pack(self) -> None:
        """Deflate the older rows gathered in the arrays since the last pack: once an hour of
        event time (:meth:`streams.reports.retention.SpendRollup.roll` does), not per window,
        so that the judge's hot path only appends."""
        self._w.freeze()
        self._r.freeze()

    # -- windows ------------------------------------------------------------------------------
    def add_window(self, start: int, sums: Sequence[int], seqs: Mapping[int, int]) -> bool:
        """Add one contribution to the window at ``start``, once per (source, message seq):
        False when every one of ``seqs`` was applied already (a redelivered message).

        Every seq applied is kept, not just the highest: a source's late partial (a later
        message) can be applied while its earlier partial of the same window is still pending,
        and that earlier one must count when the window is judged."""
        t = self._w
        w = t.rows
        n = len(w)
        if not n or w[n - _WROW] < start:  # the judge's hot path: a new latest window
            w.extend([start, *sums[:6], len(seqs)])
            t.pairs.extend([x for pair in sorted(seqs.items()) for x in pair])
            if n >= _BOUND * _WROW:  # (the roll-up packs every hour: SpendRollup.roll)
                t.freeze(_BOUND)
            return True
        first = t.first_start()
        if t.chunks is not None and first is not None and start < first:  # older than every window
            t.prepend(array("q", [start, *sums[:6], len(seqs)]), array("q", _flat(seqs.items())))
            return True
        # An old window (a late partial): its chunk and the newer ones back into the arrays,
        # deflated again by the next pack (later partials of the same hour thaw nothing).
        t.thaw(start)
        w, wp = t.rows, t.pairs
        i, found = _find(w, _WROW, start)
        if not found:
            t.insert(start, [start, *sums[:6], len(seqs)], _flat(seqs.items()))
            return True
        base = i * _WROW
        k = w[base + _WROW - 1]
        off = _off(w, _WROW, wp, i)
        have = _pairs(wp, off, k)
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
        w, wp, i, found = self._w.locate(start)
        if not found:
            return None
        base = i * _WROW
        v: dict[str, list[int]] = {}
        for src, seq in _pairs(wp, _off(w, _WROW, wp, i), w[base + _WROW - 1]):
            v.setdefault(str(src), []).append(seq)
        return {"s": list(w[base + 1:base + 7]), "v": v}

    def holds(self, start: int, day: bool) -> bool:
        """Whether the rows hold the window at ``start`` (``day``: any of the UTC day's spend
        rolled up, by the hour or whole)."""
        if not day:
            return self._w.locate(start)[3]
        r, _ = self._r.all()
        i = bisect_left(range(len(r) // _RROW), start, key=lambda k: r[k * _RROW])
        return i * _RROW < len(r) and r[i * _RROW] < start + DAY

    def window_starts(self) -> list[int]:
        return list(self._w.all()[0][::_WROW])

    def pop_windows(self, before: int) -> list[Row]:
        """Remove and return the windows starting before ``before`` (oldest first)."""
        w, wp = self._w.pop_before(before)
        out: list[Row] = []
        off = 0
        for base in range(0, len(w), _WROW):
            k = w[base + _WROW - 1]
            out.append((w[base], list(w[base + 1:base + 7]), _pairs(wp, off, k)))
            off += 2 * k
        return out

    def put_windows(self, rows: list[Row]) -> None:
        """Put back windows taken by :meth:`pop_windows`."""
        if not rows:
            return
        rows = sorted(rows, key=lambda row: row[0])
        first = self._w.first_start()
        if first is None or rows[-1][0] < first:  # as they were: older than every window kept
            w, wp = array("q"), array("q")
            for start, sums, pairs in rows:
                w.extend([start, *sums[:6], len(pairs)])
                wp.extend(_flat(pairs))
            self._w.prepend(w, wp)
            return
        for start, sums, pairs in rows:
            self._insert_window(start, sums, pairs)

    def _insert_window(self, start: int, sums: Sequence[int], pairs: list[tuple[int, int]]) -> None:
        self._w.insert(start, [start, *sums[:6], len(pairs)], _flat(pairs))

    # -- rolled hours and days ------------------------------------------------------------------
    def rolled(self) -> list[tuple[int, int, list[int], dict[int, int]]]:
        """Every rolled row: (start, kind, six sums, highest seq per source)."""
        r, rp = self._r.all()
        out = []
        off = 0
        for base in range(0, len(r), _RROW):
            k = r[base + _RROW - 1]
            out.append((r[base], r[base + 1], list(r[base + 2:base + 8]), dict(_pairs(rp, off, k))))
            off += 2 * k
        return out

    def _set_rolled(self, rows: list[tuple[int, int, list[int], dict[int, int]]]) -> None:
        r, rp = array("q"), array("q")
        for start, kind, sums, hw in sorted(rows, key=lambda row: (row[0], row[1])):
            r.extend([start, kind, *sums, len(hw)])
            rp.extend(_flat(hw.items()))
        self._r.replace(r, rp)

    def hw(self, hour: int) -> dict[int, int]:
        """The highest seq per source already counted in ``hour`` (by its hour or its day)."""
        day = hour // DAY * DAY
        for start, kind in ((day, DAY_ROW), (hour, HOUR_ROW)):
            r, rp, _, _ = self._r.locate(start)
            i, found = _rfind(r, start, kind)
            if found:
                return dict(_pairs(rp, _off(r, _RROW, rp, i), r[i * _RROW + _RROW - 1]))
        return {}

    def absorb(self, hour: int, sums: Sequence[int], hw: Mapping[int, int]) -> None:
        """Add ``sums`` into ``hour`` (into its day when the day is one row already), its
        sources' highest seqs raised to ``hw``."""
        day = hour // DAY * DAY
        t = self._r
        last = t.last_start()
        if last is None or (last < hour and (last < day or t.rows[len(t.rows) - _RROW + 1] == HOUR_ROW)):
            # the usual case: a new latest hour, whose day is not one row (the latest row is
            # older than the day, or one of the day's hours)
            t.rows.extend([hour, HOUR_ROW, *sums[:6], len(hw)])
            t.pairs.extend(_flat(hw.items()))
            t.freeze()
            return
        t.thaw(day)
        r, rp = t.rows, t.pairs
        i, found = _rfind(r, day, DAY_ROW)
        start, kind = (day, DAY_ROW) if found else (hour, HOUR_ROW)
        if not found:
            i, found = _rfind(r, hour, HOUR_ROW)
        if not found:
            off = _off(r, _RROW, rp, i)
            r[i * _RROW:i * _RROW] = array("q", [start, kind, *sums[:6], len(hw)])
            rp[off:off] = array("q", _flat(hw.items()))
            t.freeze()
            return
        base = i * _RROW
        for j in range(6):
            r[base + 2 + j] += int(sums[j])
        k = r[base + _RROW - 1]
        off = _off(r, _RROW, rp, i)
        merged = dict(_pairs(rp, off, k))
        for src, seq in hw.items():
            merged[src] = max(merged.get(src, -1), seq)
        rp[off:off + 2 * k] = array("q", _flat(merged.items()))
        r[base + _RROW - 1] = len(merged)
        t.freeze()

    def compact_days(self, cut: int) -> list[int]:
        """Each day ending by ``cut`` still held by its hours becomes one row; the days done."""
        r, _ = self._r.all()
        before = bisect_left(range(len(r) // _RROW), cut, key=lambda k: r[k * _RROW])
        if HOUR_ROW not in r[1:before * _RROW:_RROW]:  # no hour that could be (called every roll)
            return []
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
        r, rp = self._r.all()
        n = len(r) // _RROW
        i = bisect_left(range(n), day, key=lambda k: r[k * _RROW])
        off = _off(r, _RROW, rp, i)
        hours: dict[str, list[int]] = {}
        while i < n and r[i * _RROW] < day + DAY:
            base = i * _RROW
            k = r[base + _RROW - 1]
            row = [*r[base + 2:base + 8], *rp[off:off + 2 * k]]
            if r[base + 1] == DAY_ROW:
                return {"d": row}
            hours[HOUR_KEYS[(r[base] - day) // HOUR]] = row
            off += 2 * k
            i += 1
        return {"h": hours} if hours else None

    # -- reading ------------------------------------------------------------------------------
    def spans(self, window_seconds: int) -> Iterator[tuple[int, int, Sequence[int]]]:
        """``(start, seconds, sums)`` of every row: days and hours, then windows."""
        r, _ = self._r.all()
        for base in range(0, len(r), _RROW):
            yield r[base], DAY if r[base + 1] == DAY_ROW else HOUR, r[base + 2:base + 8]
        w, _ = self._w.all()
        for base in range(0, len(w), _WROW):
            yield w[base], window_seconds, w[base + 1:base + 7]

    def seqs(self) -> Iterator[tuple[int, int]]:
        """Every (source, seq) pair held: the windows' seqs and the rolled rows' highest."""
        for pairs in (self._w.all()[1], self._r.all()[1]):
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
            array("q", [start, *sums, *[x for pair in pairs for x in pair]])  # OverflowError before any change
            self._w.remove(start)
            self._insert_window(start, sums, pairs)
            return
        rows = [row for row in self.rolled() if row[0] // DAY * DAY != start]
        if "d" in rec:
            rows.append((start, DAY_ROW, *_sums_hw(rec["d"])))
        else:
            rows += [(start + int(h) * HOUR, HOUR_ROW, *_sums_hw(row)) for h, row in rec["h"].items()]
        self._set_rolled(rows)


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
    # Oldest first (a stable sort: records are independent but for their key): each window
    # then lands after the book's newest, where no deflated chunk has to be thawed.
    records.sort(key=lambda rec: rec[1][1])
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
