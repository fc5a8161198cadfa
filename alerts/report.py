"""What a spend report says (``ReportNotification.report``, built by ``streams.reports.core``), in
sections of text, for any receiver: plain text for the terminal (:func:`report_text`), and
Slack's Block Kit (:func:`alerts.receivers.slack.render.report_blocks`) with its own
:class:`Style`.

Pure: a report is a JSON document in, text out. Team, model, provider and budget names come
from usage events and the policy: a style escapes them where the receiver parses text (Slack's
mrkdwn). Limits hold whatever the org looks like: a list shows at most :data:`ROWS_SHOWN` rows
and stops before its section passes the style's ``limit`` (3,000 characters: Slack's section),
the rest summarised as "…and N more ($X)".
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, NamedTuple
from zoneinfo import ZoneInfo

from alerts.text import clip, num, u16, usd

__all__ = ["PLAIN", "ROWS_SHOWN", "Style", "report_partial", "report_sections", "report_text", "report_title",
           "report_total"]

ROWS_SHOWN = 15  # rows per list (teams, models, providers, budgets, mix)
_KIND_TITLE = {"day": "Daily", "week": "Weekly"}
_PREV = {"day": "the day before", "week": "the week before"}


class Style(NamedTuple):
    """How a receiver writes a report's text: ``esc`` makes a name from usage events or the
    policy safe (and short), ``bold`` marks a heading, ``limit`` bounds a section (UTF-16
    units)."""

    esc: Callable[[str], str]
    bold: Callable[[str], str]
    limit: int = 3000


def _same(text: str) -> str:
    return text


PLAIN = Style(_same, _same)
"""The terminal's: names as they are, no markup."""


def _pct(p: Any) -> str:
    v = num(p)
    return "new" if p is None or not math.isfinite(v) else f"{v:+,.1f}%"


def _change(row: Mapping[str, Any]) -> str:
    d = num(row.get("change_usd"))
    sign = "+" if d >= 0 else ""
    return f"{sign}{usd(d)}, {_pct(row.get('change_pct'))}"


def _local(ts: Any, tz: str) -> str:
    try:
        zone = ZoneInfo(tz)
    except Exception:  # noqa: BLE001 - a report from a newer writer: show UTC
        zone, tz = ZoneInfo("UTC"), "UTC"
    return datetime.fromtimestamp(float(ts), zone).strftime("%Y-%m-%d %H:%M") + f" {tz}"


def report_title(report: Mapping[str, Any]) -> str:
    kind = _KIND_TITLE.get(str(report.get("period")), "Spend")
    team = (report.get("scope") or {}).get("team")
    scope = f" · team {team}" if team else ""
    return f"{kind} spend report {report.get('period_id', '')}{scope}"


def report_partial(report: Mapping[str, Any]) -> str | None:
    """``partial: partitions 3, 5 did not report`` for a report sent without every partition's
    part (``complete: false``, ``missing``), None for a complete one (or one from before
    reports said)."""
    if report.get("complete") is not False:
        return None
    qs = sorted({int(q) for m in report.get("missing") or () for q in (m.get("partitions") or ())})
    if not qs:
        return "partial: some partitions did not report"
    return f"partial: partition{'s' if len(qs) > 1 else ''} {', '.join(map(str, qs))} did not report"


def report_total(report: Mapping[str, Any]) -> str:
    """The total and its change against the period before: ``$1,234.50 (+$34.50, +2.9%)``."""
    t = report.get("total") or {}
    return f"{usd(num(t.get('usd')))} ({_change(t)})"


def _amount(b: Mapping[str, Any], key: str) -> str:
    v = num(b.get(key))
    if b.get("unit") == "tokens":
        return f"{v:,.0f} tokens" if math.isfinite(v) else "n/a"
    return usd(v)


def _summary(r: Mapping[str, Any], st: Style) -> list[str]:
    t = r.get("total") or {}
    tz = str(r.get("tz", "UTC"))
    prev = _PREV.get(str(r.get("period")), "the period before")
    return [
        f"{st.bold('Period:')} {st.esc(str(r.get('period_id', '')))} ({_local(r.get('start', 0), tz)} – "
        f"{_local(r.get('end', 0), tz)})",
        f"{st.bold('Total:')} {usd(num(t.get('usd')))} · {prev} ({st.esc(str(r.get('prev_id', '')))}): "
        f"{usd(num(t.get('prev_usd')))} · change {_change(t)}",
    ]


