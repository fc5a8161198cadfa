"""Big values packed for the worker's memory: a version byte, then their JSON deflated.

What the ``judge`` table's local data keeps of each series' state (:func:`streams.worker.tables.persist`
with ``packed``), and what the judge holds of a parked series (:class:`streams.judge.core.JudgeCore`):
the same bytes, one copy. Packed values never leave the process.
"""

from __future__ import annotations

import copyreg
import io
import pickle
import zlib
from array import array
from typing import Any

import orjson

__all__ = ["pack", "pack_live", "unpack", "unpack_live"]


# The first byte of a packed value says its format. JSON never starts with a control byte, so
# a value packed before the version byte existed (plain JSON bytes) still unpacks.
_DEFLATED = b"\x01"  # JSON, zlib level 1
_PRIMED = b"\x02"  # JSON, raw deflate at level 1 with the process's dictionary (_primer)
# The dictionary deflate starts from: the JSON of the first value this process packed. Every
# series' state has the same keys in the same order, and the same kinds of number, so a state
# deflates ~10 % smaller against another one (~4.7 -> ~4.3 KB for a default detector after a
# week) at the same cost. Packed values live only in this process's memory (the changelog
# records are the values themselves), so one dictionary per process is all that must agree.
_primer: bytes | None = None
# A parked series (streams.judge.core): its record without the state, and its detector itself,
# pickled, raw deflate at level 6 against one of the process's pickle dictionaries (the byte
# after the version byte says which). Loaded back in ~1/5 of the time a detector takes to be
# rebuilt from its JSON state (no clone, no validation of what this process wrote), and ~25 %
# smaller.
_PICKLED = b"\x03"
# Level 6, not 1: a week-old sparse user's record 2,660 -> 2,547 bytes (benchmarks.scale
# --users 30, its 27 parked records deflated again offline against the same dictionaries:
# level 4 2,584, 9 2,531) for ~105 us a pack instead of ~84 (the least of 15 runs). A pack is
# paid once per park (a sparse user: about one window in ten), inflating costs the same.
_PICKLE_LEVEL = 6
# The pickle dictionaries, oldest first: the first record packed, then, every PRIMER_EVERY
# seconds of the records' event time (their ``last_end``), the one packed then, up to
# PRIMER_MAX of them (~7 KB each), the last one used from there on. A dictionary a minute old
# packs a week-old detector to ~3.3 KB, one from a detector a few days old to ~2.9, one hours
# old to ~2.8 (benchmarks.scale --users 30; docs/benchmarks.md#fresher-dictionaries): the
# detector's own arrays fill and change with its age. The older ones stay for the values packed
# against them (a parked series keeps its bytes until it wakes). PRIMER_MAX is 256, the most the
# index byte names: one at most 6 h old for the first 64 days of a process's event time, ~1.8 MB
# of dictionaries at most. 32 stopped at 8 days, and a dictionary grows stale by ~60 bytes of a
# sparse user's record a day (a week-old record against dictionaries 0 h, 42 h and 162 h older:
# 2,547, 2,629, 2,838 bytes): after 30 days, 3,417 -> 3,293 bytes of detector per user series
# (benchmarks.scale --users 30 --days 30).
PRIMER_EVERY = 6 * 3600
PRIMER_MAX = 256
_pickle_primers: list[bytes] = []
_primer_end = 0  # the event time (last_end) of the newest dictionary's record


# The typed arrays of a pickled detector (its slots' single-precision locations and scales, its
# calibrators' bins, its counts) are pickled by byte plane: every item's first byte, then every
# second byte, ... (Blosc's shuffle, as streams.common.spend does for spend chunks). A float's
# sign, exponent and top mantissa bits repeat from slot to slot and its low bytes are noise:
# interleaved, deflate finds few repeats; by plane, the high planes deflate to a few bytes. A
# week-old sparse user's record: ~3,020 -> ~2,810 bytes (docs/benchmarks.md#arrays-by-byte-plane).
# Unpickling gives the same typecode and items, in an array of exactly their size (the default
# reconstructor over-allocates ~7 %: every woken detector held that).


