"""NaiveRolling specifics: the ring buffer, its floors, and the failures it anchors."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest

from detectors import NaiveRolling, Verdict
from tests.detectors.synthetic import MONDAY, daily_series


def feed(det: NaiveRolling, ts: Any, values: Any) -> list[Verdict]:
    return [det.update(float(t), float(v)) for t, v in zip(ts, values, strict=True)]


@pytest.mark.parametrize(
    "params",
    [
        {"window_seconds": 0},
        {"n_windows": 1},
        {"n_windows": 60.0},
        {"k": 0},
        {"min_history": 0},
        {"min_history": 61},
        {"min_scale": 0},
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="NaiveRolling"):
        NaiveRolling(**params)


def test_bound_is_mean_plus_k_sigma_of_the_last_n_windows_zeros_included() -> None:
    det = NaiveRolling(n_windows=5, min_history=5, k=2.0)
    values = [100.0, 1.0, 0.0, 3.0, 0.0, 2.0, 4.0]  # 100 falls out of the ring
    for i, v in enumerate(values):
        det.learn_one(MONDAY + 60 * (i + 1), v)
    window = np.array(values[-5:])
    v = det.score_one(MONDAY + 480, 5.0)
    assert v.expected == pytest.approx(window.mean())
    assert v.upper == pytest.approx(window.mean() + 2.0 * window.std())
    assert v.is_anomaly == (v.upper <= 5.0)


def test_running_sums_match_the_buffer_after_many_wraps() -> None:
    det = NaiveRolling(n_windows=7, min_history=3)
    rng = np.random.default_rng(1)
    for i, v in enumerate(rng.lognormal(3.0, 2.0, 1000)):
        det.learn_one(MONDAY + 60 * i, float(v))
    state = det.to_state()
    assert state["sum"] == pytest.approx(math.fsum(state["buf"]), rel=1e-12)
    assert state["sumsq"] == pytest.approx(math.fsum(x * x for x in state["buf"]), rel=1e-12)
    assert len(state["buf"]) == 7


def test_flat_series_needs_min_scale_of_money() -> None:
    det = NaiveRolling(min_history=10)
    feed(det, MONDAY + 60 * np.arange(1, 61), np.full(60, 1.0))
    assert not det.score_one(MONDAY + 3660, 1.149).is_anomaly
    assert det.score_one(MONDAY + 3660, 1.151).is_anomaly


def test_defaults_false_alarm_on_an_ordinary_day() -> None:
    # What the anchor is for: on two ordinary days it pages a few dozen times.
    ts, spend = daily_series(2.0, seed=7)
    flagged = sum(v.is_anomaly for v in feed(NaiveRolling(), ts, spend))
    assert 0.002 * ts.size < flagged < 0.05 * ts.size


def test_defaults_stay_flagged_after_a_quiet_hour() -> None:
    # An hour of zeros fills the buffer; traffic coming back is flagged and, protected,
    # never learnt: the known failure of a protected rolling window.
    ts, spend = daily_series(1.0, seed=2)
    spend[600:660] = 0.0
    verdicts = feed(NaiveRolling(), ts, spend)
    assert all(v.is_anomaly for v in verdicts[660:])
    unprotected = feed(NaiveRolling(protect_anomaly=False), ts, spend)
    # Unprotected, it learns its way back within an hour (to its usual false-alarm rate).
    assert sum(v.is_anomaly for v in unprotected[760:]) < 0.05 * (ts.size - 760)


def test_state_is_small_json() -> None:
    det = NaiveRolling()
    ts, spend = daily_series(0.5, seed=4)
    feed(det, ts, spend)
    assert len(json.dumps(det.to_state())) < 2500
