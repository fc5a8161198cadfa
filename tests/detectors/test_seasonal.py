"""SeasonalBaseline specifics: profile slots, fallbacks, floors, cold start, state size.

Most scenarios use hourly windows (``window_seconds=3600``) so weeks of history cost a few
hundred updates; the ones about 60 s behaviour stay within a few days.
"""

from __future__ import annotations

import json
import math
from itertools import pairwise
from typing import Any

import numpy as np
import pytest

from detectors import SeasonalBaseline, Verdict
from detectors.f32 import unpack_f32
from tests.detectors.synthetic import MONDAY, daily_series

HOUR = 3600.0
DAY = 86400.0


def feed(det: SeasonalBaseline, ts: Any, values: Any) -> list[Verdict]:
    return [det.update(float(t), float(v)) for t, v in zip(ts, values, strict=True)]


def hourly(weeks: float, seed: int = 0, noise: float = 0.1) -> tuple[np.ndarray, np.ndarray]:
    """Hourly windows of about $10 (6 to 14 over the day)."""
    # daily_series scales its per-minute level by the window length.
    return daily_series(
        7 * weeks, window_seconds=3600, seed=seed, base=10 / 60, swing=4 / 60, noise=noise
    )


@pytest.mark.parametrize(
    "params",
    [
        {"window_seconds": 0},
        {"threshold": 0},
        {"min_history": -1},
        {"min_scale": 0},
        {"min_rel_scale": 0},
        {"alpha": 0},
        {"alpha": 1.5},
        {"min_periods": 0},
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="SeasonalBaseline"):
        SeasonalBaseline(**params)


def test_window_belongs_to_the_hour_it_starts_in() -> None:
    det = SeasonalBaseline()
    det.learn_one(MONDAY + 60, 1.0)  # 00:00-00:01 Monday
    det.learn_one(MONDAY, 1.0)  # 23:59-00:00 Sunday
    n = det.to_state()["n"]
    assert n[0] == 1 and n[167] == 1  # hour-of-week: Monday 00h, Sunday 23h
    assert n[168 + 0] == 1 and n[168 + 23] == 1  # hour-of-day: 00h, 23h
    assert n[192] == 2  # global


def test_zero_windows_teach_nothing() -> None:
    det = SeasonalBaseline()
    ts, spend = daily_series(0.2, seed=1)
    feed(det, ts, spend)
    # (the score's calibration does count them: how often a window has spend at all is part
    # of how unusual spend is)
    before = {k: v for k, v in det.to_state().items() if k not in ("last_ts", "cal")}
    verdicts = feed(det, ts[-1] + 60 * np.arange(1, 500), np.zeros(499))
    after = {k: v for k, v in det.to_state().items() if k not in ("last_ts", "cal")}
    assert after == before
    assert all(v.score == 0.0 and not v.is_anomaly for v in verdicts)
    assert all(v.reason == "no spend in the window" for v in verdicts)


def test_first_verdict_has_no_expected_value() -> None:
    v = SeasonalBaseline().update(MONDAY + 60, 2.0)
    assert v.expected == 0.0 and v.excess_pct is None and v.reason.startswith("cold start")
    assert set(v.to_dict()) == {
        "ts", "observed", "expected", "upper", "score", "is_anomaly", "excess", "excess_pct",
        "detector", "reason", "impact", "p",
    }


def test_cold_start_counts_windows_with_spend_and_learns_everything() -> None:
    det = SeasonalBaseline(min_history=30)
    ts = MONDAY + 60 * np.arange(1, 200)
    spend = np.where(np.arange(199) % 2 == 0, 1.0, 0.0)  # every other window is quiet
    spend[10] = 500.0  # a burst during cold start is learnt (clipped), not flagged
    verdicts = feed(det, ts, spend)
    assert not any(v.is_anomaly for v in verdicts[:59])
    assert all(v.score == 0.0 for v in verdicts[:59])
    assert verdicts[58].reason == "cold start: 29 of 30 windows with spend learnt"
    # The burst moved the baseline by 3 sigma x 1/n at most.
    assert verdicts[60].expected == pytest.approx(1.0, rel=0.02)
    assert verdicts[60].reason == "1.0x the global expected value (alert bound 1.8x)"
    assert not any(v.is_anomaly for v in verdicts)


def test_profile_levels_take_over_as_history_grows() -> None:
    ts, spend = hourly(weeks=2.5)
    verdicts = feed(SeasonalBaseline(window_seconds=3600, min_history=5), ts, spend)
    by_day: dict[int, set[str]] = {}
    for v in verdicts[5:]:
        level = v.reason.split(" the ")[1].split(" expected")[0]
        by_day.setdefault(int((v.ts - HOUR - MONDAY) // DAY), set()).add(level)
    assert by_day[0] == {"global"}  # first day: nothing seasonal known yet
    assert all(by_day[d] == {"hour-of-day"} for d in range(1, 7))  # rest of the first week
    assert all(by_day[d] == {"hour-of-week"} for d in range(7, 17))  # from week 2 on
    assert not any(v.is_anomaly for v in verdicts)


def test_min_periods_delays_each_level() -> None:
    ts, spend = hourly(weeks=3)
    det = SeasonalBaseline(window_seconds=3600, min_history=5, min_periods=2)
    verdicts = feed(det, ts, spend)
    assert "global" in verdicts[24 + 12].reason  # day 2 at noon: one earlier day only
    assert "hour-of-day" in verdicts[2 * 24 + 12].reason
    assert "hour-of-day" in verdicts[7 * 24 + 12].reason  # week 2: one earlier week only
    assert "hour-of-week" in verdicts[14 * 24 + 12].reason


def test_nightly_batch_becomes_expected_hourly_windows() -> None:
    ts, spend = hourly(weeks=3, seed=4)
    hour_of_day = ((ts - HOUR) % DAY) // HOUR
    spend = spend + np.where(hour_of_day == 2, 60.0, 0.0)  # the 02:00 embeddings backfill
    det = SeasonalBaseline(window_seconds=3600, min_history=12)
    verdicts = feed(det, ts, spend)
    batch = [v for v, h in zip(verdicts, hour_of_day) if h == 2]
    assert not any(v.is_anomaly for v in verdicts)
    for v in batch[-7:]:  # third week: expected from the hour-of-week profile
        assert "hour-of-week" in v.reason
        assert v.expected == pytest.approx(v.observed, rel=0.25)
    # The same money at 14:00 is a spike.
    afternoon = det.score_one(float(ts[-1] + 13 * HOUR), float(batch[-1].observed))
    assert afternoon.is_anomaly


def test_sub_hour_batch_pages_on_its_first_night_only() -> None:
    # 60 s windows: a 10-minute batch at 02:00 every night, present from the series' first
    # day. Judged against the global level it is flagged the first night, but the then
    # history-less hour-of-day and hour-of-week slots learn it, so it pages once.
    ts, spend = daily_series(4.0, seed=5)
    hour_of_day = ((ts - 60) % DAY) / HOUR
    spend = spend + np.where((hour_of_day >= 2) & (hour_of_day < 2 + 10 / 60), 20.0, 0.0)
    verdicts = feed(SeasonalBaseline(), ts, spend)
    flagged_days = {int(i // 1440) for i, v in enumerate(verdicts) if v.is_anomaly}
    assert flagged_days == {0}


def test_a_slot_with_history_does_not_learn_what_it_flags() -> None:
    # The flip side: a nightly job started in week 4 keeps paging (until reset), because a
    # slot that judged must never learn what it flagged -- a runaway must not become normal.
    ts, spend = hourly(weeks=4, seed=6)
    hour_of_day = ((ts - HOUR) % DAY) // HOUR
    late_job = (hour_of_day == 2) & (ts > ts[0] + 21 * DAY)
    verdicts = feed(SeasonalBaseline(window_seconds=3600), ts, spend + np.where(late_job, 60, 0))
    assert [v.is_anomaly for v, j in zip(verdicts, late_job) if j] == [True] * 7
    assert sum(v.is_anomaly for v in verdicts) == 7


def test_weekend_profile_flags_a_weekday_level_on_saturday() -> None:
    ts = MONDAY + HOUR * np.arange(1, 4 * 168 + 1)
    weekday = ((ts - HOUR - MONDAY) // DAY) % 7 < 5
    rng = np.random.default_rng(2)
    spend = np.where(weekday, 10.0, 1.0) * rng.lognormal(0.0, 0.1, ts.size)
    det = SeasonalBaseline(window_seconds=3600)
    assert not any(v.is_anomaly for v in feed(det, ts, spend))
    saturday_noon = MONDAY + 4 * 7 * DAY + 5 * DAY + 13 * HOUR
    v = det.score_one(saturday_noon, 10.0)
    assert v.is_anomaly and "hour-of-week" in v.reason
    assert not det.score_one(saturday_noon - 5 * DAY, 10.0).is_anomaly  # Monday: ordinary


def test_sparse_series_keeps_the_level_of_its_calls() -> None:
    # A team making a call every ~7 minutes: most windows are zero. Its calls are ordinary;
    # a burst of 40x is not.
    rng = np.random.default_rng(1)
    n = 2 * 1440
    ts = MONDAY + 60 * np.arange(1, n + 1)
    spend = np.where(rng.random(n) < 0.15, rng.lognormal(0.0, 0.5, n), 0.0)
    det = SeasonalBaseline()
    assert not any(v.is_anomaly for v in feed(det, ts, spend))
    assert det.update(float(ts[-1] + 60), 40.0).is_anomaly


def test_relative_and_money_floors() -> None:
    ts = MONDAY + 60 * np.arange(1, 1441)
    det = SeasonalBaseline()
    feed(det, ts, np.full(ts.size, 1.0))  # perfectly flat: the relative floor sets sigma
    nxt = float(ts[-1] + 60)
    assert det.score_one(nxt, 1.0).upper == pytest.approx(1.1**6)
    assert not det.score_one(nxt, 1.7).is_anomaly
    assert det.score_one(nxt, 1.8).is_anomaly

    tiny = SeasonalBaseline()
    feed(tiny, ts, np.full(ts.size, 0.01))  # a cent a minute: the money floor binds
    assert tiny.score_one(nxt, 0.01).upper == pytest.approx(0.01 + 6 * 0.05)
    assert not tiny.score_one(nxt, 0.30).is_anomaly  # 30x, but 29 cents
    assert tiny.score_one(nxt, 0.35).is_anomaly


def test_score_is_calibrated_and_increasing() -> None:
    ts, spend = daily_series(3.0, seed=8)
    det = SeasonalBaseline()
    verdicts = feed(det, ts, spend)
    later = [v.score for v in verdicts[1440:]]
    # an upper-tail p-value against the series' own history: about 1 % of ordinary windows
    # score 0.99 or more, about half score 0.5 or more
    assert 0.005 < sum(s >= 0.99 for s in later) / len(later) < 0.02
    assert 0.4 < sum(s >= 0.5 for s in later) / len(later) < 0.6
    nxt = float(ts[-1] + 60)
    v = det.score_one(nxt, 1.0)
    scores = [det.score_one(nxt, float(x)).score for x in np.linspace(v.expected, 4 * v.upper, 40)]
    assert all(a < b for a, b in pairwise(scores))  # strictly increasing: no caps
    assert det.score_one(nxt, v.upper).score > 0.9999  # the model's bound is far in the tail
    assert det.score_one(nxt, 0.0).score == 0.0  # no spend: nothing to see


def test_protect_anomaly_false_learns_flagged_windows() -> None:
    ts, spend = daily_series(2.0, seed=9)
    spend[2430:2440] *= 8
    protected, unprotected = SeasonalBaseline(), SeasonalBaseline(protect_anomaly=False)
    p = feed(protected, ts[:2441], spend[:2441])
    u = feed(unprotected, ts[:2441], spend[:2441])
    assert p[2430].is_anomaly and u[2430].is_anomaly
    # Learnt, but clipped at 3 sigma per window: the baseline creeps up rather than jumps.
    assert p[2440].expected < u[2440].expected < 2 * p[2440].expected


def test_learn_one_and_score_one_split_update() -> None:
    ts, spend = daily_series(0.5, seed=2)
    a, b = SeasonalBaseline(), SeasonalBaseline()
    for t, x in zip(ts, spend):
        va = a.update(float(t), float(x))
        vb = b.score_one(float(t), float(x))
        b.learn_one(float(t), float(x))
        assert va == vb


def test_load_state_rejects_malformed_lists() -> None:
    det = SeasonalBaseline()
    state = det.to_state()
    with pytest.raises(ValueError, match="slots"):
        det.load_state({**state, "loc": unpack_f32(state["loc"])[:-1]})
    with pytest.raises(ValueError, match="malformed"):
        det.load_state({k: v for k, v in state.items() if k != "dev"})
    with pytest.raises(ValueError, match="non-finite"):
        det.load_state({**state, "dev": [math.nan] * len(unpack_f32(state["dev"]))})


def test_state_bytes_per_series() -> None:
    # Eight days of 60 s windows fill every slot: the worst case for the stored state.
    ts, spend = daily_series(8.0, seed=3)
    det = SeasonalBaseline()
    feed(det, ts, spend)
    state = det.to_state()
    assert min(state["n"]) > 0
    size = len(json.dumps(state, separators=(",", ":")))
    print(f"\nSeasonalBaseline state: {size} bytes of compact JSON per series")
    assert size < 16 * 1024


def test_no_opinion_without_history_even_with_min_history_zero() -> None:
    det = SeasonalBaseline(min_history=0)
    first = det.update(MONDAY + 60, 1000.0)
    assert first.score == 0.0 and not first.is_anomaly
    assert det.update(MONDAY + 120, 8000.0).is_anomaly  # one window is history enough


def test_credits_and_extreme_values_stay_finite() -> None:
    ts, spend = daily_series(0.5, seed=8)
    det = SeasonalBaseline()
    feed(det, ts, spend)
    nxt = ts[-1] + 60 * np.arange(1, 6)
    verdicts = feed(det, nxt, [-3.0, 1e-12, 1e9, 5e-324, 1.0])
    assert verdicts[0].reason == "a credit, not spend" and not verdicts[0].is_anomaly
    assert verdicts[2].is_anomaly and not verdicts[1].is_anomaly and not verdicts[3].is_anomaly
    for v in verdicts:
        json.dumps(v.to_dict(), allow_nan=False)
        assert 0.0 <= v.score <= 1.0


def test_a_nightly_job_starting_minutes_before_its_hour_is_expected() -> None:
    # A job at 02:00 UTC that starts up to five minutes either side of it (issue 12: the
    # independent generator's batches): on a night it starts at 01:55, its first minutes fall
    # in the 01:00 slot, which sees them on few nights and clips them when it does. They are
    # judged against the 02:00 slot too, and are as expected as the rest of the run.
    rng = np.random.default_rng(12)
    days = 15
    n = days * 1440
    ts = MONDAY + 60.0 * np.arange(1, n + 1)
    spend = rng.lognormal(np.log(0.3), 0.3, n)
    starts = rng.integers(-5, 6, days)
    starts[-1] = -5  # the last night it starts at 01:55
    for d, s in enumerate(starts):
        a = d * 1440 + 120 + int(s)
        spend[a : a + 60] += rng.lognormal(np.log(4.0), 0.2, 60)
    det = SeasonalBaseline()
    verdicts = feed(det, ts, spend)
    last_night = verdicts[(days - 1) * 1440 + 115 : (days - 1) * 1440 + 120]  # 01:55-01:59
    assert all(v.observed > 10 * 0.3 for v in last_night)
    assert not any(v.is_anomaly for v in last_night)
    assert max(v.score for v in last_night) < 0.999
    # the same minutes of an ordinary night (the job at 02:05) are what the 01:00 slot expects
    v = verdicts[(days - 1) * 1440 + 100]
    assert v.expected == pytest.approx(0.3, rel=0.3)
    # a tenfold burst at that minute is still news
    spend2 = spend.copy()
    spend2[(days - 1) * 1440 + 116] = 40.0
    det2 = SeasonalBaseline()
    assert feed(det2, ts[: (days - 1) * 1440 + 117], spend2[: (days - 1) * 1440 + 117])[-1].is_anomaly
