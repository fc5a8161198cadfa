"""RiverForecast specifics: features, seasonality, floors, cold start, state, cost.

The shared behaviour (clone, pickle, JSON state, spikes, runaways, quiet periods) is in
test_contract.py; these are what is particular to a forecaster that follows the level.
"""

from __future__ import annotations

import json
import math
import pickle
import time
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from detectors import RiverForecast, SeasonalBaseline, Verdict
from tests.detectors.synthetic import MONDAY, daily_series

HOUR = 3600.0
DAY = 86400.0


def feed(det: Any, ts: Any, values: Any) -> list[Verdict]:
    return [det.update(float(t), float(v)) for t, v in zip(ts, values, strict=True)]


def weekly_series(days: float, seed: int = 0, weekend: float = 0.3) -> tuple[Any, Any]:
    """60 s windows with the daily shape of daily_series, weekends at ``weekend`` times it."""
    ts, spend = daily_series(days, seed=seed)
    weekday = ((ts - 60 - MONDAY) // DAY) % 7
    return ts, spend * np.where(weekday >= 5, weekend, 1.0)


@pytest.mark.parametrize(
    "params",
    [
        {"window_seconds": 0},
        {"threshold": 0},
        {"min_history": -1},
        {"min_history": 2.5},
        {"min_scale": 0},
        {"min_rel_scale": 0},
        {"lr": 0},
        {"lr": 0.2},  # above 1 / (2 + daily_terms): SGD would be close to diverging
        {"daily_terms": -1},
        {"daily_terms": 25},
        {"day_of_week": 1},
        {"alpha": 0},
        {"alpha": 1.5},
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="RiverForecast"):
        RiverForecast(**params)


def test_features_are_the_daily_harmonics_and_the_weekday() -> None:
    det = RiverForecast(daily_terms=2)
    x = det._x(MONDAY + 6 * HOUR + 30)  # the 60 s window whose midpoint is Monday 06:00
    assert list(x) == ["sin1", "cos1", "sin2", "cos2", "mon", "tue", "wed", "thu", "fri",
                       "sat", "sun"]
    assert x["sin1"] == pytest.approx(1.0) and x["cos1"] == pytest.approx(0.0, abs=1e-3)
    assert x["sin2"] == pytest.approx(0.0, abs=1e-3) and x["cos2"] == pytest.approx(-1.0)
    assert x["mon"] == 1.0 and sum(x[d] for d in ("tue", "wed", "thu", "fri", "sat", "sun")) == 0
    # A window straddling midnight belongs to the day of its midpoint.
    assert det._x(MONDAY + 29)["sun"] == 1.0 and det._x(MONDAY + 30)["mon"] == 1.0
    assert list(RiverForecast(day_of_week=False, daily_terms=1)._x(MONDAY)) == ["sin1", "cos1"]


def test_spike_on_a_daily_shape_is_flagged_and_the_shape_is_not() -> None:
    ts, spend = daily_series(4.0, seed=21)
    spike = 3 * 1440 + 15 * 60  # day 4, 15:00, the daily peak
    spend[spike] *= 4
    verdicts = feed(RiverForecast(), ts, spend)
    assert [i for i, v in enumerate(verdicts) if v.is_anomaly] == [spike]
    v = verdicts[spike]
    assert v.observed >= v.upper and v.upper < 3 * v.expected
    # The forecast follows the shape: at 03:00 (the trough) it expects ~0.5, at 15:00 ~3.5.
    trough, peak = verdicts[3 * 1440 + 3 * 60], verdicts[spike - 1]
    assert trough.expected == pytest.approx(0.5, rel=0.25)
    assert peak.expected == pytest.approx(3.5, rel=0.25)


def test_quiet_weekend_then_monday_is_not_flagged() -> None:
    # Weekly Fourier terms, learnt at this rate, stood in for the level and paged on Monday
    # morning; the day levels do not.
    ts, spend = weekly_series(7.2, seed=5)
    verdicts = feed(RiverForecast(), ts, spend)
    assert not any(v.is_anomaly for v in verdicts)
    monday = verdicts[7 * 1440 + 60]  # Monday 01:00, second week
    assert monday.reason.startswith(("0.", "1.")) and monday.score < 0.99


def test_sustained_runaway_is_flagged_throughout() -> None:
    ts, spend = weekly_series(2.0, seed=6)
    start = 1440 + 10 * 60  # Tuesday 10:00
    spend[start : start + 60] *= 5
    verdicts = feed(RiverForecast(), ts[: start + 60], spend[: start + 60])
    assert all(v.is_anomaly for v in verdicts[start : start + 60])
    assert not any(v.is_anomaly for v in verdicts[:start])


def test_a_steep_ramp_inside_an_hour_gets_a_tight_bound() -> None:
    # Spend jumps 10x at 08:30 every day. An hour slot averages both levels and must allow
    # for either; the forecaster's shape follows the step, if not all the way. The first
    # morning is flagged until the hour, never seen before, has learnt the new level (and the
    # second morning's first minute still is); from then on nothing is.
    ts = MONDAY + 60 * np.arange(1, 3 * 1440 + 1)
    rng = np.random.default_rng(3)
    minute = ((ts - 60) % DAY) / 60
    level = np.where((minute >= 8.5 * 60) & (minute < 18 * 60), 3.0, 0.3)
    spend = level * rng.lognormal(0.0, 0.15, ts.size)
    river, slots = RiverForecast(), SeasonalBaseline()
    r, s = feed(river, ts, spend), feed(slots, ts, spend)
    flagged = [i for i, v in enumerate(r) if v.is_anomaly]
    assert flagged and all(i < 1440 + 9 * 60 and 8.5 * 60 <= i % 1440 < 9 * 60 for i in flagged)
    at_0845 = 2 * 1440 + 8 * 60 + 45
    river_bound = r[at_0845].upper / r[at_0845].expected
    slot_bound = s[at_0845].upper / s[at_0845].expected
    assert river_bound < 25 and slot_bound > 20 * river_bound


def test_a_short_nightly_batch_is_flagged_every_night() -> None:
    # The documented limit: a few harmonics cannot hold a 10-minute feature.
    ts, spend = daily_series(4.0, seed=5)
    hour_of_day = ((ts - 60) % DAY) / HOUR
    spend = spend + np.where((hour_of_day >= 2) & (hour_of_day < 2 + 10 / 60), 20.0, 0.0)
    verdicts = feed(RiverForecast(), ts, spend)
    flagged_days = {int(i // 1440) for i, v in enumerate(verdicts) if v.is_anomaly}
    assert flagged_days == {0, 1, 2, 3}


def test_hourly_windows() -> None:
    ts, spend = daily_series(
        21, window_seconds=3600, seed=2, base=10 / 60, swing=6 / 60, noise=0.15
    )
    spike = ts.size - 10
    spend[spike] *= 4
    verdicts = feed(RiverForecast(window_seconds=3600, lr=0.03), ts, spend)
    assert [i for i, v in enumerate(verdicts) if v.is_anomaly] == [spike]


def test_zero_windows_teach_nothing_and_are_never_flagged() -> None:
    det = RiverForecast()
    ts, spend = daily_series(0.3, seed=1)
    feed(det, ts, spend)
    before = {k: v for k, v in det.to_state().items() if k not in ("last_ts", "cal")}
    verdicts = feed(det, ts[-1] + 60 * np.arange(1, 300), np.zeros(299))
    assert {k: v for k, v in det.to_state().items() if k not in ("last_ts", "cal")} == before
    assert all(v.score == 0.0 and v.reason == "no spend in the window" for v in verdicts)
    credit = det.update(float(ts[-1] + 60 * 300), -2.0)
    assert credit.reason == "a credit, not spend" and not credit.is_anomaly


def test_cold_start_first_value_sets_the_level() -> None:
    det = RiverForecast(min_history=30)
    ts = MONDAY + 60 * np.arange(1, 41)
    verdicts = feed(det, ts, np.full(40, 0.001))  # a tenth of a cent a minute: log is -6.9
    assert all(v.score == 0.0 for v in verdicts[:30])
    assert verdicts[29].reason == "cold start: 29 of 30 windows with spend learnt"
    assert verdicts[1].expected == pytest.approx(0.001)  # no SGD walk from log 1 = 0
    # The bound is the money floor: $0.30 above a tenth of a cent.
    assert verdicts[-1].reason == "1.0x the forecast (alert bound 301.0x)"


def test_money_floor_keeps_cents_quiet() -> None:
    ts = MONDAY + 60 * np.arange(1, 1441)
    det = RiverForecast()
    feed(det, ts, np.full(ts.size, 0.01))
    nxt = float(ts[-1] + 60)
    assert det.score_one(nxt, 0.01).upper == pytest.approx(0.01 + 6 * 0.05, rel=1e-3)
    assert not det.score_one(nxt, 0.30).is_anomaly  # 30x, but 29 cents
    assert det.score_one(nxt, 0.35).is_anomaly


def test_score_is_far_in_the_tail_at_the_bound_and_increasing() -> None:
    ts, spend = daily_series(1.0, seed=4)
    det = RiverForecast()
    feed(det, ts, spend)
    nxt = float(ts[-1] + 60)
    v = det.score_one(nxt, 1.0)
    assert det.score_one(nxt, v.upper).score > 0.999
    scores = [det.score_one(nxt, float(x)).score for x in np.linspace(v.expected, 2 * v.upper, 40)]
    assert all(a < b for a, b in pairwise(scores))
    assert det.score_one(nxt, v.expected / 2).score < 0.5


def test_protect_anomaly_false_learns_flagged_windows() -> None:
    ts, spend = daily_series(2.0, seed=9)
    spend[2430:2440] *= 8
    p = feed(RiverForecast(), ts[:2441], spend[:2441])
    u = feed(RiverForecast(protect_anomaly=False), ts[:2441], spend[:2441])
    assert p[2430].is_anomaly and u[2430].is_anomaly
    # Learnt, but clipped at 2 sigma per window: the forecast creeps up rather than jumps.
    assert p[2440].expected < u[2440].expected < 2 * p[2440].expected


def test_learn_one_and_score_one_split_update() -> None:
    ts, spend = daily_series(0.3, seed=2)
    a, b = RiverForecast(), RiverForecast()
    for t, x in zip(ts, spend):
        assert a.update(float(t), float(x)) == b.score_one(float(t), float(x))
        b.learn_one(float(t), float(x))


def test_state_is_the_river_models_numbers_in_plain_lists() -> None:
    ts, spend = weekly_series(2.0, seed=8)
    det = RiverForecast()
    feed(det, ts[:2000], spend[:2000])
    state = json.loads(json.dumps(det.to_state(), allow_nan=False))
    assert len(state["weights"]) == 2 * 4 + 7
    assert state["intercept"] == det._model.intercept
    assert state["weights"] == [det._model.weights[f] for f in det._features]
    twin = RiverForecast().load_state(state)
    assert feed(twin, ts[2000:], spend[2000:]) == feed(det, ts[2000:], spend[2000:])
    assert twin.to_state() == det.to_state()
    copy = pickle.loads(pickle.dumps(det))
    assert copy.to_state() == det.to_state()


def test_load_state_rejects_state_that_does_not_fit() -> None:
    det = RiverForecast()
    ts, spend = daily_series(0.1, seed=1)
    feed(det, ts, spend)
    state = det.to_state()
    with pytest.raises(ValueError, match="weights"):
        RiverForecast(daily_terms=3).load_state(state)
    with pytest.raises(ValueError, match="24 slots"):
        det.load_state({**state, "hod_dev": state["hod_dev"][:-1]})
    with pytest.raises(ValueError, match="malformed"):
        det.load_state({k: v for k, v in state.items() if k != "intercept"})
    with pytest.raises(ValueError, match="non-finite"):
        det.load_state({**state, "weights": [math.nan] * len(state["weights"])})


def test_cost_per_update_and_state_bytes() -> None:
    # The figures quoted in the module docstring: a week of 60 s windows, one series.
    ts, spend = daily_series(7.0, seed=3)
    pairs = [(float(t), float(v)) for t, v in zip(ts, spend)]
    lines = []
    for cls in (RiverForecast, SeasonalBaseline):
        det = cls()
        t0 = time.perf_counter()
        for t, v in pairs:
            det.update(t, v)
        us = 1e6 * (time.perf_counter() - t0) / len(pairs)
        size = len(json.dumps(det.to_state(), separators=(",", ":")))
        lines.append(f"{cls.__name__}: {us:.1f} us/update, {size} bytes of compact JSON state")
        if cls is RiverForecast:
            assert size < 3000
    print("\n" + "\n".join(lines))
