"""A parked detector's typed arrays are pickled by byte plane: the same arrays come back,
exactly sized, and a week-old detector's record packs smaller than plain pickling would."""

from __future__ import annotations

import pickle
import sys
import zlib
from array import array

import orjson
import pytest

from detectors import make_detector
from streams.common import packing
from streams.common.packing import pack_live, unpack_live


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packing, "_pickle_primers", [])
    monkeypatch.setattr(packing, "_primer_end", 0)


@pytest.mark.parametrize("code", ["b", "B", "h", "H", "i", "I", "l", "q", "f", "d"])
def test_arrays_come_back_the_same_and_exactly_sized(code: str) -> None:
    for n in (0, 1, 7, 386):
        vals = [(i * 37) % 100 - (0 if code.isupper() else 50) for i in range(n)]
        a = array(code, [v / 3 for v in vals] if code in "fd" else vals)
        got = unpack_live(pack_live({"last_end": 0}, {"a": a}))
        assert got is not None
        b = got[1]["a"]
        assert b.typecode == a.typecode and b.tobytes() == a.tobytes()
        assert sys.getsizeof(b) == sys.getsizeof(array(code, a.tolist()))  # no spare capacity


def _week(seed: int) -> object:
    det = make_detector("default", window_seconds=60)
    t0 = 1_767_571_200
    import random

    rng = random.Random(seed)
    for i in range(7 * 1440):
        x = 0.05 * rng.lognormvariate(0.0, 0.5) if rng.random() < 0.1 else 0.0
        det.update(t0 + 60 * (i + 1), x, 1.0 if x else 0.0)
    return det


def test_a_detector_round_trips_and_packs_smaller_than_plain_pickle() -> None:
    det, ref = _week(1), _week(2)
    pack_live({"last_end": 0}, ref)  # the dictionary
    blob = pack_live({"last_end": 1}, det)
    got = unpack_live(blob)
    assert got is not None
    assert orjson.dumps(got[1].to_state()) == orjson.dumps(det.to_state())  # type: ignore[attr-defined]
    woken, t = got[1], 1_767_571_200 + 7 * 86400
    for i in range(120):  # and it goes on to the same verdicts
        x = 0.4 if i == 60 else 0.05 * (i % 3)
        assert woken.update(t + 60 * i, x, 1.0) == det.update(t + 60 * i, x, 1.0)  # type: ignore[attr-defined]
    z = zlib.compressobj(1, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY,
                         pickle.dumps(({"last_end": 0}, ref), protocol=5))
    plain = len(z.compress(pickle.dumps(({"last_end": 1}, det), protocol=5)) + z.flush()) + 2
    assert len(blob) < 0.95 * plain


def test_a_week_old_record_deflates_smaller_than_at_level_1() -> None:
    # a parked record is deflated at level 6: ~4 % smaller than level 1 for a week-old
    # detector (issue 15: memory per watched user series), paid once per park
    det, ref = _week(3), _week(4)
    pack_live({"last_end": 0}, ref)  # the dictionary
    blob = pack_live({"last_end": 1}, det)
    z = zlib.compressobj(1, zlib.DEFLATED, -15, 8, zlib.Z_DEFAULT_STRATEGY, packing._pickle_primers[0])
    level_1 = len(z.compress(packing._dumps(({"last_end": 1}, det))) + z.flush()) + 2
    assert len(blob) < 0.98 * level_1, (len(blob), level_1)
