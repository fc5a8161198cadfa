"""The records that cross the alerts boundary.

:class:`Signal` comes in (one per judged window per watched series, from the stream layer or
the offline replay); a :class:`Notification` goes out (one thing to deliver, to every sink):
an envelope that every receiver reads, and one kind per thing to tell (:data:`KINDS`: a cost
spike, a budget, the third-party share, a spend report). All are plain slotted dataclasses
with ``to_dict`` / ``from_dict`` so that they travel as JSON through Kafka topics (the
outbox) and Faust tables without any Faust record type.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Literal, Self, TypedDict

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
                one[k] = float(c[k])
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
    mean_expected_usd: float | None = None
    """The mean spend per window ``expected_usd`` stands for, when the detector tells it apart
    (``detectors.base.Verdict.mean_expected``); None: ``expected_usd``. Whether a fired alert's
    window is back to normal is measured against it (:attr:`baseline_usd`)."""

    @property
    def baseline_usd(self) -> float:
        """What a fired alert's window must come back near to count as normal
        (:func:`alerts.engine.clearly_normal`): :attr:`mean_expected_usd`, else ``expected_usd``."""
        return self.expected_usd if self.mean_expected_usd is None else self.mean_expected_usd

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
            "mean_expected_usd": self.mean_expected_usd,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Signal:
        d = _known(cls, data)
        d["labels"] = {str(k): str(v) for k, v in (d.get("labels") or {}).items()}
        d["top_contributors"] = _contributors(d.get("top_contributors"))
        return cls(**d)


Kind = Literal["spike", "budget", "mix", "report"]


def _copy(value: Any) -> Any:
    # JSON values, copied so that a record and the notification it was read from (or written
    # to) never share a list or a dict
    if isinstance(value, dict):
        return {k: _copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_copy(v) for v in value]
    return value


@dataclass(slots=True, kw_only=True)
class Notification:
    """One thing to deliver: the envelope that every receiver, the outbox and the delivery log
    read, whatever the kind. Use one of its kinds: :class:`SpikeNotification` (a cost spike,
    from :class:`alerts.engine.AlertEngine`), :class:`BudgetNotification`,
    :class:`MixNotification` (third-party share) or :class:`ReportNotification` (a spend
    report); :meth:`from_dict` reads any of them back.

    ``key`` is stable for the life of the alert (``"{rule}:{series}"``): it is the PagerDuty
    ``dedup_key``, the Opsgenie ``alias`` and the key under which a sink keeps its delivery
    state (the Slack ``ts``). ``started_at`` tells incidents (or periods) of the same key apart.
    ``seq`` increases with every notification of the key, across incidents (the producing
    window's end in ms), so a delivery log can skip a redelivered notification by comparing it
    with the last one sent. ``page``: it wakes people up (PagerDuty, Opsgenie). ``ended_at``:
    on a resolve, when things were back to normal.

    On the wire (the outbox topic, the ``deliveries`` and ``alerts`` tables, the webhook) a
    notification is :meth:`to_dict`: ``kind`` and every field, flat, JSON values.
    """

    kind: ClassVar[str] = ""

    key: str
    seq: int
    action: Action
    severity: Severity
    reason: Reason
    rule: str
    series: str
    labels: dict[str, str]
    title: str
    started_at: float
    fired_at: float
    page: bool = False
    ended_at: float | None = None
    dashboard_url: str | None = None

    @property
    def team(self) -> str | None:
        return self.labels.get("team")

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, **{f.name: _copy(getattr(self, f.name)) for f in fields(self)}}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Self:
        """The notification of a :meth:`to_dict` record, of the kind it names. From a kind's
        own class, that kind only, and a record without ``kind`` is read as one (the engine's
        own group members). ``ValueError`` naming the key for a record this version cannot
        read: an unknown kind, a missing field."""
        kind = data.get("kind") or cls.kind or None
        sub = _KINDS.get(str(kind))
        if sub is None or not issubclass(sub, cls):
            want = cls.kind or " or ".join(_KINDS)
            raise ValueError(f"notification {data.get('key')!r}: kind {kind!r} is not {want} "
                             "(a record of another tokenpulse version?)")
        d = _known(sub, data)
        d["labels"] = {str(k): str(v) for k, v in (d.get("labels") or {}).items()}
        try:
            return sub(**sub._coerce(d))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"notification {data.get('key')!r} ({kind}): {exc}") from None

    @classmethod
    def _coerce(cls, d: dict[str, Any]) -> dict[str, Any]:
        """A kind's own clean-up of a record's values (copies, numbers) before construction."""
        return {k: _copy(v) for k, v in d.items()}


@dataclass(slots=True, kw_only=True)
class SpikeNotification(Notification):
    """A cost spike's trigger, in-thread update or resolve (rule ``cost_spike``). For a
    resolve, the numbers are those of the worst window of the incident.

    ``members``: the alerts this notification speaks for, when it speaks for more than its own
    series (see :class:`alerts.engine.AlertEngine`): the members of a team's group (``status``
    ``firing`` or ``resolved``), or on the org alert the alerts of its teams that it inhibited
    in that window (``status`` ``inhibited``). Each: ``series``, ``labels``, ``status``,
    ``severity``, ``observed_usd``, ``expected_usd``, ``excess_usd``, ``excess_pct``,
    ``impact_usd``, ``started_at``, ``window_start``, ``window_end``. Empty for an alert of one
    series (the notification's own numbers are its story).
    """

    kind: ClassVar[str] = "spike"

    rule: str = "cost_spike"
    observed_usd: float
    expected_usd: float
    excess_usd: float
    excess_pct: float | None  # None: the baseline was zero, so any spend is "infinitely" more
    window_start: float
    window_end: float
    top_contributors: list[Contributor] = field(default_factory=list)
    detector: str = ""
    impact_usd: float | None = None  # excess summed over the incident so far (USD)
    explanation: str = ""  # the detector's reason for the window that produced it
    members: list[dict[str, Any]] = field(default_factory=list)

    @classmethod
    def _coerce(cls, d: dict[str, Any]) -> dict[str, Any]:
        d = super(SpikeNotification, cls)._coerce(d)
        d["top_contributors"] = _contributors(d.get("top_contributors"))
        return d


@dataclass(slots=True, kw_only=True)
class BudgetNotification(Notification):
    """A budget's threshold crossing (rule ``budget_threshold``, ``threshold`` in percent) or
    burn forecast and its resolve (rule ``budget_forecast``). Amounts are in the budget's
    ``unit`` (``usd`` or ``tokens``); ``started_at`` is the period's start, so a forecast and its
    resolve share a Slack thread. ``exhaustion_ts``: when the forecast runs out (None: not
    within the period); ``explanation``: how the forecast was made."""

    kind: ClassVar[str] = "budget"

    budget: str  # its name
    unit: str
    period: str  # day, week, month
    tz: str
    period_id: str
    period_start: float
    period_end: float
    spent: float
    limit: float
    pct_used: float
    days_left: float
    threshold: float | None = None
    thresholds: list[float] = field(default_factory=list)
    projected_total: float = math.nan
    projected_pct: float = math.nan
    exhaustion_ts: float | None = None
    explanation: str = ""

    @classmethod
    def _coerce(cls, d: dict[str, Any]) -> dict[str, Any]:
        d = super(BudgetNotification, cls)._coerce(d)
        # JSON has no NaN: a figure the forecast could not make comes back as null
        for k in ("spent", "limit", "pct_used", "days_left", "projected_total", "projected_pct"):
            if k in d:
                d[k] = _float(d[k])
        return d


@dataclass(slots=True, kw_only=True)
class MixNotification(Notification):
    """A team's third-party share of the ``period`` so far went past its line (rule
    ``mix_share``; shares in percent). ``previous_share_pct`` is None when the team had no
    spend in the previous period; ``top_third_party_models``: ``[{model, usd}]``."""

    kind: ClassVar[str] = "mix"

    rule: str = "mix_share"
    period: str
    tz: str
    period_id: str
    period_start: float
    period_end: float
    share_pct: float
    line_pct: float
    previous_period_id: str
    previous_share_pct: float | None
    internal_usd: float
    third_party_usd: float
    top_third_party_models: list[dict[str, Any]] = field(default_factory=list)


@dataclass(slots=True, kw_only=True)
class ReportNotification(Notification):
    """A spend report for ``channel`` (rule ``spend_report``): ``report`` is the document
    built by ``streams.reports.core.build_report`` (JSON values; rendered by :mod:`alerts.report`)."""

    kind: ClassVar[str] = "report"

    rule: str = "spend_report"
    channel: str
    report: dict[str, Any]


_KINDS: dict[str, type[Notification]] = {
    k.kind: k for k in (SpikeNotification, BudgetNotification, MixNotification, ReportNotification)
}
KINDS: tuple[str, ...] = tuple(_KINDS)
"""The kinds of notification, as ``Notification.kind`` and the wire's ``kind`` name them."""


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return math.nan


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
