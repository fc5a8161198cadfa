"""Inhibition and grouping: one window step of the org and its teams, event time as the clock.

Each scenario is a table of windows (the spend of each series in that window; a series not
named is at its $3 baseline and not anomalous) and, per window, the notifications
(key without the rule, action, reason, members listed) and why decisions were held back.
"""

from __future__ import annotations

import random
from typing import Any

import orjson
import pytest

from alerts import AlertEngine, AlertPolicy, Notification, Signal
from alerts.routing import Route, route_targets
from tests.alerts.policies import NO_HOLD, no_hold

W = 60.0
BASE = 3.0
LABELS = {
    "org": {"org": "acme"},
    "provider=p": {"provider": "p"},
    "team=ads": {"team": "ads"},
    "team=ads|model=x": {"team": "ads", "model": "x"},
    "team=ads|model=y": {"team": "ads", "model": "y"},
    "team=search": {"team": "search"},
    # another org served by the same deployment, with a team of the same name
    "org=acme": {"org": "acme"},
    "org=acme|team=ads": {"org": "acme", "team": "ads"},
    "org=acme|team=ads|model=x": {"org": "acme", "team": "ads", "model": "x"},
}
ADS, ADS_X, ADS_Y, SEARCH, ORG, PROV = "team=ads", "team=ads|model=x", "team=ads|model=y", "team=search", "org", "provider=p"
ACME, ACME_ADS, ACME_ADS_X = "org=acme", "org=acme|team=ads", "org=acme|team=ads|model=x"
NORMAL: dict[str, float] = {}


def signals(i: int, spend: dict[str, float]) -> list[Signal]:
    out = []
    for series in LABELS:
        usd = spend.get(series, BASE)
        out.append(Signal(series=series, labels=dict(LABELS[series]), window_start=i * W, window_end=(i + 1) * W,
                          observed_usd=usd, expected_usd=BASE, upper_usd=2 * BASE, score=0.9,
                          is_anomaly=usd > 2 * BASE, top_contributors=[{"kind": "user", "name": "u", "usd": usd}],
                          detector="test"))
    random.Random(i).shuffle(out)  # the engine orders a window itself: org first
    return out


Row = tuple[list[tuple[str, str, str, tuple[str, ...]]], list[str]]


def run(engine: AlertEngine, windows: list[dict[str, float]], first: int = 0) -> list[Row]:
    rows: list[Row] = []
    for i, spend in enumerate(windows, first):
        notes = engine.observe_window(signals(i, spend), (i + 1) * W)
        rows.append(([(n.key.split(":", 1)[1], n.action, n.reason, tuple(m["series"] for m in n.members)) for n in notes],
                     sorted(engine.skipped)))
    return rows


QUIET: Row = ([], [])

