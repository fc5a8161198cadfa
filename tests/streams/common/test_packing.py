"""A parked series' packed record: what it packs against, and that every packed value unpacks."""

from __future__ import annotations

import pickle

import pytest

from streams.common import packing
from streams.common.packing import PRIMER_EVERY, pack_live, unpack, unpack_live


class _Det:
    """Stands for a detector: an object with ``to_state()`` whose bytes change with its age."""

    def __init__(self, age: int) -> None:
        self.arr = bytes((age + i) % 251 for i in range(2000))

    def to_state(self) -> dict[str, int]:
        return {"n": len(self.arr), "first": self.arr[0]}


@pytest.fixture(autouse=True)
def _fresh(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packing, "_pickle_primers", [])
    monkeypatch.setattr(packing, "_primer_end", 0)


def test_a_newer_dictionary_every_primer_every_and_every_value_still_unpacks() -> None:
    t0 = 1_767_571_200
    packed = []
    for k in range(0, 3 * PRIMER_EVERY, 600):
        rec = {"labels": {"user": "u"}, "last_end": t0 + k}
        packed.append((rec, k, pack_live(rec, _Det(k // PRIMER_EVERY))))
    assert len(packing._pickle_primers) == 3  # the first record's, then one every PRIMER_EVERY
    assert {b[1] for _, _, b in packed} == {0, 1, 2}
    for rec, k, blob in packed:  # those packed against an older dictionary too
        got = unpack_live(blob)
        assert got is not None and got[0] == rec and got[1].arr == _Det(k // PRIMER_EVERY).arr
        assert unpack(blob) == {**rec, "state": _Det(k // PRIMER_EVERY).to_state()}
    # a record like the newest dictionary's packs small against it
    rec = {"labels": {"user": "u"}, "last_end": t0 + 3 * PRIMER_EVERY - 60}
    assert len(pack_live(rec, _Det(2))) < len(pickle.dumps((rec, _Det(2)))) // 10


def test_at_most_primer_max_dictionaries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(packing, "PRIMER_MAX", 2)
    blobs = [pack_live({"last_end": k * PRIMER_EVERY}, _Det(k)) for k in range(5)]
    assert len(packing._pickle_primers) == 2 and [b[1] for b in blobs] == [0, 1, 1, 1, 1]
    assert [unpack_live(b)[1].arr for b in blobs] == [_Det(k).arr for k in range(5)]  # type: ignore[index]


def test_a_fresh_dictionary_for_64_days_then_the_last() -> None:
    # a dictionary 22 days stale (PRIMER_MAX 32 stopped at 8 days) packed a 30-day-old sparse
    # user's record ~0.14 KB bigger than a fresh one (issue 15: memory per watched user series):
    # 256 dictionaries, the most the index byte names, keep one at most 6 h old for 64 days
    blobs = [pack_live({"last_end": k * PRIMER_EVERY}, _Det(k)) for k in range(300)]
    assert len(packing._pickle_primers) == 256
    assert [b[1] for b in blobs[:256]] == list(range(256)) and {b[1] for b in blobs[256:]} == {255}
    assert [unpack_live(b)[1].arr for b in blobs[::7]] == [_Det(k).arr for k in range(0, 300, 7)]  # type: ignore[index]
