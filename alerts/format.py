"""Rendering a notification for each receiver: Slack Block Kit and PagerDuty Events v2.

Series names, label values, user and model names all come from usage events, i.e. from
anyone who can call the gateway. In Slack mrkdwn they are escaped (``&``, ``<``, ``>``) so a
team called ``<!channel>`` cannot ping a channel and ``<https://x|y>`` cannot disguise a
link. The header block is ``plain_text``, which Slack shows literally, so it is not escaped.

Budget notifications (``Notification.budget`` set) render their own numbers: budget, period,
spent of limit, % used, days left, the forecast and the exhaustion date; third-party share
notifications (``Notification.mix`` set) the share against its line, the previous period's and
the top third-party models.

Slack's limits are enforced here rather than discovered as ``invalid_blocks`` at 3 am:
header ≤ 150 characters, section text ≤ 3000, ≤ 50 blocks. Lengths are counted in UTF-16
code units, which is never less than Python's count, so emoji cannot push a text over.
"""

from __future__ import annotations

import hashlib
import math
from datetime import UTC, datetime
from typing import Any

from alerts.model import Notification, contributor_rank
from alerts.sinks import SecretLike, reveal

HEADER_MAX = 150
SECTION_MAX = 3000
CONTEXT_ELEMENT_MAX = 2000
BLOCKS_MAX = 50
FALLBACK_MAX = 3000  # Slack truncates at 40k; a notification preview never needs more
NAME_MAX = 120  # one user, model or label value in a list
SERIES_MAX = 400
EXPLANATION_MAX = 600  # the detector's reason: one sentence
CONTRIBUTORS_SHOWN = 10

PD_SUMMARY_MAX = 1024
PD_DEDUP_KEY_MAX = 255
PD_FIELD_MAX = 255  # component/group/class: no documented limit, keep them readable
PD_CONTRIBUTORS_MAX = 20

_REASON_TEXT = {"first": "first notification", "worsened": "worsened", "repeat": "repeat", "resolved": "resolved"}
_EMOJI = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}


# -- text helpers --------------------------------------------------------------------------
def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack parses as control sequences in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _u16(text: str) -> int:
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int) -> str:
    """Shorten ``text`` to at most ``limit`` UTF-16 units, marking the cut with an ellipsis.

    Safe on escaped text: a cut never leaves half an entity such as ``&am``.
    """
    if _u16(text) <= limit:
        return text
    budget = limit - 1  # room for "…"
    out: list[str] = []
    used = 0
    for ch in text:
        w = 2 if ord(ch) > 0xFFFF else 1
        if used + w > budget:
            break
        out.append(ch)
        used += w
    s = "".join(out)
    amp = s.rfind("&")
    if amp != -1 and ";" not in s[amp:] and len(s) - amp < 6:
        s = s[:amp]
    return s + "…"


def _name(text: str, limit: int = NAME_MAX) -> str:
    """User-controlled text ready for mrkdwn: escaped, then shortened to ``limit`` as sent
    (an escape is up to 5 characters, so a raw limit would not bound the message)."""
    return clip(escape_mrkdwn(text), limit)


def usd(x: float) -> str:
    if not math.isfinite(x):
        return "n/a"
    sign = "-" if x < 0 else ""
    a = abs(x)
    if a >= 1 or a == 0:
        return f"{sign}${a:,.2f}"
    return f"{sign}${a:.4f}"


def signed_usd(x: float) -> str:
    return ("+" if x >= 0 else "") + usd(x)


def pct(p: float | None) -> str:
    if p is None:
        return "new spend, no baseline"
    return f"{p:+,.0f}%"


def utc(ts: float, *, date: bool = True) -> str:
    d = datetime.fromtimestamp(ts, tz=UTC)
    return d.strftime("%Y-%m-%d %H:%M UTC" if date else "%H:%M UTC")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def window_range(start: float, end: float) -> str:
    a = datetime.fromtimestamp(start, tz=UTC)
    b = datetime.fromtimestamp(end, tz=UTC)
    t = "%H:%M:%S" if a.second or b.second else "%H:%M"
    # A window ending at midnight still reads as one day: 23:55–00:00.
    same_day = a.date() == b.date() or (b - a).total_seconds() <= 86400 and b.time() == b.time().min
    b_fmt = t if same_day else f"%Y-%m-%d {t}"
    return f"{a.strftime('%Y-%m-%d ' + t)}–{b.strftime(b_fmt)} UTC"


