"""A cold spend book (every row of both tiers in one deflated stream, ``SeriesSpend._cold``)
answers as the chunked form does, and the judge's hot path never inflates it."""

from __future__ import annotations

import random
import sys
from array import array
from typing import Any

import pytest

import streams.common.spend as spend_mod
from streams.common.spend import (
    _COLD_HEAD,
    _NO_ROW,
    DAY,
    HOUR,
    SeriesSpend,
    _cold_pack,
    _cold_unpack,
    load_records,
    spend_key,
)
from streams.reports.retention import SpendRollup

T0 = 1_767_571_200  # a Monday 00:00 UTC
W = 60
BIG = 2**63 - 1


class Chunked(SeriesSpend):
    """The form every book had before: tiers chunked, never cold."""

    __slots__ = ()
    COLD_MAX = 0


def test_the_stream_round_trips_any_int64_rows_and_pairs() -> None:
    w = array("q", [T0, 5, 1, 0, 0, 0, 1, 2, T0 + 60, BIG, -BIG - 1, 0, 7, 0, 1, 1])
    wp = array("q", [0, -1, 3, BIG, 1, -BIG - 1])
    r = array("q", [T0 - DAY, 2, -BIG - 1, BIG, 0, 0, 0, 3, 1, T0 - HOUR, 1, 1, 2, 3, 4, 5, 6, 0])
    rp = array("q", [0, BIG])
    for parts in ((w, wp, r, rp), (w, wp, array("q"), array("q")), (array("q"), array("q"), r, rp),
                  (array("q"), array("q"), array("q"), array("q"))):
        blob = _cold_pack(*parts)
        assert _cold_unpack(blob) == parts
    assert _COLD_HEAD.unpack_from(_cold_pack(w, wp, r, rp)) == (T0 + 60, T0, T0 - HOUR, 2, 2, 60, DAY - HOUR)
    # the starts' differences in their unit (a window's length: small counts), any int64 exactly
    w = array("q")
    for start in (-BIG - 1, -BIG - 1 + 120, 0, 600, 1200, BIG - 60, BIG):
        w.extend([start, 1, 2, 3, 4, 5, 6, 0])
    for starts, unit in (([0, 600, 1800, 1860], 60), ([0, 3600, 7200], 3600), ([5], 1), ([7, 7 + 2**40], 1)):
        rows = array("q", [x for s in starts for x in (s, 1, 2, 3, 4, 5, 6, 0)])
        blob = _cold_pack(rows, array("q"), array("q"), array("q"))
        assert _COLD_HEAD.unpack_from(blob)[5] == unit and _cold_unpack(blob)[0] == rows
    assert _cold_unpack(_cold_pack(w, array("q"), array("q"), array("q")))[0] == w
    assert _COLD_HEAD.unpack_from(_cold_pack(array("q"), array("q"), r[:9], rp[:2]))[:3] == (_NO_ROW,) * 3


