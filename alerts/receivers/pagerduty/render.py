"""PagerDuty's rendering: a notification as an Events API v2 event.

``update`` notifications are sent as ``trigger``: PagerDuty folds them into the open incident
of the same ``dedup_key`` (the alert key), and the resolve closes it. ``custom_details`` carry
the numbers on-call needs, not prose.
"""

from __future__ import annotations

import math
from typing import Any

from alerts.model import BudgetNotification, MixNotification, Notification, SpikeNotification, contributor_rank
from alerts.sinks import SecretLike, reveal
from alerts.text import budget_figures, fit_key, iso, num, pct, short, signed_usd, usd, when

PD_SUMMARY_MAX = 1024
PD_DEDUP_KEY_MAX = 255
PD_FIELD_MAX = 255  # component/group/class: no documented limit, keep them readable
PD_CONTRIBUTORS_MAX = 20
PD_MEMBERS_MAX = 20


def pd_dedup_key(key: str) -> str:
    """``key`` itself when it fits PagerDuty's 255 characters, else a stable shortened form."""
    return fit_key(key, PD_DEDUP_KEY_MAX)


def pd_summary(n: Notification) -> str:
    if isinstance(n, BudgetNotification):
        x = budget_figures(n)
        runs_out = f"runs out {x['exhausted']}" if x["exhausted"] else "does not run out this period"
        s = (f"[{n.severity}] {n.title}: spent {x['spent']} of {x['limit']} ({x['pct_used']} used, "
             f"{x['days_left']} days left); forecast {x['projected']} ({x['projected_pct']}), {runs_out}")
    elif isinstance(n, SpikeNotification):
        s = (f"[{n.severity}] {n.title}: observed {usd(n.observed_usd)} vs expected {usd(n.expected_usd)} "
             f"per window (excess {signed_usd(n.excess_usd)}, {pct(n.excess_pct)})")
    else:
        s = f"[{n.severity}] {n.title}"
    return _short(s, PD_SUMMARY_MAX)


def _short(text: str, limit: int = PD_FIELD_MAX) -> str:
    return short(text, limit)


def _labels(n: Notification) -> dict[str, str]:
    return {_short(k, 100): _short(v, 300) for k, v in list(n.labels.items())[:20]}


def _figure(value: Any, nd: int = 6) -> float | None:
    v = num(value)
    return round(v, nd) if math.isfinite(v) else None


def custom_details(n: Notification) -> dict[str, Any]:
    """``custom_details``: the numbers on-call needs, by kind, not prose."""
    if isinstance(n, SpikeNotification):
        return _spike_details(n)
    if isinstance(n, BudgetNotification):
        return _budget_details(n)
    details: dict[str, Any] = {"series": _short(n.series, 1000), "labels": _labels(n), "reason": n.reason,
                               "seq": n.seq}
    if isinstance(n, MixNotification):
        details.update(period_id=_short(n.period_id, 40), share_pct=_figure(n.share_pct, 2),
                       line_pct=_figure(n.line_pct, 2), previous_share_pct=_figure(n.previous_share_pct, 2),
                       third_party_usd=_figure(n.third_party_usd), internal_usd=_figure(n.internal_usd))
    return details


def pagerduty_event(n: Notification, routing_key: str | SecretLike) -> dict[str, Any]:
    """The Events API v2 body for ``n``. ``update`` notifications are sent as ``trigger``:
    PagerDuty folds them into the open incident of the same ``dedup_key``."""
    event: dict[str, Any] = {
        "routing_key": reveal(routing_key),
        "event_action": "resolve" if n.action == "resolve" else "trigger",
        "dedup_key": pd_dedup_key(n.key),
    }
    if n.action == "resolve":
        return event
    payload: dict[str, Any] = {
        "summary": pd_summary(n),
        "source": "tokenpulse",
        "severity": n.severity,
        "timestamp": iso(n.fired_at),
        "component": _short(n.series),
        "class": _short(n.rule),
        "custom_details": custom_details(n),
    }
    if n.team:
        payload["group"] = _short(n.team)
    event["payload"] = payload
    event["client"] = "tokenpulse"
    if n.dashboard_url and n.dashboard_url.startswith(("http://", "https://")):
        event["client_url"] = n.dashboard_url
        event["links"] = [{"href": n.dashboard_url, "text": "tokenpulse dashboard"}]
    return event


def _spike_details(n: SpikeNotification) -> dict[str, Any]:
    contributors = sorted(n.top_contributors, key=contributor_rank)
    details: dict[str, Any] = {
        "series": _short(n.series, 1000),
        "labels": _labels(n),
        "observed_usd": round(n.observed_usd, 6),
        "expected_usd": round(n.expected_usd, 6),
        "excess_usd": round(n.excess_usd, 6),
        "excess_pct": None if n.excess_pct is None else round(n.excess_pct, 2),
        "incident_excess_usd": None if n.impact_usd is None else round(n.impact_usd, 6),
        "why": _short(n.explanation, 500),
        "window_start": iso(n.window_start),
        "window_end": iso(n.window_end),
        "started_at": iso(n.started_at),
        "reason": n.reason,
        "seq": n.seq,
        "detector": n.detector,
        "top_contributors": [_pd_contributor(c) for c in contributors[:PD_CONTRIBUTORS_MAX]],
    }
    if n.members:
        details["members"] = [
            {"series": _short(str(m.get("series", "")), 300), "status": str(m.get("status", "")),
             "severity": str(m.get("severity", "")), "observed_usd": round(num(m.get("observed_usd")), 6),
             "expected_usd": round(num(m.get("expected_usd")), 6), "excess_usd": round(num(m.get("excess_usd")), 6)}
            for m in n.members[:PD_MEMBERS_MAX]
        ]
    if len(contributors) > PD_CONTRIBUTORS_MAX:
        details["other_contributors"] = len(contributors) - PD_CONTRIBUTORS_MAX
    return details


def _budget_details(n: BudgetNotification) -> dict[str, Any]:
    return {
        "budget": _short(n.budget, 300),
        "series": _short(n.series, 1000),
        "labels": _labels(n),
        "unit": _short(n.unit, 10),
        "period": _short(n.period, 10),
        "tz": _short(n.tz, 60),
        "period_id": _short(n.period_id, 40),
        "period_start": when(n.period_start, iso),
        "period_end": when(n.period_end, iso),
        "spent": _figure(n.spent, 9),
        "limit": _figure(n.limit, 9),
        "pct_used": _figure(n.pct_used, 2),
        "days_left": _figure(n.days_left, 2),
        "threshold_pct": _figure(n.threshold, 2),
        "projected_total": _figure(n.projected_total, 6),
        "projected_pct": _figure(n.projected_pct, 2),
        "exhaustion_at": when(n.exhaustion_ts, iso),
        "how": _short(n.explanation, 500),
        "reason": n.reason,
        "seq": n.seq,
    }


def _pd_contributor(c: Any) -> dict[str, Any]:
    out = {"kind": _short(str(c.get("kind", "")), 20), "name": _short(str(c.get("name", "")), 200),
           "usd": round(float(c.get("usd", 0.0)), 6)}
    for k in ("expected_usd", "excess_usd"):
        if c.get(k) is not None:
            out[k] = round(float(c[k]), 6)
    return out
