"""benchmarks.detect_fast: a team's series alert as one group, scored like benchmarks.detectors."""

from __future__ import annotations

import numpy as np

from benchmarks.detect_fast import _alerts, _params, _score


def test_series_of_a_team_alert_as_one_group_and_resolve_after_quiet_windows() -> None:
    ts = 60.0 * np.arange(1, 21)
    a = np.zeros(20, dtype=bool)
    b = np.zeros(20, dtype=bool)
    a[[2, 3]] = True  # the team's series
    b[[4, 9]] = True  # its team x model series: 4 continues the alert, 9 is a new one
    starts = _alerts({"ads": [(ts, a), (ts, b)]}, window=60, resolve_after=3)
    assert starts == {"ads": [180.0, 600.0]}


def test_scoring_counts_hits_misses_and_false_alerts_by_kind() -> None:
    labels = [
        {"team": "ads", "start": 1000.0, "end": 2000.0, "should_alert": True, "kind": "burst"},
        {"team": "ads", "start": 5000.0, "end": 6000.0, "should_alert": True, "kind": "rising"},
        {"team": "ads", "start": 8000.0, "end": 9000.0, "should_alert": False, "kind": "holiday"},
    ]
    sc = _score({"ads": [1100.0, 2800.0, 8500.0, 500.0]}, labels, scored_from=900.0, last_ts=900.0 + 7 * 86400,
                teams=["ads"])
    assert [(r[1], r[3]) for r in sc["rows"]] == [("burst", 100.0), ("rising", None)]
    # 2800 is within the 15-minute grace of the burst; 500 is before scoring starts
    assert [(f[1], f[2]) for f in sc["false"]] == [(8500.0, "holiday")]
    assert sc["team_weeks"] == 1.0


def test_params_take_component_sections() -> None:
    assert _params(["score_threshold=0.999", "seasonal.threshold=5"]) == {
        "score_threshold": 0.999, "component_params": {"seasonal": {"threshold": 5}}}