# name, policy overrides, windows, expected rows
SCENARIOS: list[tuple[str, dict[str, Any], list[dict[str, float]], list[Row]]] = [
    ("a team and its team x model firing together are one notification", NO_HOLD,
     [{ADS: 90, ADS_X: 80}, NORMAL, NORMAL, NORMAL],
     [([(ADS, "trigger", "first", (ADS, ADS_X))], ["grouped", "grouped"]), QUIET, QUIET,
      ([(ADS, "resolve", "resolved", (ADS, ADS_X))], ["grouped", "grouped"])]),
    ("a group of one is its alert alone", NO_HOLD,
     [{ADS_X: 90}, NORMAL, NORMAL, NORMAL],
     [([(ADS_X, "trigger", "first", ())], []), QUIET, QUIET, ([(ADS_X, "resolve", "resolved", ())], [])]),
    ("two teams are two groups", {},
     [{ADS: 90, SEARCH: 90}],
     [([(ADS, "trigger", "first", ()), (SEARCH, "trigger", "first", ())], [])]),
    ("a member joining a notified group waits for group_interval, in the leader's thread", {},
     [{ADS_X: 90}] + [{ADS_X: 90, ADS: 90}] * 5,
     [([(ADS_X, "trigger", "first", ())], []), ([], ["grouped"]), QUIET, QUIET, QUIET,
      ([(ADS_X, "update", "worsened", (ADS, ADS_X))], [])]),
    ("a joining member that raises the group's severity is sent at once", {},
     [{ADS_X: 30}, {ADS_X: 30, ADS: 90}],
     [([(ADS_X, "trigger", "first", ())], []), ([(ADS_X, "update", "worsened", (ADS, ADS_X))], ["grouped"])]),
    ("group_interval 0: a joining member is announced in its window", {"group_interval_s": 0},
     [{ADS_X: 90}, {ADS_X: 90, ADS_Y: 90}],
     [([(ADS_X, "trigger", "first", ())], []), ([(ADS_X, "update", "worsened", (ADS_X, ADS_Y))], ["grouped"])]),
    ("group_wait holds a new group's first notification for its members", {"group_wait_s": 120},
     [{ADS_X: 90}, {ADS_X: 90, ADS: 90}, {ADS_X: 90, ADS: 90}],
     [([], ["grouped"]), ([], ["grouped"]), ([(ADS, "trigger", "first", (ADS, ADS_X))], [])]),
    ("group_wait: a group back to normal before it was due sends nothing", {"group_wait_s": 300},
     [{ADS: 90}, NORMAL, NORMAL, NORMAL, NORMAL, NORMAL],
     [([], ["grouped"]), QUIET, QUIET, ([], ["grouped"]), QUIET, QUIET]),
    ("a member's resolve is folded; the group resolves with its last member", NO_HOLD,
     [{ADS: 90, ADS_X: 90}, {ADS: 90}, {ADS: 90}, {ADS: 90}, NORMAL, NORMAL, NORMAL],
     [([(ADS, "trigger", "first", (ADS, ADS_X))], ["grouped", "grouped"]), QUIET, QUIET, ([], ["grouped"]),
      QUIET, QUIET, ([(ADS, "resolve", "resolved", (ADS, ADS_X))], ["grouped"])]),
    ("a member's worsened update is sent at once for the group", {},
     [{ADS: 30, ADS_X: 30}, {ADS: 30, ADS_X: 80}],
     [([(ADS, "trigger", "first", (ADS, ADS_X))], ["grouped", "grouped"]),
      ([(ADS, "update", "worsened", (ADS, ADS_X))], ["grouped"])]),
    ("grouping off: every series on its own", {"group_by": ()},
     [{ADS: 90, ADS_X: 80}],
     [([(ADS, "trigger", "first", ()), (ADS_X, "trigger", "first", ())], [])]),
    # -- inhibition
    ("an org spike does not also page per team: it names the alerts it inhibits", {},
     [{ORG: 200, ADS: 90, ADS_X: 90, PROV: 100}, {ORG: 200, ADS: 90, ADS_X: 90, PROV: 100}, NORMAL, NORMAL, NORMAL],
     [([(ORG, "trigger", "first", (PROV, ADS, ADS_X))], ["inhibited"] * 3), ([], ["inhibited"] * 3), QUIET, QUIET,
      ([(ORG, "resolve", "resolved", ())], [])]),
    ("a team still burning after the org alert resolved starts then", {},
     [{ORG: 200, ADS: 90}, {ADS: 90}, {ADS: 90}, {ADS: 90}],
     [([(ORG, "trigger", "first", (ADS,))], ["inhibited"]), ([], ["inhibited"]), ([], ["inhibited"]),
      ([(ORG, "resolve", "resolved", ()), (ADS, "trigger", "first", ())], [])]),
    ("a team alert firing before the org's is muted but still resolves", NO_HOLD,
     [{ADS: 30}, {ORG: 200, ADS: 90}, {ORG: 200}, {ORG: 200}, {ORG: 200}],
     [([(ADS, "trigger", "first", ())], []), ([(ORG, "trigger", "first", (ADS,))], ["inhibited"]), QUIET, QUIET,
      ([(ADS, "resolve", "resolved", ())], [])]),
    ("an org alert that is only pending inhibits nothing", {"fire_after_windows": 2},
     [{ORG: 200, ADS: 90}, {ORG: 200, ADS: 90}],
     [QUIET, ([(ORG, "trigger", "first", (ADS,))], ["inhibited"])]),
    ("inhibition off: the org and the team both notify", {"inhibit_by_org": False},
     [{ORG: 200, ADS: 90}],
     [([(ORG, "trigger", "first", ()), (ADS, "trigger", "first", ())], [])]),
    # -- several orgs in one deployment
    ("another org's spike inhibits its own teams only", {},
     [{ACME: 200, ACME_ADS: 90, ADS: 90}, {ACME: 200, ACME_ADS: 90, ADS: 90}],
     [([(ACME, "trigger", "first", (ACME_ADS,)), (ADS, "trigger", "first", ())], ["inhibited"]),
      ([], ["inhibited"])]),
    ("the default org's spike does not inhibit another org's teams", {},
     [{ORG: 200, ADS: 90, ACME_ADS: 90}],
     [([(ORG, "trigger", "first", (ADS,)), (ACME_ADS, "trigger", "first", ())], ["inhibited"])]),
    ("two orgs' teams of one name are two groups", {},
     [{ACME_ADS: 90, ACME_ADS_X: 80, ADS: 90}],
     [([(ACME_ADS, "trigger", "first", (ACME_ADS, ACME_ADS_X)), (ADS, "trigger", "first", ())], ["grouped", "grouped"])]),
]


