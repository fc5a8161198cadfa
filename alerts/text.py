"""Text helpers every receiver's rendering shares: money, percentages, times, durations, and
cutting text to a receiver's limit.

Receiver-neutral on purpose: Slack's mrkdwn escaping lives with Slack
(:mod:`alerts.receivers.slack.render`), PagerDuty's and Opsgenie's field limits with them.

>>> usd(1234.5), usd(0.0123), signed_usd(-2.0), pct(None), pct(250.0)
('$1,234.50', '$0.0123', '-$2.00', 'new spend, no baseline', '+250%')
>>> duration(59), duration(3720), duration(3 * 86400 + 3600)
('59 s', '1 h 2 min', '3 d 1 h')
>>> amount(1500.0, "tokens"), amount(float("nan"), "usd"), num("3.5"), num(None)
('1,500 tokens', 'n/a', 3.5, nan)
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from alerts.model import BudgetNotification


def num(value: Any) -> float:
    """A number from a record written by another process: NaN when absent or not one."""
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def u16(text: str) -> int:
    """Length in UTF-16 code units: how Slack counts, never less than Python's ``len``."""
    return len(text.encode("utf-16-le")) // 2


def clip(text: str, limit: int) -> str:
    """Shorten ``text`` to at most ``limit`` UTF-16 units, marking the cut with an ellipsis.

    Safe on escaped text: a cut never leaves half an entity such as ``&am``.
    """
    if u16(text) <= limit:
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


def short(text: str, limit: int) -> str:
    """``text`` cut to ``limit`` characters (code points), the cut marked with an ellipsis:
    for receivers that count characters (PagerDuty, Opsgenie)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    """An excess in percent of the baseline; ``None``: the baseline was zero."""
    if p is None:
        return "new spend, no baseline"
    return f"{p:+,.0f}%"


def pct_of(x: float) -> str:
    """A share or a fill level: ``80.0%``."""
    return f"{x:,.1f}%" if math.isfinite(x) else "n/a"


def amount(x: float, unit: str) -> str:
    """A budget amount in its unit: ``$1,234.50`` or ``1,234 tokens``."""
    if unit == "usd":
        return usd(x)
    return f"{x:,.0f} tokens" if math.isfinite(x) else "n/a"


def utc(ts: float, *, date: bool = True) -> str:
    d = datetime.fromtimestamp(ts, tz=UTC)
    return d.strftime("%Y-%m-%d %H:%M UTC" if date else "%H:%M UTC")


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=UTC).isoformat(timespec="seconds")


def when(ts: Any, fmt: Callable[[float], str] = utc) -> str | None:
    """A time from a record, or None when absent or not a representable instant."""
    t = num(ts)
    if not math.isfinite(t):
        return None
    try:
        return str(fmt(t))
    except (OverflowError, OSError, ValueError):
        return None


def window_range(start: float, end: float) -> str:
    a = datetime.fromtimestamp(start, tz=UTC)
    b = datetime.fromtimestamp(end, tz=UTC)
    t = "%H:%M:%S" if a.second or b.second else "%H:%M"
    # A window ending at midnight still reads as one day: 23:55–00:00.
    same_day = a.date() == b.date() or ((b - a).total_seconds() <= 86400 and b.time() == b.time().min)
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


def budget_figures(n: BudgetNotification) -> dict[str, Any]:
    """A budget notification's figures as text, in its unit: ``spent``, ``limit``,
    ``pct_used``, ``days_left``, ``projected``, ``projected_pct`` and ``exhausted`` (None:
    does not run out this period)."""
    days = num(n.days_left)
    return {
        "unit": n.unit,
        "spent": amount(num(n.spent), n.unit),
        "limit": amount(num(n.limit), n.unit),
        "pct_used": pct_of(num(n.pct_used)),
        "days_left": f"{days:,.1f}" if math.isfinite(days) else "n/a",
        "projected": amount(num(n.projected_total), n.unit),
        "projected_pct": pct_of(num(n.projected_pct)),
        "exhausted": when(n.exhaustion_ts),
    }


def fit_key(key: str, limit: int) -> str:
    """``key`` itself when it has at most ``limit`` characters, else a stable shortened form
    (its start and a hash of the whole): for a receiver's dedup key or alias.

    >>> fit_key("cost_spike:team=ads", 255)
    'cost_spike:team=ads'
    >>> k = fit_key("x" * 300, 40); len(k), k == fit_key("x" * 300, 40), k[-33]
    (40, True, '#')
    """
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode()).hexdigest()[:32]
    return f"{key[: limit - len(digest) - 1]}#{digest}"
