"""Policy reload, the pure parts: which sections changed and which of them a running worker
takes, the config it then runs on, and what applying it does to real ledgers, judges, the
deliverer and the mix watches (the Faust glue is covered by tests/integration/test_reload.py)."""

from __future__ import annotations

from dataclasses import replace

import pytest
from pydantic import SecretStr

from alerts import AlertPolicy, Signal
from alerts.receivers.slack import SlackConfig
from alerts.routing import Route
from streams.budgets.ledger import BudgetLedger, BudgetSpec, budget_notification, reconfigure_ledgers
from streams.budgets.mix import MixAlertSpec, MixWatch
from streams.common.config import StreamConfig
from streams.common.metrics import Metrics
from streams.common.partitioning import judge_partition
from streams.delivery.outbox import Deliverer
from streams.ingest.windows import NANO
from streams.judge.core import judge_factory
from streams.worker.reload import apply_reload, reloaded_config, sections_changed
from streams.worker.web import budget_rows

DAY0 = 1_764_115_200  # 2025-11-26 00:00 UTC
NOON = DAY0 + 12 * 3600
ADS = BudgetSpec("ads", (("team", "ads"),), "usd", 10 * NANO, period="day", forecast_alert=False)
ORG = BudgetSpec("org", (), "usd", 100 * NANO, period="day", forecast_alert=False)
SLACK = SlackConfig(token=SecretStr("xoxb-secret"), api_url="http://slack.invalid/api/", channel="#ai-spend")
TEAMS = (Route("slack", "#ads", {"team": "ads"}, source="teams"),)
SUBSCRIPTIONS = (Route("slack", "#finops", {}, "critical", source="subscriptions"),)
DIGESTS = (Route("slack", "#digest", {"team": "ads"}, mode="daily", source="subscriptions"),)
MIX = MixAlertSpec(internal_models=("acme-*",), line=0.4, period="day", min_spend_nusd=NANO)
BASE = StreamConfig(bootstrap="unused:9092", budgets=(ORG, ADS), receivers={"slack": SLACK},
                    routes=TEAMS + SUBSCRIPTIONS + DIGESTS, mix_alert=MIX,
                    internal_models=("acme-*",), alert_policy={"warning_excess_usd": 20.0, "silences": []})


def test_sections_changed_sorts_what_applies_at_once_from_what_needs_a_restart() -> None:
    assert sections_changed(BASE, replace(BASE)) == ([], [])
    silence = {"id": "s1", "matchers": {"team": "data"}, "starts_at": 0.0, "ends_at": None, "reason": "backfill",
               "created_by": ""}
    new = replace(
        BASE,
        budgets=(ORG, replace(ADS, limit=5 * NANO)),
        alert_policy={"warning_excess_usd": 30.0, "silences": [silence]},
        routes=(Route("slack", "#ads-2", {"team": "ads"}, source="teams"),),
        mix_alert=replace(MIX, line=0.2),
        watched=frozenset({"org"}),
        price_overrides={"m": {"input": 1.0, "output": 2.0}},
        detector_params={"threshold": 9},
        report_timezone="Europe/Berlin",
    )
    applied, restart = sections_changed(BASE, new)
    assert applied == ["budgets", "alerts", "silences", "teams", "subscriptions", "mix"]
    assert restart == ["watch", "prices", "detector", "digests", "budget_timezone"]
    # how far "not an anomaly" raises a floor is part of the detector section: a restart
    assert sections_changed(BASE, replace(BASE, not_anomaly_max_raise=2.0)) == ([], ["detector"])
    assert sections_changed(BASE, replace(BASE, not_anomaly_half_life_days=3.0)) == ([], ["detector"])
    # only the silences: the alerts section is unchanged
    only = replace(BASE, alert_policy={"warning_excess_usd": 20.0, "silences": [silence]})
    assert sections_changed(BASE, only) == (["silences"], [])


@pytest.mark.parametrize("new_mix, internal, expect", [
    (replace(MIX, line=0.1, team_lines=(("ads", None),), min_spend_nusd=0), ("acme-*",), (["mix"], [])),
    (replace(MIX, internal_models=("acme-*", "own-*")), ("acme-*", "own-*"), ([], ["mix"])),  # counts change
    (replace(MIX, period="week"), ("acme-*",), ([], ["mix"])),
    (None, ("acme-*",), ([], ["mix"])),  # turned off
    (MIX, ("acme-*", "x-*"), ([], ["mix"])),  # /api/mix and reports read internal_models
])
def test_mix_lines_apply_at_once_its_counting_needs_a_restart(new_mix, internal, expect) -> None:
    new = replace(BASE, mix_alert=new_mix, internal_models=internal)
    assert sections_changed(BASE, new) == expect
    merged = reloaded_config(BASE, new)
    assert merged.mix_alert == (new_mix if expect[0] else MIX)
    assert merged.internal_models == BASE.internal_models


