"""The two records that cross the alerts boundary.

:class:`Signal` comes in (one per judged window per watched series, from the stream layer or
the offline replay); :class:`Notification` goes out (one thing to deliver, to every sink).
Both are plain slotted dataclasses with ``to_dict`` / ``from_dict`` so that they travel as
JSON through Kafka topics (the outbox) and Faust tables without any Faust record type.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, Literal, TypedDict

Action = Literal["trigger", "update", "resolve"]
Severity = Literal["info", "warning", "critical"]
Reason = Literal["first", "worsened", "repeat", "resolved"]

SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "critical": 2}


class Contributor(TypedDict, total=False):
    """One of the users, models (or, for the org, teams) behind a window's excess: what it
    spent (``usd``) and, once the series has a learnt mix, its usual share of the expected
    spend (``expected_usd``) and what it spent above that (``excess_usd``)."""

    kind: str  # "user" | "model" | "team"
    name: str
    usd: float
    expected_usd: float
    excess_usd: float


def _contributors(raw: Any) -> list[Contributor]:
    # Copy, and coerce: these come from JSON written by another process version.
    out: list[Contributor] = []
    for c in raw or ():
        one: Contributor = {"kind": str(c.get("kind", "")), "name": str(c.get("name", "")), "usd": float(c.get("usd", 0.0))}
        for k in ("expected_usd", "excess_usd"):
            if c.get(k) is not None:
                one[k] = float(c[k])  # type: ignore[literal-required]
        out.append(one)
    return out


def contributor_rank(c: Contributor) -> float:
    """Sort key, biggest first: the excess when known, else the spend."""
    return -float(c.get("excess_usd", c.get("usd", 0.0)))


def _known(cls: type, data: dict[str, Any]) -> dict[str, Any]:
    # Unknown keys are dropped so that a newer writer does not break an older reader.
    names = {f.name for f in fields(cls)}
    return {k: v for k, v in data.items() if k in names}


@dataclass(slots=True)
class Signal:
    """The verdict on one closed window of one series, as handed to :class:`AlertEngine`.

    ``expected_usd`` is the detector's baseline for the window and ``upper_usd`` the bound
    above which it calls the window anomalous; ``score`` (0..1) says how unusual it is: ``1 - p``
    for an upper-tail p-value against the series' own history (``detectors.base.Verdict``).
    """

    series: str
    labels: dict[str, str]
    window_start: float
    window_end: float
    observed_usd: float
    expected_usd: float
    upper_usd: float = 0.0
    score: float = 0.0
    is_anomaly: bool = False
    top_contributors: list[Contributor] = field(default_factory=list)
    detector: str = ""
    impact_usd: float | None = None
    """Excess over expected summed over the incident so far, when the detector tracks it."""
    explanation: str = ""
    """The detector's one-sentence reason for its verdict (which model, how unusual)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "series": self.series,
            "labels": dict(self.labels),
            "window_start": self.window_start,
            "window_end": self.window_end,
            "observed_usd": self.observed_usd,
            "expected_usd": self.expected_usd,
            "upper_usd": self.upper_usd,
            "score": self.score,
            "is_anomaly": self.is_anomaly,
            "top_contributors": [dict(c) for c in self.top_contributors],
            "detector": self.detector,
            "impact_usd": self.impact_usd,
            "explanation": self.explanation,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signal:
        d = _known(cls, data)
        d["labels"] = {str(k): str(v) for k, v in (d.get("labels") or {}).items()}
        d["top_contributors"] = _contributors(d.get("top_contributors"))
        return cls(**d)


