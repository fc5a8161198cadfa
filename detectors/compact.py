"""Per-series numbers held compactly in memory, with the same values: narrow integer arrays that
widen when a count outgrows them, and derived parameters shared between a detector's clones.

A worker holds one detector per watched series (100k user series: issue 15, item 5), so every
byte of a detector's learnt state counts 100k times. Use these for a detector's counts that are
small for most of a series' life (:func:`narrowest` when loading a state, :func:`widened` when
one outgrows its type while learning) and for floats derived from its parameters
(:func:`shared`). They change how values are stored, never the values: every verdict and every
``to_state()`` is the same as with full-width arrays and per-instance floats
(``python -m benchmarks.scale --breakdown`` measures the bytes).
"""

from __future__ import annotations

import math
from array import array

__all__ = ["known", "narrowest", "shared", "shared_param", "widened"]

# Largest value of each unsigned typecode that may come before a wider one in ``narrowest``.
_UNSIGNED_MAX = {"B": 0xFF, "H": 0xFFFF, "I": 0xFFFFFFFF}


def narrowest(values: list[int], codes: str) -> array[int]:
    """``values`` in the first array typecode of ``codes`` that holds them all; the last one
    takes what no other does (and raises ``OverflowError`` on what it cannot hold either).

    Every code but the last must be unsigned (``B``, ``H``, ``I``): ``narrowest(n, "Hi")``
    holds counts in 16 bits while they fit, else in 32.

    >>> narrowest([0, 3, 255], "BH").typecode, narrowest([0, 256], "BH").typecode
    ('B', 'H')
    """
    for code in codes[:-1]:
        top = _UNSIGNED_MAX[code]
        if all(0 <= x <= top for x in values):
            return array(code, values)
    return array(codes[-1], values)


def widened(values: array[int], code: str) -> array[int]:
    """``values`` as an array of the wider typecode ``code``: for a count that no longer fits
    (catch ``OverflowError`` on the store, widen, store again).

    Built from a list, so it is sized exactly (``array(code, other_array)`` over-allocates).

    >>> a = array("B", [7, 255])
    >>> try:
    ...     a[1] += 1
    ... except OverflowError:
    ...     a = widened(a, "H")
    ...     a[1] = 256
    >>> a
    array('H', [7, 256])
    """
    return array(code, values.tolist())


_SHARED: dict[tuple[float, bool], float] = {}
_BY_VALUE: dict[float, float] = {}  # the same non-zero floats by value (for known: one lookup)


def shared(x: float) -> float:
    """The one float object equal to ``x`` (the sign of a zero included) that every caller gets.

    For a finite float a detector derives from its parameters in ``__init__`` (a learning rate
    per window, a log floor): each clone would otherwise hold its own 24-byte float object of
    the same value, one per watched series. The table grows only with the distinct values
    asked for (a policy's parameter sets); NaN is returned as it is.

    >>> a, b = shared(1.0 - 0.8 ** (60 / 3600)), shared(1.0 - 0.8 ** (60 / 3600))
    >>> a is b
    True
    """
    if x != x:
        return x
    got = _SHARED.setdefault((x, math.copysign(1.0, x) > 0.0), x)
    if x:
        _BY_VALUE[x] = got
    return got


def known(x: float) -> float:
    """The float :func:`shared` gives for ``x`` if some caller has asked for that value (the
    sign of a zero included), else ``x`` itself: the table does not grow.

    For a float of a detector's learnt state as it is unpickled: where it equals a shared
    constant (a rate, or the 0.0 of a level not moved yet) it takes no object of its own.
    """
    if x:  # not a zero: equal values are the same double (a NaN equals no other)
        return _BY_VALUE.get(x, x)
    if x == 0.0:
        return _SHARED.get((x, math.copysign(1.0, x) > 0.0), x)
    return x  # NaN


_PARAMS: dict[tuple[type, object], object] = {}


def shared_param(v: object) -> object:
    """The one object equal to ``v`` (of its very type) that every caller gets, for a
    parameter that is a string, an int or a tuple of strings (a combiner's component names);
    any other value is returned as it is. Floats: :func:`shared`. The table grows only with
    the distinct values asked for (a policy's parameter sets).

    >>> shared_param(("a", "b")) is shared_param(("a",) + ("b",))
    True
    """
    t = type(v)
    if t is str or t is int or (t is tuple and all(type(x) is str for x in v)):  # type: ignore[attr-defined]
        return _PARAMS.setdefault((t, v), v)
    return v