def test_the_reloaded_config_keeps_settings_and_restart_sections() -> None:
    new = replace(BASE, budgets=(ADS,), watched=frozenset({"org"}), detector_name="ewma", bootstrap="other:1",
                  receivers={"slack": SLACK.model_copy(update={"token": SecretStr("other")})},
                  routes=(Route("slack", "#ml", {"team": "ml"}, source="teams"),), alert_policy={"silences": []})
    merged = reloaded_config(BASE, new)
    assert merged.budgets == (ADS,) and merged.alert_policy == {"silences": []}
    assert merged.watched == BASE.watched and merged.detector_name == "default" and merged.bootstrap == "unused:9092"
    assert merged.receivers == {"slack": SLACK}  # settings: as started
    assert merged.routes == (Route("slack", "#ml", {"team": "ml"}), *DIGESTS)  # digests: after a restart


def _spent_60_pct() -> BudgetLedger:
    led = BudgetLedger(60, [ORG, ADS])
    led.apply_judge_spend("team=ads", NOON - 120, [6 * NANO, 0, 0, 0, 0, 3], {0: 1})
    assert [e.threshold for e in led.crossings(now=NOON)] == [50.0]
    return led


def test_a_lowered_limit_is_logged_and_fires_at_the_next_crossings() -> None:
    led = _spent_60_pct()
    lower = replace(ADS, limit=7 * NANO)  # $6 of $7: 85.7 %
    logged = reconfigure_ledgers({0: led}, [ORG, lower], 1, lambda q: float(NOON + 60))
    assert logged == [{"t": NOON + 60.0, "budget": "ads", "change": "changed",
                       "fields": {"limit": {"old": 10 * NANO, "new": 7 * NANO}}, "rearmed": []}]
    assert led.change_log("ads")[-1] == logged[0]
    events = led.crossings(now=NOON + 120)
    assert [(e.budget, e.threshold) for e in events] == [("ads", 80.0)]
    n = budget_notification(events[0], led.budgets["ads"], NOON + 120)
    assert (n.limit, n.spent) == (7.0, 6.0)
    assert led.crossings(now=NOON + 180) == []  # once
    # the same specs again: nothing logged, nothing fired
    assert reconfigure_ledgers({0: led}, [ORG, lower], 1) == []
    # raised far above the spend: 50 and 80 re-armed (logged), and fire again when reached
    logged = reconfigure_ledgers({0: led}, [ORG, replace(ADS, limit=20 * NANO)], 1, lambda q: float(NOON + 240))
    assert logged[0]["rearmed"] == [50.0, 80.0]
    assert led.crossings(now=NOON + 300) == []
    led.apply_judge_spend("team=ads", NOON + 240, [5 * NANO, 0, 0, 0, 0, 1], {0: 2})
    assert [e.threshold for e in led.crossings(now=NOON + 360)] == [50.0]
    # persisted: the change log and the spec survive a restart of the ledger
    state = led.checkpoint()
    assert len(state["chg|ads"]) == 3 and state["spec|ads"]["limit"] == 20 * NANO


def test_reconfigure_gives_each_partition_its_own_budgets_and_logs_created_and_removed() -> None:
    n = 4
    search = BudgetSpec("search", (("team", "search"),), "usd", 3 * NANO, period="day")
    ledgers = {q: BudgetLedger(60, []) for q in range(n)}
    for led in ledgers.values():
        led.checkpoint()  # synced, as in the worker after its first window
    logged = reconfigure_ledgers(ledgers, [ADS, search], n)
    owners = {judge_partition("team=ads", n), judge_partition("team=search", n)}
    assert {q for q, led in ledgers.items() if led.budgets} == owners
    assert sorted((e["budget"], e["change"]) for e in logged) == [("ads", "created"), ("search", "created")]
    logged = reconfigure_ledgers(ledgers, [search], n)
    assert [(e["budget"], e["change"]) for e in logged] == [("ads", "removed")]
    assert "ads" not in ledgers[judge_partition("team=ads", n)].budgets


