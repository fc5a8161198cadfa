"""Over-budget decisions for gateways: the records of the ``<prefix>.budget.decisions`` topic.

tokenpulse does not proxy traffic; a gateway that wants to act on budgets reads this compacted
topic (keyed by budget name, so reading it from the start gives the latest decision per
budget) and blocks or downgrades requests while a budget's decision says so.

Pure functions; :meth:`streams.budgets.ledger.BudgetLedger.decisions` keeps the state (the last
decision published per budget) and calls them.

When a decision is published (event time: the judge's watermark ``now``):

- the budget's spend in the period holding ``now`` reaches its limit (100 %) and the budget
  has ``on_exhausted: block`` or ``downgrade``: that decision, ``until`` the period's end;
- the last decision published was ``block``/``downgrade`` and the current period is under its
  limit again -- the watermark entered a new period, the limit was raised above the spend, or
  ``on_exhausted`` was set back to ``none``: ``allow``.

Nothing else is published: a budget that never had a decision has none on the topic.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ALLOW", "ON_EXHAUSTED", "decision_record", "desired_decision"]

ON_EXHAUSTED = ("none", "block", "downgrade")
ALLOW = "allow"


def desired_decision(on_exhausted: str, spent_base: int, limit_base: int) -> str:
    """What a gateway should do for a budget with ``spent_base`` of ``limit_base`` used (both
    in the unit's integer base): ``on_exhausted`` once the limit is reached, else ``allow``
    (also when ``on_exhausted`` is ``none``)."""
    if on_exhausted not in ON_EXHAUSTED:
        raise ValueError(f"on_exhausted must be one of {', '.join(ON_EXHAUSTED)}, got {on_exhausted!r}")
    if on_exhausted != "none" and spent_base >= limit_base:
        return on_exhausted
    return ALLOW


def decision_record(
    budget: str, scope: dict[str, str], unit: str, period_id: str, period_start: int, period_end: int,
    spent: float, limit: float, decision: str, now: float,
) -> dict[str, Any]:
    """One message of the decisions topic (its key is the budget name). ``spent`` and
    ``limit`` are in the unit (USD or tokens); times are epoch seconds; ``until`` is the end of
    the period the decision is about (a new period starts under its limit)."""
    return {
        "budget": budget,
        "scope": dict(scope),
        "unit": unit,
        "period_id": period_id,
        "period_start": period_start,
        "period_end": period_end,
        "spent": spent,
        "limit": limit,
        "decision": decision,
        "decided_at": float(now),
        "until": period_end,
    }
