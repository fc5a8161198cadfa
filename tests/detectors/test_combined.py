"""Combined specifics: materiality summed over the incident, the volume guard, protection,
state and configuration errors. The shared contract lives in test_contract.py."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pytest

from detectors import Combined, Verdict, make_detector
from detectors.f32 import unpack_f32
from tests.detectors.synthetic import MONDAY, daily_series


def feed(det: Combined, ts: Any, values: Any, count: float | None = 40.0) -> list[Verdict]:
    return [det.update(float(t), float(v), count) for t, v in zip(ts, values, strict=True)]


@pytest.fixture(scope="module")
def two_days() -> tuple[np.ndarray, np.ndarray]:
    return daily_series(2.0, seed=5)  # ~$0.5-3.5 a minute


def test_a_burst_worth_the_money_alerts_in_its_first_window(two_days: Any) -> None:
    ts, spend = two_days
    spend = spend.copy()
    spend[2400] = spend[2400] + 60.0
    det = Combined()
    v = feed(det, ts[:2401], spend[:2401])
    # the impact is the window's spend over the mean spend the expected value stands for
    # (gate_on_mean): a little less than its excess over the (log-scale) expected value
    g_expected = det.gate_inputs()[2]
    assert v[2400].is_anomaly and v[2400].impact == pytest.approx(v[2400].observed - g_expected)
    assert v[2400].expected < g_expected < 1.5 * v[2400].expected
    assert not any(x.is_anomaly for x in v[:2400])


def test_a_surprising_but_small_blip_never_alerts(two_days: Any) -> None:
    ts, spend = two_days
    spend = spend.copy()
    spend[2400:2403] += 5.0  # ~2.5x: surprising each window, but $15 in all
    v = feed(Combined(min_excess_usd=20, min_excess_root=0, min_excess_minutes=0), ts[:2410], spend[:2410])
    assert sum(x.excess for x in v[2400:2403]) < 20
    assert not any(x.is_anomaly for x in v)
    assert "over expected so far, alerts from $20.00" in v[2401].reason
    # the same with the default gate, relative to what this series spends at that time: 10
    # minutes of the window's expected spend (~$3.43 a minute) or of the last half hour's, if lower: $34
    v = feed(Combined(), ts[:2410], spend[:2410])
    assert not any(x.is_anomaly for x in v)
    assert "alerts from $33.80" in v[2401].reason


def test_money_is_summed_over_the_incident(two_days: Any) -> None:
    ts, spend = two_days
    spend = spend.copy()
    spend[2400:2420] += 8.0  # $8 over expected a window: material from the 3rd window
    det = Combined(min_excess_usd=20, min_excess_root=0, min_excess_minutes=0)
    v, gate_excess = [], []
    for t, x in zip(ts[:2420].tolist(), spend[:2420].tolist(), strict=True):
        v.append(det.update(t, x))
        gate_excess.append(det.gate_inputs()[1])  # over the mean spend (gate_on_mean)
    flags = [x.is_anomaly for x in v[2400:2420]]
    first = flags.index(True)
    assert first == 2 and all(flags[first:])
    assert v[2400 + first].impact >= 20.0
    assert v[2419].impact == pytest.approx(sum(gate_excess[2400:2420]), rel=1e-9)


def test_the_money_gate_counts_over_the_mean_spend_of_a_heavy_tailed_series() -> None:
    # The models' expected value is a typical (log-scale) value: on a bursty series (log sigma
    # 1.5: the mean is ~3x the median) it sits far below the mean, and every ordinary burst
    # would be "dollars over expected". The gate counts over the mean it stands for.
    rng = np.random.default_rng(0)
    ts = 1_704_067_200.0 + 60.0 * np.arange(1, 2 * 1440 + 1)
    spend = rng.lognormal(0.0, 1.5, ts.size)
    det = Combined()
    for t, x in zip(ts.tolist(), spend.tolist(), strict=True):
        v = det.update(t, x, 20.0)
    g_expected = det.gate_inputs()[2]
    assert v.expected < 0.5 * spend.mean()
    assert g_expected == pytest.approx(spend.mean(), rel=0.2)
    # off: the gate counts over the expected value itself
    off = Combined(gate_on_mean=False)
    for t, x in zip(ts.tolist(), spend.tolist(), strict=True):
        off.update(t, x, 20.0)
    assert off.gate_inputs()[2] == pytest.approx(v.expected)


def test_the_incident_ends_when_spend_falls_back_to_expected(two_days: Any) -> None:
    ts, spend = two_days
    spend = spend.copy()
    spend[2400:2405] *= 8
    spend[2405:2410] = 0.0
    spend[2410] *= 3  # surprising again, but a new (small) incident: not material alone
    det = Combined(min_excess_usd=30.0, min_excess_root=0, min_excess_minutes=0)
    v = feed(det, ts[:2411], spend[:2411])
    assert any(x.is_anomaly for x in v[2400:2405])
    assert v[2405].impact is None and not v[2410].is_anomaly


def test_low_volume_spike_needs_the_count_to_agree(two_days: Any) -> None:
    ts, spend = two_days
    spend = spend.copy()
    spend[2400] += 60.0  # one long-context call: $60 in a window with 2 requests
    v = feed(Combined(), ts[:2401], spend[:2401], count=2.0)
    assert not v[2400].is_anomaly
    assert "only 2 requests" in v[2400].reason
    # The same window with the volume to match is an incident.
    v = feed(Combined(min_requests=2.0), ts[:2401], spend[:2401], count=2.0)
    assert v[2400].is_anomaly


def test_anomalous_windows_teach_no_component(two_days: Any) -> None:
    ts, spend = two_days
    spiked = spend.copy()
    spiked[2400:2430] *= 10
    det, twin = Combined(), Combined()
    feed(det, ts[:2430], spiked[:2430])
    feed(twin, ts[:2400], spend[:2400])
    # The seasonal component's hour-of-day and global slots, which judged the runaway, are as
    # if it never happened (its hour-of-week slot, with no history yet, may learn it).
    assert unpack_f32(det.to_state()["models"][0]["loc"])[168:] == unpack_f32(twin.to_state()["models"][0]["loc"])[168:]


def test_state_round_trip_keeps_the_running_incident(two_days: Any) -> None:
    ts, spend = two_days
    spend = spend.copy()
    spend[2400:2402] *= 4  # an incident under way, not yet material
    det = Combined(min_excess_usd=100.0)
    feed(det, ts[:2402], spend[:2402])
    state = json.loads(json.dumps(det.to_state()))
    assert state["run"][0] > 0
    twin = Combined(min_excess_usd=100.0).load_state(state)
    a = det.update(float(ts[2402]), float(spend[2402]) * 4, 40.0)
    b = twin.update(float(ts[2402]), float(spend[2402]) * 4, 40.0)
    assert a == b


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"components": []}, "non-empty"),
        ({"components": ["seasonal", "seasonal"]}, "must not repeat"),
        ({"components": ["nope"]}, "unknown component 'nope'"),
        ({"components": ["combined"]}, "unknown component 'combined'"),
        ({"component_params": {"naive": {}}, "components": ["seasonal"]}, "not in components"),
        ({"component_params": {"seasonal": {"threshhold": 3}}}, "no parameter(s) threshhold"),
        ({"min_excess_usd": -1}, "min_excess_usd"),
    ],
)
def test_bad_configuration_is_refused(params: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match="Combined") as err:
        make_detector("combined", **params)
    assert message in str(err.value)


def test_window_seconds_reaches_the_components() -> None:
    det = Combined(window_seconds=3600)
    assert det._models[0].get_params()["window_seconds"] == 3600
    assert Combined(component_params={"seasonal": {"window_seconds": 300}})._models[0].window_seconds == 300


def test_state_for_other_components_is_refused() -> None:
    det = Combined()
    det.update(MONDAY + 60, 1.0, 3)
    state = det.to_state()
    state["models"] = state["models"] * 2
    with pytest.raises(ValueError, match="holds 6 models, this detector runs 3"):
        Combined().load_state(state)


def nightly_batch(days: int = 6) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A small team (under a call a minute, ~$0.15 each) plus a 40-minute batch job at
    02:00 UTC every night (~$4.5/min, ~28 more calls a minute)."""
    rng = np.random.default_rng(3)
    n = days * 1440
    ts = MONDAY + 60 * np.arange(1, n + 1)
    minute_of_day = ((ts - 60) % 86400) // 60
    counts = rng.poisson(0.8, n).astype(float)
    spend = counts * rng.lognormal(np.log(0.15), 0.5, n)
    batch = (minute_of_day >= 120) & (minute_of_day < 160)
    counts[batch] += rng.poisson(28, int(batch.sum()))
    spend[batch] += rng.lognormal(np.log(4.5), 0.3, int(batch.sum()))
    return ts, spend, counts


