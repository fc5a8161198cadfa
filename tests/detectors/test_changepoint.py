"""LevelShift specifics: sustained rises flagged early, kept firing, resolved, accepted.

The series are 1-min windows with a daily shape and lognormal noise (``daily_series``); the
shift scenarios warm up for three days, so every hour of the day has been seen before.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from detectors import LevelShift, SeasonalBaseline, Verdict
from tests.detectors.synthetic import MONDAY, daily_series

SHIFT = 3 * 1440 + 600  # day 4, 10:00 UTC
SIX_HOURS = 360


def feed(det: Any, ts: Any, values: Any, counts: Any = None) -> list[Verdict]:
    counts = [None] * len(ts) if counts is None else counts.tolist()
    return [
        det.update(t, v, c) for t, v, c in zip(ts.tolist(), values.tolist(), counts, strict=True)
    ]


def flagged(verdicts: list[Verdict], origin: int = 0) -> list[int]:
    return [i - origin for i, v in enumerate(verdicts) if v.is_anomaly]


def model_switch(
    seed: int, days: float = 4.0, length: int = SIX_HOURS, factor: float = 3.0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Spend triples at SHIFT for ``length`` windows at constant volume (a pricier model)."""
    ts, spend = daily_series(days, seed=seed, noise=0.3)
    counts = np.round(spend * 40)  # ~40 requests per dollar, unchanged by the switch
    spend[SHIFT : SHIFT + length] *= factor
    return ts, spend, counts


