from __future__ import annotations

import json
from itertools import pairwise

from alerts import AlertEngine
from detectors import make_detector
from streams.common.spend import spend_key
from streams.ingest.windows import NANO, Partial
from streams.judge.core import JudgeCore
from tests.alerts.policies import no_hold

W = 60


def judge(**kw: object) -> JudgeCore:
    return JudgeCore(
        partition=0,
        window_seconds=W,
        make_detector=lambda: make_detector(
            "default", window_seconds=W, min_excess_usd=1, min_excess_root=0, min_excess_minutes=0, min_requests=0, component_params={"seasonal": {"min_history": 5}}
        ),
        engine=AlertEngine(no_hold(min_excess_usd=1, page_min_excess_usd=5, resolve_after_windows=2)),
        **kw,  # type: ignore[arg-type]
    )


def part(w: int, usd: float, series: str = "team=ads", contrib: dict[str, int] | None = None) -> Partial:
    nusd = int(usd * NANO)
    return Partial(series, {"team": "ads"}, w, [nusd, 10, 1, 0, 0, 1], contrib or {"user:a": nusd}, True)


def test_window_is_final_only_when_every_source_has_passed_it():
    j = judge()
    out = j.receive(0, 2, W, [part(0, 1.0)])
    assert out.spend == [] and j.watermark() is None  # source 1 not heard from yet
    out = j.receive(1, 2, W, [part(0, 2.0, contrib={"user:b": 2 * NANO})])
    assert out.windows_judged == 1
    [(series, w, sums, _seqs)] = out.spend
    assert (series, w, sums[0]) == ("team=ads", 0, 3 * NANO)


def test_idle_sources_do_not_hold_back_the_others():
    j = judge()
    j.receive(1, 2, None, [])  # source 1 exists but has never seen an event
    out = j.receive(0, 2, 2 * W, [part(0, 1.0), part(W, 1.0)])
    assert out.windows_judged == 2


def test_quiet_windows_are_judged_as_zero_and_a_spike_fires_then_resolves():
    j = judge()
    actions = []
    for i in range(20):
        out = j.receive(0, 1, (i + 1) * W, [part(i * W, 1.0 + 0.1 * (i % 3))])
        actions += [n.action for n in out.notifications]
    out = j.receive(0, 1, 21 * W, [part(20 * W, 40.0)])
    assert [n.action for n in out.notifications] == ["trigger"]
    note = out.notifications[0]
    assert note.key == "cost_spike:team=ads" and note.page and note.top_contributors[0]["name"] == "a"
    # the series goes quiet: zero windows (no partials at all) bring the resolve
    out = j.receive(0, 1, 25 * W, [])
    assert out.windows_judged == 4
    assert [n.action for n in out.notifications] == ["resolve"]
    assert actions == []


def test_redelivered_and_late_partials_count_once_in_spend():
    j = judge()
    j.receive(0, 1, W, [part(0, 1.0)], seq=1)
    out = j.receive(0, 1, W, [part(0, 1.0)], seq=1)  # the same message again
    assert out.windows_judged == 0
    late = Partial("team=ads", {"team": "ads"}, 0, [NANO, 1, 0, 0, 0, 1], {}, True, late=True)
    out = j.receive(0, 1, W, [late], seq=2)
    assert out.spend == [("team=ads", 0, [NANO, 1, 0, 0, 0, 1], {0: 2})]


def test_checkpoint_restore_resumes_judging():
    j = judge()
    store: dict[str, object] = {}
    for i in range(8):
        j.receive(0, 1, (i + 1) * W, [part(i * W, 1.0)], seq=i)
        for k, v in j.checkpoint().items():
            if v is None:
                store.pop(k, None)
            else:
                store[k] = json.loads(json.dumps(v))
    fresh = judge()
    fresh.restore(store.items())
    assert fresh.done_until == j.done_until and set(fresh.series) == {"team=ads"}
    a = j.receive(0, 1, 9 * W, [part(8 * W, 1.0)], seq=9)
    b = fresh.receive(0, 1, 9 * W, [part(8 * W, 1.0)], seq=9)
    assert a.spend == b.spend and a.windows_judged == b.windows_judged == 1


def test_spend_is_held_in_the_core_and_idempotent_per_source_seq():
    j = judge()
    j.receive(0, 1, 2 * W, [part(0, 1.0), part(W, 2.0)], seq=1)
    late = Partial("team=ads", {"team": "ads"}, 0, [NANO, 1, 0, 0, 0, 1], {}, True, late=True)
    j.receive(0, 1, 2 * W, [late], seq=2)
    j.receive(0, 1, 2 * W, [late], seq=2)  # redelivered
    changes = j.spend_changes()
    assert changes["team=ads|0"]["s"][0] == 2 * NANO and changes["team=ads|60"]["s"][0] == 2 * NANO
    assert j.spend_changes() == {}