def reads(book: SeriesSpend, rng: random.Random) -> list[Any]:
    """Everything a reader can ask a book (the random starts drawn the same for both forms)."""
    starts = book.window_starts()
    rolled = book.rolled()
    days = sorted({row[0] // DAY * DAY for row in rolled})
    probe = [*rng.sample(starts, min(5, len(starts))), T0 - W, T0 + 7]
    hours = [*[row[0] for row in rolled if row[1] == 1][:3], T0 + 5 * HOUR]
    days = [*days, T0 - 9 * DAY]
    return [
        bool(book), starts, rolled, sorted(book.seqs()),
        [(s, span, list(x)) for s, span, x in book.spans(W)],
        [book.window_wire(s) for s in probe], [book.holds(s, False) for s in probe],
        [book.day_wire(d) for d in days], [book.holds(d, True) for d in days],
        [book.hw(h) for h in hours],
    ]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_a_cold_book_answers_as_a_chunked_one_through_roll_ups_late_partials_and_restores(seed: int) -> None:
    """Sparse and busier user series over four days of the users' horizons shortened (windows
    3 h, hours 1 day: rolls and day compactions every hour), with late partials into rolled
    hours and old windows, redeliveries, sources out of order, reads between: every read, every
    changelog write of the roll, equality, copies and restores the same in both forms."""
    rng = random.Random(seed)
    books: dict[str, dict[str, SeriesSpend]] = {"cold": {}, "chunked": {}}
    rolls = {k: SpendRollup(W, user_hourly_after=3 * HOUR, user_daily_after=DAY) for k in books}
    rates = [0.05, 0.1, 0.3, 0.9]
    keys = [spend_key(f"user=u{i}") for i in range(len(rates))]
    for i in range(4 * 24 * 60):
        w, seq, src = T0 + i * W, i + 1, rng.randrange(3)
        for k in books:
            rolls[k].seen(src, seq)
        for key, rate in zip(keys, rates, strict=True):
            if rng.random() >= rate:
                continue
            at = w
            if rng.random() < 0.05:  # late: an hour back or deep into rolled hours
                at = w - W * rng.choice([rng.randrange(1, 60), rng.randrange(60, 4000)])
            sums = [rng.randrange(10**9), rng.randrange(5000), 200, 0, rng.randrange(2), 1]
            redo = rng.random() < 0.02
            for k, made in books.items():
                book = made.get(key) or made.setdefault(key, SeriesSpend() if k == "cold" else Chunked())
                assert book.add_window(at, sums, {src: seq})
                if redo:
                    assert not book.add_window(at, sums, {src: seq})
        written = {k: rolls[k].roll(made, w + W) for k, made in books.items()}
        assert written["cold"] == written["chunked"]
        if i % 97 == 0 or i % 60 == 0:
            for key in books["cold"]:
                cold, chunked = books["cold"][key], books["chunked"][key]
                s = rng.randrange(1 << 30)
                assert reads(cold, random.Random(s)) == reads(chunked, random.Random(s))
    held = [b for b in books["cold"].values() if b._cold is not None]
    assert held, "no book went cold"
    for key in keys:
        cold, chunked = books["cold"][key], books["chunked"][key]
        assert cold == chunked and cold.copy() == chunked and repr(cold) == repr(chunked)
        name = key.rpartition("|")[0]
        records = [(f"{name}|{s}", cold.window_wire(s)) for s in cold.window_starts()]
        records += [(f"{name}|day:{d}", cold.day_wire(d)) for d in sorted({r[0] // DAY * DAY for r in cold.rolled()})]
        rng.shuffle(records)
        restored: dict[str, SeriesSpend] = {}
        assert load_records(restored, records)[1] == []
        assert restored[key] == chunked
        restored[key].pack()
        assert restored[key] == chunked and (restored[key]._cold is not None) == (cold._cold is not None or not cold)


def test_the_judges_hot_path_and_a_roll_with_nothing_to_do_never_inflate_a_cold_book(monkeypatch: pytest.MonkeyPatch) -> None:
    book = SeriesSpend()
    for i in range(0, 2000, 10):
        book.add_window(T0 + i * W, [i + 1, 1000, 200, 0, 0, 1], {0: i + 1})
    book.compact_days(T0)  # nothing to compact: nothing rolled
    roll = SpendRollup(W)
    roll.seen(0, 2000)
    roll.roll({spend_key("user=u"): book}, T0 + 2000 * W)
    assert book._cold is not None and book._w is None and book._r is None
    before = book.copy()

    def no(*_: Any) -> Any:
        raise AssertionError("inflated")

    monkeypatch.setattr(spend_mod, "_cold_unpack", no)
    now = T0 + 2000 * W
    assert book.add_window(now, [5, 1, 1, 0, 0, 1], {0: 2001})  # a new latest window
    assert book.add_window(now, [5, 1, 1, 0, 0, 1], {1: 9})  # a second source's partial of it
    assert not book.add_window(now, [5, 1, 1, 0, 0, 1], {1: 9})  # redelivered
    assert book.window_wire(now) == {"s": [10, 2, 2, 0, 0, 2], "v": {"0": [2001], "1": [9]}}
    assert book.holds(now, False)
    assert book.pop_windows(T0) == []  # nothing that old
    assert book.compact_days(T0) == []  # nor hours
    monkeypatch.undo()
    book.pack()
    assert book._w is None and book._cold is not None
    assert book != before and book.window_starts() == [*before.window_starts(), now]


def test_a_week_of_a_sparse_user_is_one_small_stream() -> None:
    """What the scale benchmark's user holds after a week of the users' horizons: ~290 rows in
    one bytes object (the chunked form: ~4.2 KB in chunks, their lists and indexes, the newest
    rows' arrays and two tier objects)."""
    rng = random.Random(7)
    books = {"cold": SeriesSpend(), "chunked": Chunked()}
    roll = {k: SpendRollup(W) for k in books}
    for i in range(7 * 24 * 60):
        w = T0 + W * i
        sums = [rng.randrange(10**7, 10**8), 1000, 200, 0, 0, 1] if rng.random() < 0.1 else None
        for k, book in books.items():
            roll[k].seen(0, i + 1)
            if sums:
                book.add_window(w, sums, {0: i + 1})
            roll[k].roll({spend_key("user=u"): book}, w + W)
    cold, chunked = books["cold"], books["chunked"]
    assert cold == chunked and cold._cold is not None
    rows = sum(1 for _ in cold.spans(W))
    assert 250 < rows < SeriesSpend.COLD_MAX

    def size(b: SeriesSpend) -> int:
        n = sys.getsizeof(b) + (sys.getsizeof(b._cold) if b._cold is not None else 0)
        for t in (b._w, b._r):
            if t is not None:
                n += sys.getsizeof(t) + sys.getsizeof(t.rows) + sys.getsizeof(t.pairs)
                n += sum(sys.getsizeof(c) for c in t.chunks or ()) + sys.getsizeof(t.chunks) + sys.getsizeof(t.index)
        return n

    assert size(cold) < 0.7 * size(chunked)


def test_a_roll_inflates_one_cold_book_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """A roll-up over many cold books packs each before it rolls the next: at no time does
    more than one hold its rows inflated (all at once would be ~23 KB per sparse user)."""
    rng = random.Random(4)
    books = {spend_key(f"user=u{k}"): SeriesSpend() for k in range(20)}
    roll = SpendRollup(W)
    heated: set[int] = set()
    most = 0
    tiers, pack = SeriesSpend._tiers, SeriesSpend.pack

    def tiers_seen(self: SeriesSpend) -> Any:
        nonlocal most
        if self._cold is not None:
            heated.add(id(self))
            most = max(most, len(heated))
        return tiers(self)

    def pack_seen(self: SeriesSpend) -> None:
        heated.discard(id(self))
        pack(self)

    for i in range(3 * 24 * 60):
        w = T0 + W * i
        roll.seen(0, i + 1)
        if i == 2 * 24 * 60:  # once every book is cold: watch
            assert all(b._cold is not None for b in books.values())
            monkeypatch.setattr(SeriesSpend, "_tiers", tiers_seen)
            monkeypatch.setattr(SeriesSpend, "pack", pack_seen)
        for book in books.values():
            if rng.random() < 0.1:
                book.add_window(w, [rng.randrange(10**7, 10**8), 1000, 200, 0, 0, 1], {0: i + 1})
        roll.roll(books, w + W)
    assert most == 1 and not heated  # (a book inflated by every roll: its windows cross the cut)
