"""Rendering a spend report (``Notification.report``, built by ``streams.reports``): Slack
Block Kit for the channel, plain text for the terminal.

Pure: a report is a JSON document in, text out. Team, model, provider and budget names come
from usage events and the policy, so in mrkdwn they are escaped like every alert
(:func:`alerts.receivers.slack.render.escape_mrkdwn`). Slack's limits hold whatever the org looks like: a
list shows at most :data:`ROWS_SHOWN` rows and stops before its section passes 3,000
characters, the rest summarised as "…and N more ($X)"; at most 50 blocks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from alerts.receivers.slack.render import BLOCKS_MAX, CONTEXT_ELEMENT_MAX, HEADER_MAX, SECTION_MAX, escape_mrkdwn
from alerts.text import clip, usd
from alerts.text import u16 as _u16

__all__ = ["ROWS_SHOWN", "report_blocks", "report_text", "report_title"]

ROWS_SHOWN = 15  # rows per list (teams, models, providers, budgets, mix)
NAME_MAX = 80
_KIND_TITLE = {"day": "Daily", "week": "Weekly"}
_PREV = {"day": "the day before", "week": "the week before"}

Esc = Callable[[str], str]


def _plain(text: str) -> str:
    return text


def _mrkdwn(text: str) -> str:
    return clip(escape_mrkdwn(text), NAME_MAX)


def _bold(text: str, esc: Esc) -> str:
    return f"*{text}*" if esc is _mrkdwn else text


def _num(x: Any) -> float:
    try:
        return float(x)
    except (TypeError, ValueError):
        return math.nan


def _pct(p: Any) -> str:
    v = _num(p)
    return "new" if p is None or not math.isfinite(v) else f"{v:+,.1f}%"


def _change(row: Mapping[str, Any]) -> str:
    d = _num(row.get("change_usd"))
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


def _amount(b: Mapping[str, Any], key: str) -> str:
    v = _num(b.get(key))
    if b.get("unit") == "tokens":
        return f"{v:,.0f} tokens" if math.isfinite(v) else "n/a"
    return usd(v)


def _summary(r: Mapping[str, Any], esc: Esc) -> list[str]:
    t = r.get("total") or {}
    tz = str(r.get("tz", "UTC"))
    prev = _PREV.get(str(r.get("period")), "the period before")
    return [
        f"{_bold('Period:', esc)} {esc(str(r.get('period_id', '')))} ({_local(r.get('start', 0), tz)} – "
        f"{_local(r.get('end', 0), tz)})",
        f"{_bold('Total:', esc)} {usd(_num(t.get('usd')))} · {prev} ({esc(str(r.get('prev_id', '')))}): "
        f"{usd(_num(t.get('prev_usd')))} · change {_change(t)}",
    ]


def _list(title: str, rows: Sequence[Mapping[str, Any]], line: Callable[[Mapping[str, Any]], str],
          rest: Callable[[Sequence[Mapping[str, Any]]], str], esc: Esc, limit: int = SECTION_MAX) -> str:
    """A titled list that fits ``limit`` (UTF-16 units): whole lines only, then a summary of
    the rows left out."""
    head = _bold(title, esc)
    out = [head]
    used = _u16(head)
    shown = 0
    for i, row in enumerate(rows):
        text = line(row)
        tail = rest(rows[i + 1:]) if i + 1 < len(rows) else ""
        # keep room for the summary line the remaining rows would need
        if shown >= ROWS_SHOWN or used + 1 + _u16(text) + (1 + _u16(tail) if tail else 0) > limit:
            break
        out.append(text)
        used += 1 + _u16(text)
        shown += 1
    if shown < len(rows):
        out.append(rest(rows[shown:]))
    if not rows:
        out.append("nothing spent in either period")
    return clip("\n".join(out), limit)


def _money_rows(r: Mapping[str, Any], key: str, kind: str, title: str, esc: Esc) -> str | None:
    rows = r.get(key)
    if rows is None:
        return None

    def line(row: Mapping[str, Any]) -> str:
        return f"• {esc(str(row.get(kind, '')))} — {usd(_num(row.get('usd')))} ({_change(row)})"

    def rest(left: Sequence[Mapping[str, Any]]) -> str:
        return f"…and {len(left)} more ({usd(sum(_num(x.get('usd')) for x in left))})"

    return _list(title, rows, line, rest, esc)


def _movers(r: Mapping[str, Any], esc: Esc) -> str | None:
    movers = r.get("movers") or {}
    lines = [_bold("Top movers", esc)]
    for kind, label in (("team", "Teams"), ("model", "Models")):
        m = movers.get(kind)
        if m is None:
            continue
        for direction, arrow in (("up", "▲"), ("down", "▼")):
            items = m.get(direction) or []
            if items:
                parts = [f"{esc(str(x.get(kind, '')))} {_change(x)}" for x in items]
                lines.append(f"{arrow} {label}: " + "; ".join(parts))
    if len(lines) == 1:
        lines.append("no change")
    return clip("\n".join(lines), SECTION_MAX)


def _budgets(r: Mapping[str, Any], esc: Esc) -> str | None:
    rows = r.get("budgets") or []
    if not rows:
        return None
    tz = str(r.get("tz", "UTC"))

    def line(b: Mapping[str, Any]) -> str:
        ex = b.get("exhaustion_ts")
        runs_out = f"runs out {_local(ex, tz)}" if ex is not None else "does not run out this period"
        flag = " ⚠️" if b.get("breach") else ""
        return (f"• {esc(str(b.get('budget', '')))} ({esc(str(b.get('period_id', '')))}) — {_amount(b, 'spent')} of "
                f"{_amount(b, 'limit')} ({_num(b.get('pct_used')):,.1f}% used) · forecast "
                f"{_amount(b, 'projected_total')} ({_num(b.get('projected_pct')):,.0f}%) · {runs_out}{flag}")

    def rest(left: Sequence[Mapping[str, Any]]) -> str:
        over = sum(1 for b in left if _num(b.get("pct_used")) >= 100)
        return f"…and {len(left)} more budgets ({over} at or over 100 %)"

    return _list("Budgets", rows, line, rest, esc)


def _mix(r: Mapping[str, Any], esc: Esc) -> str | None:
    rows = r.get("mix")
    if rows is None:
        return None

    def share(x: Any) -> str:
        v = _num(x)
        return "n/a" if x is None or not math.isfinite(v) else f"{v:.1f}%"

    def line(m: Mapping[str, Any]) -> str:
        pts = m.get("change_pct_points")
        trend = "no previous spend" if pts is None else f"{_num(pts):+.1f} pts vs the week before"
        return (f"• {esc(str(m.get('team', '')))} — {share(m.get('third_party_share_pct'))} third-party "
                f"(internal {usd(_num(m.get('internal_usd')))}, third-party {usd(_num(m.get('third_party_usd')))}) "
                f"· {trend}")

    def rest(left: Sequence[Mapping[str, Any]]) -> str:
        return f"…and {len(left)} more teams"

    return _list("Model mix (internal vs third-party)", rows, line, rest, esc)


def _sections(r: Mapping[str, Any], esc: Esc) -> list[str]:
    out = ["\n".join(_summary(r, esc))]
    if not (r.get("scope") or {}).get("team"):
        out.append(_money_rows(r, "by_team", "team", "By team", esc) or "")
    out.append(_money_rows(r, "by_model", "model", "By model", esc) or "")
    out.append(_money_rows(r, "by_provider", "provider", "By provider", esc) or "")
    out.append(_movers(r, esc) or "")
    out.append(_budgets(r, esc) or "")
    out.append(_mix(r, esc) or "")
    return [s for s in out if s]


def report_blocks(report: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and Block Kit blocks of a report, within Slack's limits."""
    title = report_title(report)
    t = report.get("total") or {}
    text = clip(f"📊 {escape_mrkdwn(title)}: {usd(_num(t.get('usd')))} ({_change(t)})", SECTION_MAX)
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": clip(f"📊 {title}", HEADER_MAX), "emoji": True}}
    ]
    for s in _sections(report, _mrkdwn):
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": clip(s, SECTION_MAX)}})
    footer = "tokenpulse · spend_report · closed windows, exact to the nano-dollar"
    blocks = blocks[: BLOCKS_MAX - 1]
    blocks.append({"type": "context", "elements": [{"type": "mrkdwn", "text": clip(footer, CONTEXT_ELEMENT_MAX)}]})
    return text, blocks


def report_text(report: Mapping[str, Any]) -> str:
    """The report as plain text (for ``tokenpulse report``): the same sections, unescaped."""
    return "\n\n".join([report_title(report), *_sections(report, _plain)]) + "\n"