def duration(seconds: float) -> str:
    s = max(0, round(seconds))
    if s < 60:
        return f"{s} s"
    m, _ = divmod(s, 60)
    if m < 60:
        return f"{m} min"
    h, m = divmod(m, 60)
    if h < 48:
        return f"{h} h {m} min" if m else f"{h} h"
    d, h = divmod(h, 24)
    return f"{d} d {h} h" if h else f"{d} d"


def _link(url: str | None, label: str) -> str | None:
    if not url or not url.startswith(("http://", "https://")):
        return None
    # Inside <url|label>, "|" would end the URL; & < > are escaped like any mrkdwn text.
    safe = escape_mrkdwn(url.replace("|", "%7C"))
    return f"<{safe}|{label}>"


def _pd_contributor(c: Any) -> dict[str, Any]:
    out = {"kind": _short(str(c.get("kind", "")), 20), "name": _short(str(c.get("name", "")), 200),
           "usd": round(float(c.get("usd", 0.0)), 6)}
    for k in ("expected_usd", "excess_usd"):
        if c.get(k) is not None:
            out[k] = round(float(c[k]), 6)
    return out


# -- Slack ---------------------------------------------------------------------------------
def _contributors_text(n: Notification) -> str | None:
    cs = sorted(n.top_contributors, key=contributor_rank)
    if not cs:
        return None
    lines = ["*Top contributors*" + (" (worst window)" if n.action == "resolve" else "")]
    for c in cs[:CONTRIBUTORS_SHOWN]:
        line = f"• {_name(str(c.get('kind', '')), 20)} {_name(str(c.get('name', '')))} — {usd(float(c.get('usd', 0.0)))}"
        if c.get("expected_usd") is not None:
            line += f" (usually {usd(float(c['expected_usd']))})"
        lines.append(line)
    rest = cs[CONTRIBUTORS_SHOWN:]
    if rest:
        lines.append(f"…and {len(rest)} more ({usd(sum(float(c.get('usd', 0.0)) for c in rest))})")
    return clip("\n".join(lines), SECTION_MAX)


MEMBERS_SHOWN = 15
PD_MEMBERS_MAX = 20


def _members_text(n: Notification) -> str | None:
    """The alerts ``n`` speaks for: a group's members, or the ones an org alert inhibited."""
    if not n.members:
        return None
    inhibited = [m for m in n.members if m.get("status") == "inhibited"]
    lines = ["*Also spiking, not notified separately (inhibited by this alert)*" if inhibited else
             f"*Alerts in this group ({len(n.members)})*"]
    for m in n.members[:MEMBERS_SHOWN]:
        excess = _num(m.get("excess_usd"))
        p = m.get("excess_pct")
        state = " · back to normal" if m.get("status") == "resolved" else ""
        lines.append(
            f"• {_name(str(m.get('series', '')), 200)}: {usd(_num(m.get('observed_usd')))} vs "
            f"{usd(_num(m.get('expected_usd')))} ({signed_usd(excess)}, {pct(None if p is None else _num(p))}) · "
            f"{_name(str(m.get('severity', '')), 10)}{state}"
        )
    rest = len(n.members) - MEMBERS_SHOWN
    if rest > 0:
        lines.append(f"…and {rest} more")
    return clip("\n".join(lines), SECTION_MAX)


def _labels_text(n: Notification) -> str | None:
    if not n.labels:
        return None
    parts = [f"{_name(k, 40)}={_name(v)}" for k, v in list(n.labels.items())[:10]]
    return ", ".join(parts)


