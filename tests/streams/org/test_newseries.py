"""The org stage's ``new-series`` rule (:mod:`streams.org.newseries`): a team's new model judged
by its first day's price per request against the team's -- the pure core, then through the
org stage beside its judge and fed by judge partitions apart, across a checkpoint."""

from __future__ import annotations

import json
import random
from typing import Any

from alerts import AlertEngine, AlertPolicy, Signal
from detectors import make_detector
from streams.ingest.windows import NANO, Partial
from streams.judge.core import JudgeCore
from streams.judge.step import judge_step
from streams.org.core import OrgCore
from streams.org.newseries import NewSeriesRule, NewSeriesSettings
from streams.org.verdicts import Verdicts
from tests.alerts.policies import no_hold
from tests.streams.org.test_org_core import interleave

DAY = 86400
W = 3600  # hourly windows: three days of history in 72 windows
TEAM, SMALL, BIG = "team=ads", "team=ads|model=small", "team=ads|model=big"


def usd(x: float) -> int:
    return round(x * NANO)


def run(rule: NewSeriesRule, windows: list[tuple[int, list[tuple[str, int, int]]]],
        tracks: Any = None) -> list[Signal]:
    """Step ``rule`` over (window start, rows); the flagged signals."""
    out = []
    for start, rows in windows:
        out += [sg for sg in rule.judge_window(start, start + W, rows, [], tracks) if sg.is_anomaly]
    return out


def history(days: float, new_price: float, new_from: float, new_hours: int = 5, start_day: float = 0.0,
            per_hour: int = 10) -> list[tuple[int, list[tuple[str, int, int]]]]:
    """A team at $0.01 a request (20 an hour, model ``small``) from ``start_day``; from day
    ``new_from`` for ``new_hours`` hours, ``per_hour`` requests an hour of model ``big`` at
    ``new_price`` a request on top."""
    out = []
    for h in range(int(start_day * 24), int(days * 24)):
        t = h * W
        rows = [(SMALL, usd(0.2), 20)]
        team_usd, team_n = usd(0.2), 20
        if new_from * DAY <= t < new_from * DAY + new_hours * W:
            rows.append((BIG, usd(new_price * per_hour), per_hour))
            team_usd += usd(new_price * per_hour)
            team_n += per_hour
        rows.append((TEAM, team_usd, team_n))
        out.append((t, rows))
    return out


def test_a_new_model_at_ten_times_the_teams_price_alerts_once_its_excess_passes_the_floor() -> None:
    got = run(NewSeriesRule(), history(4, 0.10, 3.0))
    # $1 an hour against $0.10 expected: $0.90 over an hour, the $2 floor in the third hour; held
    # through the hour after its last (its team's 20 requests without it: 10 expected, not yet 10 missed)
    assert [sg.window_start for sg in got] == [3 * DAY + 2 * W, 3 * DAY + 3 * W, 3 * DAY + 4 * W, 3 * DAY + 5 * W]
    first = got[0]
    assert first.series == BIG and first.labels == {"team": "ads", "model": "big"}
    assert first.detector == "new-series" and first.impact_usd is not None and abs(first.impact_usd - 2.7) < 1e-9
    # the explanation names the team's price, the new series' and the ratio
    assert "$0.1000 a request against the team's $0.0100" in first.explanation
    assert "(10.0x)" in first.explanation


def test_a_cheaper_migration_and_a_model_the_team_used_before_stay_quiet() -> None:
    assert run(NewSeriesRule(), history(4, 0.003, 3.0, per_hour=500)) == []  # 0.3x the team's price
    # the settings: three times the price is the bound, the floor and the requests too
    assert run(NewSeriesRule(NewSeriesSettings(ratio=11)), history(4, 0.10, 3.0)) == []
    assert run(NewSeriesRule(NewSeriesSettings(min_excess_usd=5)), history(4, 0.10, 3.0)) == []
    assert len(run(NewSeriesRule(NewSeriesSettings(min_excess_usd=0.5)), history(4, 0.10, 3.0))) == 6
    assert run(NewSeriesRule(NewSeriesSettings(min_requests=100)), history(4, 0.10, 3.0)) == []
    rule = NewSeriesRule()
    run(rule, history(2.5, 0.10, 1.0, new_hours=1))  # big used once in the team's second day
    assert run(rule, history(4, 0.10, 3.0, start_day=2.5)) == []  # not new on day 3


def test_a_cold_start_takes_no_series_for_new_before_the_team_is_two_days_old() -> None:
    """A worker started without state on day 10 of a team that has used ``big`` for long: the
    team is known from day 10 in the rule's state, so ``big`` (first seen at day 10.5) is not new."""
    days = history(14, 0.10, 10.5, new_hours=24 * 4, start_day=10)
    assert run(NewSeriesRule(), days) == []
    # the same series two days after the team's first window: new
    assert run(NewSeriesRule(), history(14, 0.10, 12.0, new_hours=5, start_day=10))