def test_a_chunk_without_watermark_does_not_mark_its_source_idle():
    j = judge()
    # source 1's first emission arrives in two chunks; the first carries no watermark
    j.receive(1, 2, None, [part(0, 1.0)], seq=1, carries_watermark=False)
    out = j.receive(0, 2, 5 * W, [part(0, 1.0)], seq=1)
    assert out.windows_judged == 0  # source 1 is not idle: it is on its way
    out = j.receive(1, 2, W, [], seq=1)
    assert out.windows_judged == 1 and out.spend[0][2][0] == 2 * NANO


def test_policy_overrides_give_a_series_its_own_thresholds_and_alerts_explain_themselves():
    from streams.judge.core import judge_factory

    params = {"min_excess_usd": 1000, "min_excess_root": 0, "min_excess_minutes": 0, "min_requests": 0, "seasonal": {"min_history": 5}}
    overrides = [({"team": "legal"}, {"min_excess_usd": 1})]
    j = judge_factory(W, "default", params, {"resolve_after_windows": 2}, overrides=overrides)(0)
    fired = []
    for i in range(21):
        usd = 40.0 if i == 20 else 1.0 + 0.1 * (i % 3)
        parts = [
            Partial(f"team={t}", {"team": t}, i * W, [int(usd * NANO), 10, 1, 0, 0, 1], {"user:a": int(usd * NANO)}, True)
            for t in ("ads", "legal")
        ]
        fired += j.receive(0, 1, (i + 1) * W, parts).notifications
    assert [(n.series, n.action) for n in fired] == [("team=legal", "trigger")]
    n = fired[0]
    assert n.impact_usd and n.impact_usd > 30
    assert n.explanation.startswith("seasonal: ") and "over expected in this incident" in n.explanation
    # the override survives a restart: restored detectors are built for their series' labels
    twin = judge_factory(W, "default", params, {"resolve_after_windows": 2}, overrides=overrides)(0)
    twin.restore(j.checkpoint().items())
    assert twin.detectors["team=legal"].min_excess_usd == 1
    assert twin.detectors["team=ads"].min_excess_usd == 1000


def test_a_late_partial_applied_before_the_pending_one_of_its_window_does_not_hide_it():
    # Source 0 closes window 0 (seq 1) while source 1 is behind, so the window stays pending;
    # then a late event of window 0 reaches source 0 (seq 2) and is applied at once. When the
    # window is finally judged, its pending partial (seq 1) must still be counted.
    j = judge()
    j.receive(0, 2, W, [part(0, 1.0)], seq=1)
    late = part(0, 0.5)
    late.late = True
    j.receive(0, 2, W, [late], seq=2)
    j.receive(1, 2, W, [], seq=1)  # source 1 catches up (idle, no events): window 0 is judged
    assert j.spend[spend_key("team=ads")].window_wire(0)["s"][0] == int(1.5 * NANO)
    # and a redelivery of either message is still not counted twice
    j.receive(0, 2, W, [late], seq=2)
    assert j.spend[spend_key("team=ads")].window_wire(0)["s"][0] == int(1.5 * NANO)


def org_window(w: int, ads_usd: float) -> list[Partial]:
    """One source's partials of a window: the org and its series (team=search steady)."""
    def p(series: str, labels: dict[str, str], usd: float) -> Partial:
        nusd = int(usd * NANO)
        return Partial(series, labels, w, [nusd, 10, 1, 0, 0, 1], {"user:a": nusd}, True)

    return [
        p("org", {"org": "acme"}, ads_usd + 1.0),
        p("team=search", {"team": "search"}, 1.0),
        p("team=ads|model=x", {"team": "ads", "model": "x"}, ads_usd * 0.9),
        p("team=ads", {"team": "ads"}, ads_usd),
    ]


def judge_org(**policy: object) -> JudgeCore:
    j = judge()
    j.engine = AlertEngine(no_hold(min_excess_usd=1, page_min_excess_usd=5, resolve_after_windows=2, **policy))  # type: ignore[arg-type]
    return j


def feed_org(j: JudgeCore, first: int, last: int, ads_usd: float) -> list:
    """Windows first..last-1 from two sources, each carrying half the spend."""
    out = []
    for i in range(first, last):
        for src in (0, 1):
            o = j.receive(src, 2, (i + 1) * W, org_window(i * W, ads_usd / 2 + 0.05 * (i % 3)), seq=i)
            out.append(o)
    return out


def test_the_org_alert_inhibits_its_teams_in_the_same_window_step():
    j = judge_org()
    assert not [n for o in feed_org(j, 0, 20, 1.0) for n in o.notifications]
    [o] = [o for o in feed_org(j, 20, 21, 40.0) if o.windows_judged]
    [n] = o.notifications
    assert (n.key, n.action) == ("cost_spike:org", "trigger")
    assert [(m["series"], m["status"]) for m in n.members] == [("team=ads", "inhibited"), ("team=ads|model=x", "inhibited")]
    assert o.skipped == ["inhibited", "inhibited"]
    assert {c["name"] for c in n.top_contributors} == {"a"}