# -- budgets -------------------------------------------------------------------------------
def _num(value: Any) -> float:
    """A number from a budget record written by another process: NaN when absent or not one."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def amount(x: float, unit: str) -> str:
    """A budget amount in its unit: ``$1,234.50`` or ``1,234 tokens``."""
    if unit == "usd":
        return usd(x)
    return f"{x:,.0f} tokens" if math.isfinite(x) else "n/a"


def _pct_of(x: float) -> str:
    return f"{x:,.1f}%" if math.isfinite(x) else "n/a"


def _days(x: float) -> str:
    return f"{x:,.1f}" if math.isfinite(x) else "n/a"


def _when(ts: Any, fmt: Any = utc) -> str | None:
    """A time from a budget record, or None when absent or not a representable instant."""
    t = _num(ts)
    if not math.isfinite(t):
        return None
    try:
        return str(fmt(t))
    except (OverflowError, OSError, ValueError):
        return None


def _budget_numbers(b: dict[str, Any]) -> dict[str, Any]:
    unit = str(b.get("unit") or "usd")
    return {
        "unit": unit,
        "spent": amount(_num(b.get("spent")), unit),
        "limit": amount(_num(b.get("limit")), unit),
        "pct_used": _pct_of(_num(b.get("pct_used"))),
        "days_left": _days(_num(b.get("days_left"))),
        "projected": amount(_num(b.get("projected_total")), unit),
        "projected_pct": _pct_of(_num(b.get("projected_pct"))),
        "exhausted": _when(b.get("exhaustion_ts")),
    }


def _budget_text(n: Notification) -> str:
    b = n.budget or {}
    x = _budget_numbers(b)
    lines: list[str] = []
    th = _num(b.get("threshold"))
    if n.action == "resolve":
        lines.append("*Back on track:* no longer projected to overrun the budget this period.")
    elif n.rule == "budget_threshold" and math.isfinite(th):
        lines.append(f"*{th:g}% of the budget reached.*")
    else:
        lines.append("*Projected to overrun* the budget by the end of the period.")
    lines.append(f"*Budget:* {_name(str(b.get('name', '')))} · *scope:* {_name(str(b.get('series', n.series)), SERIES_MAX)}")
    start, end = _when(b.get("period_start")), _when(b.get("period_end"))
    bounds = f": {start} – {end}" if start and end else ""
    lines.append(
        f"*Period:* {_name(str(b.get('period_id', '')), 40)} ({_name(str(b.get('period', '')), 10)}, "
        f"{_name(str(b.get('tz', '')), 60)}){bounds}"
    )
    lines.append(f"*Spent:* {x['spent']} of {x['limit']} ({x['pct_used']} used) · *days left:* {x['days_left']}")
    exhausted = f"runs out {x['exhausted']}" if x["exhausted"] else "does not run out this period"
    lines.append(f"*Forecast:* {x['projected']} by the end of the period ({x['projected_pct']}) · {exhausted}")
    if n.explanation:
        lines.append(f"*How:* {_name(n.explanation, EXPLANATION_MAX)}")
    lines.append(f"*Severity:* {n.severity}")
    labels = _labels_text(n)
    if labels:
        lines.append(f"*Labels:* {labels}")
    return clip("\n".join(lines), SECTION_MAX)


# -- model mix -----------------------------------------------------------------------------
def _share(x: Any) -> str:
    return _pct_of(_num(x)) if x is not None else "no spend"


def _mix_text(n: Notification) -> str:
    m = n.mix or {}
    lines = [
        f"*Third-party models: {_share(m.get('share_pct'))} of the team's spend*, past the line of "
        f"{_share(m.get('line_pct'))}.",
        f"*Team:* {_name(str(m.get('team', n.team or '')))} · *period:* {_name(str(m.get('period_id', '')), 40)} "
        f"({_name(str(m.get('period', '')), 10)}, {_name(str(m.get('tz', '')), 60)}) so far",
        f"*Previous period* ({_name(str(m.get('previous_period_id', '')), 40)}): {_share(m.get('previous_share_pct'))}",
        f"*Spend:* {usd(_num(m.get('third_party_usd')))} third-party, {usd(_num(m.get('internal_usd')))} internal",
    ]
    top = [t for t in (m.get("top_third_party_models") or ()) if isinstance(t, dict)][:CONTRIBUTORS_SHOWN]
    if top:
        lines.append("*Top third-party models:* " + ", ".join(
            f"{_name(str(t.get('model', '')))} {usd(_num(t.get('usd')))}" for t in top))
    lines.append(f"*Severity:* {n.severity} · not paged")
    return clip("\n".join(lines), SECTION_MAX)


def _main_text(n: Notification) -> str:
    if n.budget is not None:
        return _budget_text(n)
    if n.mix is not None:
        return _mix_text(n)
    series = _name(n.series, SERIES_MAX)
    paged = "paged on-call" if n.page else "not paged"
    lines: list[str] = []
    if n.action == "resolve":
        back = n.ended_at if n.ended_at is not None else n.fired_at
        lines.append(f"*Back to normal* after {duration(back - n.started_at)} (since {utc(back)}).")
        lines.append(f"*Series:* {series}")
        lines.append(
            f"*Worst window:* {window_range(n.window_start, n.window_end)}: observed {usd(n.observed_usd)} "
            f"vs expected {usd(n.expected_usd)}, excess {signed_usd(n.excess_usd)} ({pct(n.excess_pct)})"
        )
        if n.impact_usd:
            lines.append(f"*Incident total:* {signed_usd(n.impact_usd)} over expected")
        lines.append(f"*Severity:* {n.severity} · {paged}")
    else:
        if n.reason == "worsened":
            lines.append("*Worsened* since the last notification.")
        elif n.reason == "repeat":
            lines.append(f"*Still firing* after {duration(n.fired_at - n.started_at)}.")
        lines.append(f"*Series:* {series}")
        lines.append(
            f"*Observed:* {usd(n.observed_usd)} per window vs *expected* {usd(n.expected_usd)}"
        )
        lines.append(f"*Excess:* {signed_usd(n.excess_usd)} ({pct(n.excess_pct)})")
        if n.impact_usd:
            lines.append(f"*Incident so far:* {signed_usd(n.impact_usd)} over expected since {utc(n.started_at)}")
        if n.explanation:
            lines.append(f"*Why:* {_name(n.explanation, EXPLANATION_MAX)}")
        lines.append(f"*Severity:* {n.severity} · {paged}")
        lines.append(f"*Window:* {window_range(n.window_start, n.window_end)}")
        if n.reason != "first":
            lines.append(f"*Firing since:* {utc(n.started_at)}")
    labels = _labels_text(n)
    if labels:
        lines.append(f"*Labels:* {labels}")
    return clip("\n".join(lines), SECTION_MAX)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_MAX)}}


def header_text(n: Notification) -> str:
    emoji = "✅" if n.action == "resolve" else _EMOJI.get(n.severity, "")
    return clip(f"{emoji} {n.title}".strip(), HEADER_MAX)


def slack_text(n: Notification) -> str:
    """The fallback ``text`` (notifications, screen readers). Slack parses it: escaped."""
    emoji = "✅" if n.action == "resolve" else _EMOJI.get(n.severity, "")
    title = _name(n.title, 300)
    if n.budget is not None:
        x = _budget_numbers(n.budget)
        tail = f"spent {x['spent']} of {x['limit']} ({x['pct_used']}), forecast {x['projected']}"
        if n.action != "resolve":
            tail += f", {x['days_left']} days left"
        return clip(f"{emoji} {title}: {tail}".strip(), FALLBACK_MAX)
    if n.mix is not None:
        tail = (f"{_share(n.mix.get('share_pct'))} third-party (line {_share(n.mix.get('line_pct'))}, "
                f"previous period {_share(n.mix.get('previous_share_pct'))})")
        return clip(f"{emoji} {title}: {tail}".strip(), FALLBACK_MAX)
    if n.action == "resolve":
        back = n.ended_at if n.ended_at is not None else n.fired_at
        tail = f"back to normal after {duration(back - n.started_at)}"
    else:
        tail = (
            f"observed {usd(n.observed_usd)} vs expected {usd(n.expected_usd)} per window "
            f"({signed_usd(n.excess_usd)}, {pct(n.excess_pct)})"
        )
    return clip(f"{emoji} {title}: {tail}".strip(), FALLBACK_MAX)


def slack_blocks(n: Notification, *, compact: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and Block Kit blocks for ``n``.

    ``compact`` drops the header and the footer: for a follow-up in the alert's thread,
    where the root message already says what the alert is.
    """
    if n.report is not None:  # a spend report has a layout of its own
        from alerts.report import report_blocks

        return report_blocks(n.report)
    blocks: list[dict[str, Any]] = []
    if not compact:
        blocks.append({"type": "header", "text": {"type": "plain_text", "text": header_text(n), "emoji": True}})
    blocks.append(_section(_main_text(n)))
    members = _members_text(n) if n.budget is None else None
    if members:
        blocks.append(_section(members))
    contrib = _contributors_text(n)
    if contrib:
        blocks.append(_section(contrib))
    link = _link(n.dashboard_url, "Open in the dashboard")
    if link:
        blocks.append(_section(link))
    if not compact:
        footer = f"tokenpulse · {_name(n.rule, 40)}"
        if n.detector:
            footer += f" · detector {_name(n.detector, 60)}"
        footer += f" · {_REASON_TEXT.get(n.reason, n.reason)}"
        blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(footer, CONTEXT_ELEMENT_MAX)}]})
    return slack_text(n), blocks[:BLOCKS_MAX]


