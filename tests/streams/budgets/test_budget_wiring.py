"""What the worker builds from the ledger: budget notifications for the outbox and the rows of
``/api/budgets`` (the Faust glue itself is covered by tests/integration/test_budgets.py)."""

from __future__ import annotations

import orjson

from alerts import Notification, pagerduty_event, slack_blocks
from streams.budgets.ledger import BudgetLedger, BudgetSpec, budget_notification
from streams.ingest.windows import NANO
from streams.worker.web import budget_rows

DAY0 = 1_764_115_200  # 2025-11-26 00:00 UTC
ADS = BudgetSpec("org/ads", (("team", "ads"),), "usd", 10 * NANO, period="day", parent="org",
                 thresholds=(50.0, 80.0, 100.0), forecast_alert=False)
ORG = BudgetSpec("org", (), "usd", 100 * NANO, period="day", forecast_alert=False)
SEARCH = BudgetSpec("org/search", (("team", "search"),), "usd", 30 * NANO, period="day", parent="org")


def test_threshold_events_become_notifications_with_a_stable_key_and_seq() -> None:
    led = BudgetLedger(60, [ADS])
    w = DAY0 + 12 * 3600
    led.apply_judge_spend("team=ads", w, [int(8.5 * NANO), 1000, 100, 0, 0, 3], {0: 7})
    events = led.crossings(now=w + 60)
    assert [(e.kind, e.threshold) for e in events] == [("threshold", 50.0), ("threshold", 80.0)]
    notes = [budget_notification(e, ADS, w + 60) for e in events]
    n = notes[1]
    assert (n.key, n.rule, n.action, n.severity, n.page) == (
        "budget:org/ads:2025-11-26:80", "budget_threshold", "trigger", "warning", False)
    assert notes[0].severity == "info"
    assert n.seq == (w + 60) * 1000 and n.series == "team=ads" and n.labels == {"team": "ads"}
    assert (n.period_start, n.period_end, n.started_at) == (DAY0, DAY0 + 86400, DAY0)
    assert (n.budget, n.period_id, n.spent, n.limit, n.pct_used, n.threshold, n.unit) == (
        "org/ads", "2025-11-26", 8.5, 10.0, 85.0, 80.0, "usd")
    assert n.days_left == 0.5 - 60 / 86400
    # through the outbox as JSON, rendered by every sink
    back = Notification.from_dict(orjson.loads(orjson.dumps(n.to_dict())))
    assert back == n
    assert "*80% of the budget reached.*" in slack_blocks(back)[1][1]["text"]["text"]
    assert pagerduty_event(back, "k")["payload"]["custom_details"]["pct_used"] == 85.0


def test_forecast_and_resolve_share_the_key_and_the_thread() -> None:
    spec = BudgetSpec("ads", (("team", "ads"),), "usd", 10 * NANO, period="day", thresholds=(100.0,))
    led = BudgetLedger(60, [spec])
    noon = DAY0 + 12 * 3600
    led.apply_judge_spend("team=ads", noon - 60, [int(7 * NANO), 0, 0, 0, 0, 1], {0: 1})
    [ev] = led.crossings(now=noon)
    assert ev.kind == "forecast"
    trig = budget_notification(ev, spec, noon)
    assert (trig.rule, trig.action, trig.key) == ("budget_forecast", "trigger", "budget_burn:ads:2025-11-26")
    assert trig.projected_total > 10 and trig.threshold is None
    # the limit is raised: no longer projected to overrun
    led.configure([BudgetSpec("ads", (("team", "ads"),), "usd", 1000 * NANO, period="day", thresholds=(100.0,))],
                  now=noon + 60)
    [res] = led.crossings(now=noon + 60)
    n = budget_notification(res, led.budgets["ads"], noon + 60)
    assert (n.action, n.reason, n.key, n.started_at) == ("resolve", "resolved", trig.key, trig.started_at)
    assert n.seq > trig.seq


def test_budget_rows_are_exact_and_show_the_unallocated_remainder() -> None:
    specs = [ORG, ADS, SEARCH]
    led0 = BudgetLedger(60, [ORG, ADS])
    led1 = BudgetLedger(60, [SEARCH])
    w = DAY0 + 6 * 3600
    led0.apply_judge_spend("team=ads", w, [5_123_456_789, 0, 0, 0, 0, 2], {1: 3})
    led0.apply_judge_spend("team=ads", w, [5_123_456_789, 0, 0, 0, 0, 2], {1: 3})  # redelivered
    led0.apply_judge_spend("org", w, [5_123_456_790, 0, 0, 0, 0, 2], {1: 3})
    led0.crossings(now=w + 60)
    rows = {r["budget"]: r for r in budget_rows({0: led0, 1: led1}, specs, now=w + 3600)}
    assert sorted(rows) == ["org", "org/ads", "org/search"]
    ads = rows["org/ads"]
    assert (ads["spent_base"], ads["limit_base"], ads["fired"], ads["partition"]) == (5_123_456_789, 10 * NANO, [50.0], 0)
    assert ads["spent"] == 5.123456789 and ads["pct_used"] == 51.2346
    assert (ads["period_id"], ads["period_start"], ads["period_end"]) == (
        "2025-11-26", "2025-11-26T00:00:00Z", "2025-11-27T00:00:00Z")
    assert ads["days_left"] == round(17 / 24, 4) and "unallocated" not in ads
    assert set(ads["forecast"]) == {"projected_total", "projected_pct", "exhaustion_at", "breach", "method", "note"}
    assert rows["org"]["unallocated"] == 60.0 and rows["org"]["unallocated_base"] == 60 * NANO
    assert rows["org/search"]["spent_base"] == 0 and rows["org/search"]["fired"] == []
    [one] = budget_rows({0: led0, 1: led1}, specs, now=w + 3600, budget="org/ads")
    assert one["periods"] == ["2025-11-26"] and one["changes"][0]["change"] == "created"
    orjson.dumps(rows)


def test_a_crash_before_the_checkpoint_replays_the_same_notification() -> None:
    """The worker sends a crossing to the outbox, then checkpoints the ledger; killed in
    between, it restores the older state and the replayed windows message fires the same
    key with the same seq, which delivery skips as already sent."""
    store: dict[str, object] = {}
    led = BudgetLedger(60, [ADS])
    w = DAY0 + 12 * 3600
    led.apply_judge_spend("team=ads", w, [int(4 * NANO), 0, 0, 0, 0, 1], {0: 1})
    assert led.crossings(now=w + 60) == []
    store.update(orjson.loads(orjson.dumps(led.checkpoint())))

    def replay(ledger: BudgetLedger) -> list[Notification]:
        ledger.apply_judge_spend("team=ads", w + 60, [int(1.5 * NANO), 0, 0, 0, 0, 1], {0: 2})
        return [budget_notification(e, ADS, w + 120) for e in ledger.crossings(now=w + 120)]

    sent = replay(led)  # to the outbox; then the crash, before led.checkpoint()
    again = BudgetLedger(60, [ADS])
    again.restore(store.items())
    resent = replay(again)
    assert [(n.key, n.seq) for n in resent] == [(n.key, n.seq) for n in sent] == [
        ("budget:org/ads:2025-11-26:50", (w + 120) * 1000)]
    assert again.spent("org/ads", "2025-11-26") == int(5.5 * NANO)
    # once checkpointed, a redelivery of the same message neither counts nor fires again
    store.update(orjson.loads(orjson.dumps(again.checkpoint())))
    third = BudgetLedger(60, [ADS])
    third.restore(store.items())
    assert replay(third) == [] and third.spent("org/ads", "2025-11-26") == int(5.5 * NANO)