def _unplane(code: str, planes: bytes) -> array[Any]:
    """The array whose items :func:`_by_plane` wrote as ``planes`` (exactly sized)."""
    k = array(code).itemsize
    n = len(planes) // k
    out = array(code, bytes(k)) * n
    view = memoryview(out).cast("B")
    for i in range(k):
        view[i::k] = planes[i * n : (i + 1) * n]
    return out


def _by_plane(a: array[Any]) -> tuple[Any, ...]:
    """Pickle ``a`` by byte plane (see above)."""
    k = a.itemsize
    raw = a.tobytes()
    return _unplane, (a.typecode, b"".join(raw[i::k] for i in range(k)))


# only arrays take the Python reducer; everything else pickles as pickle.dumps would
_DISPATCH: dict[type, Any] = {**copyreg.dispatch_table, array: _by_plane}


def _dumps(value: Any) -> bytes:
    buf = io.BytesIO()
    p = pickle.Pickler(buf, protocol=5)
    p.dispatch_table = _DISPATCH
    p.dump(value)
    return buf.getvalue()


def pack(value: Any) -> bytes:
    """``value`` as the judge table's local data keeps a big state: a version byte, then its
    JSON deflated at level 1 against the process's dictionary (the first value packed). Level
    1 because it is paid on every checkpoint write, and unpacking only on a restore: a default
    detector state's 8-16 KB of JSON deflate to ~4 KB at ~70 us more than ``orjson.dumps``
    alone; level 6 gains ~4 % more at 2x the time.

    Why the copy is kept at all (rather than dropped once the judge holds the live state):
    Faust re-reads a changelog partition only when it is newly assigned. One kept across a
    rebalance is not read again, yet the judge forgets its state on every revoke (eager
    rebalancing revokes them all) and restores from this local data: without the copy, it
    would come back without its detectors."""
    global _primer
    raw = orjson.dumps(value)
    if _primer is None:
        _primer = raw
    z = zlib.compressobj(1, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, _primer)
    return _PRIMED + z.compress(raw) + z.flush()


def pack_live(record: dict[str, Any], state: Any) -> bytes:
    """A checkpoint record whose ``state`` is an object with ``to_state()`` (a detector), packed
    with the object itself (pickled): what :func:`unpack` gives back is the record with
    ``state`` as ``to_state()`` makes it, and :func:`unpack_live` the object. ``record`` is the
    record without ``state``. Never leaves the process (the changelog gets the record)."""
    global _primer_end
    raw = _dumps((record, state))
    primers = _pickle_primers
    end = record.get("last_end")
    if not primers or (len(primers) < PRIMER_MAX and isinstance(end, int) and end >= _primer_end + PRIMER_EVERY):
        primers.append(raw)
        _primer_end = end if isinstance(end, int) else 0
    z = zlib.compressobj(_PICKLE_LEVEL, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, primers[-1])
    return _PICKLED + bytes((len(primers) - 1,)) + z.compress(raw) + z.flush()


def unpack_live(value: bytes) -> tuple[dict[str, Any], Any] | None:
    """The record (without ``state``) and the object :func:`pack_live` packed; None for a value
    of another format."""
    if value[:1] != _PICKLED:
        return None
    z = zlib.decompressobj(-15, zdict=_pickle_primers[value[1]])  # packed by this process, which holds it
    record, state = pickle.loads(z.decompress(memoryview(value)[2:]) + z.flush())  # this process's own bytes only
    return record, state


def unpack(value: bytes) -> Any:
    """What :func:`pack` packed (or :func:`pack_live`: the record with its object's
    ``to_state()``); the formats before it (zlib without a dictionary, plain JSON bytes) too."""
    head = value[:1]
    if head == _PICKLED:
        got = unpack_live(value)
        assert got is not None
        return {**got[0], "state": got[1].to_state()}
    if head == _PRIMED:
        assert _primer is not None  # packed by this process, which set it then
        z = zlib.decompressobj(-15, zdict=_primer)
        return orjson.loads(z.decompress(memoryview(value)[1:]) + z.flush())
    if head == _DEFLATED:
        return orjson.loads(zlib.decompress(memoryview(value)[1:]))
    return orjson.loads(value)