def test_a_team_group_is_one_notification_and_its_state_is_checkpointed():
    j = judge_org(inhibit_by_org=False, group_interval_s=0)
    feed_org(j, 0, 20, 1.0)
    [o] = [o for o in feed_org(j, 20, 21, 40.0) if o.windows_judged]
    by_key = {n.key: n for n in o.notifications}
    assert sorted(by_key) == ["cost_spike:org", "cost_spike:team=ads"]
    assert [m["series"] for m in by_key["cost_spike:team=ads"].members] == ["team=ads", "team=ads|model=x"]
    assert o.skipped == ["grouped", "grouped"]
    changes = j.checkpoint()
    assert changes["group|team=ads"]["key"] == "cost_spike:team=ads"
    # a restart: the new judge resolves the group under the same key and thread
    fresh = judge_org(inhibit_by_org=False, group_interval_s=0)
    fresh.restore(json.loads(json.dumps([[k, v] for k, v in changes.items()])))
    notes = [n for o in feed_org(fresh, 21, 26, 1.0) for n in o.notifications]
    resolve = [n for n in notes if n.key == "cost_spike:team=ads"]
    assert [(n.action, n.started_at) for n in resolve] == [("resolve", 20.0 * W)]
    assert fresh.checkpoint()["group|team=ads"] is None


def test_restored_series_another_partition_judges_now_are_dropped_once_their_alert_resolved():
    """Upgrading to one judge partition per org moves series: the old partition keeps a moved
    series only until the alert it had firing resolves, then forgets it and its state."""
    j = judge()
    for i in range(20):
        j.receive(0, 1, (i + 1) * W, [part(i * W, 1.0), part(i * W, 1.0, series="team=search")])
    out = j.receive(0, 1, 21 * W, [part(20 * W, 1.0), part(20 * W, 40.0, series="team=search")])
    assert [n.key for n in out.notifications] == ["cost_spike:team=search"]
    saved = j.checkpoint()

    moved = judge(owns=lambda series: series == "org")  # both series are judged elsewhere now
    moved.restore(saved.items())
    out = moved.receive(0, 1, 22 * W, [])
    assert "team=ads" not in moved.series  # nothing firing: dropped at once
    assert "team=search" in moved.series  # its alert is still firing here
    changes = moved.checkpoint()
    assert changes["det|team=ads"] is None and changes.get("det|team=search") is not None
    out = moved.receive(0, 1, 26 * W, [])
    assert [n.action for n in out.notifications] == ["resolve"]
    assert moved.series == {} and moved.checkpoint()["det|team=search"] is None


def test_each_series_state_is_written_once_in_state_every_windows_and_a_flagged_one_at_once():
    every = 5
    j = judge(state_every=every)
    names = [f"team=t{k}" for k in range(40)]
    written: dict[str, list[int]] = {name: [] for name in names}
    per_window = []
    for i in range(30):
        j.receive(0, 1, (i + 1) * W, [part(i * W, 1.0 + 0.1 * (i % 3), name) for name in names])
        dets = [k[len("det|"):] for k in j.checkpoint() if k.startswith("det|")]
        for name in dets:
            written[name].append(i)
        per_window.append(len(dets))
    # the first window writes every new series; then each one window in five, on its own turn
    assert per_window[0] == len(names)
    assert all(len(ws) == 1 + 29 // every or len(ws) == 2 + 29 // every for ws in written.values())
    assert all(b - a == every for ws in written.values() for a, b in pairwise(ws[1:]))
    assert max(per_window[1:]) < len(names) / 2  # spread over the windows, not all at once
    # a spike: the flagged series' state goes out with that window's checkpoint, whatever its turn
    out = j.receive(0, 1, 31 * W, [part(30 * W, 60.0, names[0])] + [part(30 * W, 1.0, n) for n in names[1:]])
    assert [n.action for n in out.notifications] == ["trigger"]
    assert f"det|{names[0]}" in j.checkpoint()


def test_a_crash_loses_at_most_state_every_windows_of_learning():
    every = 4
    j = judge(state_every=every)
    table: dict[str, object] = {}
    for i in range(23):
        j.receive(0, 1, (i + 1) * W, [part(i * W, 1.0 + 0.1 * (i % 3))])
        table.update(json.loads(json.dumps(j.checkpoint())))
    restored = judge(state_every=every)
    restored.restore(table.items())
    lag = j.series["team=ads"].last_end - restored.series["team=ads"].last_end
    assert 0 <= lag < every * W and restored.done_until == j.done_until
    # the restored detector picks up from its last state: the next windows are judged, once
    out = restored.receive(0, 1, 25 * W, [part(23 * W, 1.0), part(24 * W, 1.1)])
    assert out.windows_judged == 2 and restored.series["team=ads"].last_end == 25 * W
