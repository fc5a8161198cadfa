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
benchmarks/scale.py, docs/benchmarks.md#spend-deflated); a book of at most
``SeriesSpend.COLD_MAX`` rows at the hourly pack (a sparse user's) is held as one deflated
stream instead, about 8 bytes a row (docs/benchmarks.md#cold-spend-books).
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

import struct
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

# A book of at most this many rows at a pack (windows, hours and days together) is held cold:
# every row of both tiers in one deflated stream (SeriesSpend._cold) and no tier objects, no
# arrays, no chunk list or index. A sparse user series holds ~290 rows after a week of the
# users' horizons and ~320 in their steady state: 4.2 KiB chunked, ~2.5 KiB cold
# (docs/benchmarks.md#cold-spend-books). Each pack of a cold book that changed inflates and
# deflates it whole (~23 KB of rows at 290), so a busy book (a team's 2,880 windows of 48 h)
# stays chunked, where a pack deflates only its open chunk.
_COLD_MAX = 512
# The stream's header, not deflated: the newest and the oldest window's start and the oldest
# hour row's (_NO_ROW: none), the window rows and the rolled rows it holds, and the unit of each
# tier's start differences. The newest start lets the judge's hot path append a new latest
# window without inflating anything; the oldest ones let the hourly roll leave a book alone
# that has no window or hour to roll.
_COLD_HEAD = struct.Struct("<qqqIIII")
_NO_ROW = -(1 << 63)


def _cold_pack(w: array[int], wp: array[int], r: array[int], rp: array[int]) -> bytes:
    """Every row and pair of both tiers (windows ``w``, ``wp``; rolled ``r``, ``rp``) in one
    stream: the header, then the two tiers' :func:`_columns` one after the other by byte plane,
    deflated at level 4: once an hour of event time per book (the roll-up's pack), ~4 % smaller
    than level 1 at ~1.5x the time (~150 against ~95 us for a sparse user's week; level 9: 5 %
    smaller, 4x)."""
    nw, nr = len(w) // _WROW, len(r) // _RROW
    hour = next((r[i] for i in range(0, len(r), _RROW) if r[i + 1] == HOUR_ROW), _NO_ROW)
    cols = []
    units = []
    for n, vals in ((nw, _columns(w, wp, _WROW)), (nr, _columns(r, rp, _RROW))):
        # the starts' differences in their greatest common unit (a window's length, an hour):
        # ~110 bytes less for a sparse user's week of windows, whose gaps are then small counts
        unit = int(np.gcd.reduce(vals[1:n])) if n > 1 else 1
        unit = unit if 1 <= unit < 1 << 32 else 1
        vals[1:n] //= unit
        cols.append(vals)
        units.append(unit)
    head = _COLD_HEAD.pack(w[len(w) - _WROW] if nw else _NO_ROW, w[0] if nw else _NO_ROW, hour, nw, nr, *units)
    vals = np.concatenate(cols)
    return head + zlib.compress(vals.view(np.uint8).reshape(-1, 8).T.tobytes(), 4, wbits=-15)


def _cold_unpack(blob: bytes) -> tuple[array[int], array[int], array[int], array[int]]:
    """The windows' rows and pairs and the rolled rows and pairs of :func:`_cold_pack`."""
    _, _, _, nw, nr, unit_w, unit_r = _COLD_HEAD.unpack_from(blob)
    vals = _inflate_planes(memoryview(blob)[_COLD_HEAD.size:])
    # the windows' part ends after their pairs: as many as their rows' pair counts (the last column)
    mw = int(vals[(_WROW - 1) * nw:_WROW * nw].sum())
    cut = _WROW * nw + 2 * mw
    out: list[array[int]] = []
    for part, n, stride, unit in ((vals[:cut], nw, _WROW, unit_w), (vals[cut:], nr, _RROW, unit_r)):
        part[1:n] *= unit
        rb, pb = _rows_of(part, n, stride)
        rows, pairs = array("q"), array("q")
        rows.frombytes(rb)
        pairs.frombytes(pb)
        out += (rows, pairs)
    return out[0], out[1], out[2], out[3]


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


def _columns(rows: array[int], pairs: array[int], stride: int) -> np.ndarray:
    """The values of rows and their pairs column after column (every row's start, then every
    row's first sum, ...; then the pairs' sources and seqs), the starts and the seqs as the
    difference from the one before (an hour's start is the last one's plus 3600 and its seq a
    few dozen above). int64 differences wrap around (a source's seq below another's), and so
    does the sum that undoes them (:func:`_rows_of`): exact for any values."""
    n = len(rows) // stride
    vals = np.concatenate((np.frombuffer(rows, np.int64).reshape(n, stride).T.ravel(),
                           np.frombuffer(pairs, np.int64).reshape(-1, 2).T.ravel()))
    seqs = n * stride + (len(vals) - n * stride) // 2
    vals[1:n] = np.diff(vals[:n])
    vals[seqs + 1:] = np.diff(vals[seqs:])
    return vals


def _rows_of(vals: np.ndarray, n: int, stride: int) -> tuple[bytes, bytes]:
    """The bytes of the ``n`` rows and of the pairs whose :func:`_columns` ``vals`` are (all of
    them: ``n * stride`` values, then two per pair); ``vals`` is changed (the differences summed)."""
    m = (len(vals) - n * stride) // 2
    np.cumsum(vals[:n], out=vals[:n])
    np.cumsum(vals[len(vals) - m:], out=vals[len(vals) - m:])
    return vals[:n * stride].reshape(stride, n).T.tobytes(), vals[n * stride:].reshape(2, m).T.tobytes()


def _deflate_planes(vals: np.ndarray) -> bytes:
    """int64 values by byte plane (all the lowest bytes first, then all the second bytes, ...:
    Blosc's shuffle, in numpy), raw deflated (no header)."""
    return zlib.compress(vals.view(np.uint8).reshape(-1, 8).T.tobytes(), wbits=-15)


def _inflate_planes(blob: bytes | memoryview) -> np.ndarray:
    """The int64 values of :func:`_deflate_planes` (a new array)."""
    planes = np.frombuffer(zlib.decompress(blob, wbits=-15), np.uint8)
    total = len(planes) // 8
    return planes.reshape(8, total).T.copy().view(np.int64).ravel()


def _pack(rows: array[int], pairs: array[int], stride: int) -> bytes:
    """Rows and their pairs deflated (raw deflate: no header), by column and byte plane: the
    values column after column (:func:`_columns`), and of those all the lowest bytes first,
    then all the second bytes, ... (:func:`_deflate_planes`). A column's high bytes are mostly
    the same, so deflate finds long runs: about 12 bytes a window of a sparse user series in
    chunks of 48, 15 an hour. Chunks live in memory only (never on a changelog), so their
    layout is free to change."""
    return _deflate_planes(_columns(rows, pairs, stride))


def _unpack_bytes(blob: bytes, n: int, stride: int) -> tuple[bytes, bytes]:
    """The bytes of the ``n`` rows and of the pairs that :func:`_pack` packed: the planes
    transposed back into values, the differences summed, the columns put back into rows (at
    C speed, as fast as the one gather through an index array per chunk shape used before,
    and with no such arrays to keep: the open chunk has any number of rows)."""
    return _rows_of(_inflate_planes(blob), n, stride)


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
    bytes a window of a sparse user series): :class:`_Tier`. A book of at most ``COLD_MAX``
    rows at a pack is *cold* instead: every row of both tiers in one deflated stream
    (``_cold``), no tier objects (``_w``, ``_r`` None) until a row is added or changed. The
    judge's new latest window goes into a new window tier beside the stream (every row there
    newer than the stream's windows); any other change first inflates the stream back into the
    tiers (:meth:`_tiers`) until the next pack. Reads inflate a copy and change nothing.

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

    __slots__ = ("_w", "_r", "_cold")
    COLD_MAX = _COLD_MAX

    def __init__(self) -> None:
        self._w: _Tier | None = None
        self._r: _Rolled | None = None
        # every row older than the tiers' (cold: :func:`_cold_pack`; the tiers then hold no
        # chunk), or None
        self._cold: bytes | None = None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SeriesSpend):
            return NotImplemented
        return self._all() == other._all()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        nw, nr = self._counts()
        return f"SeriesSpend({nw} windows, {nr} hours or days)"

    def __bool__(self) -> bool:
        return self._cold is not None or bool(self._w) or bool(self._r)

    def copy(self) -> SeriesSpend:
        out = SeriesSpend()
        out._w = None if self._w is None else self._w.copy()
        out._r = None if self._r is None else self._r.copy()
        out._cold = self._cold  # (bytes: never changed, only replaced)
        return out

    def _counts(self) -> tuple[int, int]:
        """Window rows and rolled rows held."""
        nw = self._w.n_rows() if self._w is not None else 0
        nr = self._r.n_rows() if self._r is not None else 0
        if self._cold is not None:
            _, _, _, cw, cr, _, _ = _COLD_HEAD.unpack_from(self._cold)
            nw, nr = nw + cw, nr + cr
        return nw, nr

    def _tiers(self) -> tuple[_Tier, _Rolled]:
        """The tiers, holding every row (the cold stream inflated into them first): what a
        change other than a new latest window works on."""
        w = self._w if self._w is not None else _Tier()
        r = self._r if self._r is not None else _Rolled()
        if self._cold is not None:  # (the tiers hold no chunk while the book is cold)
            cw, cwp, cr, crp = _cold_unpack(self._cold)
            w.rows, w.pairs = cw + w.rows, cwp + w.pairs
            r.rows, r.pairs = cr + r.rows, crp + r.pairs
            self._cold = None
        self._w, self._r = w, r
        return w, r

    def _all(self) -> tuple[tuple[array[int], array[int]], tuple[array[int], array[int]]]:
        """Every window row and pair, every rolled row and pair, oldest first, changing
        nothing (read them only: they may be a tier's own arrays)."""
        w = self._w.all() if self._w is not None else (array("q"), array("q"))
        r = self._r.all() if self._r is not None else (array("q"), array("q"))
        if self._cold is None:
            return w, r
        cw, cwp, cr, crp = _cold_unpack(self._cold)
        return (cw + w[0], cwp + w[1]), (cr + r[0], crp + r[1])

    def _windows(self) -> tuple[array[int], array[int]]:
        if self._cold is None or _COLD_HEAD.unpack_from(self._cold)[3] == 0:
            return self._w.all() if self._w is not None else (array("q"), array("q"))
        return self._all()[0]

    def _rolled_all(self) -> tuple[array[int], array[int]]:
        if self._cold is None or _COLD_HEAD.unpack_from(self._cold)[4] == 0:
            return self._r.all() if self._r is not None else (array("q"), array("q"))
        return self._all()[1]

    def _locate_window(self, start: int) -> tuple[array[int], array[int], int, bool]:
        """:meth:`_Tier.locate` of the windows, the cold stream's included (inflated as a copy
        only when ``start`` is older than the window tier's arrays)."""
        t = self._w
        if t is not None and t.rows and (start >= t.rows[0] or self._cold is None):
            return t.locate(start)
        if self._cold is None:
            return array("q"), array("q"), 0, False
        w, wp = self._windows()
        return (w, wp, *_find(w, _WROW, start))

    def pack(self) -> None:
        """Deflate the older rows gathered in the arrays since the last pack: once an hour of
        event time (:meth:`streams.reports.retention.SpendRollup.roll` does), not per window,
        so that the judge's hot path only appends. A book of at most ``COLD_MAX`` rows becomes
        cold (one stream, no tiers); a bigger one keeps its tiers, chunked."""
        if self._cold is not None and not self._w and not self._r:
            self._w = self._r = None
            return  # cold, and nothing added since
        nw, nr = self._counts()
        if nw + nr <= self.COLD_MAX:
            (w, wp), (r, rp) = self._all()
            self._cold = _cold_pack(w, wp, r, rp) if nw + nr else None
            self._w = self._r = None
            return
        tw, tr = self._tiers()
        tw.freeze()
        tr.freeze()

    # -- windows ------------------------------------------------------------------------------
    def add_window(self, start: int, sums: Sequence[int], seqs: Mapping[int, int]) -> bool:
        """Add one contribution to the window at ``start``, once per (source, message seq):
        False when every one of ``seqs`` was applied already (a redelivered message).

        Every seq applied is kept, not just the highest: a source's late partial (a later
        message) can be applied while its earlier partial of the same window is still pending,
        and that earlier one must count when the window is judged."""
        t = self._w
        n = len(t.rows) if t is not None else 0
        if n:
            assert t is not None
            last = t.rows[n - _WROW]
        else:  # the newest of the cold stream's windows (none: _NO_ROW)
            last = _COLD_HEAD.unpack_from(self._cold)[0] if self._cold is not None else _NO_ROW
        if last < start:  # the judge's hot path: a new latest window
            if t is None:
                t = self._w = _Tier()
            t.rows.extend([start, *sums[:6], len(seqs)])
            t.pairs.extend([x for pair in sorted(seqs.items()) for x in pair])
            if n >= _BOUND * _WROW:  # (the roll-up packs every hour: SpendRollup.roll)
                if self._cold is not None:
                    self.pack()
                else:
                    t.freeze(_BOUND)
            return True
        if self._cold is not None and not (t is not None and _find(t.rows, _WROW, start)[1]):
            t, _ = self._tiers()  # (another source's partial of a window beside the stream: not)
        assert t is not None  # (without a stream or a tier, every window is a new latest one)
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
        w, wp, i, found = self._locate_window(start)
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
            return self._locate_window(start)[3]
        r, _ = self._rolled_all()
        i = bisect_left(range(len(r) // _RROW), start, key=lambda k: r[k * _RROW])
        return i * _RROW < len(r) and r[i * _RROW] < start + DAY

    def window_starts(self) -> list[int]:
        return list(self._windows()[0][::_WROW])

    def pop_windows(self, before: int) -> list[Row]:
        """Remove and return the windows starting before ``before`` (oldest first)."""
        if self._cold is not None:
            oldest = _COLD_HEAD.unpack_from(self._cold)[1]
            if oldest == _NO_ROW or oldest >= before:  # nothing cold to take: the stream stays
                if self._w is None:
                    return []
            else:
                self._tiers()
        if self._w is None:
            return []
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
        tw, _ = self._tiers()
        first = tw.first_start()
        if first is None or rows[-1][0] < first:  # as they were: older than every window kept
            w, wp = array("q"), array("q")
            for start, sums, pairs in rows:
                w.extend([start, *sums[:6], len(pairs)])
                wp.extend(_flat(pairs))
            tw.prepend(w, wp)
            return
        for start, sums, pairs in rows:
            self._insert_window(start, sums, pairs)

    def _insert_window(self, start: int, sums: Sequence[int], pairs: list[tuple[int, int]]) -> None:
        self._tiers()[0].insert(start, [start, *sums[:6], len(pairs)], _flat(pairs))

    # -- rolled hours and days ------------------------------------------------------------------
    def rolled(self) -> list[tuple[int, int, list[int], dict[int, int]]]:
        """Every rolled row: (start, kind, six sums, highest seq per source)."""
        r, rp = self._rolled_all()
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
        self._tiers()[1].replace(r, rp)

    def hw(self, hour: int) -> dict[int, int]:
        """The highest seq per source already counted in ``hour`` (by its hour or its day)."""
        day = hour // DAY * DAY
        cold = self._rolled_all() if self._cold is not None else None
        for start, kind in ((day, DAY_ROW), (hour, HOUR_ROW)):
            if cold is not None:
                r, rp = cold
            elif self._r is not None:
                r, rp, _, _ = self._r.locate(start)
            else:
                return {}
            i, found = _rfind(r, start, kind)
            if found:
                return dict(_pairs(rp, _off(r, _RROW, rp, i), r[i * _RROW + _RROW - 1]))
        return {}

    def absorb(self, hour: int, sums: Sequence[int], hw: Mapping[int, int]) -> None:
        """Add ``sums`` into ``hour`` (into its day when the day is one row already), its
        sources' highest seqs raised to ``hw``."""
        day = hour // DAY * DAY
        _, t = self._tiers()
        last = t.last_start()
        if last is None or (last < hour and (last < day or t.rows[len(t.rows) - _RROW + 1] == HOUR_ROW)):
            # the usual case: a new latest hour, whose day is not one row (the latest row is
            # older than the day, or one of the day's hours)
            t.rows.extend([hour, HOUR_ROW, *sums[:6], len(hw)])
            t.pairs.extend(_flat(hw.items()))
            self._freeze_rolled(t)
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
            self._freeze_rolled(t)
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
        self._freeze_rolled(t)

    def _freeze_rolled(self, t: _Rolled) -> None:
        """Chunk the rolled tier after a change, unless the book is small enough to go cold at
        the next pack (which would inflate the chunks again at once)."""
        if sum(self._counts()) > self.COLD_MAX:
            t.freeze()

    def compact_days(self, cut: int) -> list[int]:
        """Each day ending by ``cut`` still held by its hours becomes one row; the days done."""
        if self._cold is not None and not self._r:  # (while cold, only windows are added beside it)
            oldest = _COLD_HEAD.unpack_from(self._cold)[2]
            if oldest == _NO_ROW or oldest >= cut:
                return []
        r, _ = self._rolled_all()
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
        r, rp = self._rolled_all()
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
        (w, _), (r, _) = self._all()
        for base in range(0, len(r), _RROW):
            yield r[base], DAY if r[base + 1] == DAY_ROW else HOUR, r[base + 2:base + 8]
        for base in range(0, len(w), _WROW):
            yield w[base], window_seconds, w[base + 1:base + 7]

    def seqs(self) -> Iterator[tuple[int, int]]:
        """Every (source, seq) pair held: the windows' seqs and the rolled rows' highest."""
        (_, wp), (_, rp) = self._all()
        for pairs in (wp, rp):
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
            self._tiers()[0].remove(start)
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
