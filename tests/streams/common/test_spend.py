"""SeriesSpend's packed form: the windows and rolled rows deflated in chunks read back exactly as
the typed rows they were, and behave as a plain dict of records does. Every test runs twice:
with books of up to ``COLD_MAX`` rows held cold at a pack (one stream, the default) and with
every book chunked (``COLD_MAX`` 0, as a busy series' book is); what a test says of the chunks
holds for the chunked form."""

from __future__ import annotations

import random
from array import array
from typing import Any

import orjson
import pytest

from streams.common.spend import (
    DAY,
    HOUR,
    SeriesSpend,
    _pack,
    _Rolled,
    _Tier,
    _unpack,
    load_records,
    spend_key,
    spend_windows,
)
from streams.reports.retention import SpendRollup

T0 = 1_767_571_200  # a Monday 00:00 UTC
W = 60
BIG = 2**63 - 1


@pytest.fixture(autouse=True, params=["cold", "chunked"])
def form(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "chunked":
        monkeypatch.setattr(SeriesSpend, "COLD_MAX", 0)
    return str(request.param)


def chunked() -> bool:
    return SeriesSpend.COLD_MAX == 0


def test_pack_round_trips_any_int64_rows_and_pairs() -> None:
    rows = array("q", [T0, 5, 1, 0, 0, 0, 1, 2, T0 + 60, BIG, -BIG - 1, 0, 7, 0, 1, 1, -BIG - 1, 0, 0, 0, 0, 0, 0, 0])
    pairs = array("q", [0, -1, 3, BIG, 1, -BIG - 1])
    assert _unpack(_pack(rows, pairs, 8), 3, 8) == (rows, pairs)
    assert _unpack(_pack(array("q"), array("q"), 9), 0, 9) == (array("q"), array("q"))


def plain_wire(sums: list[int], pairs: set[tuple[int, int]]) -> dict[str, Any]:
    v: dict[str, list[int]] = {}
    for src, seq in sorted(pairs):
        v.setdefault(str(src), []).append(seq)
    return {"s": sums, "v": v}


def test_windows_in_chunks_answer_as_a_plain_dict_of_records() -> None:
    """Mostly new latest windows, some late partials into deflated ones, redeliveries, and
    windows taken and put back as a roll-up does: every answer as a dict of records gives it."""
    rng = random.Random(3)
    book = SeriesSpend()
    plain: dict[int, tuple[list[int], set[tuple[int, int]]]] = {}
    for i in range(900):
        if i > 50 and rng.random() < 0.1:  # a late partial, deep in the chunks or not
            w = rng.choice(sorted(plain)[:-1]) if rng.random() < 0.7 else T0 + W * rng.randrange(0, i) + 1
        else:
            w = T0 + W * i
        seq = i + 1
        src = rng.randrange(3)
        sums = [rng.randrange(10**9), rng.randrange(5000), 200, 0, rng.randrange(2), 1]
        assert book.add_window(w, sums, {src: seq})
        old, pairs = plain.get(w, ([0] * 6, set()))
        plain[w] = ([a + b for a, b in zip(old, sums, strict=True)], pairs | {(src, seq)})
        if rng.random() < 0.05:  # a redelivered message: counted once
            assert not book.add_window(w, sums, {src: seq})
        if i % 60 == 59:  # as the roll-up does every hour
            book.pack()
    if chunked():
        assert book._w is not None and book._w.chunks and len(book._w.rows) < 40 * 8  # most of it deflated
    assert book.window_starts() == sorted(plain)
    assert all(book.window_wire(w) == plain_wire(*plain[w]) for w in plain)
    assert book.window_wire(T0 - W) is None and book.window_wire(T0 + 7) is None
    assert [(s, list(x)) for s, _, x in book.spans(W)] == [(w, plain[w][0]) for w in sorted(plain)]
    assert sorted(book.seqs()) == sorted(p for _, pairs in plain.values() for p in pairs)

    cut = T0 + 400 * W + 30  # in the middle of a chunk
    taken = book.pop_windows(cut)
    assert [w for w, _, _ in taken] == [w for w in sorted(plain) if w < cut]
    assert book.window_starts() == [w for w in sorted(plain) if w >= cut]
    book.put_windows(taken[-5:])  # the ones waiting for their message's other chunks
    assert book.window_starts()[:5] == [w for w, _, _ in taken[-5:]]
    assert all(book.window_wire(w) == plain_wire(*plain[w]) for w in book.window_starts())


def test_a_copy_and_a_book_loaded_from_its_records_are_equal_however_they_are_chunked() -> None:
    book = SeriesSpend()
    for i in range(300):
        book.add_window(T0 + W * i, [i, 1, 1, 0, 0, 1], {0: i})
    book.pack()
    records = {f"org|{w}": book.window_wire(w) for w in reversed(book.window_starts())}
    loaded: dict[str, SeriesSpend] = {}
    assert load_records(loaded, records.items())[1] == []
    assert loaded[spend_key("org")] == book == book.copy()
    book.add_window(T0, [1, 0, 0, 0, 0, 1], {0: 1000})
    assert loaded[spend_key("org")] != book
    # a window older than every one held (a late event past the roll-up): a chunk of its own
    book.pack()  # (the late partial above thawed the chunks)
    chunks = len(book._w.chunks or ()) if chunked() and book._w is not None else 0
    assert book.add_window(T0 - W, [1, 0, 0, 0, 0, 1], {0: 999})
    if chunked():
        assert book._w is not None and len(book._w.chunks or ()) == chunks + 1
    assert book.window_starts()[:2] == [T0 - W, T0]
    assert book.window_wire(T0 - W) == {"s": [1, 0, 0, 0, 0, 1], "v": {"0": [999]}}
    assert not book.add_window(T0 - W, [1, 0, 0, 0, 0, 1], {0: 999})


def test_a_week_of_a_sparse_series_rolls_up_at_48_hours_exactly_and_small() -> None:
    """A week of 1-in-10 windows through the roll-up: hours hold exactly the windows' sums, and
    the book holds them in a fraction of the typed rows' 80-90 bytes each."""
    rng = random.Random(5)
    book = SeriesSpend()
    roll = SpendRollup(W)
    by_hour: dict[int, int] = {}
    for i in range(7 * 24 * 60):
        w = T0 + W * i
        roll.seen(0, i + 1)
        if rng.random() < 0.1:
            nusd = rng.randrange(10**7, 10**9)
            book.add_window(w, [nusd, 1000, 200, 0, 0, 1], {0: i + 1})
            by_hour[w // HOUR * HOUR] = by_hour.get(w // HOUR * HOUR, 0) + nusd
        if i % 60 == 59:
            roll.roll({spend_key("u"): book}, w + W)
    now = T0 + 7 * DAY
    spans = list(book.spans(W))
    hours = {s: x[0] for s, span, x in spans if span == HOUR}
    assert hours and max(hours) < now - 48 * HOUR <= min(s for s, span, _ in spans if span == W)
    assert hours == {h: n for h, n in by_hour.items() if h in hours}
    assert sum(x[0] for _, _, x in spans) == sum(by_hour.values())
    rows = len(spans)
    if chunked():
        assert book._r is not None and book._w is not None and book._r.chunks and book._w.chunks
        packed = sum(len(c) for t in (book._w, book._r) for c in t.chunks or ()) + \
            sum(t.rows.buffer_info()[1] * 8 + t.pairs.buffer_info()[1] * 8 for t in (book._w, book._r))
        assert packed < 30 * rows  # against 80-90 bytes a row as typed rows alone
    else:  # one stream: the rows' bytes and a 32-byte header
        book.pack()
        assert book._cold is not None and book._w is None and book._r is None
        assert len(book._cold) < 12 * rows


# What main's code (before the chunks) wrote to the spend table's changelog for one series: a
# window record, a day held by its hours, a compacted day. Restores read these.
OLD = {
    f"team=ads|{T0 + 3 * HOUR}": b'{"s":[1500000000,1000,200,0,0,2],"v":{"0":[41,42],"1":[7]}}',
    f"team=ads|day:{T0}": b'{"h":{"0":[5,1,1,0,0,2,0,3],"2":[9,2,2,0,0,1,0,5,1,2]}}',
    f"team=ads|day:{T0 - DAY}": b'{"d":[70,10,10,1,1,9,0,2,1,1]}',
}


def test_records_written_by_the_code_before_the_chunks_load_and_read_back_the_same() -> None:
    books: dict[str, SeriesSpend] = {}
    done, bad = load_records(books, [(k, orjson.loads(v)) for k, v in OLD.items()])
    assert bad == [] and sorted(done) == sorted(OLD)
    book = books[spend_key("team=ads")]
    assert orjson.dumps(book.window_wire(T0 + 3 * HOUR)) == OLD[f"team=ads|{T0 + 3 * HOUR}"]
    assert orjson.dumps(book.day_wire(T0)) == OLD[f"team=ads|day:{T0}"]
    assert orjson.dumps(book.day_wire(T0 - DAY)) == OLD[f"team=ads|day:{T0 - DAY}"]
    assert book.hw(T0 + 2 * HOUR) == {0: 5, 1: 2} and book.hw(T0 - DAY + 5 * HOUR) == {0: 2, 1: 1}
    assert [(s, span, x[0]) for _, s, span, x in spend_windows([(spend_key("team=ads"), book)], W)] == [
        (T0 - DAY, DAY, 70), (T0, HOUR, 5), (T0 + 2 * HOUR, HOUR, 9), (T0 + 3 * HOUR, W, 1500000000)]


def test_hours_absorbed_late_into_deflated_rows_and_days_compacted_read_back_exactly() -> None:
    book = SeriesSpend()
    for h in range(24 * 5):
        book.absorb(T0 + h * HOUR, [h, 1, 1, 0, 0, 1], {0: h})
    if chunked():
        assert book._r is not None and book._r.chunks
    else:
        book.pack()
        assert book._cold is not None
    book.absorb(T0 + 3 * HOUR, [100, 0, 0, 0, 0, 1], {0: 500, 2: 1})  # a late window of a deflated hour
    assert book.hw(T0 + 3 * HOUR) == {0: 500, 2: 1}
    assert book.compact_days(T0 + 2 * DAY) == [T0, T0 + DAY]
    assert book.compact_days(T0 + 2 * DAY) == []
    assert book.day_wire(T0) == {"d": [sum(range(24)) + 100, 24, 24, 0, 0, 25, 0, 500, 2, 1]}
    assert book.day_wire(T0 + 2 * DAY) == {"h": {str(h): [48 + h, 1, 1, 0, 0, 1, 0, 48 + h] for h in range(24)}}
    book.absorb(T0 + 5 * HOUR, [1, 0, 0, 0, 0, 1], {0: 600})  # into its day, one row now
    assert book.day_wire(T0)["d"][:1] == [sum(range(24)) + 101] and book.hw(T0 + 9 * HOUR)[0] == 600
    assert [r[0] for r in book.rolled()] == [T0, T0 + DAY] + [T0 + h * HOUR for h in range(48, 120)]


def test_a_tier_keeps_rows_in_its_arrays_while_it_holds_chunks() -> None:
    for tier in (_Tier(), _Rolled()):
        s = tier.STRIDE
        for i in range(100):
            tier.insert(i, [i] + [0] * (s - 2) + [1], [0, i])
        tier.freeze()
        assert tier.chunks and tier.rows and tier.n_rows() == 100
        while tier.n_rows():
            last = tier.last_start()
            assert last is not None and tier.remove(last) and (tier.rows or not tier.chunks)
        assert tier.all() == (array("q"), array("q"))


def test_a_pack_leaves_only_the_newest_window_in_the_arrays() -> None:
    # (a sparse user's four newest windows in the arrays were ~240 bytes more than deflated;
    # a late partial to an older window thaws the open chunk, as one an hour back did)
    book = SeriesSpend()
    for i in range(100):
        book.add_window(600 * i, [i + 1, 0, 0, 0, 0, 1], {0: i + 1})
    book.pack()
    if chunked():
        assert book._w is not None and len(book._w.rows) // 8 == 1
    else:  # all of it in the stream
        assert book._w is None and book._cold is not None
    assert book.add_window(600 * 97, [5, 0, 0, 0, 0, 1], {1: 1})  # late, from another source: thawed
    assert [sums[0] for _, _, sums in book.spans(60)][96:] == [97, 98 + 5, 99, 100]
