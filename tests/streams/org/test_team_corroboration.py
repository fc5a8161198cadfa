"""The team corroboration (policy ``detector.team_corroboration_p``; :meth:`OrgCore.corroborate`):
a team x model series' flagged window starts an alert only when its team series' surprise
p-value in the same window is at most the setting. Held to the same decisions under both
placements: the org stage beside the judge (which holds both series), and apart, fed the
verdicts of two judge partitions (the team series on one, its model's on the other) as they
travel on the verdicts topic."""

from __future__ import annotations

import json
import logging
from typing import Any

from alerts import AlertEngine, AlertPolicy, Signal
from streams.org.core import OrgCore, OrgOutput
from streams.org.verdicts import Verdicts, WindowVerdict
from tests.streams.org import test_org_core as base
from tests.streams.org import two_teams

W = base.W
POLICY = base.POLICY
P = 0.005
GATE = two_teams.Gate("team_corroboration_p", "team_corroboration_p", "uncorroborated", "pending_team_p")
beside, apart, triggered = GATE.beside, GATE.apart, two_teams.triggered


def stream(seed: int) -> list[base.Msg]:
    """Two teams: ``big`` spends $90-110 a window on model x (uniform noise) and ~$0.5 on model
    m, ``small`` ~$1 on m. From window 60, m jumps to ~$8 a window for three windows on both
    teams: 16x its series either way, but within big's ordinary spread (its team series is not
    surprised), and 8x small's team series."""
    return two_teams.stream(seed, 8.0, spike_noise=False)


def test_a_model_burst_its_team_does_not_notice_is_dropped_and_one_it_does_kept_beside_the_judge() -> None:
    off, on = beside(stream(0), 0.0), beside(stream(0), P)
    # without the corroboration, big's model m alerts on a burst within big's ordinary spread
    assert {"team=big|model=m", "team=small|model=m"} <= triggered(off)
    assert "team=big|model=m" not in triggered(on)
    assert "team=small|model=m" in triggered(on)  # its team series is surprised too: kept


def test_the_corroboration_decides_the_same_with_the_org_stage_apart() -> None:
    """The team series and its model's judged on different partitions: the team's p-value
    travels with the verdicts (WindowVerdict.team_p), the org stage decides as beside."""
    for seed in range(2):
        msgs = stream(seed)
        assert triggered(apart(msgs, 0.0)) == triggered(beside(msgs, 0.0)), seed
        got = apart(msgs, P)
        assert "team=big|model=m" not in triggered(got), seed
        assert triggered(got) == triggered(beside(msgs, P)), seed


def test_the_corroboration_apart_holds_across_a_restart_of_the_org_stage() -> None:
    """The team p-values of windows not final yet are in the org stage's checkpoint."""
    msgs = stream(0)
    got = triggered(apart(msgs, P, restart=True, order=2))
    assert "team=big|model=m" not in got
    assert got == triggered(beside(msgs, P))


def test_the_windows_it_turns_normal_are_counted_and_logged_under_both_placements(caplog: Any) -> None:
    msgs = stream(0)
    off: list[int] = []
    beside(msgs, 0.0, off)
    assert sum(off) == 0
    here: list[int] = []
    with caplog.at_level(logging.DEBUG, logger="tokenpulse.org"):
        beside(msgs, P, here)
    there: list[int] = []
    apart(msgs, P, gated=there)
    assert sum(here) >= 1  # big's model m in the burst
    assert sum(there) == sum(here)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("team corroboration")]
    assert len(lines) == sum(here)
    assert all("team=big|model=m" in line for line in lines)


def _signal(series: str, end: int, flagged: bool = True) -> Signal:
    labels = dict(kv.split("=") for kv in series.split("|"))
    return Signal(series=series, labels=labels, window_start=float(end - W), window_end=float(end),
                  observed_usd=20.0, expected_usd=1.0, is_anomaly=flagged, impact_usd=19.0 if flagged else None)


def test_an_alert_that_started_corroborated_goes_on_and_unknown_teams_gate_nothing() -> None:
    """Only the start needs the team: a tracked alert's later flagged windows count whatever
    the team's p (else it would resolve and fire again inside one incident); a team without a
    p-value in the window (not watched, no spend) gates nothing."""
    o = OrgCore(0, W, AlertEngine(AlertPolicy(**POLICY)), team_corroboration_p=P)
    tm = "team=a|model=m"
    out = OrgOutput()
    o.step_window(W, [_signal(tm, W)], out, team_p={"team=a": 0.2})
    assert out.uncorroborated == 1 and not o.tracks(o.key_for(tm))
    o.step_window(2 * W, [_signal(tm, 2 * W)], out, team_p={"team=a": 1e-4})
    assert out.uncorroborated == 1 and o.tracks(o.key_for(tm))
    o.step_window(3 * W, [_signal(tm, 3 * W)], out, team_p={"team=a": 0.5})
    assert out.uncorroborated == 1  # tracked: kept
    assert [s.is_anomaly for s in o.corroborate([_signal("team=b|model=m", 4 * W)], {"team=a": 0.5})] == [True]
    assert [s.is_anomaly for s in o.corroborate([_signal("team=b", 4 * W)], {"team=b": 0.5})] == [True]


def test_window_verdicts_and_org_records_without_team_p_values_still_load() -> None:
    """Verdicts of a version before the corroboration (3- or 4-element windows) load with none,
    a window carrying them is never folded into a run of empty windows, and an ``orgsig``
    checkpoint record of 2-4 elements restores."""
    old = {"judge": 0, "seq": 3, "windows": [[0, 60, []], [60, 120, [], {"team=big": 2.0}], {"run": [120, 60, 2]}],
           "spend": [], "wm": 240.0}
    v = Verdicts.from_wire(old)
    assert [(w.start, w.team_p) for w in v.windows] == [(0, {}), (60, {}), (120, {}), (180, {})]
    v.windows[2].team_p = {"team=big": 1e-5}
    back = Verdicts.from_wire(json.loads(json.dumps(v.to_wire())))
    assert [(w.start, w.expected, w.team_p) for w in back.windows] == [
        (0, {}, {}), (60, {"team=big": 2.0}, {}), (120, {}, {"team=big": 1e-5}), (180, {}, {})]
    assert WindowVerdict.from_wire([0, 60, [], {}, {"team=a": 0.01}]).team_p == {"team=a": 0.01}
    o = OrgCore(0, W, AlertEngine(AlertPolicy(**POLICY)), n_judges=2, team_corroboration_p=P)
    sig = _signal("team=a|model=m", 60).to_dict()
    o.restore([("orgsig|0", [60, [sig]]), ("orgsig|60", [120, [sig], [], {"team=a": 3.0}]),
               ("orgsig|120", [180, [sig], [], {}, {"team=a": 0.5}])])
    assert sorted(o.pending) == [0, 60, 120]
    assert o.pending_team_p == {120: {"team=a": 0.5}}
    o._dirty.add("orgsig|120")
    assert o.checkpoint()["orgsig|120"][4] == {"team=a": 0.5}
