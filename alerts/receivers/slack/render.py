"""Slack's rendering, in one module: a notification of any kind as Block Kit (a cost spike, a
budget, the third-party share, a spend report: :func:`slack_blocks`), a channel's digest
(:func:`digest_message`) and a spend report (:func:`report_blocks`), on one set of helpers
(:func:`escape_mrkdwn`, ``_name``, ``_section``, ``_context``, the limits and the emoji).

Series names, label values, user and model names all come from usage events, i.e. from
anyone who can call the gateway. In Slack mrkdwn they are escaped (``&``, ``<``, ``>``) so a
team called ``<!channel>`` cannot ping a channel and ``<https://x|y>`` cannot disguise a
link. The header block is ``plain_text``, which Slack shows literally, so it is not escaped.

A budget notification renders its own numbers: budget, period, spent of limit, % used, days
left, the forecast and the exhaustion date; a third-party share notification the share against
its line, the previous period's and the top third-party models.

Slack's limits are enforced here rather than discovered as ``invalid_blocks`` at 3 am:
header ≤ 150 characters, section text ≤ 3000, ≤ 50 blocks. Lengths are counted in UTF-16
code units, which is never less than Python's count, so emoji cannot push a text over.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from alerts.digest import ITEMS_MAX, DigestSchedule
from alerts.model import (
    SEVERITY_RANK,
    BudgetNotification,
    MixNotification,
    Notification,
    ReportNotification,
    SpikeNotification,
    contributor_rank,
)
from alerts.report import Style, report_partial, report_sections, report_title, report_total
from alerts.text import (
    amount,
    budget_figures,
    clip,
    duration,
    num,
    pct,
    pct_of,
    signed_usd,
    usd,
    utc,
    when,
    window_range,
)

HEADER_MAX = 150
SECTION_MAX = 3000
CONTEXT_ELEMENT_MAX = 2000
BLOCKS_MAX = 50
FALLBACK_MAX = 3000  # Slack truncates at 40k; a notification preview never needs more
NAME_MAX = 120  # one user, model or label value in a list
REPORT_NAME_MAX = 80  # a team, model or budget in a report's lists
SERIES_MAX = 400
EXPLANATION_MAX = 600  # the detector's reason: one sentence
CONTRIBUTORS_SHOWN = 10

_REASON_TEXT = {"first": "first notification", "worsened": "worsened", "repeat": "repeat", "resolved": "resolved"}
_EMOJI = {"info": "ℹ️", "warning": "⚠️", "critical": "🚨"}


# -- text helpers --------------------------------------------------------------------------
def escape_mrkdwn(text: str) -> str:
    """Escape the three characters Slack parses as control sequences in mrkdwn."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _name(text: Any, limit: int = NAME_MAX) -> str:
    """User-controlled text ready for mrkdwn: escaped, then shortened to ``limit`` as sent
    (an escape is up to 5 characters, so a raw limit would not bound the message)."""
    return clip(escape_mrkdwn(str(text)), limit)


def _section(text: str) -> dict[str, Any]:
    return {"type": "section", "text": {"type": "mrkdwn", "text": clip(text, SECTION_MAX)}}


def _context(text: str) -> dict[str, Any]:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": clip(text, CONTEXT_ELEMENT_MAX)}]}


def _header(text: str) -> dict[str, Any]:
    # plain_text: Slack shows it literally, so it is not escaped
    return {"type": "header", "text": {"type": "plain_text", "text": clip(text, HEADER_MAX), "emoji": True}}


def _link(url: str | None, label: str) -> str | None:
    if not url or not url.startswith(("http://", "https://")):
        return None
    # Inside <url|label>, "|" would end the URL; & < > are escaped like any mrkdwn text.
    safe = escape_mrkdwn(url.replace("|", "%7C"))
    return f"<{safe}|{label}>"


# -- notifications -------------------------------------------------------------------------
def _contributors_text(n: SpikeNotification) -> str | None:
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


