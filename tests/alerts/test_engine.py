"""The lifecycle of one alert key (fire, update, resolve, silences, hysteresis). Its team's group
resolves with it here: flap damping is off in these policies (``tests.alerts.policies.no_hold``;
the group's hold is tested in test_grouping.py)."""

from __future__ import annotations

import math
from dataclasses import replace

import orjson
import pytest

from alerts import AlertEngine, AlertPolicy, AlertState, Notification, Signal
from tests.alerts.policies import no_hold

W = 60.0  # window length in these scenarios
BASE = 3.0  # $/window baseline
GATED = no_hold(min_excess_usd=5.0, min_excess_pct=50.0)  # the optional per-window gate on


def sig(i: int, observed: float, *, expected: float = BASE, anomalous: bool | None = None,
        series: str = "team=ads", window: float = W) -> Signal:
    """Window ``i`` of a series; anomalous by default when spend is well above the baseline."""
    if anomalous is None:
        anomalous = observed > 2 * expected
    return Signal(
        series=series,
        labels={"team": "ads"},
        window_start=i * window,
        window_end=(i + 1) * window,
        observed_usd=observed,
        expected_usd=expected,
        upper_usd=2 * expected,
        score=0.99 if anomalous else 0.1,
        is_anomaly=anomalous,
        top_contributors=[{"kind": "user", "name": "alice", "usd": observed * 0.8}],
        detector="ewma",
    )


def run(engine: AlertEngine, signals: list[Signal]) -> list[list[tuple[str, str]]]:
    return [[(n.action, n.reason) for n in engine.observe(s)] for s in signals]


TRIGGER = [("trigger", "first")]
WORSE = [("update", "worsened")]
REPEAT = [("update", "repeat")]
RESOLVE = [("resolve", "resolved")]

# name, observed $ per window (None: a normal $3 window), outputs per window
SCENARIOS = [
    ("spike fires once", [90], [TRIGGER]),
    ("spike continues: no duplicate", [90, 85, 95, 100], [TRIGGER, [], [], []]),
    ("spike worsens: update in thread", [40, 45, 60, 95], [TRIGGER, [], WORSE, WORSE]),
    ("three normal windows resolve", [90, None, None, None], [TRIGGER, [], [], RESOLVE]),
    ("a relapse restarts the normal count", [90, None, None, 80, None, None, None],
     [TRIGGER, [], [], [], [], [], RESOLVE]),
    ("tiny blip under the $ threshold", [7.5, 7.9], [[], []]),  # +$4.90, +163 %
    ("normal traffic", [None, 3.2, 2.8], [[], [], []]),
    ("fires again after resolving", [90, None, None, None, 90],
     [TRIGGER, [], [], RESOLVE, TRIGGER]),
]


