"""Where a notification goes: routes that name a receiver and a target, matched by labels and
minimum severity, like Alertmanager's routing tree (flat here: every route that takes a
notification gets it).

Pure: the delivery layer asks, the policy decides. A route names a receiver (``slack``,
``pagerduty``, ``webhook``, ``opsgenie``: :data:`alerts.receivers.RECEIVERS`) and a target of
that receiver (a Slack channel; the *name* of a PagerDuty routing key or Opsgenie API key,
whose secret stays in the settings), the labels a series must have (``team``, ``model``,
``provider``, ``org``, the ``series`` name itself or the alert ``kind``; none: every series) and
the lowest severity it wants. Per receiver, a notification goes to every target whose route
takes it, and to the receiver's default targets only when none of its routes took it (the
Slack channel of ``TOKENPULSE_SLACK_CHANNEL``, the unnamed PagerDuty key...).

A route's ``mode`` says how: ``immediate`` (a message per notification) or, for a receiver
that keeps digests (Slack), ``hourly`` or ``daily`` (collected, one message per period, see
:mod:`alerts.digest`). When an immediate and a digest route of one target both take a
notification, it goes out immediately.

>>> routes = [Route("slack", "#ads", {"team": "ads"}), Route("slack", "#finops", {}, "warning"),
...           Route("pagerduty", "ads-oncall", {"team": "ads"})]
>>> defaults = {"slack": ("#ai-spend",), "pagerduty": ("default",)}
>>> def note(team, severity):
...     return SpikeNotification(key=f"cost_spike:team={team}", seq=1, action="trigger", severity=severity,
...         reason="first", series=f"team={team}", labels={"team": team}, title="t",
...         observed_usd=9.0, expected_usd=1.0, excess_usd=8.0, excess_pct=800.0,
...         top_contributors=[], window_start=0.0, window_end=60.0, started_at=0.0,
...         fired_at=60.0, page=False)
>>> route_targets(note("ads", "info"), routes, defaults)
[('slack', '#ads', 'immediate'), ('pagerduty', 'ads-oncall', 'immediate')]
>>> route_targets(note("search", "critical"), routes, defaults)
[('slack', '#finops', 'immediate'), ('pagerduty', 'default', 'immediate')]
>>> route_targets(note("search", "info"), routes, defaults)
[('slack', '#ai-spend', 'immediate'), ('pagerduty', 'default', 'immediate')]
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from alerts.model import (
    MATCHERS,
    SEVERITY_RANK,
    Notification,
    ReportNotification,
    Severity,
    SpikeNotification,
    matches_all,
    unknown_matchers,
)

__all__ = ["IMMEDIATE", "ROUTE_MATCHERS", "ROUTE_MODES", "Route", "route_targets"]

ROUTE_MATCHERS = MATCHERS
"""What a route may match on (the same keys as a silence)."""
IMMEDIATE = "immediate"
ROUTE_MODES = (IMMEDIATE, "hourly", "daily")


@dataclass(frozen=True, slots=True)
class Route:
    """One route: ``receiver``/``target`` take what matches ``match`` from ``min_severity``
    up, in ``mode``; a digest mode's periods are local to ``timezone``, a daily one starting
    at ``daily_at``. ``source`` is the policy section it was written in (``routes``, or the
    short forms ``teams`` and ``subscriptions``), for reload reports only: it does not
    change where anything goes."""

    receiver: str
    target: str
    match: dict[str, str] = field(default_factory=dict)
    min_severity: Severity = "info"
    mode: str = IMMEDIATE
    timezone: str = "UTC"
    daily_at: str = "09:00"
    source: str = field(default="routes", compare=False)

    def __post_init__(self) -> None:
        bad = unknown_matchers(self.match)
        if bad:
            raise ValueError(f"route matchers must be some of {', '.join(ROUTE_MATCHERS)}; got {bad}")
        if self.min_severity not in SEVERITY_RANK:
            raise ValueError(f"min_severity must be one of {', '.join(SEVERITY_RANK)}, got {self.min_severity!r}")
        if self.mode not in ROUTE_MODES:
            raise ValueError(f"mode must be one of {', '.join(ROUTE_MODES)}, got {self.mode!r}")

    @property
    def digest(self) -> bool:
        """Whether it collects into a digest instead of sending each notification."""
        return self.mode != IMMEDIATE

    def takes(self, n: Notification) -> bool:
        """Whether ``n`` is for this route: its series matches, or one of the alerts it
        speaks for (``n.members``: a group's members, the teams an org alert inhibited)."""
        if SEVERITY_RANK[n.severity] < SEVERITY_RANK[self.min_severity]:
            return False
        if matches_all(self.match, n.rule, n.series, n.labels):
            return True
        members = n.members if isinstance(n, SpikeNotification) else ()
        return any(matches_all(self.match, n.rule, str(m.get("series", "")), m.get("labels") or {}) for m in members)


def route_targets(
    n: Notification, routes: Iterable[Route], defaults: Mapping[str, Sequence[str]]
) -> list[tuple[str, str, str]]:
    """``(receiver, target, mode)`` for every target ``n`` goes to, receiver by receiver in
    the order of ``defaults`` (the receivers that are on, each with its default targets),
    targets in policy order. A target gets ``immediate`` when any immediate route of it takes
    ``n``, else its digest mode. Routes of a receiver that is not in ``defaults`` are unused.

    A spend report goes only to the channel it was written for (in Slack).

    >>> routes = [Route("slack", "#ads", {"team": "ads"}, mode="daily"), Route("slack", "#ads", {}, "critical")]
    >>> n = SpikeNotification(key="k", seq=1, action="trigger", severity="warning", reason="first",
    ...     series="team=ads", labels={"team": "ads"}, title="t", observed_usd=9.0, expected_usd=1.0,
    ...     excess_usd=8.0, excess_pct=800.0, top_contributors=[], window_start=0.0, window_end=60.0,
    ...     started_at=0.0, fired_at=60.0, page=False)
    >>> route_targets(n, routes, {"slack": ("#ai-spend",)})
    [('slack', '#ads', 'daily')]
    >>> n.severity = "critical"
    >>> route_targets(n, routes, {"slack": ("#ai-spend",), "webhook": ("default",)})
    [('slack', '#ads', 'immediate'), ('webhook', 'default', 'immediate')]
    """
    if isinstance(n, ReportNotification):
        channels = defaults.get("slack")
        if not channels:
            return []
        return [("slack", n.channel or channels[0], IMMEDIATE)]
    routes = list(routes)
    out: list[tuple[str, str, str]] = []
    for receiver, fallback in defaults.items():
        modes: dict[str, str] = {}
        for r in routes:
            if r.receiver == receiver and r.takes(n) and (not r.digest or r.target not in modes):
                modes[r.target] = r.mode
        if not modes:
            modes = {t: IMMEDIATE for t in fallback}
        out += [(receiver, t, m) for t, m in modes.items()]
    return out