def _members_text(n: SpikeNotification) -> str | None:
    """The alerts ``n`` speaks for: a group's members, or the ones an org alert inhibited."""
    if not n.members:
        return None
    inhibited = [m for m in n.members if m.get("status") == "inhibited"]
    lines = ["*Also spiking, not notified separately (inhibited by this alert)*" if inhibited else
             f"*Alerts in this group ({len(n.members)})*"]
    for m in n.members[:MEMBERS_SHOWN]:
        excess = num(m.get("excess_usd"))
        p = m.get("excess_pct")
        state = " · back to normal" if m.get("status") == "resolved" else ""
        lines.append(
            f"• {_name(str(m.get('series', '')), 200)}: {usd(num(m.get('observed_usd')))} vs "
            f"{usd(num(m.get('expected_usd')))} ({signed_usd(excess)}, {pct(None if p is None else num(p))}) · "
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
def _budget_text(n: BudgetNotification) -> str:
    x = budget_figures(n)
    lines: list[str] = []
    th = num(n.threshold)
    if n.action == "resolve":
        lines.append("*Back on track:* no longer projected to overrun the budget this period.")
    elif n.rule == "budget_threshold" and math.isfinite(th):
        lines.append(f"*{th:g}% of the budget reached.*")
    else:
        lines.append("*Projected to overrun* the budget by the end of the period.")
    lines.append(f"*Budget:* {_name(n.budget)} · *scope:* {_name(n.series, SERIES_MAX)}")
    start, end = when(n.period_start), when(n.period_end)
    bounds = f": {start} – {end}" if start and end else ""
    lines.append(f"*Period:* {_name(n.period_id, 40)} ({_name(n.period, 10)}, {_name(n.tz, 60)}){bounds}")
    lines.append(f"*Spent:* {x['spent']} of {x['limit']} ({x['pct_used']} used) · *days left:* {x['days_left']}")
    exhausted = f"runs out {x['exhausted']}" if x["exhausted"] else "does not run out this period"
    lines.append(f"*Forecast:* {x['projected']} by the end of the period ({x['projected_pct']}) · {exhausted}")
    if n.explanation:
        lines.append(f"*How:* {_name(n.explanation, EXPLANATION_MAX)}")
    lines.append(f"*Severity:* {n.severity}")
    return "\n".join(lines)


def _budget_tail(n: BudgetNotification) -> str:
    x = budget_figures(n)
    tail = f"spent {x['spent']} of {x['limit']} ({x['pct_used']}), forecast {x['projected']}"
    return tail if n.action == "resolve" else tail + f", {x['days_left']} days left"


# -- model mix -----------------------------------------------------------------------------
def _share(x: float | None) -> str:
    return pct_of(num(x)) if x is not None else "no spend"


def _mix_text(n: MixNotification) -> str:
    lines = [
        f"*Third-party models: {_share(n.share_pct)} of the team's spend*, past the line of {_share(n.line_pct)}.",
        f"*Team:* {_name(n.team or '')} · *period:* {_name(n.period_id, 40)} ({_name(n.period, 10)}, "
        f"{_name(n.tz, 60)}) so far",
        f"*Previous period* ({_name(n.previous_period_id, 40)}): {_share(n.previous_share_pct)}",
        f"*Spend:* {usd(num(n.third_party_usd))} third-party, {usd(num(n.internal_usd))} internal",
    ]
    top = [t for t in n.top_third_party_models if isinstance(t, dict)][:CONTRIBUTORS_SHOWN]
    if top:
        lines.append("*Top third-party models:* " + ", ".join(
            f"{_name(str(t.get('model', '')))} {usd(num(t.get('usd')))}" for t in top))
    lines.append(f"*Severity:* {n.severity} · not paged")
    return "\n".join(lines)


def _mix_tail(n: MixNotification) -> str:
    return (f"{_share(n.share_pct)} third-party (line {_share(n.line_pct)}, "
            f"previous period {_share(n.previous_share_pct)})")


# -- cost spikes ---------------------------------------------------------------------------
def _spike_text(n: SpikeNotification) -> str:
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
        if n.explanation:  # resolved by an answer from on-call: who, and what they said
            lines.append(f"*Why:* {_name(n.explanation, EXPLANATION_MAX)}")
        lines.append(f"*Severity:* {n.severity} · {paged}")
    else:
        if n.reason == "worsened":
            lines.append("*Worsened* since the last notification.")
        elif n.reason == "repeat":
            lines.append(f"*Still firing* after {duration(n.fired_at - n.started_at)}.")
        lines.append(f"*Series:* {series}")
        lines.append(f"*Observed:* {usd(n.observed_usd)} per window vs *expected* {usd(n.expected_usd)}")
        lines.append(f"*Excess:* {signed_usd(n.excess_usd)} ({pct(n.excess_pct)})")
        if n.impact_usd:
            lines.append(f"*Incident so far:* {signed_usd(n.impact_usd)} over expected since {utc(n.started_at)}")
        if n.explanation:
            lines.append(f"*Why:* {_name(n.explanation, EXPLANATION_MAX)}")
        lines.append(f"*Severity:* {n.severity} · {paged}")
        lines.append(f"*Window:* {window_range(n.window_start, n.window_end)}")
        if n.reason != "first":
            lines.append(f"*Firing since:* {utc(n.started_at)}")
    return "\n".join(lines)


def _spike_tail(n: SpikeNotification) -> str:
    if n.action == "resolve":
        back = n.ended_at if n.ended_at is not None else n.fired_at
        return f"back to normal after {duration(back - n.started_at)}"
    return (f"observed {usd(n.observed_usd)} vs expected {usd(n.expected_usd)} per window "
            f"({signed_usd(n.excess_usd)}, {pct(n.excess_pct)})")


def _main_text(n: Notification) -> str:
    if isinstance(n, BudgetNotification):
        text = _budget_text(n)
    elif isinstance(n, MixNotification):
        return clip(_mix_text(n), SECTION_MAX)  # the team is in the text: no labels line
    elif isinstance(n, SpikeNotification):
        text = _spike_text(n)
    else:
        text = f"*Series:* {_name(n.series, SERIES_MAX)}"
    labels = _labels_text(n)
    if labels:
        text += f"\n*Labels:* {labels}"
    return clip(text, SECTION_MAX)


def header_text(n: Notification) -> str:
    emoji = "✅" if n.action == "resolve" else _EMOJI.get(n.severity, "")
    return clip(f"{emoji} {n.title}".strip(), HEADER_MAX)


def slack_text(n: Notification) -> str:
    """The fallback ``text`` (notifications, screen readers). Slack parses it: escaped."""
    emoji = "✅" if n.action == "resolve" else _EMOJI.get(n.severity, "")
    if isinstance(n, BudgetNotification):
        tail = _budget_tail(n)
    elif isinstance(n, MixNotification):
        tail = _mix_tail(n)
    elif isinstance(n, SpikeNotification):
        tail = _spike_tail(n)
    else:
        tail = n.series
    return clip(f"{emoji} {_name(n.title, 300)}: {tail}".strip(), FALLBACK_MAX)


def slack_blocks(n: Notification, *, compact: bool = False,
                 interactive: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and Block Kit blocks for ``n``, any kind.

    ``compact`` drops the header and the footer: for a follow-up in the alert's thread,
    where the root message already says what the alert is. ``interactive`` (Slack's
    interactivity is set up: the signing secret is set) adds the answer buttons
    (:func:`actions_block`) to a root message.
    """
    if isinstance(n, ReportNotification):  # a spend report has a layout of its own
        return report_blocks(n.report)
    blocks: list[dict[str, Any]] = []
    if not compact:
        blocks.append(_header(header_text(n)))
    blocks.append(_section(_main_text(n)))
    if isinstance(n, SpikeNotification):
        for text in (_members_text(n), _contributors_text(n)):
            if text:
                blocks.append(_section(text))
    link = _link(n.dashboard_url, "Open in the dashboard")
    if link:
        blocks.append(_section(link))
    if not compact:
        footer = f"tokenpulse · {_name(n.rule, 40)}"
        detector = n.detector if isinstance(n, SpikeNotification) else "forecast" if n.rule == "budget_forecast" else ""
        if detector:
            footer += f" · detector {_name(detector, 60)}"
        footer += f" · {_REASON_TEXT.get(n.reason, n.reason)}"
        buttons = actions_block(n) if interactive else None
        blocks = blocks[: BLOCKS_MAX - 2]
        blocks.append(_context(footer))
        if buttons is not None:
            blocks.append(buttons)
    return slack_text(n), blocks[:BLOCKS_MAX]


# -- buttons: on-call answers an alert -------------------------------------------------------
FEEDBACK_ACTIONS: dict[str, str] = {
    "tokenpulse_ack": "Acknowledge",
    "tokenpulse_new_normal": "Expected, new normal",
    "tokenpulse_not_anomaly": "Not an anomaly",
    "tokenpulse_snooze_4h": "Snooze 4 h",
}
"""The buttons' ``action_id`` and label, in the order shown; what ``/slack/actions`` accepts."""
ACK_ONLY = ("tokenpulse_ack",)
ACTIONS_BLOCK_ID = "tokenpulse_feedback"
ANSWERED_BLOCK_ID = "tokenpulse_answered"
VALUE_MAX = 2000  # Slack's limit on a button's value
_ANSWERED = {
    "tokenpulse_ack": "acknowledged",
    "tokenpulse_new_normal": "marked as expected, a new normal",
    "tokenpulse_not_anomaly": "marked as not an anomaly",
    "tokenpulse_snooze_4h": "snoozed for 4 h",
    "tokenpulse_resolve": "resolved",  # in PagerDuty (no button: its webhook)
}


def action_value(n: Notification) -> str:
    """What a button carries back to ``/slack/actions``: the alert it answers (key, series,
    incident start, window), compact JSON. Not a secret: Slack signs the whole request."""
    window = n.window_end if isinstance(n, SpikeNotification) else n.fired_at
    return json.dumps({"k": n.key, "s": n.series, "t": n.started_at, "w": window}, separators=(",", ":"))


def parse_action_value(value: str) -> dict[str, Any]:
    """The alert a button answers (:func:`action_value`, read back): ``key``, ``series`` and,
    when known, ``started_at`` and ``window_end``. Raises ValueError naming what is wrong."""
    try:
        d = json.loads(value)
    except ValueError:
        raise ValueError("actions[0].value: not JSON") from None
    if not isinstance(d, dict) or not isinstance(d.get("k"), str) or not isinstance(d.get("s"), str):
        raise ValueError("actions[0].value: no alert key and series")
    out: dict[str, Any] = {"key": d["k"], "series": d["s"]}
    for short, name in (("t", "started_at"), ("w", "window_end")):
        v = d.get(short)
        if isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v):
            out[name] = float(v)
    return out


def actions_block(n: Notification) -> dict[str, Any] | None:
    """The buttons for ``n``'s root message: every answer on a cost spike, Acknowledge alone on
    a budget or third-party share notification; None for a resolve, a report, or a key too long
    to carry (Slack would refuse the whole message)."""
    if n.action == "resolve" or isinstance(n, ReportNotification):
        return None
    ids = tuple(FEEDBACK_ACTIONS) if isinstance(n, SpikeNotification) else ACK_ONLY
    value = action_value(n)
    if len(value) > VALUE_MAX:
        return None
    elements: list[dict[str, Any]] = []
    for aid in ids:
        button: dict[str, Any] = {"type": "button", "action_id": aid, "value": value,
                                  "text": {"type": "plain_text", "text": FEEDBACK_ACTIONS[aid], "emoji": True}}
        if aid == "tokenpulse_ack":
            button["style"] = "primary"
        elements.append(button)
    return {"type": "actions", "block_id": ACTIONS_BLOCK_ID, "elements": elements}


def answered_text(action: str, user_id: str, at: float, note: str = "") -> str:
    """One line saying who answered how and when (``<@U…>`` is Slack's mention of a user ID,
    which Slack renders as their name; the ID is checked to be one)."""
    who = f"<@{user_id}>" if user_id.isalnum() else _name(user_id, 40)
    line = f"✔️ {_ANSWERED.get(action, _name(action, 40))} by {who} at {utc(at)}"
    return line + (f" · {_name(note, 200)}" if note else "")


def answered_blocks(blocks: list[dict[str, Any]], action: str, user_id: str, at: float,
                    note: str = "") -> list[dict[str, Any]]:
    """``blocks`` of a root message after a press: without the buttons, with a line saying who
    chose what and when (earlier answers' lines stay)."""
    out = [b for b in blocks if b.get("block_id") != ACTIONS_BLOCK_ID]
    out.append({"type": "context", "block_id": f"{ANSWERED_BLOCK_ID}_{len(out)}",
                "elements": [{"type": "mrkdwn", "text": clip(answered_text(action, user_id, at, note),
                                                             CONTEXT_ELEMENT_MAX)}]})
    return out[-BLOCKS_MAX:]


def answered_message(n: Notification, answers: Iterable[Mapping[str, Any]], *,
                     interactive: bool = False) -> tuple[str, list[dict[str, Any]]]:
    """The root message of ``n``'s alert once on-call has answered it (``chat.update``): ``n``
    (its latest notification) rendered, one line per answer (``action``, ``user_id``, ``at``,
    ``note``) in order, and, with ``interactive``, the buttons not pressed yet (after an
    Acknowledge, on-call may still snooze; a resolved alert has none)."""
    text, blocks = slack_blocks(n, interactive=interactive)
    answers = list(answers)
    buttons = [b for b in blocks if b.get("block_id") == ACTIONS_BLOCK_ID]
    for a in answers:
        blocks = answered_blocks(blocks, str(a.get("action", "")), str(a.get("user_id", "")), num(a.get("at")),
                                 str(a.get("note") or ""))
    pressed = {str(a.get("action", "")) for a in answers}
    left = [e for b in buttons for e in b["elements"] if e.get("action_id") not in pressed]
    if left:
        blocks = [*blocks[-(BLOCKS_MAX - 1):], {**buttons[0], "elements": left}]
    return text, blocks


# -- digests ---------------------------------------------------------------------------------
LINES_PER_SERIES = 12  # a digest's lines per series or budget
DIGEST_SERIES_MAX = 300
_RULES = {"cost_spike": "cost spike", "budget_threshold": "budget threshold", "budget_forecast": "budget forecast",
          "mix_share": "third-party share"}


def _excess(n: Notification) -> float:
    """How far over its line a notification is, in USD, to rank the groups of a section."""
    if isinstance(n, SpikeNotification):
        return n.excess_usd
    if isinstance(n, BudgetNotification):
        return n.spent - n.limit if n.unit == "usd" else 0.0
    if isinstance(n, MixNotification):
        return n.third_party_usd - n.line_pct / 100 * (n.third_party_usd + n.internal_usd)
    return 0.0


@dataclass
class _Group:
    """One series (or one budget) of the period: its notifications in order."""

    title: str
    items: list[Notification]
    budget: bool = False

    @property
    def last(self) -> Notification:
        return self.items[-1]

    @property
    def open(self) -> bool:
        return self.last.action != "resolve" and not (self.budget and self.last.rule == "budget_threshold")

    @property
    def rank(self) -> tuple[float, float]:
        excess = [x for x in map(_excess, self.items) if math.isfinite(x)]
        return (-max(SEVERITY_RANK.get(n.severity, 0) for n in self.items), -max(excess, default=0.0))


def _groups(items: Iterable[Notification]) -> list[_Group]:
    by: dict[str, _Group] = {}
    for n in sorted(items, key=lambda n: (n.fired_at, n.seq)):
        if isinstance(n, BudgetNotification):
            g = by.setdefault("b:" + n.budget, _Group(n.budget, [], budget=True))
        else:
            g = by.setdefault("s:" + n.series, _Group(n.series, []))
        g.items.append(n)
    return list(by.values())


class _Clock:
    def __init__(self, schedule: DigestSchedule, start: float) -> None:
        self.schedule = schedule
        self.day = schedule.local(start).date()

    def at(self, ts: float) -> str:
        try:
            d = self.schedule.local(ts)
        except (OverflowError, OSError, ValueError):
            return "?"
        return d.strftime("%H:%M") if d.date() == self.day and self.schedule.mode == "hourly" else d.strftime("%a %d %H:%M")


def _line(n: Notification, clock: _Clock) -> str:
    if isinstance(n, BudgetNotification):
        return _budget_line(n, clock)
    if isinstance(n, MixNotification):
        return (f"{_EMOJI.get(n.severity, '')} {clock.at(n.fired_at)} third-party models at {pct_of(n.share_pct)} "
                f"of the team's spend (line {pct_of(n.line_pct)})")
    if isinstance(n, SpikeNotification):
        return _spike_line(n, clock)
    return f"{_EMOJI.get(n.severity, '')} {clock.at(n.fired_at)} {_name(n.title, 200)}"


def _spike_line(n: SpikeNotification, clock: _Clock) -> str:
    when = clock.at(n.fired_at)
    numbers = (f"{usd(n.observed_usd)} vs expected {usd(n.expected_usd)} per window, "
               f"excess {signed_usd(n.excess_usd)} ({pct(n.excess_pct)})")
    if n.action == "resolve":
        back = n.ended_at if n.ended_at is not None else n.fired_at
        line = f"✅ {when} resolved after {duration(back - n.started_at)}; worst window {numbers}"
        if n.impact_usd:
            line += f"; incident total {signed_usd(n.impact_usd)}"
    else:
        what = {"first": "triggered", "worsened": "worsened", "repeat": "still firing"}.get(n.reason, n.reason)
        line = f"{_EMOJI.get(n.severity, '')} {when} {what} ({n.severity}{', paged' if n.page else ''}): {numbers}"
        if n.impact_usd:
            line += f"; incident so far {signed_usd(n.impact_usd)}"
    return line


def _budget_line(n: BudgetNotification, clock: _Clock) -> str:
    spent = f"spent {amount(num(n.spent), n.unit)} of {amount(num(n.limit), n.unit)} ({pct_of(num(n.pct_used))})"
    forecast = f"forecast {amount(num(n.projected_total), n.unit)} ({pct_of(num(n.projected_pct))})"
    when = clock.at(n.fired_at)
    th = num(n.threshold)
    if n.action == "resolve":
        return f"✅ {when} back on track: {spent}, {forecast}"
    if n.rule == "budget_threshold" and math.isfinite(th):
        return f"{_EMOJI.get(n.severity, '')} {when} {th:g}% reached: {spent}, {forecast}"
    return f"{_EMOJI.get(n.severity, '')} {when} projected to overrun: {spent}, {forecast}"


def _group_text(g: _Group, clock: _Clock) -> str:
    last = g.last
    if isinstance(last, BudgetNotification):
        head = f"*Budget {_name(g.title)}* · {_name(last.series, DIGEST_SERIES_MAX)} · {_name(last.period_id, 40)}"
    else:
        state = "resolved" if last.action == "resolve" else "still firing"
        head = f"*{_name(g.title, DIGEST_SERIES_MAX)}* · {_name(_RULES.get(last.rule, last.rule), 40)} · {state}"
    lines = [head]
    used = len(head)
    for i, n in enumerate(g.items):
        line = "• " + _line(n, clock)
        rest = len(g.items) - i
        if len(lines) > LINES_PER_SERIES or used + len(line) + 40 > SECTION_MAX:
            lines.append(f"…and {rest} more")
            break
        lines.append(line)
        used += len(line) + 1
    return clip("\n".join(lines), SECTION_MAX)


def _count(k: int, one: str, many: str) -> str:
    return f"{k} {one if k == 1 else many}"


def _range(schedule: DigestSchedule, start: float, end: float) -> str:
    a, b = schedule.local(start), schedule.local(end)
    tail = b.strftime("%H:%M") if a.date() == b.date() else b.strftime("%Y-%m-%d %H:%M")
    return f"{a.strftime('%Y-%m-%d %H:%M')}–{tail} {schedule.tz}"


def digest_message(period: dict[str, Any], channel: str = "") -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and Block Kit blocks for one period of a digest channel (a book entry
    from :func:`alerts.digest.collect`).

    Series still firing at the end of the period come first (worst first), then the
    resolved ones, then budgets; each lists its notifications in order with their numbers.
    What does not fit Slack's 50 blocks or a section's 3,000 characters is summarised as
    "…and N more". Everything that came from usage events is escaped.
    """
    schedule = DigestSchedule(str(period.get("mode", "hourly")), str(period.get("tz", "UTC")),
                              str(period.get("daily_at", "09:00")))
    start, end = float(period["start"]), float(period["end"])
    notes: list[Notification] = []
    more = int(period.get("more", 0))
    unread = 0  # records of another version that this one cannot read: counted, not shown
    for item in period.get("items") or ():
        try:
            notes.append(Notification.from_dict(item))
        except ValueError:
            unread += 1
    total = len(notes) + more + unread
    groups = _groups(notes)
    firing = sorted((g for g in groups if not g.budget and g.open), key=lambda g: g.rank)
    resolved = sorted((g for g in groups if not g.budget and not g.open), key=lambda g: g.rank)
    budgets = sorted((g for g in groups if g.budget), key=lambda g: g.rank)
    clock = _Clock(schedule, start)
    kind = "Hourly" if schedule.mode == "hourly" else "Daily"
    when = _range(schedule, start, end)
    plural = "" if total == 1 else "s"
    header = f"🗞️ {kind} digest: {total} notification{plural}, {len(firing)} still firing"
    blocks: list[dict[str, Any]] = [
        _header(header),
        _context(f"{when} · {_count(len(firing) + len(resolved), 'series', 'series')}, "
                 f"{_count(len(budgets), 'budget', 'budgets')}"
                 + (f" · for {_name(channel, 80)}" if channel else "")),
    ]
    footer = _context(f"tokenpulse · {kind.lower()} digest · times in {_name(schedule.tz, 60)}")
    sections = [("*🔥 Still firing*", firing), ("*✅ Resolved*", resolved), ("*💰 Budgets*", budgets)]
    left_groups = sum(len(gs) for _, gs in sections)
    left_notes = len(notes)
    for title, gs in sections:
        if not gs:
            continue
        # room for the heading, one group, the "and N more" line and the footer
        if len(blocks) + 4 > BLOCKS_MAX:
            break
        blocks.append(_section(f"{title} ({len(gs)})"))
        for g in gs:
            if len(blocks) + 3 > BLOCKS_MAX:
                break
            blocks.append(_section(_group_text(g, clock)))
            left_groups -= 1
            left_notes -= len(g.items)
    if left_groups or more or unread:
        parts = []
        if left_groups:
            parts.append(f"{left_groups} more series or budgets ({left_notes} notifications)")
        if more:
            parts.append(f"{more} notifications beyond the {ITEMS_MAX} kept")
        if unread:
            parts.append(f"{unread} notifications of another tokenpulse version")
        blocks.append(_section("…and " + " and ".join(parts) + " not shown here: see the dashboard."))
    blocks.append(footer)
    names = ", ".join(_name(g.title, 60) for g in firing[:5])
    text = f"{kind} digest {when}: {total} notification{plural}, {len(firing)} still firing"
    if names:
        text += f" ({names}{', …' if len(firing) > 5 else ''})"
    return clip(text, FALLBACK_MAX), blocks[:BLOCKS_MAX]


# -- reports ---------------------------------------------------------------------------------
_REPORT_STYLE = Style(lambda text: _name(text, REPORT_NAME_MAX), lambda text: f"*{text}*", SECTION_MAX)


def report_blocks(report: Mapping[str, Any]) -> tuple[str, list[dict[str, Any]]]:
    """Fallback text and Block Kit blocks of a spend report (:mod:`alerts.report`), within
    Slack's limits: names escaped, each list within a section, at most 50 blocks."""
    title = report_title(report)
    partial = report_partial(report)  # some partitions' parts did not come by the deadline
    text = clip(f"📊 {escape_mrkdwn(title)}: {report_total(report)}{f' ({partial})' if partial else ''}", SECTION_MAX)
    blocks = [_header(f"📊 {title}"), *(_section(s) for s in report_sections(report, _REPORT_STYLE))]
    blocks = blocks[: BLOCKS_MAX - 1]
    what = (f"⚠️ {partial}: their spend is not in these numbers" if partial
            else "closed windows, exact to the nano-dollar")
    blocks.append(_context(f"tokenpulse · spend_report · {what}"))
    return text, blocks
