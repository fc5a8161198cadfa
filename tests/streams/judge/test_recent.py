from __future__ import annotations

import math
import random
from array import array
from collections import deque

import pytest

from streams.judge.recent import BLOCK, RecentWindows


def _row(w: int) -> tuple[int, float, float, float, float, bool]:
    return w, w / 7.0, w / 11.0, w / 3.0, 1.0 - 1.0 / (w + 2), w % 5 == 0


def _f32(x: float) -> float:
    # the expected value and the upper bound are held in single precision, shown to 7 digits
    return round(float(f"{array('f', [x])[0]:.7g}"), 6)


def _as_dict(row: tuple[int, float, float, float, float, bool]) -> dict[str, object]:
    w, o, e, u, s, a = row
    return {"window_start": w, "observed_usd": round(o, 6), "expected_usd": _f32(e),
            "upper_usd": _f32(u), "score": s, "is_anomaly": a}


@pytest.mark.parametrize("n", [0, 1, 5, 6, 7, 13, 240])
def test_same_windows_as_a_deque_of_dicts(n: int) -> None:
    ring, ref = RecentWindows(6), deque(maxlen=6)
    for w in range(n):
        ring.append(*_row(w * 60))
        ref.append(_as_dict(_row(w * 60)))
    assert list(ring) == list(ref)
    assert len(ring) == len(ref) and bool(ring) == bool(ref)


def test_clear_then_append_starts_again() -> None:
    ring = RecentWindows(3)
    for w in range(5):
        ring.append(*_row(w))
    ring.clear()
    assert not ring and list(ring) == []
    ring.append(*_row(9))
    assert [d["window_start"] for d in ring] == [9]


def test_score_keeps_full_precision() -> None:
    ring = RecentWindows(1)
    ring.append(0, 1.0, 1.0, 1.0, 0.9999994, False)
    assert next(iter(ring))["score"] == 0.9999994


def test_maxlen_must_be_positive() -> None:
    with pytest.raises(ValueError, match="maxlen"):
        RecentWindows(0)


def test_expected_and_upper_keep_seven_digits_and_a_never_bound_stays_finite() -> None:
    ring = RecentWindows(1)
    ring.append(1_767_571_200, 1234.56789, 1234.56789, math.exp(700.0), 0.5, False)
    row = next(iter(ring))
    assert row["window_start"] == 1_767_571_200 and row["observed_usd"] == 1234.56789
    assert row["expected_usd"] == 1234.568
    assert math.isfinite(row["upper_usd"]) and row["upper_usd"] > 1e38


@pytest.mark.parametrize("maxlen", [1, 7, BLOCK, BLOCK + 1, 45, 240])
def test_same_windows_as_a_deque_across_blocks(maxlen: int) -> None:
    # full blocks are deflated, the newest one held as records: every cut between them reads
    # back the newest maxlen windows, in order, as the deque of dicts had them
    ring, ref = RecentWindows(maxlen), deque(maxlen=maxlen)
    for w in range(3 * maxlen + 2 * BLOCK + 3):
        row = _row(1_767_571_200 + w * 60)
        ring.append(*row)
        ref.append(_as_dict(row))
        if w % 7 == 0 or w > 3 * maxlen:
            assert list(ring) == list(ref) and len(ring) == len(ref)


def test_window_starts_with_gaps_and_zeros_read_back_exactly() -> None:
    ring = RecentWindows(240)
    starts = [0, 60, 4_000_000_000, 4_294_967_295, 7, 120] * 50
    for w in starts:
        ring.append(w, 0.0, 0.0, 0.0, 0.0, False)
    assert [d["window_start"] for d in ring] == starts[-240:]


def test_an_expected_value_past_single_precision_is_held_as_infinite() -> None:
    ring = RecentWindows(2)
    ring.append(0, 1.0, 1e39, 1e39, 0.5, False)  # as array("f") held it
    row = next(iter(ring))
    assert row["expected_usd"] == math.inf and row["upper_usd"] > 1e38


@pytest.mark.parametrize("maxlen", [1, 7, BLOCK, BLOCK + 1, 240])
def test_compacted_at_any_point_reads_the_same(maxlen: int) -> None:
    # a parked series' ring is compacted (its newest records deflated with the older ones) at
    # whatever point its last window fell: every cut reads back the newest maxlen windows
    rng = random.Random(maxlen)
    ring, ref = RecentWindows(maxlen), deque(maxlen=maxlen)
    w = 1_767_571_200
    for k in range(4 * maxlen + 3 * BLOCK):
        w += rng.choice((60, 60, 60, 120, 3600))
        row = _row(w)
        ring.append(*row)
        ref.append(_as_dict(row))
        if rng.random() < 0.2:
            ring.compact()
            ring.compact()  # twice: nothing more to do
        if k % 5 == 0:
            assert list(ring) == list(ref) and len(ring) == len(ref)
    ring.compact()
    assert list(ring) == list(ref) and len(ring) == len(ref)
    assert ring._live == b"" and type(ring._live) is bytes  # the shared empty bytes, not a bytearray's 57