@pytest.mark.parametrize("name,observed,expected", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenarios(name: str, observed: list[float | None], expected: list[list[tuple[str, str]]]) -> None:
    # With the optional per-window gate on (the detector's own materiality test is not in play
    # here: these signals come straight from a table).
    engine = AlertEngine(GATED)
    signals = [sig(i, BASE if o is None else o) for i, o in enumerate(observed)]
    assert run(engine, signals) == expected


def test_trigger_carries_the_numbers() -> None:
    engine = AlertEngine(no_hold(), dashboard_url="https://dash.example/alerts")
    [n] = engine.observe(sig(10, 90.0))
    assert n.key == "cost_spike:team=ads"
    assert (n.seq, n.action, n.severity, n.reason, n.page) == (660_000, "trigger", "critical", "first", True)
    assert n.observed_usd == 90.0 and n.expected_usd == 3.0
    assert n.excess_usd == pytest.approx(87.0)
    assert n.excess_pct == pytest.approx(2900.0)
    assert (n.window_start, n.window_end, n.started_at, n.fired_at) == (600.0, 660.0, 600.0, 660.0)
    assert n.top_contributors == [{"kind": "user", "name": "alice", "usd": 72.0}]
    assert n.labels == {"team": "ads"} and n.detector == "ewma"
    assert n.dashboard_url == "https://dash.example/alerts?series=team%3Dads"


@pytest.mark.parametrize(
    "observed,severity,page",
    # excess = observed - $3: 7 info, 22 warning, 49 warning, 50 critical (pages)
    [(10.0, "info", False), (25.0, "warning", False), (52.0, "warning", False), (53.0, "critical", True)],
)
def test_severity_from_dollar_impact(observed: float, severity: str, page: bool) -> None:
    [n] = AlertEngine(no_hold()).observe(sig(0, observed))
    assert (n.severity, n.page) == (severity, page)


def test_percent_threshold_stops_small_relative_excess() -> None:
    # +$10 on a $100 baseline is 10 %: with the per-window gate on, nobody is told.
    assert AlertEngine(GATED).observe(sig(0, 110.0, expected=100.0, anomalous=True)) == []


def test_by_default_the_detector_decides_materiality() -> None:
    # The default detector weighs the money itself; the engine trusts is_anomaly.
    [n] = AlertEngine(no_hold()).observe(sig(0, 110.0, expected=100.0, anomalous=True))
    assert (n.action, n.severity) == ("trigger", "info")


def test_incident_impact_sets_severity() -> None:
    # A slow leak: each window only $2 over, but the incident has cost $60 so far: a page.
    engine = AlertEngine(no_hold())
    [n] = engine.observe(replace(sig(0, 5.0, expected=3.0, anomalous=True), impact_usd=24.0))
    assert (n.severity, n.page, n.impact_usd) == ("warning", False, 24.0)
    [n] = engine.observe(replace(sig(1, 5.0, expected=3.0, anomalous=True), impact_usd=60.0))
    assert (n.reason, n.severity, n.page, n.impact_usd) == ("worsened", "critical", True, 60.0)


def test_not_anomalous_never_fires_even_if_large() -> None:
    # The detector decides "unusual"; the engine only decides "worth telling".
    assert AlertEngine(no_hold()).observe(sig(0, 500.0, anomalous=False)) == []


def test_escalation_to_critical_pages_even_below_worsen_factor() -> None:
    engine = AlertEngine(no_hold())
    [first] = engine.observe(sig(0, 43.0))  # +40: warning, not paged
    assert (first.severity, first.page) == ("warning", False)
    [up] = engine.observe(sig(1, 58.0))  # +55: < 1.5 × 40 but now critical
    assert (up.action, up.reason, up.severity, up.page) == ("update", "worsened", "critical", True)
    assert up.seq > first.seq
    # Severity does not drop back within the incident, and the resolve reaches PagerDuty.
    assert engine.observe(sig(2, 43.0)) == []
    notes = [n for i in range(3, 6) for n in engine.observe(sig(i, 3.0))]
    assert [(n.action, n.severity, n.page) for n in notes] == [("resolve", "critical", True)]


def test_warning_incident_never_pages() -> None:
    engine = AlertEngine(no_hold())
    notes = [n for i, o in enumerate([30.0, 3, 3, 3]) for n in engine.observe(sig(i, o))]
    assert [(n.action, n.page) for n in notes] == [("trigger", False), ("resolve", False)]


def test_repeat_after_interval() -> None:
    engine = AlertEngine(no_hold(repeat_interval_s=4 * 3600))
    hour = 3600.0
    out = [engine.observe(sig(i, 90.0, window=hour)) for i in range(6)]
    assert [[(n.action, n.reason) for n in o] for o in out] == [
        [("trigger", "first")], [], [], [], [("update", "repeat")], [],
    ]
    [rep] = out[4]
    assert rep.started_at == 0.0 and rep.fired_at == 5 * hour


def test_a_notification_at_zero_excess_is_not_worsened_by_every_window_after_it() -> None:
    """An anomalous window at exactly its expected spend is material with the gate off (a rule
    holding its alert through a quiet window sends $0 against $0): a repeat sent at one left the
    last notified excess at 0, and every later window was "worsened" (0 >= 1.5 x 0), one
    notification a window. Worse means more than the last notified excess."""
    engine = AlertEngine(no_hold(repeat_interval_s=4 * 3600))
    hour = 3600.0
    out = [engine.observe(sig(0, 90.0, window=hour))]
    out += [engine.observe(sig(i, 0.0, expected=0.0, anomalous=True, window=hour)) for i in range(1, 8)]
    assert [[(n.action, n.reason) for n in o] for o in out] == [TRIGGER, [], [], [], REPEAT, [], [], []]
    # and a window above it is still news
    assert run(engine, [sig(8, 9.0, window=hour)]) == [WORSE]


def test_resolve_reports_the_worst_window_and_when_it_ended() -> None:
    engine = AlertEngine(no_hold())
    seq = [60.0, 120.0, 80.0, 3.0, 3.0, 3.0]
    notes = [n for i, o in enumerate(seq) for n in engine.observe(sig(i, o))]
    res = notes[-1]
    assert res.action == "resolve" and res.reason == "resolved"
    assert (res.observed_usd, res.excess_usd) == (120.0, 117.0)
    assert (res.window_start, res.window_end) == (60.0, 120.0)
    assert res.top_contributors == [{"kind": "user", "name": "alice", "usd": 96.0}]
    assert res.started_at == 0.0 and res.ended_at == 180.0 and res.fired_at == 360.0
    assert res.seq > notes[-2].seq
    assert engine.state_for(res.key) is None


def test_seq_increases_per_key_across_incidents_without_state() -> None:
    # A delivery log skips what is not above the last seq it sent: a second incident of the
    # same key, or an engine that lost its state, must still get through.
    engine = AlertEngine(no_hold())
    seqs = [n.seq for i, o in enumerate([90, 3, 3, 3, 90, 3, 3, 3]) for n in engine.observe(sig(i, o))]
    assert len(seqs) == 4 and seqs == sorted(set(seqs))
    fresh = AlertEngine(no_hold())
    [again] = fresh.observe(sig(20, 90.0))
    assert again.seq > seqs[-1]


def test_redelivered_window_is_ignored() -> None:
    engine = AlertEngine(no_hold())
    engine.observe(sig(0, 90.0))
    engine.observe(sig(1, 3.0))
    assert engine.observe(sig(1, 3.0)) == []  # same window again: not a second normal one
    assert engine.observe(sig(2, 3.0)) == []
    assert [n.action for n in engine.observe(sig(3, 3.0))] == ["resolve"]


def test_state_survives_a_restart_through_json() -> None:
    a = AlertEngine(no_hold())
    a.observe(sig(0, 40.0))
    a.observe(sig(1, 3.0))
    data = orjson.loads(orjson.dumps(a.state_for("cost_spike:team=ads")))
    b = AlertEngine(no_hold())
    b.load_state("cost_spike:team=ads", data)
    assert [(n.action, n.reason) for n in b.observe(sig(2, 95.0))] == [("update", "worsened")]
    b.load_state("cost_spike:team=ads", None)
    assert b.state_for("cost_spike:team=ads") is None


def test_step_is_pure() -> None:
    engine = AlertEngine(no_hold())
    st, [n] = engine.step(None, sig(0, 90.0))
    assert isinstance(st, AlertState) and n.action == "trigger"
    before = st.to_dict()
    st2, notes = engine.step(st, sig(1, 200.0))
    assert st.to_dict() == before  # the input state is untouched
    assert st2 is not None and st2.notifications == 2 and [x.reason for x in notes] == ["worsened"]


def test_zero_baseline_fires_with_undefined_percent() -> None:
    [n] = AlertEngine(no_hold()).observe(sig(0, 30.0, expected=0.0, anomalous=True))
    assert n.excess_pct is None and n.excess_usd == 30.0
    assert orjson.loads(orjson.dumps(n.to_dict()))["excess_pct"] is None


def test_broken_numbers_do_not_fire() -> None:
    assert AlertEngine(no_hold()).observe(sig(0, math.nan, anomalous=True)) == []
    assert AlertEngine(no_hold()).observe(sig(0, 90.0, expected=math.inf, anomalous=True)) == []


def test_fire_after_windows_waits_in_pending() -> None:
    engine = AlertEngine(no_hold(fire_after_windows=2))
    assert engine.observe(sig(0, 90.0)) == []
    assert engine.observe(sig(1, 3.0)) == []  # pending, then normal: forgotten, nothing resolved
    assert engine.state_for("cost_spike:team=ads") is None
    assert engine.observe(sig(2, 90.0)) == []
    [n] = engine.observe(sig(3, 90.0))
    assert n.action == "trigger" and n.started_at == 120.0


def test_series_are_independent() -> None:
    engine = AlertEngine(no_hold(group_by=()))  # grouping off: tests/alerts/test_grouping.py
    a = engine.observe(sig(0, 90.0, series="team=ads"))
    b = engine.observe(sig(0, 90.0, series="team=ads|model=gpt-4o"))
    assert [n.key for n in a + b] == ["cost_spike:team=ads", "cost_spike:team=ads|model=gpt-4o"]
    assert len(engine.active()) == 2


def test_records_round_trip() -> None:
    s = sig(0, 90.0)
    assert Signal.from_dict(orjson.loads(orjson.dumps(s.to_dict()))) == s
    [n] = AlertEngine(no_hold()).observe(s)
    back = Notification.from_dict(orjson.loads(orjson.dumps(n.to_dict())))
    assert back == n
    assert Notification.from_dict({**n.to_dict(), "added_later": 1}) == n


def test_policy_from_yaml_section_ignores_unknown_keys() -> None:
    p = AlertPolicy.from_dict({"min_excess_usd": 1.0, "resolve_after_windows": 5, "other": True})
    assert (p.min_excess_usd, p.resolve_after_windows, p.worsen_factor) == (1.0, 5, 1.5)


# -- silences ---------------------------------------------------------------------------------

def silenced_engine(**silence: object) -> AlertEngine:
    base = {"matchers": {"team": "ads"}, "starts_at": 0.0, "ends_at": 5 * W, "reason": "planned backfill"}
    return AlertEngine(no_hold(silences=({**base, **silence},)))


def test_no_alert_starts_under_a_silence_and_the_skip_is_recorded() -> None:
    engine = silenced_engine()
    assert engine.observe(sig(0, 90.0)) == []
    assert engine.skipped == ["silenced"] and engine.state_for("cost_spike:team=ads") is None
    # after the silence, the same incident (still burning) pages as a fresh trigger
    [n] = engine.observe(sig(5, 90.0))
    assert (n.action, n.reason, n.started_at) == ("trigger", "first", 5 * W)
    assert engine.skipped == []


def test_a_firing_alert_is_muted_but_still_resolves_under_a_silence() -> None:
    engine = silenced_engine(starts_at=1 * W)
    [n] = engine.observe(sig(0, 90.0))
    assert n.action == "trigger"
    assert engine.observe(sig(1, 300.0)) == [] and engine.skipped == ["silenced"]  # worsened, muted
    engine.observe(sig(2, 3.0))
    engine.observe(sig(3, 3.0))
    [n] = engine.observe(sig(4, 3.0))
    assert n.action == "resolve" and engine.skipped == []


def test_silences_match_on_labels_series_and_kind_only() -> None:
    engine = silenced_engine(matchers={"team": "ads", "kind": "cost_spike"})
    assert engine.observe(sig(0, 90.0)) == []
    [_n] = engine.observe(replace(sig(0, 90.0, series="team=search"), labels={"team": "search"}))
    other = AlertEngine(no_hold(silences=({"matchers": {"series": "team=search"}, "starts_at": 0,
                                               "ends_at": None, "reason": "r"},)))
    assert other.observe(sig(0, 90.0)) != [] and other.observe(sig(0, 90.0, series="team=search")) == []
    with pytest.raises(ValueError, match="matchers must be some of"):
        AlertPolicy(silences=({"matchers": {"colour": "red"}, "starts_at": 0, "ends_at": 1, "reason": "r"},))


def test_pages_start_from_the_policy_severity() -> None:
    # $25 over: a warning; paged only when on-call asked for warnings
    assert AlertEngine(no_hold()).observe(sig(0, 28.0))[0].page is False
    [n] = AlertEngine(no_hold(page_min_severity="warning")).observe(sig(0, 28.0))
    assert (n.severity, n.page) == ("warning", True)
    with pytest.raises(ValueError, match="page_min_severity"):
        AlertPolicy(page_min_severity="loud")  # type: ignore[arg-type]


def test_a_spike_still_well_above_expected_does_not_resolve_its_alert() -> None:
    """Hysteresis (docs/alerts.md "Known flap"): an 8x spike flags one window and then runs at
    2.2x, scoring under the threshold. Those windows are not material, yet not clearly normal
    (+120 % over expected, above resolve_max_excess_pct): the alert neither resolves on them nor
    re-fires; three clearly normal windows after the spike resolve it."""
    spike = [sig(0, 8 * BASE)] + [sig(i, 2.2 * BASE, anomalous=False) for i in range(1, 6)]
    after = [sig(i, BASE) for i in range(6, 9)]
    assert run(AlertEngine(no_hold()), spike + after) == [TRIGGER] + [[]] * 7 + [RESOLVE]
    # off: the old rule, any non-material window counts (this flap)
    assert run(AlertEngine(no_hold(resolve_max_excess_pct=0)), spike) == [TRIGGER, [], [], RESOLVE, [], []]


def test_a_window_in_between_neither_counts_nor_resets_the_normal_streak() -> None:
    engine = AlertEngine(no_hold())
    windows = [sig(0, 8 * BASE), sig(1, BASE), sig(2, 1.4 * BASE, anomalous=False),  # +40 %: normal
               sig(3, 2 * BASE, anomalous=False), sig(4, BASE)]  # +100 %: in between
    assert run(engine, windows) == [TRIGGER, [], [], [], RESOLVE]
    # the resolve says the spend went back to normal at the first normal window, not after the hold
    st = AlertEngine(no_hold())
    notes = [n for s in windows for n in st.observe(s)]
    assert notes[-1].ended_at == W


def test_a_window_without_a_baseline_counts_towards_the_resolve() -> None:
    # nothing to measure an excess against: holding would keep a new series' alert open for as
    # long as it spends
    windows = [sig(0, 90.0)] + [sig(i, 5.0, expected=0.0, anomalous=False) for i in range(1, 4)]
    assert run(AlertEngine(no_hold()), windows) == [TRIGGER, [], [], RESOLVE]


def test_the_hold_is_capped_after_the_last_material_window() -> None:
    """A level the detector stopped flagging, still 2.2x expected: the alert is held open for at
    most resolve_max_hold_s after its last material window, then resolves on the old rule (the
    resolve says when the spend was back under the fire bar: the first window past the cap)."""
    policy = no_hold(resolve_max_hold_s=10 * W)
    windows = [sig(0, 8 * BASE), sig(1, 8 * BASE)] + [sig(i, 2.2 * BASE, anomalous=False) for i in range(2, 30)]
    out = run(AlertEngine(policy), windows)
    # the last material window ends at 2W: windows ending before 12W hold, those ending at 12W on count
    assert out.index(RESOLVE) == 13 and out == [TRIGGER] + [[]] * 12 + [RESOLVE] + [[]] * 16
    # a material window in between (ending at 9W) restarts the cap
    windows[8] = sig(8, 8 * BASE)
    assert run(AlertEngine(policy), windows).index(RESOLVE) == 20
    # 0: no hold at all (as resolve_max_excess_pct 0)
    assert run(AlertEngine(no_hold(resolve_max_hold_s=0)), windows[:5]) == [TRIGGER, [], [], [], RESOLVE]
    with pytest.raises(ValueError, match="resolve_max_hold_s"):
        AlertPolicy(resolve_max_hold_s=-1)


def test_a_state_written_before_the_cap_loads_and_resolves_on_the_old_rule() -> None:
    engine = AlertEngine(no_hold())
    engine.observe(sig(0, 8 * BASE))
    key = engine.key_for("team=ads")
    saved = orjson.loads(orjson.dumps(engine.state_for(key)))
    assert saved.pop("last_material_end") == W
    held = [sig(i, 2.2 * BASE, anomalous=False) for i in range(1, 4)]
    older = AlertEngine(no_hold())
    older.load_state(key, saved)
    assert run(older, held) == [[], [], RESOLVE]  # nothing known of its last material window: no hold
    restored = AlertEngine(no_hold())
    restored.load_state(key, orjson.loads(orjson.dumps(engine.state_for(key))))
    assert run(restored, held) == [[], [], []]  # round-tripped: held


def test_back_to_normal_is_measured_against_the_mean_the_expected_value_stands_for() -> None:
    """The models' expected value is a typical (log-scale) value; the combiner also says what mean
    spend it stands for (``Signal.mean_expected_usd``: its money gate's baseline). A series whose
    normal windows sit at twice its expected value (the org series on a morning ramp in its sixth
    hour: tests/tokenpulse/test_replay.py) is back to normal at that level: its alert resolves
    three windows after a spike, rather than being held to the cap."""
    def on(i: int, observed: float, anomalous: bool) -> Signal:
        s = sig(i, observed, anomalous=anomalous)
        s.mean_expected_usd = 2 * BASE
        return s

    windows = [on(0, 8 * BASE, True)] + [on(i, 2.2 * BASE, False) for i in range(1, 4)]
    assert run(AlertEngine(no_hold()), windows) == [TRIGGER, [], [], RESOLVE]
    # against the expected value itself (no mean known) the same windows are +120 %: held
    assert run(AlertEngine(no_hold()), [sig(0, 8 * BASE)] + [sig(i, 2.2 * BASE, anomalous=False)
                                                                 for i in range(1, 4)]) == [TRIGGER, [], [], []]
    # still well above that mean (3x expected, +50 %): held
    held = [on(0, 8 * BASE, True)] + [on(i, 3.0 * BASE, False) for i in range(1, 4)]
    assert run(AlertEngine(no_hold()), held) == [TRIGGER, [], [], []]
    # the signal carries it over the wire (verdicts messages, the org stage's checkpoint), and
    # one written before the field loads as "the expected value"
    d = windows[1].to_dict()
    assert Signal.from_dict(d).baseline_usd == 2 * BASE
    d.pop("mean_expected_usd")
    assert Signal.from_dict(d).baseline_usd == BASE
