"""Over-budget decisions: the pure record builder, and when the ledger publishes block /
downgrade / allow (and that a restart never contradicts what was published)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from streams.budgets.ledger import BudgetLedger, BudgetSpec
from streams.budgets.decisions import decision_record, desired_decision
from streams.ingest.windows import NANO
from tokenpulse.policy import PolicyError, parse_policy

ADS = {"team": "ads"}
DAY0 = int(datetime(2026, 3, 10, tzinfo=UTC).timestamp())
DAY = 86400


def spec(on_exhausted: str = "block", usd: int = 10, **kw: object) -> BudgetSpec:
    return BudgetSpec("ads-daily", (("team", "ads"),), "usd", usd * NANO, period="day",
                      on_exhausted=on_exhausted, forecast_alert=False, **kw)  # type: ignore[arg-type]


def roundtrip(led: BudgetLedger, specs: list[BudgetSpec], store: dict[str, object]) -> BudgetLedger:
    for k, v in led.checkpoint().items():
        if v is None:
            store.pop(k, None)
        else:
            store[k] = v
    fresh = BudgetLedger(window_seconds=led.window_seconds, specs=specs)
    fresh.restore(json.loads(json.dumps(store)).items())
    return fresh


def test_desired_decision() -> None:
    assert desired_decision("block", 10, 10) == "block"  # 100 % exactly
    assert desired_decision("downgrade", 11, 10) == "downgrade"
    assert desired_decision("block", 9, 10) == "allow"
    assert desired_decision("none", 50, 10) == "allow"
    with pytest.raises(ValueError, match="on_exhausted"):
        desired_decision("stop", 1, 1)


def test_decision_record_schema() -> None:
    rec = decision_record("ads-daily", {"team": "ads"}, "usd", "2026-03-10", DAY0, DAY0 + DAY,
                          10.5, 10.0, "block", DAY0 + 3600)
    assert rec == {
        "budget": "ads-daily", "scope": {"team": "ads"}, "unit": "usd", "period_id": "2026-03-10",
        "period_start": DAY0, "period_end": DAY0 + DAY, "spent": 10.5, "limit": 10.0,
        "decision": "block", "decided_at": float(DAY0 + 3600), "until": DAY0 + DAY,
    }
    json.dumps(rec)  # JSON as it is


def test_block_at_100_then_allow_in_the_next_period() -> None:
    led = BudgetLedger(60, [spec()])
    led.apply(ADS, DAY0 + 600, 6 * NANO, 0, source=0, seq=1)
    assert led.decisions(DAY0 + 660) == []  # 60 %: nothing to say
    led.apply(ADS, DAY0 + 720, 4 * NANO, 0, source=0, seq=2)  # exactly 100 %
    [block] = led.decisions(DAY0 + 780)
    pid = led.status("ads-daily", DAY0 + 780).period_id
    assert block["decision"] == "block" and block["budget"] == "ads-daily" and block["scope"] == ADS
    assert block["period_id"] == pid and block["until"] == block["period_end"] == DAY0 + DAY
    assert block["spent"] == pytest.approx(10.0) and block["limit"] == 10.0 and block["decided_at"] == DAY0 + 780
    led.apply(ADS, DAY0 + 840, 1 * NANO, 0, source=0, seq=3)
    assert led.decisions(DAY0 + 900) == []  # already blocked: once per period
    assert led.decisions(DAY0 + DAY - 60) == []
    # the watermark enters the next day: the block is lifted, even before any spend there
    [allow] = led.decisions(DAY0 + DAY + 60)
    assert allow["decision"] == "allow" and allow["period_start"] == DAY0 + DAY and allow["spent"] == 0.0
    assert allow["period_id"] != pid
    assert led.decisions(DAY0 + DAY + 120) == []


def test_late_spend_in_a_past_period_does_not_block_the_current_one() -> None:
    led = BudgetLedger(60, [spec()])
    led.apply(ADS, DAY0 + DAY + 60, 1 * NANO, 0, source=0, seq=1)
    led.apply(ADS, DAY0 + 60, 20 * NANO, 0, source=0, seq=2)  # yesterday, over its limit
    assert led.decisions(DAY0 + DAY + 120) == []


def test_raised_limit_lifts_and_none_never_publishes() -> None:
    led = BudgetLedger(60, [spec("downgrade")])
    led.apply(ADS, DAY0, 12 * NANO, 0, source=0, seq=1)
    assert [d["decision"] for d in led.decisions(DAY0 + 60)] == ["downgrade"]
    led.configure([spec("downgrade", usd=20)], now=DAY0 + 120)
    assert [d["decision"] for d in led.decisions(DAY0 + 120)] == ["allow"]
    led.apply(ADS, DAY0 + 180, 8 * NANO, 0, source=0, seq=2)  # 20 of 20 again
    assert [d["decision"] for d in led.decisions(DAY0 + 240)] == ["downgrade"]
    # turning the setting off lifts what it had published; then nothing more
    led.configure([spec("none", usd=20)], now=DAY0 + 300)
    assert [d["decision"] for d in led.decisions(DAY0 + 300)] == ["allow"]
    assert led.decisions(DAY0 + DAY + 60) == []
    quiet = BudgetLedger(60, [spec("none")])
    quiet.apply(ADS, DAY0, 50 * NANO, 0, source=0, seq=1)
    assert quiet.decisions(DAY0 + 60) == [] and not any(k.startswith("dec|") for k in quiet.checkpoint())


def test_restart_resends_the_same_decision_never_a_contradicting_one() -> None:
    specs = [spec()]
    led = BudgetLedger(60, specs)
    store: dict[str, object] = {}
    led.apply(ADS, DAY0, 5 * NANO, 0, source=0, seq=1)
    assert led.decisions(DAY0 + 60) == []
    led = roundtrip(led, specs, store)  # checkpoint before the crossing
    led.apply(ADS, DAY0 + 60, 6 * NANO, 0, source=0, seq=2)
    [first] = led.decisions(DAY0 + 120)
    # crash before the checkpoint: the replay on the restored state gives the same decision
    again = BudgetLedger(60, specs)
    again.restore(json.loads(json.dumps(store)).items())
    again.apply(ADS, DAY0 + 60, 6 * NANO, 0, source=0, seq=2)
    assert again.decisions(DAY0 + 120) == [first]
    # checkpointed: a restart neither repeats it nor lifts it within the period
    led = roundtrip(led, specs, store)
    led.apply(ADS, DAY0 + 60, 6 * NANO, 0, source=0, seq=2)  # redelivered: skipped
    assert led.decisions(DAY0 + 180) == []
    assert [d["decision"] for d in led.decisions(DAY0 + DAY)] == ["allow"]


def test_spec_and_change_log() -> None:
    with pytest.raises(ValueError, match="on_exhausted"):
        spec("stop")
    assert "on_exhausted" not in spec("none").to_record()  # older saved specs compare equal
    led = BudgetLedger(60, [spec("none")])
    led.checkpoint()
    [entry] = led.configure([spec("block")], now=DAY0)
    assert entry["fields"] == {"on_exhausted": {"old": None, "new": "block"}}
    assert replace(spec(), on_exhausted="downgrade").to_record()["on_exhausted"] == "downgrade"


POLICY = """budgets:
  - name: a
    amount: 10
    on_exhausted: {value}
    allocations:
      - {{team: x, amount: 4}}
"""


def test_policy_on_exhausted() -> None:
    specs = parse_policy(POLICY.format(value="block"), "p.yaml").budget_specs()
    assert [(s.name, s.on_exhausted) for s in specs] == [("a", "block"), ("a/x", "block")]
    assert parse_policy("budgets:\n  - name: a\n    amount: 10\n").budget_specs()[0].on_exhausted == "none"
    with pytest.raises(PolicyError) as exc:
        parse_policy(POLICY.format(value="stop"), "p.yaml")
    assert "p.yaml:4:" in str(exc.value) and "budgets.0.on_exhausted" in str(exc.value), str(exc.value)