def nights_alerting(det: Combined, ts: Any, spend: Any, counts: Any) -> list[int]:
    days = []
    for t, v, c in zip(ts, spend, counts, strict=True):
        if det.update(float(t), float(v), float(c)).is_anomaly:
            days.append(int((t - 60 - MONDAY) // 86400))
    return sorted(set(days))


def test_a_nightly_batch_becomes_routine() -> None:
    ts, spend, counts = nightly_batch()
    days = nights_alerting(Combined(), ts, spend, counts)
    assert len(days) <= 2 and all(d <= 2 for d in days)
    # Without the recurrence rule the protected models never learn it: it pages (almost) every
    # night.
    assert len(nights_alerting(Combined(recurring_days=0), ts, spend, counts)) >= 5


def test_an_incident_at_a_new_time_of_day_still_alerts_after_a_routine_one() -> None:
    ts, spend, counts = nightly_batch()
    spend[-300:-280] += 40.0  # the last day, 19:00: a runaway at an hour that never surprised
    counts[-300:-280] += 200
    det = Combined()
    verdicts = [det.update(float(t), float(v), float(c)) for t, v, c in zip(ts, spend, counts, strict=True)]
    assert any(v.is_anomaly for v in verdicts[-300:-280])
    # the batch was judged routine on the nights between (and learnt: by now it is expected)
    assert any(v.reason.endswith("routine") for v in verdicts)


def test_with_level_marks_apart_a_level_only_the_changepoint_flagged_does_not_make_a_spike_routine() -> None:
    # i5 agents-platform's $25k key leak (docs/detection-log.md): the sustained-rise model's
    # flag on an unsurprising level (p ~ 1 %) a week before, and an incident in the same quarter
    # hour three days before, made the leak's first windows "routine": learnt, never alerted.
    ts, spend = daily_series(9.0, seed=7, base=2.0, swing=0.6, noise=0.2)
    counts = np.random.default_rng(8).poisson(40, len(ts)).astype(float)
    minute = ((ts - 60) % 86400) // 60
    day = (ts - 60 - MONDAY) // 86400
    rise = (minute >= 600) & (minute < 640) & np.isin(day, [5, 6])  # 10:00-10:40, 1.4x, Sat and Sun
    spend[rise] *= 1.4
    spike = (day == 8) & (minute >= 620) & (minute < 640)  # Tuesday 10:20: ~15x and 8x the calls
    spend[spike] += 30.0
    counts[spike] += 300
    runs = {}
    for apart in (True, False):
        det = Combined(level_marks_apart=apart)
        runs[apart] = [det.update(float(t), float(v), float(c)) for t, v, c in zip(ts, spend, counts, strict=True)]
    sunday = [v for v, r, d in zip(runs[True], rise, day, strict=True) if r and d == 6]
    assert sunday and not any("over expected" in v.reason for v in sunday)  # Sunday's rise: no surprise
    spiked = [v for v, s in zip(runs[True], spike, strict=True) if s]
    assert not any(v.reason.endswith("routine") for v in spiked)
    assert any(v.is_anomaly for v in spiked[:3])
    # off (the default): the level marks count for the spike, which is routine and never alerts
    spiked = [v for v, s in zip(runs[False], spike, strict=True) if s]
    assert spiked[0].reason.endswith("routine") and not any(v.is_anomaly for v in spiked)


# -- a new normal versus a runaway ------------------------------------------------------------

STEP = 8 * 1440  # after eight days of history: Tuesday of the second week, 00:00 UTC
HOUR = 60


@pytest.fixture(scope="module")
def a_week_of_a_dollar_a_minute() -> tuple[np.ndarray, np.ndarray, bytes]:
    """Ten days of a seasonal series spending about $1 a minute, and the default detector
    after the first eight of them (pickled, so that each test starts from the same state)."""
    import pickle

    ts, spend = daily_series(10.0, seed=21, base=1.0, swing=0.6, noise=0.2)
    det = Combined()
    feed(det, ts[:STEP], spend[:STEP])
    return ts, spend, pickle.dumps(det)


def _after(fixture: Any, shape: np.ndarray) -> list[Verdict]:
    import pickle

    ts, spend, blob = fixture
    det = pickle.loads(blob)
    n = shape.size
    return feed(det, ts[STEP : STEP + n], spend[STEP : STEP + n] * shape)


def test_a_permanent_step_becomes_the_new_normal_within_six_hours(a_week_of_a_dollar_a_minute: Any) -> None:
    verdicts = _after(a_week_of_a_dollar_a_minute, np.full(1440, 3.0))
    flagged = [i for i, v in enumerate(verdicts) if v.is_anomaly]
    assert flagged and flagged[0] < 30  # it alerts (a 3x step is worth $2 a minute)...
    assert flagged[-1] < 6 * HOUR  # ...and is the new normal within six hours
    assert len(flagged) < 6 * HOUR
    later = verdicts[6 * HOUR :]
    expected = np.mean([v.expected for v in later])
    observed = np.mean([v.observed for v in later])
    assert expected == pytest.approx(observed, rel=0.25)


def test_a_rise_that_keeps_rising_keeps_alerting(a_week_of_a_dollar_a_minute: Any) -> None:
    minutes = np.arange(12 * HOUR)
    verdicts = _after(a_week_of_a_dollar_a_minute, 2.0 ** (minutes / (2 * HOUR)))  # x2 every 2 h
    flagged = [i for i, v in enumerate(verdicts) if v.is_anomaly]
    assert flagged[0] < 3 * HOUR  # by then 2.8x
    assert sum(v.is_anomaly for v in verdicts[-HOUR:]) > 0.9 * HOUR  # still, twelve hours on


def test_a_loop_that_keeps_burning_keeps_alerting(a_week_of_a_dollar_a_minute: Any) -> None:
    # 8x, flat, for twelve hours: past max_new_normal_ratio (5x) a level is not adopted by
    # itself however stable -- a person says "new normal" (rebase) or it stops
    verdicts = _after(a_week_of_a_dollar_a_minute, np.full(12 * HOUR, 8.0))
    assert all(v.is_anomaly for v in verdicts[5 : 12 * HOUR])


def _alerts(verdicts: list[Verdict]) -> list[tuple[str, int]]:
    """The default policy's alert engine over a series' verdicts, as the judge sends them (a
    flagged window, or any window while its alert is open; every other window's end alone, which
    runs the group timers: flap damping's held resolve): (action, window index)."""
    from alerts import AlertEngine, AlertPolicy, Signal

    engine = AlertEngine(AlertPolicy())
    out = []
    for i, v in enumerate(verdicts):
        if not v.is_anomaly and not engine.tracks(engine.key_for("team=ads")):
            out += [(n.action, i) for n in engine.observe_window([], v.ts) if n.action in ("trigger", "resolve")]
            continue
        s = Signal(series="team=ads", labels={"team": "ads"}, window_start=v.ts - 60, window_end=v.ts,
                   observed_usd=v.observed, expected_usd=v.expected, is_anomaly=v.is_anomaly, impact_usd=v.impact,
                   mean_expected_usd=v.mean_expected)
        out += [(n.action, i) for n in engine.observe(s) if n.action in ("trigger", "resolve")]
    return out


def test_the_alert_of_a_permanent_step_resolves_within_six_hours(a_week_of_a_dollar_a_minute: Any) -> None:
    # Hysteresis on resolve (alerts.resolve_max_excess_pct) holds an alert while its windows are
    # well above expected; a permanent step is not held for good: the new normal makes the
    # expected catch up, and one alert, fired at once, resolves within six hours.
    got = _alerts(_after(a_week_of_a_dollar_a_minute, np.full(1440, 3.0)))
    assert [a for a, _ in got] == ["trigger", "resolve"]
    assert got[0][1] < 30 and got[1][1] < 6 * HOUR


def test_the_alert_of_a_loop_that_keeps_burning_stays_open(a_week_of_a_dollar_a_minute: Any) -> None:
    got = _alerts(_after(a_week_of_a_dollar_a_minute, np.full(12 * HOUR, 8.0)))
    assert [a for a, _ in got] == ["trigger"]  # twelve hours on, never resolved


def test_the_money_gate_replays_exactly_from_recorded_inputs(two_days: Any) -> None:
    # What the models learn does not depend on the gate's settings: the windows' gate inputs,
    # recorded once, give every other setting's decisions without running the models again
    # (what a threshold sweep needs).
    from detectors.combined import gate_step, is_material, materiality

    ts, spend = two_days
    spend = spend.copy()
    spend[2400:2406] += 12.0  # an incident worth ~$72
    spend[2500] += 2.0  # a blip
    recorded = Combined()
    inputs = []
    for t, v in zip(ts.tolist(), spend.tolist()):
        recorded.update(t, v, 40.0)
        inputs.append(recorded.gate_inputs())
    settings = ((0.5, 50.0, 0.0, 15.0), (0.5, 50.0, 0.6, 0.0), (20.0, 50.0, 0.0, 0.0), (1.0, 0.0, 0.0, 0.0),
                (5.0, 100.0, 0.2, 5.0))
    for usd, pct, root, minutes in settings:
        det = Combined(min_excess_usd=usd, min_excess_pct=pct, min_excess_root=root, min_excess_minutes=minutes)
        direct = [det.update(t, v, 40.0).is_anomaly for t, v in zip(ts.tolist(), spend.tolist())]
        replayed, run = [], (0.0, 0.0)
        for surprising, excess, expected, usual, restarted, base in inputs:
            run = gate_step(*((0.0, 0.0) if restarted else run), surprising, excess, expected)
            gate = materiality(usual, 60.0, usd, root, minutes, base)
            replayed.append(surprising and excess > 0.0 and is_material(*run, gate, pct))
        assert replayed == direct
        assert any(direct[2400:2406])


# -- the score: how surprising a window is, in either direction ----------------------------


def test_a_collapse_of_spend_scores_high_but_does_not_alert() -> None:
    # A flat series that stops spending: surprising (the score is two-sided), not an alert
    # (alerts are about spend above expected).
    ts, spend = daily_series(2.0, seed=5, swing=0.0, noise=0.1)
    spend = spend.copy()
    spend[2400:2460] = 0.0
    verdicts = feed(Combined(), ts, spend)
    assert verdicts[2400].score > 0.9999 > max(v.score for v in verdicts[1000:2400])
    assert not any(v.is_anomaly for v in verdicts)


def test_a_step_is_news_when_it_comes_not_for_hours(a_week_of_a_dollar_a_minute: Any) -> None:
    # A 3x step alerts until it is adopted (hours); its score is top when it comes, then the
    # models' p counts only down to ~0.5 % while the run lasts: the step's later windows do not
    # outrank a fresh surprise elsewhere, and an alerting window still scores >= 0.99.
    verdicts = _after(a_week_of_a_dollar_a_minute, np.full(3 * HOUR, 3.0))
    assert verdicts[0].score > 0.9999
    later = verdicts[30 : 3 * HOUR - 10]
    assert all(v.is_anomaly for v in later)
    assert all(0.99 <= v.score < 0.999 for v in later)


def _bursty_days(det: Combined, days: float, seed: int = 3) -> tuple[int, int]:
    """A $2-a-minute series with a two-window burst at 5x every 173 minutes; (burst windows of
    the last day, how many of them were surprising)."""
    rng = np.random.default_rng(seed)
    n = int(days * 1440)
    late = surprising = 0
    for i in range(n):
        burst = i % 173 < 2
        det.update(MONDAY + 60 * i, 2.0 * rng.lognormal(0, 0.3) * (5.0 if burst else 1.0), count=40)
        if burst and i >= n - 1440:
            late += 1
            gate = det.gate_inputs()
            surprising += bool(gate and gate[0])
    return late, surprising


def test_short_bursts_teach_the_calibration_and_an_incident_still_alerts() -> None:
    # Without the burst rule the calibration never sees a burst (surprising windows teach no
    # model): every one of them stays surprising, day after day.
    old = Combined(burst_windows=0, min_excess_usd=5.0, min_excess_minutes=0.0)
    late, surprising = _bursty_days(old, 3.0)
    assert late >= 14 and surprising >= late // 2
    det = Combined(burst_windows=5, min_excess_usd=5.0, min_excess_minutes=0.0)
    late, surprising = _bursty_days(det, 3.0)
    assert late >= 14 and surprising == 0
    # a run longer than a burst is an incident: it alerts, and teaches the calibration nothing
    rng = np.random.default_rng(4)
    t = MONDAY + 60 * 3 * 1440
    alerts = [det.update(t + 60 * j, 10.0 * rng.lognormal(0, 0.3), count=200).is_anomaly for j in range(1, 31)]
    assert any(alerts[:20])
    assert det.to_state()["burst"][1] == []


def test_bursts_teach_only_where_they_recur_and_at_their_weight() -> None:
    # burst_recur: the first bursts of a series are counted but not learnt, so a one-off
    # burst-like incident stays as rare as it was; recurring ones are learnt after all
    det = Combined(burst_windows=5, burst_recur=1e9, min_excess_usd=5.0, min_excess_minutes=0.0)
    late, surprising = _bursty_days(det, 3.0)
    assert late >= 14 and surprising >= late // 2  # never learnt: as without the rule
    seen, at, _ = det.to_state()["burst"][2:]
    assert seen > 10 and at > MONDAY + 2 * 86400
    det = Combined(burst_windows=5, burst_recur=3.0, min_excess_usd=5.0, min_excess_minutes=0.0)
    late, surprising = _bursty_days(det, 3.0)
    assert late >= 14 and surprising == 0
    # burst_weight: a burst window counts as a fraction of one in the calibration
    det = Combined(burst_windows=5, burst_weight=0.25, min_excess_usd=5.0, min_excess_minutes=0.0)
    late, surprising = _bursty_days(det, 3.0)
    assert late >= 14 and surprising <= late // 2
    # burst_gap: a burst is learnt once that many quiet windows follow it; runs closer together
    # (every 173 windows here, or 346 where one of them was not surprising) are the on-and-off windows of one incident, and teach nothing
    det = Combined(burst_windows=5, burst_gap=30, min_excess_usd=5.0, min_excess_minutes=0.0)
    late, surprising = _bursty_days(det, 3.0)
    assert late >= 14 and surprising == 0
    det = Combined(burst_windows=5, burst_gap=400, min_excess_usd=5.0, min_excess_minutes=0.0)
    late, surprising = _bursty_days(det, 3.0)
    assert late >= 14 and surprising >= late // 2
    # the settings are checked, and a state from before the burst count still loads
    for bad in (
        {"burst_weight": 0.0}, {"burst_weight": 1.5}, {"burst_recur": -1.0}, {"burst_recur_days": 0.0},
        {"burst_gap": -1},
    ):
        with pytest.raises(ValueError, match="burst_"):
            Combined(**bad)  # type: ignore[arg-type]
    state = det.to_state()
    state["burst"] = state["burst"][:2]
    again = Combined(burst_windows=5, burst_weight=0.25, min_excess_usd=5.0, min_excess_minutes=0.0)
    again.load_state(json.loads(json.dumps(state)))
    assert again.to_state()["burst"][2:] == [0.0, 0.0, 0]
    del state["burst"]  # a checkpoint from before the burst rule
    again.load_state(json.loads(json.dumps(state)))
    assert again.to_state()["burst"] == [0, [], 0.0, 0.0, 0]
    state["burst"] = [0, [], -1.0, 0.0, 0]
    with pytest.raises(ValueError, match="burst"):
        again.load_state(state)
