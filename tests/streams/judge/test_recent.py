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


@pytest.mark.parametrize("observed", [0.0, -0.0, 0.018244044, 1e-9, 123.456789012, 0.1 + 0.2, 1 / 3, 5e-324,
                                      9.3e9, -2.5, 1e300, math.inf, -math.inf])
def test_observed_reads_back_as_the_same_double(observed: float) -> None:
    # whole nano-dollars (the judge's sums[0] / NANO) are held as an integer, anything else as
    # the double's bits: the API gets the same value either way
    ring = RecentWindows(2)
    ring.append(60, observed, 1.0, 2.0, 0.5, True)
    ring.append(120, observed, 1.0, 2.0, 0.5, False)
    ring.compact()
    rows = list(ring)
    for row in rows:
        got = row["observed_usd"]
        assert got == round(observed, 6) and math.copysign(1.0, got) == math.copysign(1.0, round(observed, 6))
    assert [r["is_anomaly"] for r in rows] == [True, False]


def test_observed_nan_reads_back_as_nan() -> None:
    ring = RecentWindows(1)
    ring.append(60, math.nan, 1.0, 2.0, 0.5, False)
    assert math.isnan(next(iter(ring))["observed_usd"])


def _sparse_user_ring() -> RecentWindows:
    # 240 windows of a user spending in ~1 in 10 (exact nano-dollar sums, as the judge gives
    # them), its expected value and bound moving after each spend and on the hour
    rng = random.Random(5)
    ring = RecentWindows(240)
    w, e, u = 1_767_571_200, 0.03, 2.03
    for k in range(240):
        w += 60
        if k % 60 == 0:
            e, u = e * rng.uniform(0.9, 1.1), u * rng.uniform(0.999, 1.001)
        if rng.random() < 0.1:
            ring.append(w, rng.randrange(10_000_000, 90_000_000) / 1_000_000_000, e, u, rng.uniform(0.8, 1.0), False)
            e, u = e * rng.uniform(0.95, 1.05), u * rng.uniform(0.999, 1.001)
        else:
            ring.append(w, 0.0, e, u, 0.0, False)
    ring.compact()
    return ring


def test_a_sparse_users_windows_deflate_small() -> None:
    # records with the score and the observed nano-dollars last, observed as an integer: 615
    # bytes for this ring, where start, observed as a double, expected, upper, score and flag
    # took 684 (issue 15: memory per watched user series)
    ring = _sparse_user_ring()
    assert len(ring) == 240
    assert len(ring._z) < 650
