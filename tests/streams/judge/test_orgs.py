"""Several orgs in one deployment: events of two orgs with a team of the same name are counted,
judged, alerted and budgeted apart, from the ingest through the judge step."""

from __future__ import annotations

from alerts import AlertEngine, AlertPolicy
from detectors import make_detector
from streams.budgets.ledger import BudgetLedger, BudgetSpec
from streams.common.periods import Period
from streams.ingest.records import UsageEvent
from streams.ingest.windows import NANO, IngestPartition
from streams.judge.core import JudgeCore
from streams.judge.step import judge_step

W = 60
T0 = 1_767_600_000 - 1_767_600_000 % W


def ev(i: int, org: str, usd: float, w: int) -> UsageEvent:
    return UsageEvent(event_id=f"{org}-{w}-{i}", ts=float(T0 + w * W + 1), org=org, team="ads", user="u1",
                      provider="openai", model="gpt-4o", input_tokens=10, output_tokens=1, cost_usd=usd)


def test_two_orgs_with_a_team_of_one_name_share_no_series_alert_or_budget() -> None:
    ingest = IngestPartition(partition=0, window_seconds=W, lateness=0, idle_grace=10**9)
    judge = JudgeCore(
        partition=0, window_seconds=W,
        make_detector=lambda: make_detector("default", window_seconds=W, min_excess_usd=1, min_excess_root=0,
                                            min_excess_minutes=0, min_requests=0,
                                            component_params={"seasonal": {"min_history": 5}}),
        engine=AlertEngine(AlertPolicy(min_excess_usd=1, page_min_excess_usd=5)),
    )
    budgets = [BudgetSpec(name="ads", scope=(("team", "ads"),), unit="usd", limit=10**6 * NANO, period="month", tz="UTC"),
               BudgetSpec(name="acme-ads", scope=(("org", "acme"), ("team", "ads")), limit=10**6 * NANO,
                          unit="usd", period="month", tz="UTC")]
    ledger = BudgetLedger(W, budgets)
    notes, spend = [], {}
    for w in range(25):
        # the default org's ads team spends $1 a window throughout; acme's spikes to $40 at window 20
        ingest.add_events([ev(0, "default", 1.0, w), ev(0, "acme", 40.0 if w == 20 else 1.0 + 0.1 * (w % 3), w)],
                          wall_now=T0 + w * W + 1)
        parts = ingest.advance(T0 + (w + 1) * W + 1)
        step = judge_step(judge, ledger, None, 0, 1, ingest.closed_until, parts, seq=w, wall=T0 + (w + 1) * W)
        notes += step.notifications
        for series, _, sums, _ in step.judged.spend:
            spend[series] = spend.get(series, 0) + sums[0]
    # the last window is still open (the clock has not passed it): 24 judged windows
    assert spend["team=ads"] == 24 * NANO and spend["org"] == 24 * NANO
    assert spend["org=acme|team=ads"] == spend["org=acme"] > 40 * NANO
    fired = {n.key for n in notes if n.action == "trigger"}
    assert fired and fired <= {"cost_spike:org=acme", "cost_spike:org=acme|team=ads"}  # the default org's ads: none
    assert all(n.labels.get("org") == "acme" for n in notes)
    month = Period("month", "UTC").period_id(T0)
    assert ledger.spent("ads", month) == 24 * NANO
    assert ledger.spent("acme-ads", month) == spend["org=acme|team=ads"]
