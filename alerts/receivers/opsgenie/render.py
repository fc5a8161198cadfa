"""Opsgenie's rendering: a notification as an Alert API v2 request.

A trigger or an update creates the alert (``POST /v2/alerts``) with ``alias`` = the alert key:
Opsgenie keeps one open alert per alias, so an update or a redelivered trigger is folded into
it (its count goes up) rather than opening another. The resolve closes it by alias
(``POST /v2/alerts/{alias}/close?identifierType=alias``). Priority comes from the severity:
critical P1, warning P3, info P5.

Limits (Opsgenie's): ``message`` 130 characters, ``alias`` 512, ``description`` 15,000,
``entity`` 512, ``source`` 100, up to 20 ``tags`` of 50 characters, ``details`` string values
only (8,000 characters in all, kept well under here).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote

from alerts.model import BudgetNotification, MixNotification, Notification, SpikeNotification, contributor_rank
from alerts.text import budget_figures, duration, fit_key, iso, pct, short, signed_usd, usd, utc, window_range

MESSAGE_MAX = 130
ALIAS_MAX = 512
DESCRIPTION_MAX = 15000
ENTITY_MAX = 512
TAG_MAX = 50
DETAIL_MAX = 300  # per value: 20 or so of them stay under Opsgenie's 8,000 in all
CONTRIBUTORS_LISTED = 10

PRIORITY = {"critical": "P1", "warning": "P3", "info": "P5"}


def alias_of(n: Notification) -> str:
    """The alias: the alert key, shortened stably when it is longer than Opsgenie allows."""
    return fit_key(n.key, ALIAS_MAX)


def close_path(n: Notification) -> str:
    """The close request's path and query, the alias percent-encoded (a key holds ``=``,
    ``|`` and ``:``, and a team name may hold anything)."""
    return f"/v2/alerts/{quote(alias_of(n), safe='')}/close?identifierType=alias"


def _what(n: Notification) -> list[str]:
    """The lines that say what happened, by kind."""
    if isinstance(n, BudgetNotification):
        x = budget_figures(n)
        return [f"Budget {n.budget}, period {n.period_id}: spent {x['spent']} of {x['limit']} ({x['pct_used']} used), "
                f"{x['days_left']} days left.",
                f"Forecast {x['projected']} by the end of the period ({x['projected_pct']}); "
                + (f"runs out {x['exhausted']}." if x["exhausted"] else "does not run out this period.")]
    if isinstance(n, MixNotification):
        return [f"Third-party models at {n.share_pct:.1f}% of the team's spend in {n.period_id}, past the line of "
                f"{n.line_pct:.1f}%."]
    if not isinstance(n, SpikeNotification):
        return []
    lines = [f"Observed {usd(n.observed_usd)} per window vs expected {usd(n.expected_usd)}: "
             f"excess {signed_usd(n.excess_usd)} ({pct(n.excess_pct)})."]
    if n.impact_usd:
        lines.append(f"Incident so far: {signed_usd(n.impact_usd)} over expected since {utc(n.started_at)}.")
    lines.append(f"Window: {window_range(n.window_start, n.window_end)}.")
    if n.action != "trigger":
        lines.append(f"Firing for {duration(n.fired_at - n.started_at)}.")
    if n.explanation:
        lines.append(f"Why: {n.explanation}")
    contributors = sorted(n.top_contributors, key=contributor_rank)[:CONTRIBUTORS_LISTED]
    if contributors:
        lines.append("Top contributors: " + "; ".join(
            f"{c.get('kind', '')} {c.get('name', '')} {usd(float(c.get('usd', 0.0)))}" for c in contributors))
    if n.members:
        lines.append("Alerts in this group: " + "; ".join(
            f"{m.get('series', '')} ({m.get('status', '')})" for m in n.members[:CONTRIBUTORS_LISTED]))
    return lines


def _description(n: Notification) -> str:
    lines = [*_what(n), f"Series: {n.series}"]
    if n.labels:
        lines.append("Labels: " + ", ".join(f"{k}={v}" for k, v in n.labels.items()))
    if n.dashboard_url:
        lines.append(f"Dashboard: {n.dashboard_url}")
    return short("\n".join(lines), DESCRIPTION_MAX)


def _details(n: Notification) -> dict[str, str]:
    details: dict[str, Any] = {
        "series": n.series,
        "rule": n.rule,
        "reason": n.reason,
        "seq": n.seq,
        "started_at": iso(n.started_at),
        **{f"label.{k}": v for k, v in list(n.labels.items())[:8]},
    }
    if isinstance(n, BudgetNotification):
        x = budget_figures(n)
        details.update(budget=n.budget, period=n.period_id, spent=x["spent"], limit=x["limit"],
                       pct_used=x["pct_used"], forecast=x["projected"])
    elif isinstance(n, SpikeNotification):
        details.update(observed_usd=round(n.observed_usd, 6), expected_usd=round(n.expected_usd, 6),
                       excess_usd=round(n.excess_usd, 6), window_end=iso(n.window_end))
        if n.excess_pct is not None:
            details["excess_pct"] = round(n.excess_pct, 2)
        if n.impact_usd is not None:
            details["incident_excess_usd"] = round(n.impact_usd, 6)
        if n.detector:
            details["detector"] = n.detector
    if n.dashboard_url:
        details["dashboard"] = n.dashboard_url
    return {short(str(k), 100): short(str(v), DETAIL_MAX) for k, v in details.items()}


def create_body(n: Notification) -> dict[str, Any]:
    """The ``POST /v2/alerts`` body of a trigger or an update."""
    tags = ["tokenpulse", n.rule, f"severity:{n.severity}", *(f"{k}:{v}" for k, v in list(n.labels.items())[:8])]
    return {
        "message": short(n.title, MESSAGE_MAX),
        "alias": alias_of(n),
        "description": _description(n),
        "priority": PRIORITY.get(n.severity, "P3"),
        "source": "tokenpulse",
        "entity": short(n.series, ENTITY_MAX),
        "tags": [short(t, TAG_MAX) for t in tags][:20],
        "details": _details(n),
    }


def close_body(n: Notification) -> dict[str, Any]:
    """The close request's body: who closed it and a note saying why."""
    back = n.ended_at if n.ended_at is not None else n.fired_at
    return {"source": "tokenpulse", "user": "tokenpulse",
            "note": short(f"Back to normal after {duration(back - n.started_at)} (since {utc(back)}).", 25000)}