@pytest.mark.parametrize("name,policy,windows,expected", SCENARIOS, ids=[s[0] for s in SCENARIOS])
def test_scenarios(name: str, policy: dict[str, Any], windows: list[dict[str, float]], expected: list[Row]) -> None:
    assert run(AlertEngine(AlertPolicy(**policy)), windows) == expected


def test_a_silenced_org_alert_inhibits_nothing() -> None:
    silence = {"matchers": {"series": "org"}, "starts_at": 0.0, "ends_at": None, "reason": "org-wide load test"}
    rows = run(AlertEngine(AlertPolicy(silences=(silence,))), [{ORG: 200, ADS: 90}])
    assert rows == [([(ADS, "trigger", "first", ())], ["silenced"])]


def test_a_group_notification_carries_the_members_numbers_and_one_key() -> None:
    engine = AlertEngine(no_hold(group_interval_s=0))
    notes: list[Notification] = []
    for i, spend in enumerate([{ADS: 30, ADS_X: 60}, {ADS: 30, ADS_X: 60, ADS_Y: 90}, NORMAL, NORMAL, NORMAL]):
        notes += engine.observe_window(signals(i, spend), (i + 1) * W)
    trigger, joined, resolve = notes
    assert [n.action for n in notes] == ["trigger", "update", "resolve"]
    # one PagerDuty dedup_key and one Slack thread (key, started_at) for the group's life
    assert {n.key for n in notes} == {"cost_spike:team=ads"} and {n.started_at for n in notes} == {0.0}
    assert [n.seq for n in notes] == [60_000, 120_000, 300_000]
    # the numbers are the leader's; the severity and the page follow the worst member
    assert (trigger.series, trigger.observed_usd, trigger.excess_usd) == (ADS, 30.0, 27.0)
    assert (trigger.severity, trigger.page) == ("critical", True)
    assert trigger.title == "Cost spike: team=ads (+1 more series)"
    assert [(m["series"], m["status"], m["severity"], m["excess_usd"]) for m in trigger.members] == [
        (ADS, "firing", "warning", 27.0), (ADS_X, "firing", "critical", 57.0)]
    assert [m["series"] for m in joined.members] == [ADS, ADS_X, ADS_Y]
    assert [m["status"] for m in resolve.members] == ["resolved"] * 3
    assert resolve.page and resolve.ended_at == 120.0
    assert Notification.from_dict(orjson.loads(orjson.dumps(resolve.to_dict()))) == resolve


def test_a_group_of_one_notifies_exactly_as_the_alert_alone() -> None:
    rnd = random.Random(7)
    spends = [{ADS_X: rnd.choice([3.0, 3.0, 30.0, 60.0, 200.0])} for _ in range(300)]
    grouped, alone = AlertEngine(no_hold()), AlertEngine(AlertPolicy(group_by=()))
    a = [n.to_dict() for i, s in enumerate(spends) for n in grouped.observe_window(signals(i, s), (i + 1) * W)]
    b = [n.to_dict() for i, s in enumerate(spends) for n in alone.observe_window(signals(i, s), (i + 1) * W)]
    assert a == b and len(a) > 20


def test_group_state_survives_a_restart_through_json() -> None:
    windows = [{ADS_X: 90}, {ADS_X: 90, ADS: 90}, {ADS_X: 90, ADS: 90}] + [{ADS: 90}] * 5 + [NORMAL] * 4
    straight = run(AlertEngine(no_hold()), windows)
    first = AlertEngine(no_hold())
    half = run(first, windows[:3])
    second = AlertEngine(no_hold())
    for key in ("cost_spike:team=ads", "cost_spike:team=ads|model=x"):
        second.load_state(key, orjson.loads(orjson.dumps(first.state_for(key))))
    second.load_group_state("team=ads", orjson.loads(orjson.dumps(first.group_state_for("team=ads"))))
    assert half + run(second, windows[3:], first=3) == straight
    assert second.group_state_for("team=ads") is None  # resolved: nothing kept


