"""Which Slack channels a notification goes to: subscriptions by labels and minimum severity.

Pure: the delivery layer asks, the policy decides. A subscription names a channel, the labels a
series must have (``team``, ``model``, ``provider``, ``org``, the ``series`` name itself or the
alert ``kind``; none: every series) and the lowest severity it wants. A notification goes to
every matching channel, and to the default channel only when no subscription took it.

A subscription's ``mode`` says how: ``immediate`` (a message per notification) or a digest
(``hourly``, ``daily``: collected, one message per period, see :mod:`alerts.digest`). When
an immediate and a digest subscription of one channel both take a notification, it goes out
immediately (:func:`slack_targets`).

>>> from alerts.model import Notification
>>> routes = [Route("#ads", {"team": "ads"}), Route("#finops", {}, "warning")]
>>> def note(team, severity):
...     return Notification(key=f"cost_spike:team={team}", seq=1, action="trigger", severity=severity,
...         reason="first", series=f"team={team}", labels={"team": team}, title="t",
...         observed_usd=9.0, expected_usd=1.0, excess_usd=8.0, excess_pct=800.0,
...         top_contributors=[], window_start=0.0, window_end=60.0, started_at=0.0,
...         fired_at=60.0, page=False)
>>> slack_channels(note("ads", "info"), routes, "#ai-spend")
['#ads']
>>> slack_channels(note("ads", "critical"), routes, "#ai-spend")
['#ads', '#finops']
>>> slack_channels(note("search", "info"), routes, "#ai-spend")
['#ai-spend']
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from alerts.model import MATCHERS, SEVERITY_RANK, Notification, Severity, matches_all, unknown_matchers

__all__ = ["ROUTE_MATCHERS", "ROUTE_MODES", "Route", "slack_channels", "slack_targets"]

ROUTE_MATCHERS = MATCHERS
"""What a subscription may match on (the same keys as a silence)."""
ROUTE_MODES = ("immediate", "hourly", "daily")


@dataclass(frozen=True, slots=True)
class Route:
    channel: str
    match: dict[str, str] = field(default_factory=dict)
    min_severity: Severity = "info"
    mode: str = "immediate"

    def __post_init__(self) -> None:
        bad = unknown_matchers(self.match)
        if bad:
            raise ValueError(f"subscription matchers must be some of {', '.join(ROUTE_MATCHERS)}; got {bad}")
        if self.min_severity not in SEVERITY_RANK:
            raise ValueError(f"min_severity must be one of {', '.join(SEVERITY_RANK)}, got {self.min_severity!r}")
        if self.mode not in ROUTE_MODES:
            raise ValueError(f"mode must be one of {', '.join(ROUTE_MODES)}, got {self.mode!r}")

    def takes(self, n: Notification) -> bool:
        """Whether ``n`` is for this channel: its series matches, or one of the alerts it
        speaks for (``n.members``: a group's members, the teams an org alert inhibited)."""
        if SEVERITY_RANK[n.severity] < SEVERITY_RANK[self.min_severity]:
            return False
        if matches_all(self.match, n.rule, n.series, n.labels):
            return True
        return any(matches_all(self.match, n.rule, str(m.get("series", "")), m.get("labels") or {}) for m in n.members)


def slack_channels(n: Notification, routes: Iterable[Route], default_channel: str | None) -> list[str]:
    """Every channel whose subscription takes ``n``, in policy order; else the default."""
    out: list[str] = []
    for r in routes:
        if r.channel not in out and r.takes(n):
            out.append(r.channel)
    if not out and default_channel:
        out.append(default_channel)
    return out


def slack_targets(n: Notification, routes: Iterable[Route], default_channel: str | None) -> list[tuple[str, str]]:
    """``(channel, mode)`` for every channel that takes ``n``, in policy order: ``immediate``
    when any immediate subscription of the channel takes it, else its digest mode. The
    default channel, when it gets ``n``, gets it immediately.

    >>> routes = [Route("#ads", {"team": "ads"}, mode="daily"), Route("#ads", {}, "critical")]
    >>> n = Notification(key="k", seq=1, action="trigger", severity="warning", reason="first",
    ...     series="team=ads", labels={"team": "ads"}, title="t", observed_usd=9.0, expected_usd=1.0,
    ...     excess_usd=8.0, excess_pct=800.0, top_contributors=[], window_start=0.0, window_end=60.0,
    ...     started_at=0.0, fired_at=60.0, page=False)
    >>> slack_targets(n, routes, "#ai-spend")
    [('#ads', 'daily')]
    >>> n.severity = "critical"
    >>> slack_targets(n, routes, "#ai-spend")
    [('#ads', 'immediate')]
    """
    routes = list(routes)
    out: dict[str, str] = {}
    for r in routes:
        if r.takes(n):
            if r.mode == "immediate" or r.channel not in out:
                out[r.channel] = r.mode
    if not out and default_channel:
        out[default_channel] = "immediate"
    return list(out.items())
