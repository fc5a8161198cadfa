from __future__ import annotations

from datetime import datetime
from zoneinfo import ZoneInfo

import pytest

from streams.common.periods import Period


def at(tz: str, *args: int, fold: int = 0) -> int:
    """Epoch seconds of a local wall-clock time in ``tz``."""
    return int(datetime(*args, tzinfo=ZoneInfo(tz), fold=fold).timestamp())


def hours(b: tuple[int, int]) -> float:
    return (b[1] - b[0]) / 3600


@pytest.mark.parametrize(
    ("tz", "day", "length"),
    [
        ("Europe/Berlin", (2026, 3, 29), 23),  # spring forward 02:00 -> 03:00
        ("Europe/Berlin", (2026, 10, 25), 25),  # fall back 03:00 -> 02:00
        ("America/New_York", (2026, 3, 8), 23),
        ("America/New_York", (2026, 11, 1), 25),
        ("Pacific/Auckland", (2026, 9, 27), 23),  # southern hemisphere: spring in September
        ("Pacific/Auckland", (2026, 4, 5), 25),
        ("Asia/Kolkata", (2026, 3, 29), 24),  # no DST, +05:30
        ("UTC", (2026, 3, 29), 24),
    ],
)
def test_dst_days_are_23_or_25_hours(tz: str, day: tuple[int, int, int], length: int) -> None:
    p = Period("day", tz)
    start, end = p.bounds(at(tz, *day, 12))
    assert (start, end) == (at(tz, *day), at(tz, *day) + length * 3600)
    assert p.period_id(start) == "%04d-%02d-%02d" % day
    # the ambiguous / skipped hour itself still lands in that day
    assert p.bounds(start + 2 * 3600 + 1800) == (start, end)


def test_week_containing_a_dst_change_is_167_or_169_hours() -> None:
    p = Period("week", "Europe/Berlin")
    spring = p.bounds(at("Europe/Berlin", 2026, 3, 29, 12))  # a Sunday
    assert spring[0] == at("Europe/Berlin", 2026, 3, 23) and hours(spring) == 167
    assert hours(p.bounds(at("Europe/Berlin", 2026, 10, 20))) == 169
    assert p.period_id(at("Europe/Berlin", 2026, 3, 23)) == "2026-W13"


@pytest.mark.parametrize(
    ("tz", "local", "pid", "first", "nxt"),
    [
        ("UTC", (2026, 1, 31, 23, 59, 59), "2026-01", (2026, 1, 1), (2026, 2, 1)),
        ("UTC", (2026, 2, 28, 12), "2026-02", (2026, 2, 1), (2026, 3, 1)),
        ("UTC", (2028, 2, 29, 12), "2028-02", (2028, 2, 1), (2028, 3, 1)),  # leap year
        ("America/New_York", (2026, 12, 31, 23, 30), "2026-12", (2026, 12, 1), (2027, 1, 1)),
        ("Asia/Kolkata", (2026, 4, 30, 23, 59), "2026-04", (2026, 4, 1), (2026, 5, 1)),
        ("Pacific/Auckland", (2027, 1, 1, 0, 0), "2027-01", (2027, 1, 1), (2027, 2, 1)),
        ("Europe/Berlin", (2026, 3, 31, 1), "2026-03", (2026, 3, 1), (2026, 4, 1)),
    ],
)
def test_months(tz: str, local: tuple[int, ...], pid: str, first: tuple[int, ...], nxt: tuple[int, ...]) -> None:
    p = Period("month", tz)
    ts = at(tz, *local)
    assert p.period_id(ts) == pid
    assert p.bounds(ts) == (at(tz, *first), at(tz, *nxt))
    assert p.bounds_of(pid) == p.bounds(ts)


def test_leap_day_2028() -> None:
    p = Period("day", "Europe/Berlin")
    ts = at("Europe/Berlin", 2028, 2, 29, 18)
    assert p.period_id(ts) == "2028-02-29"
    assert p.bounds(ts) == (at("Europe/Berlin", 2028, 2, 29), at("Europe/Berlin", 2028, 3, 1))
    assert Period("month", "UTC").bounds_of("2028-02")[1] - Period("month", "UTC").bounds_of("2028-02")[0] == 29 * 86400
    assert Period("week", "UTC").period_id(at("UTC", 2028, 2, 29)) == "2028-W09"


@pytest.mark.parametrize(
    ("local", "pid", "monday"),
    [
        ((2026, 1, 1), "2026-W01", (2025, 12, 29)),  # Thursday: ISO week 1 starts in 2025
        ((2027, 1, 1), "2026-W53", (2026, 12, 28)),  # Friday: still the last week of 2026
        ((2027, 1, 3, 23, 59), "2026-W53", (2026, 12, 28)),  # Sunday night
        ((2027, 1, 4), "2027-W01", (2027, 1, 4)),  # Monday 00:00 sharp: the new week
    ],
)
def test_weeks_start_monday_across_year_boundaries(local: tuple[int, ...], pid: str, monday: tuple[int, ...]) -> None:
    for tz in ("UTC", "Asia/Kolkata", "Pacific/Auckland"):
        p = Period("week", tz)
        ts = at(tz, *local)
        assert p.period_id(ts) == pid
        assert p.bounds(ts)[0] == at(tz, *monday)
        assert p.bounds_of(pid) == p.bounds(ts)


@pytest.mark.parametrize("tz", ["UTC", "America/New_York", "Europe/Berlin", "Asia/Kolkata", "Pacific/Auckland"])
@pytest.mark.parametrize("kind", ["day", "week", "month"])
def test_an_instant_on_a_boundary_starts_the_next_period(tz: str, kind: str) -> None:
    p = Period(kind, tz)
    ts = at(tz, 2026, 3, 15, 10)
    start, end = p.bounds(ts)
    assert start <= ts < end
    assert p.bounds(end)[0] == end  # exactly on the boundary: the next period
    assert p.bounds(end - 1) == (start, end)  # one second before: this one
    assert p.period_id(end) != p.period_id(end - 1)
    assert p.locate(ts) == (p.period_id(ts), start, end)


def test_same_instant_different_zones() -> None:
    ts = at("UTC", 2026, 6, 30, 20)  # already July 1st in Kolkata (+5:30) and Auckland (+12)
    assert Period("month", "UTC").period_id(ts) == "2026-06"
    assert Period("month", "America/New_York").period_id(ts) == "2026-06"
    assert Period("month", "Asia/Kolkata").period_id(ts) == "2026-07"
    assert Period("day", "Pacific/Auckland").period_id(ts) == "2026-07-01"
    assert Period("day", "Asia/Kolkata").bounds(ts)[0] == at("UTC", 2026, 6, 30, 18, 30)


def test_bad_kind_and_zone_are_rejected() -> None:
    with pytest.raises(ValueError, match="unknown period"):
        Period("fortnight")
    with pytest.raises(ValueError, match="unknown time zone 'Mars/Olympus'"):
        Period("day", "Mars/Olympus")
    with pytest.raises(ValueError, match="not a week period id"):
        Period("week").bounds_of("2026-13")