def test_a_group_reaches_every_channel_of_its_members() -> None:
    engine = AlertEngine()
    [n] = engine.observe_window(signals(0, {ADS: 90, ADS_X: 90}), W)
    routes = [Route("slack", "#model-x", {"model": "x"}), Route("slack", "#ads", {"team": "ads"}),
              Route("slack", "#search", {"team": "search"})]

    def channels(note: Notification) -> list[str]:
        return [t for _, t, _ in route_targets(note, routes, {"slack": ("#ai-spend",)})]

    assert channels(n) == ["#model-x", "#ads"]
    # and the org alert reaches the channels of the teams it inhibited
    [org] = AlertEngine().observe_window(signals(0, {ORG: 200, SEARCH: 90}), W)
    assert channels(org) == ["#search"]


def test_policy_rejects_unknown_group_labels_and_negative_times() -> None:
    with pytest.raises(ValueError, match="group_by"):
        AlertPolicy(group_by=("colour",))
    with pytest.raises(ValueError, match="group_wait_s"):
        AlertPolicy(group_wait_s=-1)


def test_an_alert_firing_from_before_grouping_keeps_its_own_key_to_the_end() -> None:
    old = AlertEngine(AlertPolicy(group_by=()))  # the version before grouping
    [_n] = old.observe_window(signals(0, {ADS_X: 90}), W)
    engine = AlertEngine(no_hold())
    engine.load_state("cost_spike:team=ads|model=x", old.state_for("cost_spike:team=ads|model=x"))
    rows = run(engine, [{ADS_X: 90, ADS: 90}, {ADS: 90}, {ADS: 90}, {ADS: 90}, NORMAL, NORMAL, NORMAL], first=1)
    assert rows == [([(ADS, "trigger", "first", ())], []), QUIET, QUIET, ([(ADS_X, "resolve", "resolved", ())], []),
                    QUIET, QUIET, ([(ADS, "resolve", "resolved", ())], [])]


def test_the_triggers_an_org_alert_inhibits_are_listed_once_per_run() -> None:
    engine = AlertEngine()
    firsts = []
    for i, spend in enumerate([{ORG: 200, ADS: 90}, {ORG: 200, ADS: 90}, {ORG: 200}, {ORG: 200, ADS: 90},
                               {ADS: 90}, {ADS: 90}]):
        engine.observe_window(signals(i, spend), (i + 1) * W)
        firsts.append([(n.series, n.window_start) for n in engine.inhibited])
    # window 1 continues the run of window 0; window 3 starts a new one, which 4 and 5 continue
    assert firsts == [[(ADS, 0.0)], [], [], [(ADS, 3 * W)], [], []]


@pytest.mark.parametrize("keep, expected", [
    # flap damping: the resolve waits group_keep_firing_s after the last member resolved (window
    # 3); the re-fire in window 5 continues the incident in its thread, and the group resolves
    # 600 s after its member resolved again (window 8 ends at 540 s: 1140 s is window 18's end)
    (600.0, [(0, ADS, "trigger", "first"), (5, ADS, "update", "worsened"), (18, ADS, "resolve", "resolved")]),
    # the default, 1800 s: the same, the resolve at 540 + 1800 = 2340 s, window 38's end
    (None, [(0, ADS, "trigger", "first"), (5, ADS, "update", "worsened"), (38, ADS, "resolve", "resolved")]),
    # off: resolved with its member, and the re-fire is a new incident (a second page)
    (0.0, [(0, ADS, "trigger", "first"), (3, ADS, "resolve", "resolved"), (5, ADS, "trigger", "first"),
           (8, ADS, "resolve", "resolved")]),
])
def test_a_team_that_fires_again_soon_after_resolving_continues_its_incident(
        keep: float | None, expected: list[tuple[int, str, str, str]]) -> None:
    hold = {} if keep is None else {"group_keep_firing_s": keep}
    engine = AlertEngine(AlertPolicy(**hold, group_interval_s=0, inhibit_by_org=False))
    windows = [{ADS: 90}, NORMAL, NORMAL, NORMAL, NORMAL, {ADS: 90}] + [NORMAL] * 35
    got = [(i, key, action, reason) for i, (notes, _) in enumerate(run(engine, windows))
           for key, action, reason, _ in notes]
    assert got == expected
    if keep:
        assert engine.group_state_for(ADS) is None  # the group is gone once resolved
        # a group written before flap damping (no quiet_since) loads and resolves with its member
        engine.observe_window(signals(30, {ADS: 90}), 31 * W)
        data = engine.group_state_for(ADS)
        assert data is not None and data.pop("quiet_since") is None
        engine.load_group_state(ADS, data)


