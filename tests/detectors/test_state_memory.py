"""Compact detector state (issue 15, item 5): what it may not change, and what keeps it compact.

The states held in memory moved to single-precision floats, byte arrays and slots. A worker
upgraded in place restores what its predecessor checkpointed: ``data/default_state_main_0d000c8.json``
is a default detector's state written by main at 0d000c8 (doubles) after a week of a sparse
series (a quarter of its minutes with spend, a burst now and then), with the verdicts main
gave on the 240 windows after it (one spike among them).
"""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest

from detectors import Combined, CountTail, LevelShift, SeasonalBaseline, detector_from_state, make_detector
from detectors.calibration import _MEMORY, _N, TailCalibrator
from detectors.f32 import unpack_f32

DATA = Path(__file__).parent / "data"


def test_state_written_by_main_loads_and_scores_the_same() -> None:
    saved = json.loads((DATA / "default_state_main_0d000c8.json").read_text())
    det = detector_from_state(saved["detector"], saved["params"], saved["state"])
    flagged = 0
    for ts, value, count, expected, upper, score, is_anomaly in saved["next"]:
        v = det.update(ts, value, count)
        # single-precision slots and bins: the same verdicts up to float noise
        assert v.expected == pytest.approx(expected, rel=1e-5, abs=1e-12)
        assert v.upper == pytest.approx(upper, rel=1e-5, abs=1e-12)
        assert v.score == pytest.approx(score, abs=1e-6)
        assert v.is_anomaly == is_anomaly
        flagged += v.is_anomaly
    assert flagged == 1


def test_calibrator_state_with_double_sized_weights_is_rescaled_on_load() -> None:
    # Bins written with doubles grew up to 1e100 before they were rescaled; single-precision
    # bins hold ~3.4e38, so a state whose weight passed the new bound is brought back on load.
    rng = random.Random(3)
    cal = TailCalibrator()
    for _ in range(3 * _MEMORY):
        cal.learn(rng.gauss(0.0, 1.0))
    n, w, total, packed = cal.to_state()
    c = unpack_f32(packed)
    scale = 1e60
    old = [n, w * scale, total * scale, [x * scale for x in c]]
    twin = TailCalibrator.from_state(old)
    assert twin.to_state()[1] == 1.0
    for z in (-1.0, 0.0, 1.5, 3.0, 6.0, 40.0):
        assert twin.sf(z) == pytest.approx(cal.sf(z), rel=1e-6)
    for _ in range(100):
        z = rng.gauss(0.0, 1.0)
        cal.learn(z)
        twin.learn(z)
    assert twin.sf(2.0) == pytest.approx(cal.sf(2.0), rel=1e-5)


def test_calibrator_refuses_bins_out_of_single_precision_range() -> None:
    with pytest.raises(ValueError, match="single-precision"):
        TailCalibrator.from_state([10, 1.0, 1e39, [1e39] + [0.0] * (_N - 1)])


@pytest.mark.parametrize("cls", [Combined, LevelShift, SeasonalBaseline, CountTail])
def test_many_attribute_detectors_keep_everything_in_slots(cls: type) -> None:
    # One detector per watched series: an attribute missing from __slots__ goes into an
    # instance dict, ~1.6 KiB per series once a class has more than 30 of them.
    det = cls() if cls is Combined else cls(window_seconds=60.0)
    rng = random.Random(1)
    for i in range(300):
        det.update(1_767_571_200.0 + 60 * (i + 1), rng.lognormvariate(0.0, 0.3), 5.0)
    det.rebase()
    assert det.__dict__ == {}, f"attributes outside __slots__: {sorted(det.__dict__)}"
    if isinstance(det, Combined):
        for m in det._models:
            assert m.__dict__ == {}, f"{m.name} attributes outside __slots__: {sorted(m.__dict__)}"


@pytest.mark.parametrize("name", ["seasonal", "changepoint"])
def test_single_precision_slots_refuse_values_out_of_range(name: str) -> None:
    det = make_detector(name)
    state = det.to_state()
    state["loc"] = [1e39] * len(unpack_f32(state["loc"]))
    with pytest.raises(ValueError, match="single-precision"):
        det.load_state(state)
    assert math.isfinite(unpack_f32(det.to_state()["loc"])[0])  # the state before the refused one


def test_seasonal_hours_and_periods_round_trip_a_state_written_by_main() -> None:
    # The slots' latest hours are held modulo 2**16 in memory; the state gets the epoch hours.
    saved = json.loads((DATA / "default_state_main_0d000c8.json").read_text())["state"]["models"][0]
    det = make_detector("seasonal").load_state(saved)
    state = det.to_state()
    assert state["last"] == saved["last"] and state["periods"] == saved["periods"]


def test_seasonal_slot_hours_across_the_wrap_of_their_16_bits() -> None:
    # Epoch hour 524,288 is 0 modulo 2**16: a slot whose first data comes then (its stored
    # hour equals the "no data" one) counts it, and the state gets the full hours back.
    det = make_detector("seasonal", window_seconds=3600.0)
    hour = 8 * 65_536
    det.update((hour + 1) * 3600.0, 1.0)
    state = det.to_state()
    hod = 168 + hour % 24
    touched = [i for i, p in enumerate(state["periods"]) if p]
    assert len(touched) == 3 and hod in touched and 192 in touched
    assert all(state["periods"][i] == 1 and state["last"][i] == hour for i in touched)
    det.update((hour - 23 + 48) * 3600.0, 1.0)  # the same hour of the day, a day later
    state = det.to_state()
    assert state["periods"][hod] == 2 and state["last"][hod] == hour + 24
    assert state["periods"][192] == 2
    assert make_detector("seasonal", window_seconds=3600.0).load_state(state).to_state() == state


def test_calibrator_p_values_stay_at_most_one_with_single_precision_bins() -> None:
    # p == 1.0 means "no opinion" to the combiner (a window that teaches its dependence
    # estimate nothing). With single-precision bins the total must be what the bins hold:
    # a total of the weights given drifted below the bins' sum, and a low statistic scored
    # p = 1.0000000017 after three weeks of windows (benchmarks.detect_fast, history i2).
    rng = random.Random(1)  # a seed whose drift went up (1.0000000184 with the weights' total)
    cal = TailCalibrator()
    for _ in range(30_000):
        cal.learn(abs(rng.gauss(0.0, 1.0)))  # nothing in the lowest bins but the prior
    zs = [math.sinh(-1.5 + 0.1 * k) + d for k in range(40) for d in (1e-9, 0.03)]
    assert max(cal.sf(z) for z in zs) <= 1.0
    _, _, total, packed = cal.to_state()
    c = unpack_f32(packed)
    assert total == math.fsum(c)


def test_state_written_with_number_lists_and_its_base64_rewrite_score_identically() -> None:
    # The seasonal slots and the calibrators' bins are written as base64 of their float32 bytes
    # (detectors.f32); main's state has them as lists of numbers. Loaded either way, the
    # detector is the same to the bit, and the rewritten state is much smaller.
    saved = json.loads((DATA / "default_state_main_0d000c8.json").read_text())
    old = detector_from_state(saved["detector"], saved["params"], saved["state"])
    state = old.to_state()
    assert isinstance(state["models"][0]["loc"], str) and isinstance(state["models"][0]["cal"][3], str)
    assert len(json.dumps(state)) < 0.75 * len(json.dumps(saved["state"]))
    new = detector_from_state(saved["detector"], saved["params"], json.loads(json.dumps(state)))
    assert new.to_state() == state
    for ts, value, count, *_ in saved["next"]:
        assert new.update(ts, value, count) == old.update(ts, value, count)