# -- PagerDuty -----------------------------------------------------------------------------
def pd_dedup_key(key: str) -> str:
    """``key`` itself when it fits PagerDuty's 255 characters, else a stable shortened form."""
    if len(key) <= PD_DEDUP_KEY_MAX:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{key[: PD_DEDUP_KEY_MAX - len(digest) - 1]}#{digest}"


def pd_summary(n: Notification) -> str:
    if n.budget is not None:
        x = _budget_numbers(n.budget)
        runs_out = f"runs out {x['exhausted']}" if x["exhausted"] else "does not run out this period"
        s = (
            f"[{n.severity}] {n.title}: spent {x['spent']} of {x['limit']} ({x['pct_used']} used, "
            f"{x['days_left']} days left); forecast {x['projected']} ({x['projected_pct']}), {runs_out}"
        )
        return s if len(s) <= PD_SUMMARY_MAX else s[: PD_SUMMARY_MAX - 1] + "…"
    s = (
        f"[{n.severity}] {n.title}: observed {usd(n.observed_usd)} vs expected {usd(n.expected_usd)} "
        f"per window (excess {signed_usd(n.excess_usd)}, {pct(n.excess_pct)})"
    )
    if len(s) <= PD_SUMMARY_MAX:
        return s
    return s[: PD_SUMMARY_MAX - 1] + "…"


