"""What each hour of the last week cost: the evidence that a burst is the series' own weekly habit."""

from __future__ import annotations

import math
from array import array
from typing import Any

from detectors.f32 import pack_f32, unpack_f32

__all__ = ["WeekAgo"]

_HOURS = 168
# 1970-01-01 was a Thursday: hour 0 of the epoch is hour 72 of a Monday-based week.
_EPOCH_HOUR_OF_WEEK = 72


class WeekAgo:
    """Per hour of the week (UTC), the spend of its last occurrence: the hour's total and its
    largest window.

    :meth:`covers` says whether a window is no larger than the largest window of the same hour
    exactly a week ago, and its hour so far (with it) has cost no more than that hour did in
    all: a burst the series already had at this hour last week, in size and in total. A spike
    larger than last week's, or an hour that keeps spending past last week's total, is not
    covered; nor is anything in an hour that has no data from exactly a week before.

    Learns every window (whatever a detector made of it): it records what happened.
    168 single-precision totals and maxima and 168 hours, ~2 KB per series.

    >>> w = WeekAgo(60.0)
    >>> t0 = 1_704_067_200.0  # a Monday 00:00 UTC
    >>> for i in range(1, 60 * 169 + 1):  # a week and an hour of $1 windows, $30 at 10:30
    ...     w.learn(t0 + 60 * i, 30.0 if i == 631 else 1.0)
    >>> week = 7 * 86400
    >>> w.covers(t0 + week + 60 * 631, 30.0), w.covers(t0 + week + 60 * 631, 31.0)
    (True, False)
    >>> w.covers(t0 + week + 60 * 700, 1.0)  # 11:39: that hour has no data from a week before yet
    False
    """

    __slots__ = ("window_seconds", "_cur", "_cur_max", "_cur_sum", "_hour", "_max", "_sum")

    def __init__(self, window_seconds: float) -> None:
        self.window_seconds = window_seconds
        self._sum = array("f", [0.0]) * _HOURS
        self._max = array("f", [0.0]) * _HOURS
        self._hour = array("i", [-1]) * _HOURS  # epoch hour the slot's data is from (-1: none)
        self._cur = -1  # the epoch hour being summed (-1: none)
        self._cur_sum = 0.0
        self._cur_max = 0.0

    def _hour_of(self, ts: float) -> int:
        return int((ts - self.window_seconds) // 3600)

    def covers(self, ts: float, value: float) -> bool:
        """Whether the same hour a week ago had a window at least this large and cost at least
        this hour so far, this window included."""
        hour = self._hour_of(ts)
        slot = (hour + _EPOCH_HOUR_OF_WEEK) % _HOURS
        if self._hour[slot] != hour - _HOURS:
            return False
        so_far = self._cur_sum if self._cur == hour else 0.0
        return value <= self._max[slot] and so_far + value <= self._sum[slot]

    def learn(self, ts: float, value: float) -> None:
        hour = self._hour_of(ts)
        if hour != self._cur:
            if hour < self._cur:
                return  # an old window (out of order): the hour it belongs to is filed
            if self._cur >= 0:
                slot = (self._cur + _EPOCH_HOUR_OF_WEEK) % _HOURS
                self._sum[slot] = self._cur_sum
                self._max[slot] = self._cur_max
                self._hour[slot] = self._cur
            self._cur, self._cur_sum, self._cur_max = hour, 0.0, 0.0
        if value > 0.0:
            self._cur_sum += value
            if value > self._cur_max:
                self._cur_max = value

    def to_state(self) -> list[Any]:
        return [self._cur, self._cur_sum, self._cur_max, list(self._hour), pack_f32(self._sum), pack_f32(self._max)]

    @classmethod
    def from_state(cls, state: Any, window_seconds: float) -> WeekAgo:
        try:
            cur, cur_sum, cur_max, hours, sums, maxes = state
            cur, cur_sum, cur_max = int(cur), float(cur_sum), float(cur_max)
            hours = [int(h) for h in hours]
            sums, maxes = unpack_f32(sums), unpack_f32(maxes)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"malformed week-ago state: {exc!r}") from exc
        if not (len(hours) == len(sums) == len(maxes) == _HOURS):
            raise ValueError(f"week-ago state must have {_HOURS} hours")
        if not all(math.isfinite(x) and x >= 0.0 for x in [*sums, *maxes, cur_sum, cur_max]):
            raise ValueError("week-ago state has negative or non-finite spend")
        if not all(-1 <= h < 2 ** 31 for h in [*hours, cur]):
            raise ValueError("week-ago state hours must fit 32 bits")
        self = cls(window_seconds)
        self._cur, self._cur_sum, self._cur_max = cur, cur_sum, cur_max
        self._hour, self._sum, self._max = array("i", hours), array("f", sums), array("f", maxes)
        return self
