"""Single-precision arrays in a detector's state: base64 text of their bytes, not JSON numbers.

A detector that holds a statistic per slot in an ``array("f")`` (the seasonal profile's
location and scale, a calibrator's bins) writes it into its state with :func:`pack_f32` and
reads it back with :func:`unpack_f32`. Use it for such arrays only: a double written this way
would be rounded.

Why: a float32 written as a JSON number is its shortest double repr (``-2.995732307434082``,
~19 characters), four bytes as base64 take 5.3, and the round trip is exact either way. The
default detector's state after a week fell from ~16 to ~10 KiB of JSON (python -m
benchmarks.scale), which the judge changelog writes and the judge table's local copy holds,
per series. A state written with lists of numbers (before this) still loads: :func:`unpack_f32`
takes either.
"""

from __future__ import annotations

import base64
import binascii
import sys
from array import array
from typing import Any

__all__ = ["pack_f32", "unpack_f32"]

_BIG_ENDIAN = sys.byteorder == "big"


def pack_f32(values: array[float]) -> str:
    """``values`` (an ``array("f")``) as base64 text of its little-endian bytes."""
    if values.typecode != "f":
        raise TypeError(f"pack_f32 takes an array('f'), not array({values.typecode!r})")
    if _BIG_ENDIAN:
        values = array("f", values)
        values.byteswap()
    return base64.b64encode(values.tobytes()).decode("ascii")


def unpack_f32(value: Any) -> list[float]:
    """The numbers of a state field: base64 text written by :func:`pack_f32`, or a list of
    numbers (states written before). Raises ``ValueError`` on anything else."""
    if isinstance(value, str):
        try:
            raw = base64.b64decode(value.encode("ascii"), validate=True)
        except (binascii.Error, UnicodeEncodeError) as exc:
            raise ValueError(f"single-precision field is not base64: {exc!r}") from exc
        if len(raw) % 4:
            raise ValueError(f"single-precision field has {len(raw)} bytes, not a multiple of 4")
        out = array("f")
        out.frombytes(raw)
        if _BIG_ENDIAN:
            out.byteswap()
        return out.tolist()
    if isinstance(value, list | tuple):
        return [float(x) for x in value]
    raise ValueError(f"single-precision field must be base64 text or a list, not {type(value).__name__}")