def test_the_alert_ends_with_the_first_day_or_when_the_new_series_stops() -> None:
    got = run(NewSeriesRule(), history(5, 0.10, 3.0, new_hours=40))
    assert got and max(sg.window_start for sg in got) < 4 * DAY  # its first day only
    # stopped: flagged until its team's requests without it say so (STOP_MISSED), here 40 of them
    # in the two hours after its last (its share 1/3: 13 missed)
    assert max(sg.window_start for sg in run(NewSeriesRule(), history(4, 0.10, 3.0))) == 3 * DAY + 5 * W
    # a tracked alert gets quiet signals until the engine lets it go, then it is forgotten
    rule = NewSeriesRule()
    run(rule, history(3.3, 0.10, 3.0))
    quiet = rule.judge_window(4 * DAY, 4 * DAY + W, [], [], lambda s: s == BIG)
    assert [(sg.series, sg.is_anomaly, sg.observed_usd) for sg in quiet] == [(BIG, False, 0.0)]
    assert rule.judge_window(4 * DAY + W, 4 * DAY + 2 * W, [], [], lambda s: False) == []
    assert rule.teams[TEAM].new == {}


def sparse_notes(big_until_h: float, hours: float = 10.0) -> list[Any]:
    """A sparse team (a bot: one ``small`` request every 45 min, each time with one of ``big`` at
    100x its price until ``big_until_h``, then ``small`` every minute), minute windows from day
    3 after two days of history; the rule stepped with the alert engine as the org stage does."""
    rule, engine = NewSeriesRule(), AlertEngine(no_hold())
    run(rule, history(3, 0.10, 99.0))  # the team's first three days, hourly windows
    notes = []
    for m in range(int(hours * 60)):
        start = 3 * DAY + 60 * m
        rows = []
        if m < big_until_h * 60 and m % 45 == 0:
            rows = [(SMALL, usd(0.01), 1), (BIG, usd(1.0), 1), (TEAM, usd(1.01), 2)]
        elif m >= big_until_h * 60:
            rows = [(SMALL, usd(0.01), 1), (TEAM, usd(0.01), 1)]
        sigs = rule.judge_window(start, start + 60, rows, [], lambda s: engine.tracks(engine.key_for(s)))
        notes += engine.observe_window(sigs, float(start + 60))
    return notes


def test_a_sparse_new_model_notifies_once_through_its_gaps_and_resolves_soon_after_it_stops() -> None:
    """Gaps of 45 min (more than ``HOLD_S``) with nothing else sent by the team: one first
    notification (on the old 30-min hold: one per request after the third), no resolve while
    it goes on; once it stops and its team goes on spending, the alert resolves within minutes."""
    notes = sparse_notes(big_until_h=99)
    assert [(n.action, n.reason, n.window_end) for n in notes if n.reason == "first"] == [
        ("trigger", "first", 3 * DAY + 90 * 60 + 60)]  # the third request brings $2.97 over
    assert not [n for n in notes if n.action == "resolve"]
    # the flagged windows carry the first day so far: "worsened" means the incident's excess
    # grew 1.5x, not that one window of a request followed one of none
    assert [round(n.excess_usd, 2) for n in notes if n.reason == "worsened"] == [4.95, 7.92, 11.88]
    stopped = sparse_notes(big_until_h=5)  # its last request at 4:30, the team's every minute after 5:00
    assert [n.reason for n in stopped] == ["first", "worsened", "resolved"]
    # its share was 1/2 of the team's requests: 20 of the team's without it (20 min) say it stopped
    assert 3 * DAY + 5 * 3600 < stopped[-1].fired_at <= 3 * DAY + 5 * 3600 + 25 * 60


def test_state_round_trips_and_the_rule_goes_on_as_if_never_stopped() -> None:
    days = history(4, 0.10, 3.0)
    want = run(NewSeriesRule(), days)
    for cut in (10, 73, 74, 75):  # before, at and after the new series' first windows
        first = NewSeriesRule()
        run(first, days[:cut])
        saved = json.loads(json.dumps({t: first.get_state(t) for t in first.take_dirty()}))
        again = NewSeriesRule()
        for team, st in saved.items():
            again.set_state(team, st)
        assert [sg.to_dict() for sg in run(again, days[cut:])] == [sg.to_dict() for sg in want if sg.window_start >= days[cut][0]], cut
    # a series' record written before the team's counts were kept (6 fields) loads, counts at 0
    rule = NewSeriesRule()
    run(rule, days[:75])
    st = rule.get_state(TEAM)
    assert st is not None
    st["new"] = {k: v[:6] for k, v in st["new"].items()}
    again = NewSeriesRule()
    again.set_state(TEAM, st)
    assert (again.teams[TEAM].new[BIG].team_requests, again.teams[TEAM].new[BIG].team_since) == (0, 0)
    assert run(again, days[75:])  # and goes on alerting


