"""The third-party share alert: exact team×model counting per calendar period across the judge
partitions, one notification per team and period (kept across restarts), its Slack rendering,
and the policy that configures it."""

from __future__ import annotations

import json
from dataclasses import replace

import orjson
import pytest

from alerts import Notification, slack_blocks
from streams.ingest.windows import NANO
from streams.budgets.mix import MixAlertSpec, MixWatch, mix_crossings, mix_notification, mix_owner
from streams.common.partitioning import judge_partition
from tokenpulse.policy import PolicyError, parse_policy

N = 4
MON = 1_764_547_200  # 2025-12-01 00:00 UTC, a Monday
SPEC = MixAlertSpec(internal_models=("acme-*",), line=0.4, period="week", tz="UTC", min_spend_nusd=10 * NANO)


def watches(spec: MixAlertSpec = SPEC) -> dict[int, MixWatch]:
    return {p: MixWatch(spec) for p in range(N)}


def feed(ws: dict[int, MixWatch], team: str, model: str, w: int, usd: float, seq: int, src: int = 0) -> bool:
    """A judge spend row, applied on the partition that judges that team×model series."""
    series = f"team={team}|model={model}"
    return ws[judge_partition(series, N)].apply_judge_spend(series, w, [int(usd * NANO), 100, 10, 0, 0, 1], {src: seq})


def restart(ws: dict[int, MixWatch], store: dict[int, dict[str, object]], spec: MixAlertSpec = SPEC) -> dict[int, MixWatch]:
    """Every watch's checkpoint through JSON into fresh watches (a worker restart)."""
    fresh = watches(spec)
    for p, w in ws.items():
        part = store.setdefault(p, {})
        for k, v in w.checkpoint().items():
            if v is None:
                part.pop(k, None)
            else:
                part[k] = v
        fresh[p].restore(json.loads(json.dumps(part)).items())
    return fresh


def test_fires_once_per_team_and_period_past_the_line_with_the_trend_and_top_models() -> None:
    ws = watches()
    last_week = MON - 7 * 86400
    feed(ws, "ads", "acme-llama", last_week + 600, 8.0, 1)
    feed(ws, "ads", "gpt-4o", last_week + 600, 2.0, 1)  # last week: 20 % third-party
    assert mix_crossings(ws, N, last_week + 3600) == []
    # this week: 3 $ internal, then third-party spend that crosses 40 % (not before 10 $ spent)
    feed(ws, "ads", "acme-llama", MON + 60, 3.0, 2)
    feed(ws, "ads", "gpt-4o", MON + 60, 2.5, 2)  # 45 % of 5.5 $: under the minimum spend
    assert mix_crossings(ws, N, MON + 120) == []
    feed(ws, "ads", "acme-llama", MON + 120, 3.0, 3)
    feed(ws, "ads", "claude-sonnet", MON + 120, 1.0, 3)
    feed(ws, "ads", "gpt-4o", MON + 180, 1.5, 4)  # 6 $ internal, 5 $ third-party: 45.45 %
    assert not feed(ws, "ads", "gpt-4o", MON + 180, 1.5, 4)  # a redelivered message: once
    [ev] = mix_crossings(ws, N, MON + 240)
    assert (ev.key, ev.team, ev.period_id, ev.line, ev.past) == ("mix:ads:2025-W49", "ads", "2025-W49", 0.4, False)
    assert (ev.internal_nusd, ev.third_party_nusd) == (6 * NANO, 5 * NANO)
    assert ev.share == pytest.approx(5 / 11) and ev.previous_share == pytest.approx(0.2)
    assert ev.top_models == [("gpt-4o", 4 * NANO), ("claude-sonnet", NANO)]
    # more third-party spend in the same week: told once
    feed(ws, "ads", "gpt-4o", MON + 300, 20.0, 5)
    assert mix_crossings(ws, N, MON + 360) == []

    n = mix_notification(ev, SPEC, MON + 240)
    assert (n.key, n.rule, n.action, n.severity, n.page, n.series, n.labels) == (
        "mix:ads:2025-W49", "mix_share", "trigger", "warning", False, "team=ads", {"team": "ads"})
    assert n.seq == MON * 1000 and (n.period_start, n.period_end) == (MON, MON + 7 * 86400)
    assert (n.share_pct, n.previous_share_pct, n.line_pct) == (45.45, 20.0, 40.0)
    assert n.top_third_party_models == [{"model": "gpt-4o", "usd": 4.0}, {"model": "claude-sonnet", "usd": 1.0}]
    back = Notification.from_dict(orjson.loads(orjson.dumps(n.to_dict())))
    assert back == n
    text, blocks = slack_blocks(back)
    body = blocks[1]["text"]["text"]
    assert "45.5% of the team's spend" in body and "40.0%" in body
    assert "*Previous period* (2025-W48): 20.0%" in body
    assert "gpt-4o $4.00, claude-sonnet $1.00" in body and "not paged" in body
    assert "45.5% third-party (line 40.0%, previous period 20.0%)" in text


