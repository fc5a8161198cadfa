"""The team-scale gate (policy ``detector.team_scale_minutes``; :meth:`OrgCore.team_scale`): a
team x model series' flagged window alerts only once its incident's excess reaches M minutes of
its team series' expected spend. Held to the same decisions under both placements: the org stage
beside the judge (which holds both series), and apart, fed the verdicts of two judge partitions
(the team series on one, its model's on the other) as they travel on the verdicts topic."""

from __future__ import annotations

import json
import logging
from typing import Any

from streams.org.verdicts import Verdicts, WindowVerdict
from tests.streams.org import test_org_core as base
from tests.streams.org import two_teams

W = base.W
GATE = two_teams.Gate("team_scale_minutes", "team_scale_minutes", "team_scaled", "pending_expected")
beside, apart, triggered = GATE.beside, GATE.apart, two_teams.triggered


def stream(seed: int) -> list[base.Msg]:
    """Two teams: ``big`` spends ~$100 a window on model x and ~$0.5 on model m, ``small`` ~$1 on
    m. From window 60, m jumps to ~$15 a window for three windows on both teams: 30x its series
    either way, but under 5 minutes of big's spend and 14x small's."""
    return two_teams.stream(seed, 15.0, spike_noise=True)


def test_the_gate_drops_a_burst_small_to_its_team_and_keeps_one_material_to_it_beside_the_judge() -> None:
    off, on = beside(stream(0), 0.0), beside(stream(0), 5.0)
    # without the gate, big's model m alerts on a burst of $45 in a team spending $100 a minute
    assert {"team=big|model=m", "team=small|model=m"} <= triggered(off)
    assert "team=big|model=m" not in triggered(on)
    assert "team=small|model=m" in triggered(on)  # 14x small's spend: the gate keeps it


def test_the_gate_decides_the_same_with_the_org_stage_apart() -> None:
    """The team series and its model's judged on different partitions: the team's expected
    spend travels with the verdicts (WindowVerdict.expected), the org stage gates as beside."""
    for seed in range(2):
        msgs = stream(seed)
        assert triggered(apart(msgs, 0.0)) == triggered(beside(msgs, 0.0)), seed
        got = apart(msgs, 5.0)
        assert "team=big|model=m" not in triggered(got), seed
        assert triggered(got) == triggered(beside(msgs, 5.0)), seed


def test_the_gate_apart_holds_across_a_restart_of_the_org_stage() -> None:
    """The team expected spends of windows not final yet are in the org stage's checkpoint."""
    msgs = stream(0)
    got = triggered(apart(msgs, 5.0, restart=True, order=2))  # an order with judge 0 (team=big) ahead then
    assert "team=big|model=m" not in got
    assert got == triggered(beside(msgs, 5.0))


def test_the_windows_the_gate_turns_normal_are_counted_and_logged_under_both_placements(caplog: Any) -> None:
    """A page the gate holds back leaves a trace: the worker counts these
    (team_scale_gated_total) and the org stage logs each at debug."""
    msgs = stream(0)
    off: list[int] = []
    beside(msgs, 0.0, off)
    assert sum(off) == 0
    here: list[int] = []
    with caplog.at_level(logging.DEBUG, logger="tokenpulse.org"):
        beside(msgs, 5.0, here)
    there: list[int] = []
    apart(msgs, 5.0, gated=there)
    assert sum(here) >= 1  # big's model m in the spike
    assert sum(there) == sum(here)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("team-scale gate")]
    assert len(lines) == sum(here)
    assert all("team=big|model=m" in line for line in lines)


def test_window_verdicts_without_expected_spends_still_load() -> None:
    """A verdicts message of a version before the gate (3-element windows) loads with none, and
    a window carrying them is never folded into a run of empty windows."""
    old = {"judge": 0, "seq": 3, "windows": [[0, 60, []], {"run": [60, 60, 2]}], "spend": [], "wm": 180.0}
    v = Verdicts.from_wire(old)
    assert [(w.start, w.expected) for w in v.windows] == [(0, {}), (60, {}), (120, {})]
    v.windows[1].expected = {"team=big": 101.5}
    back = Verdicts.from_wire(json.loads(json.dumps(v.to_wire())))
    assert [(w.start, w.expected) for w in back.windows] == [(0, {}), (60, {"team=big": 101.5}), (120, {})]
    assert WindowVerdict.from_wire([0, 60, [], {"org=acme|team=a": 2}]).expected == {"org=acme|team=a": 2.0}