def test_a_model_back_after_days_unused_is_new_again_and_one_in_use_is_not() -> None:
    # big for five hours on day 2, then not a request of it until day 5: a switch back to it
    # shows in the team's price as a new model's does (independent seed 1: docs-bot)
    once, again = history(2.5, 0.10, 2.0), history(6, 0.10, 5.0, start_day=2.5)
    rule = NewSeriesRule()
    run(rule, once)
    got = run(rule, again)
    assert got and got[0].series == BIG and got[0].window_start == 5 * DAY + 2 * W
    assert "new model big" in got[0].explanation
    # with dormant_days 0 (or 4: it was unused for 3 days less its five hours) only a never-seen model is new
    for days in (0.0, 4.0):
        rule = NewSeriesRule(NewSeriesSettings(dormant_days=days))
        run(rule, once)
        assert run(rule, again) == [], days
    # a model in use every day is never new, whatever its price
    steady = [(t, [*rows, (BIG, usd(0.01), 1)]) for t, rows in history(6, 0.10, 5.0)]
    assert run(NewSeriesRule(), steady) == []
    # a team's state written before the models' last requests were kept loads: its models are
    # known (not new), and become dormant only once seen again
    rule = NewSeriesRule()
    run(rule, once)
    st = rule.get_state(TEAM)
    assert st is not None and st["last"]
    del st["last"]
    old = NewSeriesRule()
    old.set_state(TEAM, json.loads(json.dumps(st)))
    assert old.teams[TEAM].models == {"small": -1, "big": -1}
    assert run(old, again) == []


