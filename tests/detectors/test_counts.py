"""CountTail specifics: the tail test, the dispersion, the guards and the spend it reports."""

from __future__ import annotations

import json
import math
from typing import Any

import numpy as np
import pytest
from scipy import stats

from detectors import CountTail, Verdict
from detectors.counts import _count_bound, _upper_tail
from tests.detectors.synthetic import MONDAY, daily_counts

DAY = 1440  # 1-min windows


def feed(det: CountTail, ts: Any, spend: Any, counts: Any = None) -> list[Verdict]:
    counts = [None] * len(ts) if counts is None else counts.tolist()
    rows = zip(ts.tolist(), spend.tolist(), counts, strict=True)
    return [det.update(t, v, c) for t, v, c in rows]


def flagged(verdicts: list[Verdict]) -> list[int]:
    return [i for i, v in enumerate(verdicts) if v.is_anomaly]


@pytest.mark.parametrize(
    "params",
    [
        {"window_seconds": 0},
        {"p_threshold": 0},
        {"p_threshold": 0.5},
        {"min_count": 0.5},
        {"min_history": -1},
        {"min_excess": 0},
        {"alpha": 0},
        {"alpha": 2},
        {"estimate_dispersion": 1},
        {"fallback_cost": 0},
    ],
)
def test_bad_parameters_are_refused(params: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match="CountTail"):
        CountTail(**params)


@pytest.mark.parametrize(
    ("x", "mu", "phi"),
    [(3, 0.5, 0.0), (60, 0.5, 0.0), (12, 4.0, 0.0), (3, 0.5, 0.4), (40, 20.0, 0.3), (1, 2.0, 1.0)],
)
def test_tail_and_bound_match_the_distributions(x: float, mu: float, phi: float) -> None:
    if phi == 0.0:
        dist = stats.poisson(mu)
    else:
        r = 1.0 / phi
        dist = stats.nbinom(r, r / (r + mu))
    assert _upper_tail(x, mu, phi) == pytest.approx(dist.sf(x - 1), rel=1e-9)
    bound = _count_bound(1e-6, mu, phi)
    assert dist.sf(math.ceil(bound) - 1) <= 1e-6 < dist.sf(math.floor(bound) - 1)


def test_three_requests_at_night_are_not_an_anomaly_sixty_are() -> None:
    # Half a request per minute at night, six by day, $0.05 each: the "infinite sigma" trap
    # for a z-score on a series that is mostly zeros at night.
    ts, counts = daily_counts(3.0, seed=1, night=0.5, day=6.0)
    night = 2 * DAY + 3 * 60  # day 3, 03:00
    counts[night], counts[night + 30] = 3, 60
    verdicts = feed(CountTail(), ts, 0.05 * counts, counts)
    assert flagged(verdicts) == [night + 30]
    quiet, burst = verdicts[night], verdicts[night + 30]
    assert quiet.score < 0.999 and "3 requests, 0.5" in quiet.reason
    assert burst.score > 0.9999
    # The spend it reports: expected count x cost per request, the bound at that cost.
    assert quiet.expected == pytest.approx(0.05 * 0.5, rel=0.2)
    assert 0.05 * 5 <= burst.upper <= 0.05 * 10


def test_overdispersed_daytime_bursts_do_not_page() -> None:
    # Agent traffic: 20 requests a minute by day, in bursts (a gamma-mixed Poisson, variance
    # 20 + 0.3 * 20**2 = 140). A Poisson test pages on them all day; the estimated dispersion
    # does not, and still sees a real burst.
    ts, counts = daily_counts(3.0, seed=2, night=2.0, day=20.0, dispersion=0.3)
    burst = 2 * DAY + 14 * 60
    counts[burst] = 400
    spend = 0.02 * counts
    verdicts = feed(CountTail(), ts, spend, counts)
    assert flagged(verdicts) == [burst]
    poisson = feed(CountTail(estimate_dispersion=False), ts, spend, counts)
    assert len(flagged(poisson)) > 20


def test_dispersion_is_learnt_and_zero_for_a_poisson_series() -> None:
    ts, counts = daily_counts(2.0, seed=3, night=1.0, day=10.0, dispersion=0.3)
    bursty = CountTail()
    feed(bursty, ts, counts * 0.01, counts)
    ts, counts = daily_counts(2.0, seed=3, night=1.0, day=10.0)
    calm = CountTail()
    feed(calm, ts, counts * 0.01, counts)
    assert 0.15 < bursty._dispersion(0) < 0.5
    assert calm._dispersion(0) < 0.03


def test_guards_few_requests_and_little_money_never_page() -> None:
    ts = MONDAY + 60 * np.arange(1, 2 * DAY + 1)
    zeros = np.zeros(ts.size)
    det = CountTail()
    feed(det, ts, zeros, zeros)  # two days without a single request
    t = float(ts[-1])
    assert not det.score_one(t + 60, 0.4, 4).is_anomaly  # p ~ 0, but 4 < min_count
    assert det.score_one(t + 60, 0.5, 5).is_anomaly
    assert not det.score_one(t + 60, 0.25, 50).is_anomaly  # $0.25: not money
    v = det.score_one(t + 60, 0.3, 5)
    assert v.is_anomaly


def test_score_is_monotone_in_the_count_and_the_flag_starts_at_the_bound() -> None:
    ts, counts = daily_counts(2.0, seed=4, night=2.0, day=8.0)
    det = CountTail(min_excess=0.01)
    feed(det, ts, counts, counts)  # $1 per request
    t = float(ts[-1]) + 60
    scores, flags = [], []
    for k in range(0, 40):
        v = det.score_one(t, float(k), float(k))
        scores.append(v.score)
        flags.append(v.is_anomaly)
    assert scores == sorted(scores)
    bound = det.score_one(t, 0.0, 0.0).upper  # $1 per request: the count bound
    assert flags == [k >= bound for k in range(0, 40)]


def test_count_none_uses_a_pseudo_count_at_the_learnt_cost() -> None:
    ts, counts = daily_counts(2.0, seed=5, night=2.0, day=8.0)
    det = CountTail()
    feed(det, ts, 0.04 * counts, counts)
    t = float(ts[-1]) + 60
    cost = det._cost_per_request()
    assert cost == pytest.approx(0.04, rel=1e-4)
    spend_only, counted = det.score_one(t, 1.2, None), det.score_one(t, 1.2, 1.2 / cost)
    assert (spend_only.score, spend_only.expected, spend_only.upper) == (
        counted.score, counted.expected, counted.upper
    )
    assert "requests (from spend)" in spend_only.reason
    # Before any count: fallback_cost per request.
    fresh = CountTail(fallback_cost=0.5)
    feed(fresh, ts, 0.5 * counts)
    assert fresh._cost_per_request() == 0.5
    assert fresh.to_state()["mean"][12] == pytest.approx(det.to_state()["mean"][12], rel=0.05)


def test_flagged_windows_teach_nothing() -> None:
    ts, counts = daily_counts(2.0, seed=6, night=0.5, day=6.0)
    counts[DAY + 600 : DAY + 720] = 80  # two hours of an agent loop on day 2
    det = CountTail()
    verdicts = feed(det, ts, 0.05 * counts, counts)
    assert all(v.is_anomaly for v in verdicts[DAY + 600 : DAY + 720])
    assert det.to_state()["mean"][10] < 2 * 6.0


def test_state_is_small_json() -> None:
    ts, counts = daily_counts(2.0, seed=7, night=0.5, day=6.0)
    det = CountTail()
    feed(det, ts, 0.05 * counts, counts)
    assert len(json.dumps(det.to_state(), allow_nan=False)) < 2000
