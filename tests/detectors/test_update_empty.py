"""``Detector.update_empty``: a run of empty windows (no spend, no requests) gives, to the bit,
the state that ``update(ts, 0.0, 0.0)`` window by window gives, and each window's expected,
upper, score and flag. The judge applies a parked series' waiting windows with it
(streams.judge.core; tests/streams/judge/test_park.py compares whole judges)."""

from __future__ import annotations

import json
import math
import pickle
import random
from typing import Any

import pytest

from detectors import DETECTORS, Combined, Detector
from tests.detectors.synthetic import MONDAY

W = 60.0


def spender(det: Detector, start: float, n: int, *, active: float, usd: float, seed: int,
            spikes: dict[int, float] | None = None) -> float:
    """``n`` windows from ``start`` (window ends): spend in ``active`` of them (lognormal about
    ``usd``, a daily swing, requests to match), ``spikes`` {window index: times usd}. The last end."""
    rng = random.Random(seed)
    ts = start
    for i in range(n):
        ts = start + W * (i + 1)
        if spikes and i in spikes:
            x = usd * spikes[i]
            det.update(ts, x, float(max(1, round(20 * spikes[i]))))
        elif rng.random() < active:
            day = 1.0 + 0.6 * math.sin(2 * math.pi * ((ts % 86400) / 86400 - 0.35))
            x = usd * day * rng.lognormvariate(0.0, 0.5)
            det.update(ts, x, float(max(1, round(x / usd * 20))))
        else:
            det.update(ts, 0.0, 0.0)
    return ts


def dump(det: Detector) -> str:
    """The state, exactly: JSON writes each float's shortest round-trip repr (so -0.0 too)."""
    return json.dumps(det.to_state(), sort_keys=True)


RUNS: list[bool] = []  # whether each Combined.update_empty took the run model by model


def check_run(det: Detector, first_end: float, k: int, then: int = 30, seed: int = 99) -> int:
    """``k`` empty windows from ``first_end`` through ``update`` on one copy of ``det`` and
    ``update_empty`` on another: the same outputs and states, to the bit, and the same after
    ``then`` more windows with spend. Returns how many windows ``update_empty`` handed to
    ``update`` (and notes in ``RUNS`` whether it went model by model)."""
    a, b = pickle.loads(pickle.dumps(det)), pickle.loads(pickle.dumps(det))
    ends = [first_end + W * i for i in range(k)]
    want = []
    for ts in ends:
        v = a.update(ts, 0.0, 0.0)
        want.append((v.expected, v.upper, v.score, v.is_anomaly))
    calls = [0]
    cls = type(b)
    plain = cls.update

    def counted(self: Detector, ts: float, value: float, count: float | None = None) -> Any:
        calls[0] += 1
        return plain(self, ts, value, count)

    whole = Combined._empty_run_ready

    def noted(self: Combined, *args: Any) -> Any:
        got = whole(self, *args)
        RUNS.append(got)
        return got

    RUNS.clear()
    cls.update = counted  # type: ignore[method-assign]
    Combined._empty_run_ready = noted  # type: ignore[method-assign]
    try:
        got = b.update_empty(ends)
    finally:
        cls.update = plain  # type: ignore[method-assign]
        Combined._empty_run_ready = whole  # type: ignore[method-assign]
    assert repr(got) == repr(want)
    assert dump(b) == dump(a)
    for name in ("_gate_in", "_restarted"):  # not state: what the gate saw last
        assert getattr(b, name, None) == getattr(a, name, None)
    last = ends[-1] if ends else first_end - W
    spender(a, last, then, active=0.5, usd=0.3, seed=seed)
    spender(b, last, then, active=0.5, usd=0.3, seed=seed)
    assert dump(b) == dump(a)
    return calls[0]


def default() -> Combined:
    return Combined()


@pytest.fixture(scope="module")
def week_user() -> Combined:
    """A sparse user series' default detector after six days and 23 hours (spend in 10 % of
    the windows, ~$0.05): a run from here crosses the week's end (hour-of-week slot 167 to 0)."""
    det = default()
    spender(det, MONDAY, 7 * 1440 - 70, active=0.1, usd=0.05, seed=1)
    return det


@pytest.mark.parametrize("k", [1, 2, 9, 61, 400])
def test_runs_cross_hours_and_the_week(week_user: Combined, k: int) -> None:
    first = week_user._last_ts + W  # type: ignore[operator]
    assert check_run(week_user, first, k) == 0  # every window on the fast path
    assert RUNS == [True]  # model by model


def test_window_by_window(week_user: Combined, monkeypatch: pytest.MonkeyPatch) -> None:
    """The window-by-window path (where a run cannot go model by model) on its own."""
    monkeypatch.setattr(Combined, "_empty_run_ready", lambda self, ends: False)
    for k in (1, 9, 400):
        assert check_run(week_user, week_user._last_ts + W, k) == 0  # type: ignore[operator]