def test_budget_rows_show_the_new_unallocated_remainder() -> None:
    org = replace(ORG, limit=50 * NANO)
    share = replace(ADS, parent="org")
    led = BudgetLedger(60, [org, share])
    led.crossings(now=NOON)
    [row] = budget_rows({0: led}, [org, share], NOON, "org")
    assert row["unallocated_base"] == 40 * NANO
    reconfigure_ledgers({0: led}, [org, replace(share, limit=30 * NANO)], 1)
    [row] = budget_rows({0: led}, [org, replace(share, limit=30 * NANO)], NOON, "org")
    assert row["unallocated_base"] == 20 * NANO
    [ads] = budget_rows({0: led}, [org, replace(share, limit=30 * NANO)], NOON, "ads")
    assert ads["limit_base"] == 30 * NANO and ads["changes"][-1]["fields"]["limit"]["new"] == 30 * NANO


def test_apply_reload_replaces_the_alert_policy_routing_and_mix_lines() -> None:
    judge = judge_factory(60, "default", {}, BASE.alert_policy)(0)
    led = _spent_60_pct()
    watch = MixWatch(MIX)
    deliverer = Deliverer(BASE, Metrics())
    note = budget_notification(_threshold_event(), ADS, NOON)
    assert deliverer.targets(note) == ["slack:#ads", "digest:#digest"]
    silence = {"id": "s1", "matchers": {"team": "ads"}, "starts_at": float(DAY0), "ends_at": None,
               "reason": "planned backfill", "created_by": "alice"}
    new = replace(BASE, budgets=(ORG, replace(ADS, limit=7 * NANO)),
                  alert_policy={"warning_excess_usd": 5.0, "group_by": [], "silences": [silence]},
                  routes=(Route("slack", "#ads-new", {"team": "ads"}, source="teams"), *SUBSCRIPTIONS, *DIGESTS),
                  mix_alert=replace(MIX, line=0.1))
    applied, restart = sections_changed(BASE, new)
    assert restart == []
    merged = reloaded_config(BASE, new)
    apply_reload(merged, applied, judges={0: judge}, ledgers={0: led}, mixes={0: watch}, deliverer=deliverer,
                 n_partitions=1)
    pol = judge.engine.policy
    assert isinstance(pol, AlertPolicy) and pol.warning_excess_usd == 5.0 and pol.group_by == ()
    assert [s.reason for s in pol.silences] == ["planned backfill"]
    # the silence holds a spike of the team back from now on (a planned backfill), other teams alert
    def spike(team: str) -> Signal:
        return Signal(series=f"team={team}", labels={"team": team}, window_start=NOON, window_end=NOON + 60,
                      observed_usd=90.0, expected_usd=3.0, is_anomaly=True)

    assert judge.engine.observe_window([spike("ads")]) == [] and judge.engine.skipped == ["silenced"]
    [n] = judge.engine.observe_window([spike("ml")])
    assert (n.key, n.action) == ("cost_spike:team=ml", "trigger")
    assert led.budgets["ads"].limit == 7 * NANO and led.change_log("ads")[-1]["change"] == "changed"
    assert watch.spec.line == 0.1
    assert deliverer.targets(note) == ["slack:#ads-new", "digest:#digest"]  # digests: a restart


def _threshold_event():  # type: ignore[no-untyped-def]
    led = BudgetLedger(60, [ADS])
    led.apply_judge_spend("team=ads", NOON - 60, [6 * NANO, 0, 0, 0, 0, 1], {0: 1})
    [ev] = led.crossings(now=NOON)
    return ev


def test_a_lowered_mix_line_is_looked_at_again_without_new_spend() -> None:
    from streams.budgets.mix import mix_crossings

    watch = MixWatch(replace(MIX, line=0.9))
    # $8 third-party, $2 internal: 80 %, under the 0.9 line
    watch.apply_judge_spend("team=ads|model=gpt-4o", NOON - 60, [8 * NANO, 0, 0, 0, 0, 1], {0: 1})
    watch.apply_judge_spend("team=ads|model=acme-llama", NOON - 60, [2 * NANO, 0, 0, 0, 0, 1], {0: 1})
    assert mix_crossings({0: watch}, 1, NOON) == []
    watch.reconfigure(replace(MIX, line=0.5))
    [ev] = mix_crossings({0: watch}, 1, NOON + 60)
    assert (ev.team, ev.line, round(ev.share, 3), ev.past) == ("ads", 0.5, 0.8, False)
    with pytest.raises(ValueError, match="restart"):
        watch.reconfigure(replace(MIX, internal_models=("own-*",)))