def _list(title: str, rows: Sequence[Mapping[str, Any]], line: Callable[[Mapping[str, Any]], str],
          rest: Callable[[Sequence[Mapping[str, Any]]], str], st: Style) -> str:
    """A titled list that fits the style's limit (UTF-16 units): whole lines only, then a summary of
    the rows left out."""
    head = st.bold(title)
    out = [head]
    used = u16(head)
    shown = 0
    for i, row in enumerate(rows):
        text = line(row)
        tail = rest(rows[i + 1:]) if i + 1 < len(rows) else ""
        # keep room for the summary line the remaining rows would need
        if shown >= ROWS_SHOWN or used + 1 + u16(text) + (1 + u16(tail) if tail else 0) > st.limit:
            break
        out.append(text)
        used += 1 + u16(text)
        shown += 1
    if shown < len(rows):
        out.append(rest(rows[shown:]))
    if not rows:
        out.append("nothing spent in either period")
    return clip("\n".join(out), st.limit)


def _money_rows(r: Mapping[str, Any], key: str, kind: str, title: str, st: Style) -> str | None:
    rows = r.get(key)
    if rows is None:
        return None

    def line(row: Mapping[str, Any]) -> str:
        return f"• {st.esc(str(row.get(kind, '')))} — {usd(num(row.get('usd')))} ({_change(row)})"

    def rest(left: Sequence[Mapping[str, Any]]) -> str:
        return f"…and {len(left)} more ({usd(sum(num(x.get('usd')) for x in left))})"

    return _list(title, rows, line, rest, st)


def _movers(r: Mapping[str, Any], st: Style) -> str | None:
    movers = r.get("movers") or {}
    lines = [st.bold("Top movers")]
    for kind, label in (("team", "Teams"), ("model", "Models")):
        m = movers.get(kind)
        if m is None:
            continue
        for direction, arrow in (("up", "▲"), ("down", "▼")):
            items = m.get(direction) or []
            if items:
                parts = [f"{st.esc(str(x.get(kind, '')))} {_change(x)}" for x in items]
                lines.append(f"{arrow} {label}: " + "; ".join(parts))
    if len(lines) == 1:
        lines.append("no change")
    return clip("\n".join(lines), st.limit)


def _budgets(r: Mapping[str, Any], st: Style) -> str | None:
    rows = r.get("budgets") or []
    if not rows:
        return None
    tz = str(r.get("tz", "UTC"))

    def line(b: Mapping[str, Any]) -> str:
        ex = b.get("exhaustion_ts")
        runs_out = f"runs out {_local(ex, tz)}" if ex is not None else "does not run out this period"
        flag = " ⚠️" if b.get("breach") else ""
        return (f"• {st.esc(str(b.get('budget', '')))} ({st.esc(str(b.get('period_id', '')))}) — {_amount(b, 'spent')} of "
                f"{_amount(b, 'limit')} ({num(b.get('pct_used')):,.1f}% used) · forecast "
                f"{_amount(b, 'projected_total')} ({num(b.get('projected_pct')):,.0f}%) · {runs_out}{flag}")

    def rest(left: Sequence[Mapping[str, Any]]) -> str:
        over = sum(1 for b in left if num(b.get("pct_used")) >= 100)
        return f"…and {len(left)} more budgets ({over} at or over 100 %)"

    return _list("Budgets", rows, line, rest, st)


def _mix(r: Mapping[str, Any], st: Style) -> str | None:
    rows = r.get("mix")
    if rows is None:
        return None

    def share(x: Any) -> str:
        v = num(x)
        return "n/a" if x is None or not math.isfinite(v) else f"{v:.1f}%"

    def line(m: Mapping[str, Any]) -> str:
        pts = m.get("change_pct_points")
        trend = "no previous spend" if pts is None else f"{num(pts):+.1f} pts vs the week before"
        return (f"• {st.esc(str(m.get('team', '')))} — {share(m.get('third_party_share_pct'))} third-party "
                f"(internal {usd(num(m.get('internal_usd')))}, third-party {usd(num(m.get('third_party_usd')))}) "
                f"· {trend}")

    def rest(left: Sequence[Mapping[str, Any]]) -> str:
        return f"…and {len(left)} more teams"

    return _list("Model mix (internal vs third-party)", rows, line, rest, st)


def report_sections(r: Mapping[str, Any], st: Style) -> list[str]:
    """The report's sections in ``st``: the summary, then each list it has (by team, model,
    provider, the top movers, budgets, the model mix)."""
    out = ["\n".join(_summary(r, st))]
    if not (r.get("scope") or {}).get("team"):
        out.append(_money_rows(r, "by_team", "team", "By team", st) or "")
    out.append(_money_rows(r, "by_model", "model", "By model", st) or "")
    out.append(_money_rows(r, "by_provider", "provider", "By provider", st) or "")
    out.append(_movers(r, st) or "")
    out.append(_budgets(r, st) or "")
    out.append(_mix(r, st) or "")
    return [s for s in out if s]


def report_text(report: Mapping[str, Any]) -> str:
    """The report as plain text (for ``tokenpulse report``): the same sections, unescaped."""
    partial = report_partial(report)
    extra = [f"{partial} (the numbers leave out their spend)"] if partial else []
    return "\n\n".join([report_title(report), *report_sections(report, PLAIN), *extra]) + "\n"
