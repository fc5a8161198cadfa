"""Counts held in narrow arrays (detectors.compact) widen when one outgrows its type, with the
same values, verdicts and states as full-width arrays; derived parameters are one float object
for all the clones of a detector."""

from __future__ import annotations

import hashlib
import json
import math
import random
from array import array
from pathlib import Path
from typing import Any

import pytest

from detectors import CountTail, LevelShift, SeasonalBaseline, detector_from_state, make_detector
from detectors.compact import narrowest, shared, widened

DATA = Path(__file__).parent / "data"
T0 = 1_767_571_200.0


def _feed(det: Any, start: int, hours: int, seed: int) -> list[dict[str, Any]]:
    rng = random.Random(seed)
    out = []
    for i in range(start, start + hours):
        value = rng.lognormvariate(0.0, 0.4) * (9.0 if i % 17 == 0 else 1.0)
        out.append(det.update(T0 + 3600.0 * (i + 1), value, float(round(value * 20))).to_dict())
    return out


# (detector, its global slot, the count arrays: attribute, state key, narrow and wide typecodes)
CASES = [
    (SeasonalBaseline, 192, [("_n", "n", "H", "i"), ("_periods", "periods", "B", "H")]),
    (CountTail, 24, [("_n", "n", "H", "i")]),
    (LevelShift, 24, [("_n", "n", "H", "i")]),
]


@pytest.mark.parametrize("cls, glob, arrays", CASES, ids=[c[0].name for c in CASES])
def test_a_count_that_outgrows_its_narrow_array_widens_with_the_same_verdicts(
    cls: type, glob: int, arrays: list[tuple[str, str, str, str]]
) -> None:
    det = cls(window_seconds=3600.0)
    _feed(det, 0, 60, seed=1)
    state = det.to_state()
    for _, key, narrow, _wide in arrays:  # the global slot one short of its narrow type's top
        state[key][glob] = (1 << (8 * array(narrow).itemsize)) - 1
    compact, full = cls(window_seconds=3600.0).load_state(state), cls(window_seconds=3600.0).load_state(state)
    for attr, _, narrow, wide in arrays:
        assert getattr(compact, attr).typecode == narrow
        setattr(full, attr, array(wide, getattr(full, attr).tolist()))  # as before detectors.compact
    assert _feed(compact, 60, 30, seed=2) == _feed(full, 60, 30, seed=2)
    assert compact.to_state() == full.to_state()
    for attr, key, narrow, wide in arrays:
        assert getattr(compact, attr).typecode == wide
        assert compact.to_state()[key][glob] > (1 << (8 * array(narrow).itemsize)) - 1


@pytest.mark.parametrize("cls, glob, arrays", CASES, ids=[c[0].name for c in CASES])
def test_states_load_into_the_narrowest_array_that_holds_their_counts(
    cls: type, glob: int, arrays: list[tuple[str, str, str, str]]
) -> None:
    det = cls(window_seconds=3600.0)
    _feed(det, 0, 30, seed=3)
    state = det.to_state()
    for attr, key, narrow, wide in arrays:
        assert getattr(cls(window_seconds=3600.0).load_state(state), attr).typecode == narrow
        past = 1 << (8 * array(narrow).itemsize)  # one past the narrow type's top
        big = dict(state, **{key: [*state[key][:glob], past, *state[key][glob + 1:]]})
        loaded = cls(window_seconds=3600.0).load_state(big)
        assert getattr(loaded, attr).typecode == wide and loaded.to_state()[key] == big[key]


def test_narrowest_and_widened() -> None:
    assert narrowest([0, 255], "BH").typecode == "B"
    assert narrowest([0, 256], "BH").typecode == "H"
    assert narrowest([-1, 3], "Hi").typecode == "i"  # only unsigned codes come before the last
    with pytest.raises(OverflowError):
        narrowest([2 ** 40], "Hi")
    a = widened(array("H", [1, 65535]), "i")
    assert a.typecode == "i" and a.tolist() == [1, 65535]


def test_clones_share_their_derived_parameters() -> None:
    proto = make_detector("default", window_seconds=60)
    a, b = proto.clone(), proto.clone()
    for ma, mb in zip(a._models, b._models, strict=True):  # type: ignore[attr-defined]
        assert ma._alpha_window is mb._alpha_window
    assert shared(-0.0) is not shared(0.0) and math.copysign(1.0, shared(-0.0)) == -1.0
    assert shared(float("nan")) != shared(float("nan"))  # NaN is returned, not kept


def test_a_state_written_before_the_narrow_arrays_loads_and_scores_identically() -> None:
    # data/default_state_main_a30f899.json: a default detector's state written by main at
    # a30f899 (full-width arrays, per-instance floats) after a week of a user series spending in
    # a quarter of its minutes, the verdicts main then gave on the next 240 windows (a six-window
    # runaway among them) and digests of every verdict dict and of the state after them. The
    # storage changed, nothing else: the same verdicts to the bit, the same state.
    saved = json.loads((DATA / "default_state_main_a30f899.json").read_text())
    det = detector_from_state(saved["detector"], saved["params"], saved["state"])
    assert det.to_state() == saved["state"]
    verdicts = []
    for ts, value, count, expected, upper, score, is_anomaly in saved["next"]:
        v = det.update(ts, value, count)
        assert (v.expected, v.upper, v.score, v.is_anomaly) == (expected, upper, score, is_anomaly)
        verdicts.append(v.to_dict())
    assert sum(row[-1] for row in saved["next"]) == 6
    assert hashlib.sha256(json.dumps(verdicts).encode()).hexdigest() == saved["verdicts_sha256"]
    after = hashlib.sha256(json.dumps(det.to_state(), sort_keys=True).encode()).hexdigest()
    assert after == saved["state_after_sha256"]