def _short(text: str, limit: int = PD_FIELD_MAX) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    contributors = sorted(n.top_contributors, key=contributor_rank)
    details: dict[str, Any] = _budget_details(n) if n.budget is not None else {
        "series": _short(n.series, 1000),
        "labels": {_short(k, 100): _short(v, 300) for k, v in list(n.labels.items())[:20]},
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
    if n.budget is None and n.members:
        details["members"] = [
            {"series": _short(str(m.get("series", "")), 300), "status": str(m.get("status", "")),
             "severity": str(m.get("severity", "")), "observed_usd": round(_num(m.get("observed_usd")), 6),
             "expected_usd": round(_num(m.get("expected_usd")), 6), "excess_usd": round(_num(m.get("excess_usd")), 6)}
            for m in n.members[:PD_MEMBERS_MAX]
        ]
    if n.budget is None and len(contributors) > PD_CONTRIBUTORS_MAX:
        details["other_contributors"] = len(contributors) - PD_CONTRIBUTORS_MAX
    payload: dict[str, Any] = {
        "summary": pd_summary(n),
        "source": "tokenpulse",
        "severity": n.severity,
        "timestamp": iso(n.fired_at),
        "component": _short(n.series),
        "class": _short(n.rule),
        "custom_details": details,
    }
    if n.team:
        payload["group"] = _short(n.team)
    event["payload"] = payload
    event["client"] = "tokenpulse"
    if n.dashboard_url and n.dashboard_url.startswith(("http://", "https://")):
        event["client_url"] = n.dashboard_url
        event["links"] = [{"href": n.dashboard_url, "text": "tokenpulse dashboard"}]
    return event


def _budget_details(n: Notification) -> dict[str, Any]:
    """PagerDuty ``custom_details`` of a budget notification: the numbers, not prose."""
    b = n.budget or {}

    def num(key: str, nd: int = 6) -> float | None:
        v = _num(b.get(key))
        return round(v, nd) if math.isfinite(v) else None

    return {
        "budget": _short(str(b.get("name", "")), 300),
        "series": _short(str(b.get("series", n.series)), 1000),
        "labels": {_short(k, 100): _short(v, 300) for k, v in list(n.labels.items())[:20]},
        "unit": _short(str(b.get("unit", "")), 10),
        "period": _short(str(b.get("period", "")), 10),
        "tz": _short(str(b.get("tz", "")), 60),
        "period_id": _short(str(b.get("period_id", "")), 40),
        "period_start": _when(b.get("period_start"), iso),
        "period_end": _when(b.get("period_end"), iso),
        "spent": num("spent", 9),
        "limit": num("limit", 9),
        "pct_used": num("pct_used", 2),
        "days_left": num("days_left", 2),
        "threshold_pct": num("threshold", 2),
        "projected_total": num("projected_total", 6),
        "projected_pct": num("projected_pct", 2),
        "exhaustion_at": _when(b.get("exhaustion_ts"), iso),
        "how": _short(n.explanation, 500),
        "reason": n.reason,
        "seq": n.seq,
    }
