"""Per-series sums held as typed arrays, not lists (benchmarks.scale --breakdown): a list holds a
float or int object per entry, one set per watched series. Storage only: states read and write
the same lists, and main's states still load (tests/detectors/test_state_memory.py scores them)."""

from __future__ import annotations

import json
from array import array
from pathlib import Path

import pytest

from detectors import CountTail, SeasonalBaseline, detector_from_state

DATA = Path(__file__).parent / "data"


def test_a_state_written_by_main_loads_into_arrays_and_writes_the_same_lists() -> None:
    saved = json.loads((DATA / "default_state_main_0d000c8.json").read_text())
    det = detector_from_state(saved["detector"], saved["params"], saved["state"])
    models = dict(zip(det._names, det._models, strict=True))  # type: ignore[attr-defined]
    counts, seasonal = models["counts"], models["seasonal"]
    for a in (counts._floats, counts._disp_n, counts._n, seasonal._pool, seasonal._loc_dev):
        assert isinstance(a, array)
    for name in ("counts", "seasonal"):
        state = models[name].to_state()
        old = next(s for s in saved["state"]["models"] if s["detector"] == name) \
            if isinstance(saved["state"].get("models"), list) else None
        if old is not None:
            for key in ("disp", "disp_n", "cost", "recent", "n", "pool_dev", "pool_n"):
                if key in old:
                    assert state[key] == old[key], key


def test_fresh_models_write_lists_of_the_old_types() -> None:
    c, s = CountTail().to_state(), SeasonalBaseline().to_state()
    assert c["disp"] == [0.0] * 4 and c["disp_n"] == [0, 0] and c["cost"] == [0.0, 0.0] and c["recent"] == [0.0] * 4
    assert all(type(x) is int for x in c["n"] + c["disp_n"] + s["pool_n"])
    assert s["pool_dev"] == [0.0] * 3 and s["pool_n"] == [0, 0, 0]
    c2 = CountTail().load_state(c)
    c2._rebase()  # sets the cost and recent sums: still in the one array
    assert isinstance(c2._floats, array) and c2._floats.typecode == "d"


@pytest.mark.parametrize("cls, key, value", [(CountTail, "disp_n", [-1, 0]), (CountTail, "n", 2 ** 31),
                                             (SeasonalBaseline, "pool_n", [0, -3, 0])])
def test_counts_out_of_range_are_refused_with_the_field(cls: type, key: str, value: list[int] | int) -> None:
    state = cls().to_state()
    state[key] = value if isinstance(value, list) else [value] * len(state[key])  # past the array's type
    with pytest.raises(ValueError, match=r"counts|pools"):
        cls().load_state(state)