def test_a_team_of_cents_a_day_needs_its_own_days_spend_of_excess_not_two_dollars() -> None:
    # a team at $0.0001 a request, 20 an hour ($0.048 a day): a new model at 30x its price brings
    # $0.90 of excess in five hours, under the $2 floor
    cheap = []
    for t, rows in history(4, 0.003, 3.0, per_hour=60):
        models = [(n, u // 100 if n == SMALL else u, c) for n, u, c in rows if n != TEAM]
        cheap.append((t, [*models, (TEAM, sum(u for _, u, _ in models), sum(c for _, _, c in models))]))
    assert run(NewSeriesRule(NewSeriesSettings(excess_team_days=0.0)), cheap) == []
    # one day of the team's usual spend, at least $0.50 (the defaults): the floor is $0.50 here
    scaled = NewSeriesSettings()
    assert (scaled.excess_team_days, scaled.min_excess_floor_usd) == (1.0, 0.5)
    got = run(NewSeriesRule(scaled), cheap)
    assert got and got[0].window_start == 3 * DAY + 2 * W  # $0.52 of excess after three hours
    assert run(NewSeriesRule(NewSeriesSettings(excess_team_days=1.0, min_excess_floor_usd=1.0)), cheap) == []
    # a team that spends more than $2 a day keeps the $2 floor
    assert next(sg.window_start for sg in run(NewSeriesRule(scaled), history(4, 0.10, 3.0))) == 3 * DAY + 2 * W
    # a series' record written before the floor was kept (8 fields) loads with the settings' floor
    rule = NewSeriesRule(scaled)
    run(rule, cheap[:75])
    st = rule.get_state(TEAM)
    assert st is not None
    st["new"] = {k: v[:8] for k, v in st["new"].items()}
    again = NewSeriesRule(scaled)
    again.set_state(TEAM, st)
    assert again.teams[TEAM].new[BIG].min_excess is None


def test_only_team_and_team_model_series_are_read_and_other_orgs_keep_their_labels() -> None:
    rule = NewSeriesRule()
    assert rule.wants("team=ads") and rule.wants("org=acme|team=ads|model=m")
    assert not any(rule.wants(s) for s in ("org", "model=m", "provider=openai", "team=ads|user=bob", "bad"))
    rows = [(t, [(s.replace("team=ads", "org=acme|team=ads"), u, n) for s, u, n in r]) for t, r in history(4, 0.10, 3.0)]
    got = run(rule, rows)
    assert got and got[0].series == "org=acme|team=ads|model=big"
    assert got[0].labels == {"org": "acme", "team": "ads", "model": "big"}


# -- through the org stage ---------------------------------------------------------------------

POLICY: dict[str, Any] = {"resolve_after_windows": 2, "inhibit_by_org": False, "group_interval_s": 0}
SETTINGS = NewSeriesSettings()


def judge(q: int = 0, rule: bool = True) -> JudgeCore:
    # a detector that never flags: what alerts is the rule
    return JudgeCore(partition=q, window_seconds=W,
                     make_detector=lambda: make_detector("naive", window_seconds=W, k=1e6),
                     engine=AlertEngine(AlertPolicy(**POLICY)), new_series=SETTINGS if rule else None)


def messages() -> list[tuple[int, int, list[Partial]]]:
    """(closed_until, seq, partials) of one source: ``history`` with a second team that only
    uses one model, as the ingest emits them."""
    out = []
    for i, (t, rows) in enumerate(history(4, 0.10, 3.0)):
        rows = [*rows, ("team=legal", usd(0.5), 5), ("team=legal|model=small", usd(0.5), 5)]
        parts = [Partial(s, dict(kv.split("=") for kv in s.split("|")), t, [u, n * 100, n * 10, 0, 0, n], {}, True)
                 for s, u, n in rows]
        out.append((t + W, i, parts))
    return out


def copies(parts: list[Partial]) -> list[Partial]:
    return [Partial(p.series, dict(p.labels), p.window_start, list(p.sums), dict(p.contributors), p.detected, p.late)
            for p in parts]


def essentials(notes: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(n["key"], n["action"], n["reason"], n["window_end"], n["detector"], round(n["impact_usd"] or 0, 6))
            for n in notes]


def test_through_the_org_stage_beside_the_judge_and_fed_by_judges_apart_across_a_checkpoint() -> None:
    msgs = messages()
    # today's placement: the org stage beside the judge, stepped window by window
    j = judge()
    beside = []
    for closed, seq, parts in msgs:
        beside += [n.to_dict() for n in judge_step(j, None, None, 0, 1, closed, copies(parts), seq).judged.notifications]
    # (the update: the first day's excess grew 1.5x, $2.70 -> $4.50)
    assert [(n["key"], n["action"], n["detector"]) for n in beside] == [
        ("cost_spike:team=ads|model=big", "trigger", "new-series"), ("cost_spike:team=ads|model=big", "update", "new-series"),
        ("cost_spike:team=ads|model=big", "resolve", "new-series")]
    assert beside[0]["window_end"] == 3 * DAY + 3 * W and "10.0x" in beside[0]["explanation"]
    # without the rule, nothing
    j = judge(rule=False)
    assert not any(judge_step(j, None, None, 0, 1, closed, copies(parts), seq).judged.notifications
                   for closed, seq, parts in msgs)
    # series placement: the team and its new model on two judge partitions, the org stage apart
    home = {TEAM: 0, SMALL: 1, BIG: 1, "team=legal": 1, "team=legal|model=small": 0}
    judges = {q: judge(q) for q in (0, 1)}
    for jq in judges.values():
        jq.local_tracking = POLICY["resolve_after_windows"]
    per: dict[int, list[Verdicts]] = {0: [], 1: []}
    for closed, seq, parts in msgs:
        for q, jq in judges.items():
            step = judge_step(jq, None, None, 0, 1, closed, [p for p in copies(parts) if home[p.series] == q], seq)
            per[q].append(step.verdicts(q, len(per[q])))
    verdicts = interleave(per, random.Random(3), redeliver=0.05)
    for cut in (0, 150, len(verdicts) // 2 + 6):
        o = OrgCore(0, W, AlertEngine(AlertPolicy(**POLICY)), n_judges=2, new_series=NewSeriesRule(SETTINGS))
        got, store = [], {}
        for v in verdicts[:cut]:
            got += [n.to_dict() for n in o.receive(v).notifications]
            store.update(o.checkpoint())
        saved = json.loads(json.dumps([[k, v] for k, v in store.items() if v is not None]))
        assert cut == 0 or any(k.startswith("newser|") for k, _ in saved)
        again = OrgCore(0, W, AlertEngine(AlertPolicy(**POLICY)), n_judges=2, new_series=NewSeriesRule(SETTINGS))
        again.restore(saved)
        for v in verdicts[cut:]:
            got += [n.to_dict() for n in again.receive(v).notifications]
        assert essentials(got) == essentials(beside), cut


def test_an_org_stage_checkpoint_without_the_rule_loads_into_one_with_it() -> None:
    """Records written before the rule (an ``orgsig`` of two elements, no ``newser``) load, and
    the rule starts from nothing: it knows no team yet, so it alerts on nothing for two days."""
    o = OrgCore(0, W, AlertEngine(AlertPolicy(**POLICY)), n_judges=2, new_series=NewSeriesRule(SETTINGS))
    o.restore([("orgsig|0", [W, []]), ("orgmeta", {"judge_wm": {"0": None}, "applied": {"0": 3}, "n_judges": 2,
                                                   "done_until": None})])
    assert o.pending == {0: (W, [])} and o.pending_rows == {} and o.new_series is not None
    assert o.new_series.teams == {}