def test_the_mark_is_kept_by_the_owner_and_survives_a_restart() -> None:
    store: dict[int, dict[str, object]] = {}
    ws = watches()
    feed(ws, "ads", "gpt-4o", MON + 60, 11.0, 1)
    [ev] = mix_crossings(ws, N, MON + 120)
    owner = mix_owner("ads", N)
    assert list(ws[owner].fired) == ["ads|2025-W49"]
    ws = restart(ws, store)
    assert mix_crossings(ws, N, MON + 180) == []  # restored: fired already
    assert not feed(ws, "ads", "gpt-4o", MON + 60, 11.0, 1)  # the redelivered message after it
    feed(ws, "ads", "gpt-4o", MON + 240, 1.0, 2)
    assert mix_crossings(ws, N, MON + 300) == []
    # a crash between the outbox send and the checkpoint: the restored state fires again, with
    # the same key and seq, which delivery skips
    ws2 = restart(ws, {})
    [again] = mix_crossings(ws2, N, MON + 400)
    assert mix_notification(again, SPEC, MON + 400).seq == mix_notification(ev, SPEC, MON + 120).seq
    assert again.key == ev.key


def test_re_arms_with_the_next_period_not_when_dropping_back_under() -> None:
    ws = watches()
    feed(ws, "ads", "gpt-4o", MON, 10.0, 1)
    assert len(mix_crossings(ws, N, MON + 60)) == 1
    feed(ws, "ads", "acme-llama", MON + 60, 100.0, 2)  # back under
    assert mix_crossings(ws, N, MON + 120) == []
    feed(ws, "ads", "gpt-4o", MON + 120, 200.0, 3)  # above again, same week
    assert mix_crossings(ws, N, MON + 180) == []
    nxt = MON + 7 * 86400
    feed(ws, "ads", "gpt-4o", nxt, 12.0, 4)
    [ev] = mix_crossings(ws, N, nxt + 60)
    assert ev.period_id == "2025-W50" and ev.share == 1.0
    assert ev.previous_share == pytest.approx(210 / 310)


def test_team_lines_override_and_turn_off() -> None:
    spec = replace(SPEC, line=None, team_lines=(("ads", 0.9), ("legal", None)))
    ws = watches(spec)
    for team in ("ads", "legal", "search"):
        feed(ws, team, "gpt-4o", MON, 8.0, 1)
        feed(ws, team, "acme-llama", MON, 2.0, 1)  # 80 % third-party each
    assert mix_crossings(ws, N, MON + 60) == []  # ads under its 90 %, legal off, search has no line
    spec2 = replace(SPEC, team_lines=(("ads", 0.9), ("legal", None)))  # default 40 % for the rest
    ws = watches(spec2)
    for team in ("ads", "legal", "search"):
        feed(ws, team, "gpt-4o", MON, 8.0, 1)
        feed(ws, team, "acme-llama", MON, 2.0, 1)
    assert [e.team for e in mix_crossings(ws, N, MON + 60)] == ["search"]