@dataclass(slots=True)
class Notification:
    """One thing to deliver: the trigger, an in-thread update, or the resolve of an alert.

    ``key`` is stable for the life of the series' alert (``"{rule}:{series}"``): it is the
    PagerDuty ``dedup_key`` and the key under which a sink keeps its delivery state (the Slack
    ``ts``). ``started_at`` tells incidents of the same key apart. ``seq`` increases with every
    notification of the key, across incidents (it is the producing window's end in ms), so a
    delivery log can skip a redelivered notification by comparing it with the last one sent. For a resolve, the numbers are those of the worst window of
    the incident and ``ended_at`` is when spend was back to normal.

    A budget notification has ``budget`` set and reuses the common fields: ``observed_usd``
    is the spend and ``expected_usd`` the limit (0 for a token budget), ``window_*`` and
    ``started_at`` the period's bounds (so a forecast and its resolve share a Slack thread).
    """

    key: str
    seq: int
    action: Action
    severity: Severity
    reason: Reason
    series: str
    labels: dict[str, str]
    title: str
    observed_usd: float
    expected_usd: float
    excess_usd: float
    excess_pct: float | None  # None: the baseline was zero, so any spend is "infinitely" more
    top_contributors: list[Contributor]
    window_start: float
    window_end: float
    started_at: float
    fired_at: float
    page: bool
    dashboard_url: str | None = None
    rule: str = "cost_spike"
    detector: str = ""
    ended_at: float | None = None
    impact_usd: float | None = None  # excess summed over the incident so far (USD)
    explanation: str = ""  # the detector's reason for the window that produced it
    budget: dict[str, Any] | None = None
    """Set on budget notifications (rules ``budget_threshold`` and ``budget_forecast``), JSON
    values: ``name``, ``series``, ``unit`` (usd/tokens), ``period`` (day/week/month), ``tz``,
    ``period_id``, ``period_start``, ``period_end``, ``spent``, ``limit``, ``pct_used``,
    ``days_left``, ``threshold`` (percent, or None), ``projected_total``, ``projected_pct``,
    ``exhaustion_ts`` (None: not within the period). Amounts are in the unit (USD or tokens).
    ``None`` on cost spikes; an older reader drops the field."""
    members: list[dict[str, Any]] = field(default_factory=list)
    """The alerts this notification speaks for, when it speaks for more than its own series
    (see :class:`alerts.engine.AlertEngine`): the members of a team's group (``status``
    ``firing`` or ``resolved``), or on the org alert the alerts of its teams that it inhibited
    in that window (``status`` ``inhibited``). Each: ``series``, ``labels``, ``status``,
    ``severity``, ``observed_usd``, ``expected_usd``, ``excess_usd``, ``excess_pct``,
    ``impact_usd``, ``started_at``, ``window_start``, ``window_end``. Empty for an alert of one
    series (the notification's own numbers are its story); an older reader drops the field."""
    mix: dict[str, Any] | None = None
    """Set on third-party share notifications (rule ``mix_share``), JSON values: ``team``,
    ``period``, ``tz``, ``period_id``, ``period_start``, ``period_end``, ``share_pct``,
    ``line_pct``, ``previous_period_id``, ``previous_share_pct`` (None: no spend then),
    ``internal_usd``, ``third_party_usd``, ``top_third_party_models`` ([{model, usd}])."""
    report: dict[str, Any] | None = None
    """Set on spend reports (rule ``spend_report``): the report as built by
    ``streams.reports.build_report`` (JSON values; rendered by :mod:`alerts.report`)."""

    @property
    def team(self) -> str | None:
        return self.labels.get("team")

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {f.name: getattr(self, f.name) for f in fields(self)}
        d["labels"] = dict(self.labels)
        d["top_contributors"] = [dict(c) for c in self.top_contributors]
        d["budget"] = None if self.budget is None else dict(self.budget)
        d["members"] = [dict(m) for m in self.members]
        d["mix"] = None if self.mix is None else dict(self.mix)
        d["report"] = None if self.report is None else dict(self.report)
        return d

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Notification:
        d = _known(cls, data)
        d["labels"] = {str(k): str(v) for k, v in (d.get("labels") or {}).items()}
        d["top_contributors"] = _contributors(d.get("top_contributors"))
        if d.get("budget") is not None:
            d["budget"] = dict(d["budget"])
        d["members"] = [dict(m) for m in d.get("members") or ()]
        if d.get("mix") is not None:
            d["mix"] = dict(d["mix"])
        if d.get("report") is not None:
            d["report"] = dict(d["report"])
        return cls(**d)


MATCHERS = ("team", "model", "provider", "user", "org", "series", "kind")
"""What a silence or a subscription may match on: a series' labels, the series name itself,
the alert rule."""
SILENCE_MATCHERS = MATCHERS


def unknown_matchers(keys: Iterable[str]) -> list[str]:
    """The keys that are not :data:`MATCHERS`, sorted."""
    return sorted(set(keys) - set(MATCHERS))


def matches_all(matchers: dict[str, str], rule: str, series: str, labels: dict[str, str]) -> bool:
    """Whether an alert of ``rule`` on ``series`` (with ``labels``) has every matcher's value."""
    for k, v in matchers.items():
        got = rule if k == "kind" else series if k == "series" else labels.get(k)
        if got != v:
            return False
    return True


@dataclass(slots=True, frozen=True)
class Silence:
    """Mutes the alerts whose series and rule match every matcher, from ``starts_at`` until
    ``ends_at`` (epoch seconds, event time; ``None``: open-ended), with the reason people will
    read in the API (Alertmanager's silences).

    >>> s = Silence(matchers={"team": "data"}, starts_at=0.0, ends_at=3600.0, reason="backfill")
    >>> s.matches("cost_spike", "team=data|model=gpt-4o", {"team": "data", "model": "gpt-4o"}, 60.0)
    True
    >>> s.matches("cost_spike", "team=ads", {"team": "ads"}, 60.0), s.matches("cost_spike", "team=data", {"team": "data"}, 3600.0)
    (False, False)
    """

    matchers: dict[str, str]
    starts_at: float
    ends_at: float | None
    reason: str
    created_by: str = ""
    id: str = ""

    def active(self, at: float) -> bool:
        return self.starts_at <= at and (self.ends_at is None or at < self.ends_at)

    def matches(self, rule: str, series: str, labels: dict[str, str], at: float) -> bool:
        return self.active(at) and matches_all(self.matchers, rule, series, labels)

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "matchers": dict(self.matchers),
            "starts_at": self.starts_at,
            "ends_at": self.ends_at,
            "reason": self.reason,
            "created_by": self.created_by,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Silence:
        d = _known(cls, data)
        d["matchers"] = {str(k): str(v) for k, v in (d.get("matchers") or {}).items()}
        if unknown_matchers(d["matchers"]) or not d["matchers"]:
            raise ValueError(f"silence matchers must be some of {', '.join(SILENCE_MATCHERS)}; got {sorted(d['matchers'])}")
        d["starts_at"] = float(d.get("starts_at") or 0.0)
        if d.get("ends_at") is not None:
            d["ends_at"] = float(d["ends_at"])
        return cls(**d)
