"""BurnForecaster: profile, proration, exhaustion, level, cold start, breach, state."""

from __future__ import annotations

import json
import math
import time
from typing import Any

import numpy as np
import pytest

from detectors import BurnForecaster, Forecast, burn_alert
from tests.detectors.synthetic import MONDAY

HOUR = 3600.0
DAY = 86400.0
WEEK = 7 * DAY


def feed_hours(bf: BurnForecaster, start: float, rates: Any) -> float:
    """Observe one window per hour (ending at the hour's end) with these $/hour; returns the
    end of the last hour fed."""
    t = start
    for r in rates:
        t += HOUR
        bf.observe(t, float(r))
    return t


def office_rates(weeks: int, seed: int | None = None) -> np.ndarray:
    """$/hour by hour from a Monday 00:00: 20 $/h 08-18 on weekdays, 2 $/h other weekday
    hours, 0.5 $/h at weekends; optionally with 20 % noise."""
    h = np.arange(weeks * 168)
    hod, dow = h % 24, (h // 24) % 7
    rates = np.where(dow >= 5, 0.5, np.where((hod >= 8) & (hod < 18), 20.0, 2.0))
    if seed is not None:
        rates = rates * np.random.default_rng(seed).lognormal(0.0, 0.2, rates.size)
    return rates


@pytest.mark.parametrize(
    "params",
    [
        {"alpha": 0},
        {"alpha": 1.5},
        {"alpha": math.nan},
        {"level_hours": 0.5},
        {"max_level": 0.5},
        {"min_history_hours": -1},
        {"min_history_hours": 1.5},
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="BurnForecaster"):
        BurnForecaster(**params)


def test_params_are_stored_verbatim() -> None:
    bf = BurnForecaster(alpha=0.3, level_hours=12, max_level=5, min_history_hours=48)
    params = bf.get_params()
    assert params == {"alpha": 0.3, "level_hours": 12, "max_level": 5, "min_history_hours": 48}
    assert BurnForecaster(**params).get_params() == params
    assert repr(bf) == (
        "BurnForecaster(alpha=0.3, level_hours=12, max_level=5, min_history_hours=48)"
    )


def test_bad_inputs_are_refused() -> None:
    bf = BurnForecaster()
    for ts, usd in ((math.nan, 1.0), (MONDAY, math.inf), (MONDAY, -1.0)):
        with pytest.raises(ValueError):
            bf.observe(ts, usd)
    assert bf.to_state() == BurnForecaster().to_state()
    with pytest.raises(ValueError, match="after"):
        bf.forecast(MONDAY, MONDAY, MONDAY, 0.0, 10.0)
    with pytest.raises(ValueError, match="budget"):
        bf.forecast(MONDAY, MONDAY, MONDAY + DAY, 0.0, 0.0)
    with pytest.raises(ValueError, match="finite"):
        bf.forecast(math.nan, MONDAY, MONDAY + DAY, 0.0, 10.0)


def test_zero_hours_are_learnt_and_windows_go_to_the_hour_before_their_end() -> None:
    # One $24 burst at 10:00-10:01 every day, nothing else: a daily total of 24.
    bf = BurnForecaster(min_history_hours=0)
    for day in range(14):
        bf.observe(MONDAY + day * DAY + 10 * HOUR + 60, 24.0)
    bf.observe(MONDAY + 14 * DAY, 0.0)  # closes the hours up to Sunday 23:00
    assert bf.expected_rate(MONDAY + 10 * HOUR + 1800) == pytest.approx(24.0, rel=1e-3)
    assert bf.expected_rate(MONDAY + 3 * HOUR) == 0.0
    f = bf.forecast(MONDAY + 14 * DAY, MONDAY + 14 * DAY, MONDAY + 21 * DAY, 0.0, 1000.0)
    assert f.projected_total == pytest.approx(7 * 24.0, rel=1e-3)
    # A window ending exactly on the hour is the previous hour's.
    edge = BurnForecaster(min_history_hours=0)
    edge.observe(MONDAY + HOUR, 5.0)
    edge.observe(MONDAY + HOUR + 1, 0.0)
    assert edge.to_state()["rate"][0] == 5.0  # Monday 00:00 slot


def test_monday_forecast_of_a_month_with_quiet_weekends_is_not_linear() -> None:
    # June 2024 starts on a Saturday. Four weeks of office history before it.
    june_1, july_1 = 1_717_200_000.0, 1_719_792_000.0
    assert (june_1 - MONDAY) % WEEK == 5 * DAY  # a Saturday
    history_start = june_1 + 2 * DAY - 4 * WEEK  # a Monday
    rates = office_rates(9, seed=1)
    bf = BurnForecaster()
    now = feed_hours(bf, history_start, rates[: 4 * 168])  # up to Monday June 3, 00:00
    assert now == june_1 + 2 * DAY
    spent = float(rates[4 * 168 - 48 : 4 * 168].sum())  # the weekend of June 1-2
    f = bf.forecast(now, june_1, july_1, spent, budget=10_000.0)

    truth = float(office_rates(9)[4 * 168 - 48 : 4 * 168 - 48 + 30 * 24].sum())  # noise-free
    naive = spent / (now - june_1) * (july_1 - june_1)
    assert f.method == "profile"
    assert f.projected_total == pytest.approx(truth, rel=0.05)
    assert naive < 0.1 * truth  # a weekend's run rate says almost nothing will be spent
    assert f.level == pytest.approx(1.0, abs=0.2)
    assert f.elapsed_fraction == pytest.approx(2 / 30)


def test_partial_hours_are_prorated_and_exhaustion_is_interpolated() -> None:
    bf = BurnForecaster(min_history_hours=0)
    now = feed_hours(bf, MONDAY, np.full(2 * 168, 10.0))  # a flat 10 $/hour
    start = now - 3 * DAY
    # 10:30 now; the period ends at 12:15: 1.75 h to go.
    t = now + 10.5 * HOUR
    f = bf.forecast(t, start, now + 12.25 * HOUR, spent=100.0, budget=112.5)
    assert f.expected_remaining == pytest.approx(17.5)
    assert f.projected_total == pytest.approx(117.5) and f.will_exceed
    assert f.exhaustion_ts == pytest.approx(t + 1.25 * HOUR)  # 12.5 more at 10 $/h
    assert f.pct_used == pytest.approx(100 * 100 / 112.5)
    assert f.projected_pct == pytest.approx(100 * 117.5 / 112.5)
    # Within budget: no exhaustion; already over: exhausted now.
    assert bf.forecast(t, start, now + 11 * HOUR, 100.0, 112.5).exhaustion_ts is None
    over = bf.forecast(t, start, now + 11 * HOUR, 120.0, 112.5)
    assert over.exhaustion_ts == t and over.will_exceed


def test_exhaustion_date_follows_the_weekly_shape() -> None:
    bf = BurnForecaster()
    now = feed_hours(bf, MONDAY, office_rates(3))  # ends on a Monday 00:00
    # Weekday: 10 h x 20 + 14 h x 2 = 228. Budget 500 from Monday 00:00: Monday and Tuesday
    # spend 456; 44 more on Wednesday: 14 by 07:00 at 2 $/h... 8 h x 2 = 16 by 08:00, then
    # 28 at 20 $/h is 1.4 h: exhausted Wednesday 09:24.
    f = bf.forecast(now, now, now + 30 * DAY, 0.0, 500.0)
    assert f.exhaustion_ts == pytest.approx(now + 2 * DAY + 9.4 * HOUR, abs=1.0)


def test_a_dst_day_of_23_hours_is_just_23_hours() -> None:
    bf = BurnForecaster(min_history_hours=0)
    now = feed_hours(bf, MONDAY, np.full(168, 4.0))
    short_day = bf.forecast(now, now, now + 23 * HOUR, 0.0, 1000.0)
    long_day = bf.forecast(now, now, now + 25 * HOUR, 0.0, 1000.0)
    assert short_day.projected_total == pytest.approx(92.0)
    assert long_day.projected_total == pytest.approx(100.0)


def test_a_burn_that_slows_stops_breaching() -> None:
    # Two weeks at 10 $/h, then a 30-day budget sized for exactly that pace.
    bf = BurnForecaster()
    start = feed_hours(bf, MONDAY, np.full(2 * 168, 10.0))
    end, budget = start + 30 * DAY, 30 * 24 * 10.0
    rates = np.r_[np.full(10 * 24, 20.0), np.full(10 * 24, 2.0)]  # 10 days at 2x, then 0.2x
    spent, breach = 0.0, []
    t = start
    for r in rates:
        t += HOUR
        bf.observe(t, float(r))
        spent += float(r)
        breach.append(burn_alert(bf.forecast(t, start, end, spent, budget)))
    assert not any(breach[:24])  # the first 10 % of the period: too early to say
    assert all(breach[72 : 10 * 24])  # burning at twice the budget's pace
    stopped = breach.index(False, 10 * 24)
    assert stopped < 10 * 24 + 72  # the slowdown shows within three days...
    assert not any(breach[stopped:])  # ...and the alert stays resolved
    final = bf.forecast(t, start, end, spent, budget)
    assert final.level < 0.5 and final.projected_total < budget


def test_cold_start_uses_the_run_rate() -> None:
    bf = BurnForecaster(min_history_hours=24)
    t = feed_hours(bf, MONDAY, np.full(10, 3.0))
    f = bf.forecast(t, MONDAY, MONDAY + DAY, spent=30.0, budget=60.0)
    assert f.method == "run-rate" and f.level == 1.0
    assert f.projected_total == pytest.approx(72.0)  # 30 in 10 h, 24 h in the period
    assert f.exhaustion_ts == pytest.approx(MONDAY + 20 * HOUR)
    assert "run rate" in f.note
    nothing_yet = bf.forecast(MONDAY, MONDAY, MONDAY + DAY, 0.0, 60.0)
    assert nothing_yet.projected_total == 0.0 and nothing_yet.exhaustion_ts is None
    # Once a day of history is in, the profile takes over.
    feed_hours(bf, t, np.full(20, 3.0))
    assert bf.forecast(t + 20 * HOUR, MONDAY, MONDAY + 2 * DAY, 90.0, 500.0).method == "profile"


def test_now_is_clamped_to_the_period() -> None:
    bf = BurnForecaster(min_history_hours=0)
    now = feed_hours(bf, MONDAY, np.full(48, 1.0))
    after = bf.forecast(now + 5 * DAY, now, now + DAY, 30.0, 100.0)
    assert after.expected_remaining == 0.0 and after.elapsed_fraction == 1.0
    before = bf.forecast(now - DAY, now, now + DAY, 0.0, 100.0)
    assert before.projected_total == pytest.approx(24.0) and before.elapsed_fraction == 0.0


def test_late_spend_goes_to_the_open_hour() -> None:
    bf = BurnForecaster()
    bf.observe(MONDAY + 600, 1.0)
    bf.observe(MONDAY + 2 * HOUR + 600, 1.0)
    bf.observe(MONDAY + 700, 5.0)  # belongs to a closed hour: kept, in the open one
    assert bf.to_state()["open_usd"] == 6.0


def test_a_long_silence_is_learnt_quickly_as_zeros() -> None:
    bf = BurnForecaster()
    now = feed_hours(bf, MONDAY, np.full(168, 10.0))
    t0 = time.perf_counter()
    bf.observe(now + 365 * DAY, 0.0)
    assert time.perf_counter() - t0 < 0.05
    assert max(bf.to_state()["rate"]) < 10.0 * 0.8**5


def test_burn_alert_validates_its_arguments() -> None:
    f = BurnForecaster().forecast(MONDAY + HOUR, MONDAY, MONDAY + DAY, 1.0, 10.0)
    assert isinstance(f, Forecast)
    with pytest.raises(ValueError):
        burn_alert(f, margin=-0.1)
    with pytest.raises(ValueError):
        burn_alert(f, min_elapsed=2.0)


def test_state_round_trip_and_size() -> None:
    bf = BurnForecaster()
    now = feed_hours(bf, MONDAY, office_rates(5, seed=2))
    bf.observe(now + 1800, 3.25)  # an open hour with spend in it
    text = json.dumps(bf.to_state(), separators=(",", ":"), allow_nan=False)
    twin = BurnForecaster.from_state(json.loads(text), **bf.get_params())
    assert twin.to_state() == bf.to_state()
    args = (now + 1800, now - 3 * DAY, now + 27 * DAY, 900.0, 4000.0)
    assert twin.forecast(*args) == bf.forecast(*args)
    for t, r in zip(now + HOUR * np.arange(2, 50), office_rates(1, seed=3)):
        twin.observe(float(t), float(r))
        bf.observe(float(t), float(r))
    assert twin.to_state() == bf.to_state()
    t0 = time.perf_counter()
    for _ in range(100):
        bf.forecast(now, now - 3 * DAY, now + 27 * DAY, 900.0, 4000.0)
    ms = 1e3 * (time.perf_counter() - t0) / 100
    print(f"\nBurnForecaster state: {len(text)} bytes of compact JSON per series; "
          f"{ms:.2f} ms per forecast of a 30-day period")
    assert len(text) < 6 * 1024
    json.dumps(bf.forecast(*args).to_dict(), allow_nan=False)


def test_load_state_refuses_what_does_not_fit() -> None:
    bf = BurnForecaster()
    state = bf.to_state()
    with pytest.raises(ValueError):
        bf.load_state({**state, "v": 2})
    with pytest.raises(ValueError, match="slots"):
        bf.load_state({**state, "rate": state["rate"][:-1]})
    with pytest.raises(ValueError, match="malformed"):
        bf.load_state({k: v for k, v in state.items() if k != "act"})
    with pytest.raises(ValueError, match="non-finite"):
        bf.load_state({**state, "act": math.inf})