@pytest.mark.parametrize(
    "params",
    [
        {"window_seconds": 0},
        {"threshold": 0},
        {"drift": -1},
        {"min_windows": 0},
        {"min_windows": 2.0},
        {"min_history": -1},
        {"min_scale": 0},
        {"min_rel_scale": 0},
        {"alpha": 0},
        {"alpha": 1.5},
        {"max_shift_seconds": 0},
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="LevelShift"):
        LevelShift(**params)


@pytest.fixture(scope="module", params=[0, 1])
def switch_run(request: Any) -> tuple[np.ndarray, list[Verdict], list[Verdict]]:
    """A model switch fed to LevelShift and to SeasonalBaseline: spend, and their verdicts."""
    ts, spend, counts = model_switch(request.param)
    return spend, feed(LevelShift(), ts, spend, counts), feed(SeasonalBaseline(), ts, spend, counts)


def test_tripled_spend_is_flagged_within_five_windows_though_no_window_is_extreme(
    switch_run: Any,
) -> None:
    _, shift, seasonal = switch_run
    assert flagged(shift[:SHIFT]) == []
    assert 2 <= flagged(shift, SHIFT)[0] <= 5
    # Not one window of the six hours is extreme on its own.
    assert flagged(seasonal) == []


def test_alarm_keeps_firing_while_the_shift_lasts_and_resolves_after(switch_run: Any) -> None:
    _, verdicts, _ = switch_run
    first = flagged(verdicts, SHIFT)[0]
    assert all(v.is_anomaly for v in verdicts[SHIFT + first : SHIFT + SIX_HOURS])
    after = flagged(verdicts, SHIFT + SIX_HOURS)
    assert [i for i in after if i >= 0] in ([], [0], [0, 1], [0, 1, 2])
    # The alarm reads as one: the reason names the run and its size.
    v = verdicts[SHIFT + 60]
    assert 2.5 <= float(v.reason.split("x ")[0]) <= 3.5
    assert "x the hour-of-day level over the last 61 windows" in v.reason
    assert v.expected == pytest.approx(verdicts[SHIFT - 1440 + 60].expected, rel=0.15)


def test_a_zero_window_dents_the_alarm_but_does_not_resolve_it() -> None:
    ts, spend, counts = model_switch(0)
    spend[SHIFT + 100] = 0.0  # a deploy
    verdicts = feed(LevelShift(), ts, spend, counts)
    assert all(v.is_anomaly for v in verdicts[SHIFT + 103 : SHIFT + SIX_HOURS])


def test_slow_growth_the_daily_shape_and_quiet_weekends_never_flag() -> None:
    ts, spend = daily_series(21, seed=5, noise=0.2)
    spend *= 1.02 ** ((ts - ts[0]) / 86400)  # +2 % a day, +51 % over three weeks
    weekday = (ts - 60 - MONDAY) // 86400 % 7
    spend[weekday >= 5] *= 0.5  # and half as much on Saturdays and Sundays
    verdicts = feed(LevelShift(), ts, spend)
    assert flagged(verdicts) == []
    # calibrated scores: about 1 % of ordinary windows score 0.99 or more, not a run of them
    assert sum(v.score >= 0.99 for v in verdicts) / len(verdicts) < 0.02
    # The baseline followed the growth: the last Friday is expected at about its level (a
    # little under: the hour-of-day slots also remember the weekend).
    friday = slice(18 * 1440, 19 * 1440)
    ratio = spend[friday].sum() / sum(v.expected for v in verdicts[friday])
    assert 1.0 < ratio < 1.3


def test_a_persistent_shift_is_accepted_after_max_shift_seconds() -> None:
    ts, spend, counts = model_switch(2, days=5.3, length=3 * 1440)
    det = LevelShift()
    verdicts = feed(det, ts, spend, counts)
    raised = flagged(verdicts, SHIFT)
    first = raised[0]
    assert raised == list(range(first, first + 1441))  # one day of alarm, to the window
    # Then the new level is the baseline: about 3x the old one, and nothing is flagged.
    before, after = verdicts[SHIFT - 1440 + 2000 - 1440], verdicts[SHIFT + 2000]
    assert after.expected / before.expected == pytest.approx(3.0, rel=0.15)
    later = verdicts[SHIFT + first + 1441 :]
    assert not any(v.is_anomaly for v in later)
    assert sum(v.score >= 0.99 for v in later) / len(later) < 0.03
    # Shorter when asked.
    quick = feed(LevelShift(max_shift_seconds=3600), ts[: SHIFT + 200], spend[: SHIFT + 200])
    assert flagged(quick, SHIFT) == list(range(first, first + 61))


def test_a_single_spike_is_left_to_the_seasonal_detector() -> None:
    ts, spend, _ = model_switch(3, length=0)
    spend[SHIFT] *= 8
    spend[SHIFT + 30] *= 100
    shift = feed(LevelShift(), ts, spend)
    assert flagged(shift) == []
    assert flagged(feed(SeasonalBaseline(), ts, spend), SHIFT) == [0, 30]
    # It does count towards a shift, a little: two spikes in a row are not enough either.
    spend[SHIFT + 31] *= 100
    assert flagged(feed(LevelShift(), ts[SHIFT - 1440 :], spend[SHIFT - 1440 :])) == []


def test_cents_never_alarm() -> None:
    ts, spend = daily_series(4, seed=6, base=0.002, swing=0.001, noise=0.3)
    spend[SHIFT : SHIFT + SIX_HOURS] *= 3  # tripled, but a fifth of a cent per minute
    assert flagged(feed(LevelShift(), ts, spend)) == []


def test_flagged_windows_move_the_statistic_but_not_the_baseline() -> None:
    # What a combiner does: score, then learn -- protected when the window was flagged by
    # anyone, even when this detector did not flag it.
    ts, spend, _counts = model_switch(0)
    det, twin = LevelShift(), LevelShift()
    feed(det, ts[:SHIFT], spend[:SHIFT])
    feed(twin, ts[:SHIFT], spend[:SHIFT])
    baseline = {k: v for k, v in det.to_state().items() if k in ("n", "loc", "dev", "pool")}
    verdicts = []
    for t, v in zip(ts[SHIFT : SHIFT + 60].tolist(), spend[SHIFT : SHIFT + 60].tolist()):
        verdict = det.score_one(t, v)
        assert det.score_one(t, v) == verdict  # scoring is pure
        det._learn_protected(t, v, verdict)
        verdicts.append(verdict)
    state = det.to_state()
    assert {k: v for k, v in state.items() if k in baseline} == baseline
    assert state["cusum"][0] >= det.threshold and state["cusum"][1] == 60
    # The statistic saw the same windows as through update(), which let the two windows
    # before the alarm teach the baseline (a little): the same alarm.
    twin_verdicts = feed(twin, ts[SHIFT : SHIFT + 60], spend[SHIFT : SHIFT + 60])
    assert [v.is_anomaly for v in verdicts] == [v.is_anomaly for v in twin_verdicts]
    # learn_one moves both, and a force-learnt shift window nudges the level, no more.
    loc = state["loc"][11]  # the window ending at 11:01 is in hour 11
    det.learn_one(float(ts[SHIFT + 60]), float(spend[SHIFT + 60]))
    assert 0.0 < det.to_state()["loc"][11] - loc < 0.01


def test_no_verdict_before_an_hour_has_an_earlier_day() -> None:
    ts, spend = daily_series(2, seed=8, noise=0.3)
    spend[600:700] *= 5  # day one, 10:00: nothing to compare with yet
    verdicts = feed(LevelShift(), ts, spend)
    assert flagged(verdicts) == []
    assert verdicts[650].reason.startswith("5.") is False
    assert "no earlier day" in verdicts[650].reason
    assert verdicts[0].reason.startswith("cold start")


def test_state_is_small_json() -> None:
    det = LevelShift()
    ts, spend = daily_series(2, seed=9)
    feed(det, ts, spend)
    text = json.dumps(det.to_state(), allow_nan=False)
    assert len(text) < 3000  # ~1,300 of them the score calibration's histogram


def test_state_keeps_a_raised_alarm() -> None:
    ts, spend, _ = model_switch(1, length=SIX_HOURS)
    det = LevelShift()
    feed(det, ts[: SHIFT + 100], spend[: SHIFT + 100])
    assert ts[SHIFT] < det.to_state()["cusum"][3] < ts[SHIFT + 10]
    copy = LevelShift().load_state(json.loads(json.dumps(det.to_state())))
    rest = slice(SHIFT + 100, None)
    assert feed(copy, ts[rest], spend[rest]) == feed(det, ts[rest], spend[rest])
    with pytest.raises(ValueError, match="changepoint"):
        LevelShift().load_state({**det.to_state(), "cusum": [-1.0, 0, 0.0, None]})
