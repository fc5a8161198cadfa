"""The last judged windows of one series, for the API's series chart: a ring of deflated blocks.

A deque of 240 dicts per series weighed about 96 KiB (``python -m benchmarks.scale``): more than
the series' detector. Six typed columns weighed about 7.8 KiB. Most of that repeats itself: a
user series spends in a tenth of its windows (the others observe 0 and score 0), its expected
value and bound change once an hour or when a window is learnt, and its window starts step by
the window length. So the windows are kept in blocks of :data:`BLOCK`: the newest block as
fixed-size records (grown as windows come), each full block as those records deflated (zlib
level 1), ~1.8 KiB for the same 240 windows. Reading them back gives the dicts the API has always served, the expected
value and upper bound to 7 significant digits (they are held in single precision).
"""

from __future__ import annotations

import math
import struct
import zlib
from collections.abc import Iterator
from typing import Any

__all__ = ["BLOCK", "RecentWindows"]


_F32_MAX = 3.4028234663852886e38

# Windows per block. Smaller blocks keep fewer windows as records (29 bytes each) but deflate
# worse and cost a bytes object (~33 bytes) each: 20-40 were within ~10 % of each other at 240
# windows (benchmarks.scale).
BLOCK = 30

# One window: start (unsigned 32-bit epoch seconds, to 2106; the first of a block, then the
# difference from the previous start: the same few bytes in every record, which deflate to
# almost nothing), observed (double: exact spend), expected and upper (single precision:
# estimates, shown to cents), score (double: a score of 0.9999 and one of 0.999999 differ in
# the sixth digit), anomaly flag. A full block's records are deflated as they are: by columns
# they deflated ~4 % better, but taking them apart in Python cost ~5x the deflating.
_REC = struct.Struct("<IdffdB")
# Raw deflate with a 1 KiB window (a block is 870 bytes) and small hash tables: zlib's defaults
# allocate and clear ~256 KiB per call, which took ~10x the time of deflating one block
# (~45 against ~450 us on the loaded machine), for the same output.
_WBITS, _MEM_LEVEL = -10, 2


def _digits7(x: float) -> float:
    """A single-precision column's value as the API shows it: 7 significant digits (what it
    holds), at most 6 decimals (as the doubles were shown)."""
    return round(float(f"{x:.7g}"), 6)


def _f32(x: float) -> float:
    """``x`` as a single-precision column holds it: rounded, and infinite past its range (as
    ``array("f")`` stores it, where packing it with ``struct`` would raise)."""
    try:
        return float(struct.unpack("<f", struct.pack("<f", x))[0])
    except OverflowError:
        return math.copysign(math.inf, x)


def _rows(records: bytes | bytearray, skip: int = 0) -> Iterator[dict[str, Any]]:
    """A block's windows as the API shows them, the first ``skip`` left out."""
    w = 0
    for k, (dw, o, e, u, s, a) in enumerate(_REC.iter_unpack(records)):
        w = dw if k == 0 else (w + dw) & 0xFFFFFFFF
        if k < skip:
            continue
        yield {
            "window_start": w,
            "observed_usd": round(o, 6),
            "expected_usd": _digits7(e),
            "upper_usd": _digits7(u),
            "score": s,  # full precision: 0.9999 vs 0.999999 matters
            "is_anomaly": bool(a),
        }


class RecentWindows:
    """The newest ``maxlen`` windows of a series (window start, observed, expected, upper bound,
    score, anomaly flag), oldest first when read. Appending past ``maxlen`` drops the oldest.

    Use it for what is appended often and read rarely (the API's chart, the HTML report's
    trace): a read inflates every block.

    >>> r = RecentWindows(2)
    >>> for w in (0, 60, 120):
    ...     r.append(w, 1.0, 0.5, 2.0, 0.9, w == 120)
    >>> [(d["window_start"], d["is_anomaly"]) for d in r]
    [(60, False), (120, True)]
    """

    __slots__ = ("_blocks", "_block", "_keep", "_live", "_n_live", "_prev", "maxlen")

    def __init__(self, maxlen: int) -> None:
        if maxlen < 1:
            raise ValueError("maxlen must be >= 1")
        self.maxlen = maxlen
        self._block = min(BLOCK, maxlen)
        # full blocks kept: enough for maxlen windows right after a block is closed
        self._keep = -(-maxlen // self._block)
        self._blocks: list[bytes] = []  # full blocks' records, deflated, oldest first
        # The newest block's records, grown as windows come (a block's worth preallocated was
        # 870 bytes per series, half of it empty on average) and replaced once deflated.
        self._live = bytearray()
        self._n_live = 0
        self._prev = 0  # the latest window start

    def append(self, window_start: int, observed: float, expected: float, upper: float, score: float,
               is_anomaly: bool) -> None:
        upper = upper if upper < _F32_MAX else _F32_MAX  # (a bound of e**700 means "never" all the same)
        i = self._n_live
        w = int(window_start)
        if not 0 <= w <= 0xFFFFFFFF:
            raise OverflowError(f"window start {w} does not fit 32 bits")
        dw = w if i == 0 else (w - self._prev) & 0xFFFFFFFF
        flag = 1 if is_anomaly else 0
        try:
            self._live += _REC.pack(dw, observed, expected, upper, score, flag)
        except OverflowError:  # an expected value past single precision: held as infinite
            self._live += _REC.pack(dw, observed, _f32(expected), _f32(upper), score, flag)
        self._prev = w
        if i + 1 < self._block:
            self._n_live = i + 1
            return
        # the block is full: deflate it into the ring, dropping the oldest past what is kept
        z = zlib.compressobj(1, zlib.DEFLATED, _WBITS, _MEM_LEVEL)
        self._blocks.append(z.compress(self._live) + z.flush())
        if len(self._blocks) > self._keep:
            del self._blocks[0]
        self._live = bytearray()  # (a cleared bytearray keeps its allocation)
        self._n_live = 0

    def __len__(self) -> int:
        held = len(self._blocks) * self._block + self._n_live
        return held if held < self.maxlen else self.maxlen

    def clear(self) -> None:
        self._blocks.clear()
        self._live = bytearray()
        self._n_live = 0

    def __iter__(self) -> Iterator[dict[str, Any]]:
        skip = len(self._blocks) * self._block + self._n_live - self.maxlen
        for block in list(self._blocks):
            if skip >= self._block:
                skip -= self._block
                continue
            yield from _rows(zlib.decompress(block, _WBITS), max(skip, 0))
            skip = 0
        if self._n_live:
            yield from _rows(self._live[:self._n_live * _REC.size], max(skip, 0))
