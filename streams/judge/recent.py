"""The last judged windows of one series, for the API's series chart: a fixed ring of columns.

A deque of 240 dicts per series weighed about 96 KiB (``python -m benchmarks.scale``): more than
the series' detector. The same 240 windows as six typed columns weigh about 7 KiB, and reading
them back gives the dicts the API has always served, the expected value and upper bound to 7
significant digits (they are held in single precision).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterator
from typing import Any

__all__ = ["RecentWindows"]


_F32_MAX = 3.4028234663852886e38


def _digits7(x: float) -> float:
    """A single-precision column's value as the API shows it: 7 significant digits (what it
    holds), at most 6 decimals (as the doubles were shown)."""
    return round(float(f"{x:.7g}"), 6)


class RecentWindows:
    """The newest ``maxlen`` windows of a series (window start, observed, expected, upper bound,
    score, anomaly flag), oldest first when read. Appending past ``maxlen`` drops the oldest.

    >>> r = RecentWindows(2)
    >>> for w in (0, 60, 120):
    ...     r.append(w, 1.0, 0.5, 2.0, 0.9, w == 120)
    >>> [(d["window_start"], d["is_anomaly"]) for d in r]
    [(60, False), (120, True)]
    """

    __slots__ = ("_anomaly", "_expected", "_head", "_len", "_observed", "_score", "_start", "_upper", "maxlen")

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self.maxlen = maxlen
        # One per watched series (~7 KiB at 240 windows; 9.8 with every column in 64 bits):
        # window starts as unsigned 32-bit epoch seconds (to 2106); the model's expected value
        # and upper bound in single precision (7 significant digits: estimates, shown to
        # cents); the observed spend and the score in doubles (exact spend; a score of 0.9999
        # and one of 0.999999 differ in the sixth digit).
        self._start = array("I", bytes(4 * maxlen))
        self._observed = array("d", bytes(8 * maxlen))
        self._expected = array("f", bytes(4 * maxlen))
        self._upper = array("f", bytes(4 * maxlen))
        self._score = array("d", bytes(8 * maxlen))
        self._anomaly = bytearray(maxlen)
        self._head = 0  # where the next window goes
        self._len = 0

    def append(self, window_start: int, observed: float, expected: float, upper: float, score: float,
               is_anomaly: bool) -> None:
        i = self._head
        self._start[i] = int(window_start)
        self._observed[i] = observed
        self._expected[i] = expected
        self._upper[i] = upper if upper < _F32_MAX else _F32_MAX  # (a bound of e**700 means "never" all the same)
        self._score[i] = score
        self._anomaly[i] = 1 if is_anomaly else 0
        self._head = i + 1 if i + 1 < self.maxlen else 0
        if self._len < self.maxlen:
            self._len += 1

    def __len__(self) -> int:
        return self._len

    def clear(self) -> None:
        self._head = self._len = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        n, cap = self._len, self.maxlen
        first = (self._head - n) % cap
        for k in range(n):
            i = (first + k) % cap
            yield {
                "window_start": self._start[i],
                "observed_usd": round(self._observed[i], 6),
                "expected_usd": _digits7(self._expected[i]),
                "upper_usd": _digits7(self._upper[i]),
                "score": self._score[i],  # full precision: 0.9999 vs 0.999999 matters
                "is_anomaly": bool(self._anomaly[i]),
            }