def test_gap_before_the_run(week_user: Combined) -> None:
    """Windows that are not consecutive (a judge skips a long silence's) are fine too."""
    first = week_user._last_ts + W  # type: ignore[operator]
    a, b = pickle.loads(pickle.dumps(week_user)), pickle.loads(pickle.dumps(week_user))
    ends = [first, first + W, first + 50 * W, first + 3000 * W]
    want = [a.update(ts, 0.0, 0.0) for ts in ends]
    got = b.update_empty(ends)
    assert repr(got) == repr([(v.expected, v.upper, v.score, v.is_anomaly) for v in want])
    assert dump(b) == dump(a)


def test_cold_start() -> None:
    det = default()
    assert check_run(det, MONDAY + W, 50) == 0
    spender(det, MONDAY, 20, active=0.5, usd=0.05, seed=2)  # fewer than min_history with spend
    assert check_run(det, det._last_ts + W, 50) == 0  # type: ignore[operator]


@pytest.mark.parametrize("first_empty", [False, True])
def test_busy_team_goes_silent(first_empty: bool) -> None:
    """Spend every window for two days, then none: the count model's dispersion and cost learn
    zeros, and its costly upper is asked for (the others' are above the money gate). Right
    after the last spend the change-point statistic is above 0 (window by window); one empty
    window later it is 0 (model by model)."""
    det = default()
    spender(det, MONDAY, 2 * 1440, active=1.0, usd=2.0, seed=3)
    if first_empty:
        det.update(det._last_ts + W, 0.0, 0.0)  # type: ignore[operator]
    asked = [0]
    plain = type(det._models[2])._empty_upper

    def counted(self: Any, ts: float) -> float:
        asked[0] += 1
        return plain(self, ts)

    type(det._models[2])._empty_upper = counted  # type: ignore[method-assign]
    try:
        assert check_run(det, det._last_ts + W, 300) == 0  # type: ignore[operator]
    finally:
        type(det._models[2])._empty_upper = plain  # type: ignore[method-assign]
    assert asked[0] > 0
    assert [first_empty] == RUNS


@pytest.mark.parametrize("spike", [8.0, 40.0])
def test_after_an_anomaly(week_user: Combined, spike: float) -> None:
    """Right after a burst (a shift under way: those windows go through ``update``) and after
    it (the burst learnt into the calibration, the shift's run over)."""
    det = pickle.loads(pickle.dumps(week_user))
    last = spender(det, det._last_ts, 3, active=0.0, usd=0.05, seed=4,  # type: ignore[arg-type]
                   spikes={0: spike, 1: spike, 2: spike})
    assert det._shift[0] is not None
    handed = check_run(det, last + W, 120)
    assert 0 < handed < 120  # the shift's last 15 minutes through update, then the fast path
    assert RUNS == [False]  # (window by window: a shift under way)


def test_after_a_rebase(week_user: Combined) -> None:
    """On-call's "new normal": the incident's run restarts, which the next window's gate sees."""
    det = pickle.loads(pickle.dumps(week_user))
    det.rebase()
    assert det._restarted
    for k in (1, 5):
        assert check_run(det, det._last_ts + W, k) == 0  # type: ignore[operator]


def test_sustained_rise_then_silence() -> None:
    """A changepoint alarm (two hours at 6x) then silence: the first empty windows can still
    be flagged by the change-point model (its statistic falls from its cap) and go through
    ``update``."""
    det = default()
    last = spender(det, MONDAY, 3 * 1440, active=1.0, usd=0.5, seed=5)
    last = spender(det, last, 120, active=1.0, usd=3.0, seed=6)
    handed = check_run(det, last + W, 200)
    assert 0 < handed < 200


@pytest.mark.parametrize("params", [
    {"components": ("seasonal",)},
    {"components": ("counts", "seasonal")},
    {"components": ("seasonal", "changepoint", "counts"), "min_requests": 0.0},
    {"burst_windows": 0, "recurring_days": 0, "gate_on_mean": False},
    {"sparse": True},  # no fast path: update window by window
    {"components": ("seasonal", "naive")},  # a model without one: the same
])
def test_other_combinations(params: dict[str, Any]) -> None:
    det = Combined(**params)
    last = spender(det, MONDAY, 3 * 1440, active=0.2, usd=0.1, seed=7, spikes={2000: 30.0})
    check_run(det, last + W, 90)


@pytest.mark.parametrize("name", sorted(DETECTORS))
def test_every_detector(name: str) -> None:
    """Every registered detector: the fast path where it has one, else ``update`` itself."""
    cls = DETECTORS[name]
    det = cls(**cls._unit_test_params())
    last = spender(det, MONDAY, 1440, active=0.3, usd=1.0, seed=8)
    check_run(det, last + W, 45, then=10)