def test_a_backlog_of_a_past_period_is_recorded_not_notified() -> None:
    ws = watches()
    feed(ws, "ads", "gpt-4o", MON, 20.0, 1)
    # counted at a wall clock two weeks later: the week is over
    [ev] = mix_crossings(ws, N, MON + 60, wall=MON + 14 * 86400)
    assert ev.past
    assert ws[mix_owner("ads", N)].fired["ads|2025-W49"]["notified"] is False
    # the current week is told as usual
    feed(ws, "ads", "gpt-4o", MON + 14 * 86400, 20.0, 2)
    [now] = mix_crossings(ws, N, MON + 14 * 86400 + 60, wall=MON + 14 * 86400 + 90)
    assert not now.past and now.period_id == "2025-W51"


def test_state_is_bounded() -> None:
    ws = watches(replace(SPEC, period="day"))
    for w in ws.values():
        w.keep_seconds = 3 * 86400
    for day in range(10):
        feed(ws, "ads", "gpt-4o", MON + day * 86400, 20.0, day)
        mix_crossings(ws, N, MON + day * 86400 + 60)
    kept = {k for w in ws.values() for k in w.periods}
    assert len(kept) <= 5 and "ads|2025-12-10" in kept and "ads|2025-12-01" not in kept
    assert sum(len(w.fired) for w in ws.values()) <= 5
    assert sum(len(w.marks) for w in ws.values()) <= 2 * 24 + 2


def test_policy_builds_the_alert_and_names_the_line_of_a_mistake() -> None:
    p = parse_policy("budget_timezone: Europe/Berlin\nmix:\n  internal_models: ['acme-*']\n"
                     "  max_third_party_share: 0.4\n  teams: {research: 0.8, legal: null}\n"
                     "  period: month\n  min_spend_usd: 2.5\n")
    spec = p.mix_alert_spec()
    assert spec == MixAlertSpec(internal_models=("acme-*",), line=0.4, team_lines=(("legal", None), ("research", 0.8)),
                                period="month", tz="Europe/Berlin", min_spend_nusd=int(2.5 * NANO))
    assert spec.line_for("research") == 0.8 and spec.line_for("legal") is None and spec.line_for("ads") == 0.4
    assert parse_policy("mix:\n  internal_models: ['acme-*']\n").mix_alert_spec() is None
    with pytest.raises(PolicyError, match=r"p.yaml:3: mix.max_third_party_share: .*less than 1"):
        parse_policy("mix:\n  internal_models: ['acme-*']\n  max_third_party_share: 40\n", "p.yaml")
    with pytest.raises(PolicyError, match=r"p.yaml:3: mix.teams: .*team 'ads'.*fraction"):
        parse_policy("mix:\n  internal_models: ['acme-*']\n  teams: {ads: 1.5}\n", "p.yaml")
    with pytest.raises(PolicyError, match=r"p.yaml:2: mix.max_third_party_share: a third-party share line needs mix.internal_models"):
        parse_policy("mix:\n  max_third_party_share: 0.4\n", "p.yaml")
    with pytest.raises(PolicyError, match=r"p.yaml:3: mix.period"):
        parse_policy("mix:\n  internal_models: [x]\n  period: quarter\n", "p.yaml")


def test_the_owner_is_the_partition_that_judges_the_team() -> None:
    # The worker's delivery retry finds a pending notification's partition from its series
    # (judge_partition): a mix notification, series team=…, must go out on that same one.
    for n in (1, 2, 4, 7):
        for team in ("ads", "search", "legal", "ml-platform"):
            assert mix_owner(team, n) == judge_partition(f"team={team}", n)