def test_a_negative_keep_firing_is_refused() -> None:
    with pytest.raises(ValueError, match="group_keep_firing_s"):
        AlertPolicy(group_keep_firing_s=-1.0)


def test_by_default_a_group_resolves_30_minutes_after_its_last_member_and_the_hold_survives_a_restart() -> None:
    assert AlertPolicy().group_keep_firing_s == 1800.0
    # the member resolves in window 3 (ends at 240 s): the group's resolve at 240 + 1800 = 2040 s,
    # window 33's end, by the window end alone (no signal of the team in the windows between)
    windows = [{ADS: 90}] + [NORMAL] * 33
    rows = run(AlertEngine(), windows)
    assert rows == ([([(ADS, "trigger", "first", ())], []), QUIET, QUIET, ([], ["grouped"])] + [QUIET] * 29
                    + [([(ADS, "resolve", "resolved", ())], [])])
    quiet = AlertEngine()
    [trigger] = quiet.observe_window(signals(0, {ADS: 90}), W)
    for i in range(1, 4):
        assert quiet.observe_window(signals(i, NORMAL), (i + 1) * W) == []
    assert quiet.observe_window([], 2040.0 - 1) == []  # a second before the hold is over
    [resolve] = quiet.observe_window([], 2040.0)  # no signals at all: the window's end is enough
    assert (resolve.key, resolve.action, resolve.seq, resolve.ended_at) == (trigger.key, "resolve", 2_040_000, 60.0)
    assert resolve.page == trigger.page and quiet.group_state_for(ADS) is None
    # halfway through the hold, a restart through JSON (the org table's records) holds the same
    first, second = AlertEngine(), AlertEngine()
    half = run(first, windows[:10])
    data = first.group_state_for(ADS)
    assert data is not None and data["quiet_since"] == 240.0 and first.state_for(f"cost_spike:{ADS}") is None
    second.load_group_state(ADS, orjson.loads(orjson.dumps(data)))
    assert half + run(second, windows[10:], first=10) == rows


def test_an_answer_that_ends_the_incident_resolves_at_once_without_the_hold() -> None:
    # "expected, new normal" (or the page resolved in PagerDuty): AlertEngine.resolve_now
    key = f"cost_spike:{ADS}"
    firing = AlertEngine()
    [trigger] = firing.observe_window(signals(0, {ADS: 90, ADS_X: 90}), W)
    firing.observe_window(signals(1, {ADS: 90}), 2 * W)
    [resolve] = firing.resolve_now(key, 2 * W, trigger.started_at, why="on-call answered")
    assert (resolve.key, resolve.action, resolve.seq) == (key, "resolve", 120_000)
    assert [m["status"] for m in resolve.members] == ["resolved", "resolved"]
    assert firing.group_state_for(ADS) is None and firing.changed_groups == {ADS}
    # answered in the window of the group's last notification: the resolve's seq is still above it
    # (the delivery log skips a seq not above the last it delivered: the page would stay open)
    again = AlertEngine()
    [first] = again.observe_window(signals(0, {ADS: 90}), W)
    [closed] = again.resolve_now(key, 10.0)
    assert (closed.action, first.seq, closed.seq) == ("resolve", 60_000, 60_001)
    # an answer while the group holds its resolve (every member back to normal) ends the hold;
    # another team's hold goes on
    held = AlertEngine()
    held.observe_window(signals(0, {ADS: 90, SEARCH: 90}), W)
    for i in range(1, 5):
        assert held.observe_window(signals(i, NORMAL), (i + 1) * W) == []
    assert held.group_state_for(ADS) is not None and held.group_state_for(SEARCH) is not None
    assert held.resolve_now(f"cost_spike:{SEARCH}", 1.0, 999.0) == []  # another incident of search: nothing
    [done] = held.resolve_now(key, 1.0, 0.0, why="ana answered")  # at: the wall clock's, behind the windows
    assert (done.key, done.action, done.seq, done.ended_at) == (key, "resolve", 240_000, 60.0)
    assert done.explanation == "ana answered"
    assert held.group_state_for(ADS) is None and held.group_state_for(SEARCH) is not None
    assert held.resolve_now(key, 1.0, 0.0) == []  # answered twice: the incident is over
    # acknowledging is no answer that ends it: the hold goes on
    assert held.acknowledge(f"cost_spike:{SEARCH}", "bob", 300.0) == []
    [search] = held.observe_window([], 240.0 + 1800)
    assert (search.key, search.action) == (f"cost_spike:{SEARCH}", "resolve")
