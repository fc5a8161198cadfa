"""The YAML policy: what is watched, prices of internal models, detector and alert thresholds,
and where each team's alerts go. Validated at start; an error names the line at fault.

A policy file is small, plain YAML read by :func:`parse_policy`, which refuses (naming the line)
what would let one file stop or swamp the worker that loads or reloads it: more than
:data:`MAX_POLICY_BYTES`, text that is not UTF-8, aliases (``*name``: a 528-byte "billion
laughs" file expands to gigabytes), nesting deeper than :data:`MAX_DEPTH`, a key given twice in
one mapping (YAML would keep the last one silently), and numbers that are not finite or do not
fit 64 bits (``.inf``, ``.nan``, ``1e400``, a 5,000-digit integer) anywhere in the file. Values
quoted in its errors are cut to 80 characters.
"""

from __future__ import annotations

import math
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator, model_validator

from detectors.config import detector_kwargs, merge_params
from streams.common.dimensions import ALIASES, DEFAULT_WATCHED, NAMES
from streams.worker.query import shown as _short

if TYPE_CHECKING:
    from alerts.routing import Route


class _LocatedError(ValueError):
    """A semantic error found after parsing, with the policy path it belongs to."""

    def __init__(self, loc: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


class PolicyError(Exception):
    """The policy file is invalid. ``str()`` names the file, the line and what is wrong."""


#: The largest policy file read (1 MiB): a real one is a few kilobytes.
MAX_POLICY_BYTES = 1 << 20
#: The deepest nesting of mappings and lists in a policy file.
MAX_DEPTH = 32
_MAX_ERRORS = 20  # errors listed (the rest are counted)
_MAX_MESSAGE = 300  # characters of one error's message
_INT_LIMIT = 2**63  # policy integers fit 64 bits, as every number the worker stores does
_FLOAT_MAX = Decimal(sys.float_info.max)


class _InnerError(ValueError):
    """An error inside a field's value (``inner``: the path from the field down to it)."""

    def __init__(self, inner: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.inner = inner
        self.message = message


def _finite_numbers(value: Any, inner: tuple[Any, ...] = ()) -> None:
    """Refuse a number that is not finite or does not fit 64 bits (an integer) or a double (a
    decimal), anywhere inside ``value`` (lists and mappings too, e.g. detector params)."""
    if isinstance(value, (bool, BaseModel)):
        return  # a nested section checked its own fields
    if isinstance(value, float):
        if not math.isfinite(value):
            raise _InnerError(inner, f"must be a finite number, got {value}")
    elif isinstance(value, Decimal):
        if not value.is_finite() or abs(value) > _FLOAT_MAX:
            raise _InnerError(inner, f"must be a finite number, got {_short(str(value))}")
    elif isinstance(value, int):
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise _InnerError(inner, "out of range: a number here fits 64 bits")
    elif isinstance(value, dict):
        for k, v in value.items():
            _finite_numbers(v, (*inner, k))
    elif isinstance(value, (list, tuple)):
        for i, v in enumerate(value):
            _finite_numbers(v, (*inner, i))


class _Strict(BaseModel):
    # allow_inf_nan: "inf" and "nan" (also as strings) are refused before any bound is checked
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    @field_validator("*")
    @classmethod
    def _finite(cls, v: Any) -> Any:
        # every field of every section: intervals, dollar amounts, thresholds, detector params
        _finite_numbers(v)
        return v


class Price(_Strict):
    """USD per million tokens. Cache rates default to the input rate."""

    input: float = Field(ge=0)
    output: float = Field(ge=0)
    cache_read: float | None = Field(default=None, ge=0)
    cache_write: float | None = Field(default=None, ge=0)


class DetectorOverride(_Strict):
    """Different detector parameters for the series whose labels match (``team: legal``)."""

    match: dict[str, str] = Field(min_length=1)
    params: dict[str, Any] = Field(default_factory=dict)


class FeedbackPolicy(_Strict):
    """How far on-call's "not an anomaly" answers raise a series' alert floor
    (:mod:`streams.judge.raising`): each answer sets it to ``not_anomaly_step`` times the
    answered incident's peak excess, at most ``max_raise`` times the first answered incident's
    (0: answers are recorded and raise nothing); without another answer the floor halves every
    ``floor_half_life_days`` of event time (0: it never comes down)."""

    not_anomaly_step: float = Field(default=1.5, ge=1, le=100)
    max_raise: float = Field(default=4.0, ge=0, le=1000)
    floor_half_life_days: float = Field(default=14.0, ge=0, le=3650)

    @model_validator(mode="after")
    def _cap_reachable(self) -> FeedbackPolicy:
        if 0 < self.max_raise < 1:
            raise _LocatedError(("detector", "feedback", "max_raise"), f"must be 0 (off) or at least 1, got {self.max_raise:g}")
        return self


class _Rule(_Strict):
    """An org stage rule of the policy: ``enabled`` and its thresholds, which the stream layer
    takes as a dict of the thresholds (:meth:`settings`)."""

    enabled: bool = True

    def settings(self) -> dict[str, Any] | None:
        """The rule's settings as the stream layer takes them: every field but ``enabled``, in
        declaration order (None: off)."""
        return self.model_dump(exclude={"enabled"}) if self.enabled else None


class NewSeriesPolicy(_Rule):
    """The org stage's ``new-series`` rule (:mod:`streams.org.newseries`): a team x model
    series first seen two days or more after its team alerts when its first day's spend
    reaches ``ratio`` times the team's price per request of the 7 days before (on at least
    ``min_requests`` requests) and exceeds that price by ``min_excess_usd`` (or, for a team
    that spends less than that in ``excess_team_days`` days, by that spend, but at least
    ``min_excess_floor_usd``). A model the team has not used for ``dormant_days`` is new again.
    ``enabled: false`` turns it off. Needs ``team`` and ``team×model`` watched."""

    ratio: float = Field(default=3.0, ge=1, le=1000)
    min_requests: int = Field(default=3, ge=1, le=1_000_000)
    min_excess_usd: float = Field(default=2.0, ge=0)
    dormant_days: float = Field(default=2.0, ge=0, le=3650)
    excess_team_days: float = Field(default=1.0, ge=0, le=3650)
    min_excess_floor_usd: float = Field(default=0.5, ge=0)


class WeekOverWeekPolicy(_Rule):
    """The org stage's week-over-week hourly judge of each team series (beside the new-series
    rule, whose hourly team sums it reads: off with that rule): at each UTC hour's end, a team
    whose last ``hours`` hours cost at least ``ratio`` times the larger of the same hours one and
    two weeks before (``weeks``; each the largest of those hours and the same span ``shift``
    hours either side), and more by ``excess_hours`` x ``hours`` hours of its mean spend and by
    ``min_excess_usd``, in hours none of its series alerted in, alerts for the next hour.
    ``enabled: false`` turns it off."""

    hours: int = Field(default=3, ge=1, le=24)
    ratio: float = Field(default=8.0, ge=1, le=1000)
    excess_hours: float = Field(default=3.0, ge=0, le=1000)
    min_excess_usd: float = Field(default=2.0, ge=0)
    weeks: int = Field(default=2, ge=1, le=4)
    shift: int = Field(default=1, ge=0, le=12)
    growth: Literal["none", "day", "week"] = "none"


class TeamBurstPolicy(_Rule):
    """The org stage's team burst rule (beside the new-series rule, whose hourly team sums give
    the team's mean spend: off with that rule; it reads the team series' expected spend and
    p-value, which the judges send whenever it is on): a team series with at least ``surprising`` of its last ``windows``
    windows at a surprise p-value of at most ``p`` alerts while its spend since the first of them
    is at least ``ratio`` times what its detector expected there and more by ``mean_minutes``
    minutes of the team's mean spend over the week before and by ``min_excess_usd``.
    ``enabled: false`` turns it off."""

    windows: int = Field(default=30, ge=1, le=1440)
    surprising: int = Field(default=2, ge=1, le=1440)
    p: float = Field(default=1e-4, gt=0, le=1)
    ratio: float = Field(default=3.0, ge=1, le=1000)
    mean_minutes: float = Field(default=60.0, ge=0, le=10080)
    min_excess_usd: float = Field(default=0.5, ge=0)


class DetectorPolicy(_Strict):
    """Which model judges every watched series, and its parameters.

    For the default combiner, a key of ``params`` that names one of its components (a mapping
    such as ``seasonal: {threshold: 6}``) sets that component's parameters; the other keys are
    the combiner's own (``min_excess_usd``, ``components``...). ``overrides`` change parameters
    for the series whose labels match, the later entries winning. ``feedback`` bounds what
    on-call's answers change (:class:`FeedbackPolicy`); ``new_series`` sets the org stage's
    rule for a team's new model (:class:`NewSeriesPolicy`). ``team_scale_minutes``: a team x
    model series' flagged window alerts only once its incident's excess reaches this many
    minutes of its team series' expected spend in that window (the org stage's team-scale gate,
    :meth:`streams.org.core.OrgCore.team_scale`; 0: off). ``team_corroboration_p``: a team x
    model series' flagged window starts an alert only when its team series' surprise p-value in
    the same window is at most this (the org stage's team corroboration,
    :meth:`streams.org.core.OrgCore.corroborate`; 0: off). ``team_corroboration_strict_p`` and
    ``team_week_ratio``: where the org stage knows the team's spend of the same hour a week
    before (the new-series rule's hourly team sums), a team p-value above the strict one
    corroborates only while the team's last hour is at least ``team_week_ratio`` times that
    (:func:`streams.org.core.corroborated`; either 0: off). ``team_week_shift_h`` (0 or 1):
    that hour a week before is the most of the same UTC hour and this many hours either side (a
    job at a local hour moves an hour in UTC with daylight saving; 0: the same hour).
    ``shift_week_ratio``: a team or team x model series' flagged window that the sustained-shift
    model (``changepoint``) leads starts an alert only while the team's last hour is at least
    this many times the same week-ago reference (the org stage's week-ago check of a sustained
    shift, :meth:`streams.org.core.OrgCore.confirm_shift`; without a reference nothing is
    checked; 0: off).
    """

    name: str = "default"
    params: dict[str, Any] = Field(default_factory=dict)
    overrides: list[DetectorOverride] = Field(default_factory=list)
    feedback: FeedbackPolicy = Field(default_factory=FeedbackPolicy)
    new_series: NewSeriesPolicy = Field(default_factory=NewSeriesPolicy)
    # measured in benchmarks.detect_fast --wow (docs/detection-log.md, "Week-over-week hourly
    # evidence"): + 2 incidents on independent seeds 1-3 and 1 held out (tiny teams' loops), no
    # false alert start added on any of seven histories
    week_over_week: WeekOverWeekPolicy = Field(default_factory=WeekOverWeekPolicy)
    # measured in benchmarks.detect_fast (docs/detection-log.md, "A team-scaled floor for short
    # bursts"): + 1 incident on independent seeds 1-3 and 2 held out, no false alert start added
    # on seeds 1-3 or the project's seed 0, 1 held out
    team_burst: TeamBurstPolicy = Field(default_factory=TeamBurstPolicy)
    # measured in benchmarks.detect_fast (docs/detection-log.md, "a team-scale gate"): 5 removes
    # about a fifth of the independent generator's false alerts and none of its incidents
    team_scale_minutes: float = Field(default=5.0, ge=0, le=10080)
    # measured in benchmarks.detect_fast (docs/detection-log.md, "corroboration by the team
    # series' surprise"): 0.01 removes about a sixth of the independent generator's false
    # alerts and none of its incidents; the incidents a model series started had team p of
    # 3-8e-3, so a tighter setting loses them
    team_corroboration_p: float = Field(default=0.01, ge=0, le=1)
    # measured in benchmarks.detect_fast (docs/detection-log.md, "a week-ago reference for the team
    # corroboration"): false alert starts 31 -> 23 on independent seeds 1-3 and 30 -> 25 on
    # 4-6, no incident lost or delayed; a ratio of 2.5-3 delays a held-out rise 15-25 min, 4
    # loses it
    team_corroboration_strict_p: float = Field(default=0.001, ge=0, le=1)
    team_week_ratio: float = Field(default=2.0, ge=0)
    # measured in benchmarks.detect_fast (docs/detection-log.md, "the week-ago reference, an hour
    # either side"): false alert starts 21 -> 18 on independent seeds 1-3 and 17 -> 16 on 4-6,
    # no incident lost or delayed (the hour after alone: the same; the hour before alone: 20, 17)
    team_week_shift_h: int = Field(default=1, ge=0, le=1)
    # measured in benchmarks.detect_fast (docs/detection-log.md, "a sustained shift checked
    # against a week before"): false alert starts 18 -> 13 on independent seeds 1-3 (the day
    # after a holiday 3, a backfill, an ordinary hour), 16 -> 16 on 4-6, no incident lost or
    # delayed on seven histories; 2 delays a held-out loop a minute (its changepoint start at 1.97x)
    shift_week_ratio: float = Field(default=1.8, ge=0)

    def new_series_settings(self) -> dict[str, Any] | None:
        """The new-series rule's settings as the stream layer takes them, the week-over-week
        judge's (which reads the rule's hourly team sums) under ``week_over_week`` and the team
        burst rule's under ``team_burst`` (None: off)."""
        got = self.new_series.settings()
        if got is None:
            return None
        return {**got, "week_over_week": self.week_over_week.settings(), "team_burst": self.team_burst.settings()}

    def kwargs(self) -> dict[str, Any]:
        """Constructor arguments of the detector (``params`` with component sections gathered)."""
        return detector_kwargs(self.name, self.params)

    def override_list(self) -> list[tuple[dict[str, str], dict[str, Any]]]:
        return [(dict(o.match), dict(o.params)) for o in self.overrides]


class AlertPolicyModel(_Strict):
    # An optional gate on each window's own excess, on top of the detector's decision (which
    # already weighs the incident's money: detector.params.min_excess_usd). 0: off.
    min_excess_usd: float = Field(default=0.0, ge=0)
    min_excess_pct: float = Field(default=0.0, ge=0)
    warning_excess_usd: float = Field(default=20.0, ge=0)
    page_min_excess_usd: float = Field(default=50.0, ge=0)
    resolve_after_windows: int = Field(default=3, ge=1)
    # Hysteresis: a fired alert's window counts towards its resolve only under this excess (%) over
    # the series' baseline (Signal.baseline_usd).
    resolve_max_excess_pct: float = Field(default=50.0, ge=0)
    # ...for at most this long after the alert's last material window (s; 0: no hold).
    resolve_max_hold_s: float = Field(default=3600.0, ge=0)
    repeat_interval_s: float = Field(default=4 * 3600, gt=0)
    worsen_factor: float = Field(default=1.5, gt=1)
    fire_after_windows: int = Field(default=1, ge=1)
    page_min_severity: Literal["info", "warning", "critical"] = "critical"
    # Grouping and inhibition (see alerts.engine.AlertEngine); times in event-time seconds.
    group_by: list[Literal["team", "model", "provider", "user", "org"]] = ["team"]  # pydantic copies it per instance
    group_wait_s: float = Field(default=0.0, ge=0)
    group_interval_s: float = Field(default=300.0, ge=0)
    # Flap damping: a group whose members all resolved sends its resolve this long later; a
    # re-fire meanwhile continues the incident (no second first notification or page). 0: off
    # (docs/detection-log.md "Flap damping" has the measurement behind the default).
    group_keep_firing_s: float = Field(default=1800.0, ge=0)
    inhibit_by_org: bool = True


def _known_matchers(v: dict[str, str]) -> dict[str, str]:
    """Silence and subscription matchers: only the keys alerts can match on."""
    from alerts.model import MATCHERS, unknown_matchers

    bad = unknown_matchers(v)
    if bad:
        raise ValueError(f"unknown matcher(s) {', '.join(bad)}; choose from {', '.join(MATCHERS)}")
    return v


class SilencePolicy(_Strict):
    """A planned event: alerts of the matching series are muted from ``starts_at`` until
    ``ends_at`` (RFC 3339; without a zone, UTC)."""

    matchers: dict[str, str] = Field(min_length=1)
    starts_at: datetime
    ends_at: datetime | None = None
    reason: str = Field(min_length=1)
    created_by: str = ""

    @field_validator("matchers")
    @classmethod
    def _known_matchers(cls, v: dict[str, str]) -> dict[str, str]:
        return _known_matchers(v)

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return v if v is None or v.tzinfo else v.replace(tzinfo=UTC)

    @model_validator(mode="after")
    def _ordered(self) -> SilencePolicy:
        if self.ends_at is not None and self.ends_at <= self.starts_at:
            raise ValueError("ends_at must be after starts_at")
        return self

    def to_engine(self, index: int) -> dict[str, Any]:
        return {
            "id": f"s{index + 1}",
            "matchers": dict(self.matchers),
            "starts_at": self.starts_at.timestamp(),
            "ends_at": None if self.ends_at is None else self.ends_at.timestamp(),
            "reason": self.reason,
            "created_by": self.created_by,
        }


# -- budgets ---------------------------------------------------------------------------------

# Ingest keeps spend per dimension (org, team, team×model, provider, model and user:
# streams.common.dimensions.DIMENSIONS); budgets read the org, a team or a user
# (streams.budgets.ledger.SCOPE_KEYS): a budget on anything else would read a series that never
# gets spend and always show $0.
_NO_SERIES = {
    "project": "usage events carry no project, so no spend is kept per project",
}


def _check_timezone(v: str) -> str:
    from streams.common.periods import zone

    zone(v)  # ValueError names the zone
    return v


def _check_thresholds(v: list[float]) -> list[float]:
    if any(not (0 < t <= 1000) for t in v):
        raise ValueError("thresholds are percentages of the budget, each in (0, 1000]")
    if len(set(v)) != len(v):
        raise ValueError("thresholds must not repeat")
    return sorted(v)


def _base_units(amount: Decimal, unit: str) -> int:
    """A budget amount in the ledger's integer base: nano-dollars, or whole tokens."""
    from streams.ingest.windows import NANO

    base = amount * NANO if unit == "usd" else amount
    if base != base.to_integral_value():
        raise ValueError("a USD amount has at most 9 decimals" if unit == "usd" else "a token amount must be whole")
    if base >= _INT_LIMIT:  # the ledger keeps 64-bit integers (its state is written as JSON)
        most = f"{(_INT_LIMIT - 1) // NANO:,} USD" if unit == "usd" else f"{_INT_LIMIT - 1:,} tokens"
        raise ValueError(f"too large: at most {most}")
    return int(base)


class ForecastAlertPolicy(_Strict):
    """Projected-exhaustion alerts: fire when the period is projected to end ``margin_pct``
    over budget, once ``min_elapsed_pct`` of it has passed (see ``detectors.forecast.burn_alert``)."""

    enabled: bool = True
    margin_pct: float = Field(default=5.0, ge=0)
    min_elapsed_pct: float = Field(default=10.0, ge=0, le=100)


class Allocation(_Strict):
    """A team's share of an org budget: ``amount`` in the parent's unit, or ``percent`` of it."""

    team: str = Field(min_length=1)
    amount: Decimal | None = Field(default=None, gt=0)
    percent: Decimal | None = Field(default=None, gt=0, le=100)
    thresholds: list[float] | None = None

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[float] | None) -> list[float] | None:
        return None if v is None else _check_thresholds(v)

    @model_validator(mode="after")
    def _one_of(self) -> Allocation:
        if (self.amount is None) == (self.percent is None):
            raise ValueError("give either amount or percent (of the parent budget)")
        return self


class BudgetPolicy(_Strict):
    """One budget: what it covers (``scope``), how much (``amount`` in ``unit``), over which
    calendar ``period`` in which ``timezone`` (default: the top-level ``budget_timezone``).

    ``scope`` is ``org`` (all spend), ``{team: ads}`` or ``{user: bob}`` (also written
    ``team=ads``): the series the worker keeps spend for. A project or a team×user scope is
    refused, since no spend is counted for it (it would always show $0).
    An org budget may be split into team ``allocations``; a team budget may instead name the
    org budget it is a share of with ``parent``. Either way the shares must fit in the parent.
    """

    name: str = Field(min_length=1)
    scope: dict[str, str] = Field(default_factory=dict)
    unit: Literal["usd", "tokens"] = "usd"
    amount: Decimal = Field(gt=0)
    period: Literal["day", "week", "month"] = "month"
    timezone: str | None = None
    thresholds: list[float] = Field(default_factory=lambda: [50.0, 80.0, 100.0])
    forecast: ForecastAlertPolicy = Field(default_factory=ForecastAlertPolicy)
    parent: str | None = None
    allocations: list[Allocation] = Field(default_factory=list)
    # the decision published on <prefix>.budget.decisions at 100 % (allocations inherit it)
    on_exhausted: Literal["none", "block", "downgrade"] = "none"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if any(c in v for c in "|:/"):
            raise ValueError("a budget name may not contain '|', ':' or '/'")
        return v

    @field_validator("scope", mode="before")
    @classmethod
    def _scope_text(cls, v: Any) -> Any:
        if v is None or v == "org":
            return {}
        if isinstance(v, str):
            out: dict[str, str] = {}
            for part in v.split("|"):
                k, eq, val = part.partition("=")
                if not eq or not k.strip() or not val.strip():
                    raise ValueError(f"scope {_short(v)}: expected 'org' or labels like 'team=ads|user=bob'")
                out[k.strip()] = val.strip()
            return out
        return v

    @field_validator("scope")
    @classmethod
    def _scope_keys(cls, v: dict[str, str]) -> dict[str, str]:
        for k, why in _NO_SERIES.items():
            if k in v:
                raise ValueError(f"scope {k!r}: {why}; a budget on it would always show $0 "
                                 "(use org, {team: ...} or {user: ...})")
        from streams.budgets.ledger import SCOPE_KEYS
        from streams.common.dimensions import DEFAULT_ORG

        # Another org's budgets name it (org=acme, org=acme|team=ads): series of two orgs never
        # share a budget. The default org's are written without it, as its series are.
        if v.get("org") == DEFAULT_ORG:
            v = {k: x for k, x in v.items() if k != "org"}
        rest = {k: x for k, x in v.items() if k != "org"}
        bad = sorted(set(rest) - set(SCOPE_KEYS))
        if bad:
            raise ValueError(f"unknown scope label(s) {', '.join(bad)}; use 'org' or {', '.join(SCOPE_KEYS)}")
        if len(rest) > 1:
            raise ValueError(f"scope {'|'.join(f'{k}={x}' for k, x in v.items())}: spend is kept per team and "
                             "per user, not per team and user, so this budget would always show $0; "
                             "use {team: ...} or {user: ...}")
        if any(not x for x in v.values()):
            raise ValueError("scope labels need a value")
        if any("|" in x or "=" in x for x in v.values()):
            # as in usage events (docs/events.md): they separate series keys
            raise ValueError("a scope value may not contain '|' or '=' (no team or user name does)")
        return v

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _check_timezone(v)

    @field_validator("thresholds")
    @classmethod
    def _thresholds(cls, v: list[float]) -> list[float]:
        return _check_thresholds(v)

    @model_validator(mode="after")
    def _amounts(self) -> BudgetPolicy:
        _base_units(self.amount, self.unit)
        if self.allocations and self.scope:
            raise ValueError("only an org budget (scope: org, the default org's) is split into team allocations")
        if self.parent is not None and set(self.scope) != {"team"}:
            raise ValueError("only a team budget (scope: {team: ...}) can be a share of a parent")
        return self

    def share(self, alloc: Allocation) -> Decimal:
        """An allocation's amount in this budget's unit."""
        if alloc.amount is not None:
            return alloc.amount
        assert alloc.percent is not None
        return self.amount * alloc.percent / 100


class _Delivery(_Strict):
    """What a route and a subscription share: the alerts they take (``match``: labels, the
    ``series`` or the alert ``kind``; from ``min_severity`` up) and how (``mode``)."""

    match: dict[str, str] = Field(default_factory=dict)
    min_severity: Literal["info", "warning", "critical"] = "info"
    mode: Literal["immediate", "hourly", "daily"] = "immediate"
    timezone: str | None = None
    daily_at: str | None = None

    @field_validator("match")
    @classmethod
    def _known_matchers(cls, v: dict[str, str]) -> dict[str, str]:
        return _known_matchers(v)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _check_timezone(v)

    @field_validator("daily_at", mode="before")
    @classmethod
    def _clock(cls, v: Any) -> Any:
        from alerts.digest import parse_clock

        if v is None:
            return None
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 24 * 3600:
            # YAML 1.1 reads an unquoted 09:00 as sexagesimal 540 (minutes): give it back
            v = f"{v // 60:02d}:{v % 60:02d}" if v < 24 * 60 else f"{v // 3600:02d}:{v // 60 % 60:02d}:{v % 60:02d}"
        if not isinstance(v, str):
            raise ValueError(f"daily_at must be a time of day like \"09:00\", got {_short(v)}")
        parse_clock(v)
        return v

    @model_validator(mode="after")
    def _digest_only(self) -> _Delivery:
        if self.mode == "immediate" and self.timezone is not None:
            raise ValueError("timezone is for digests: set mode: hourly or daily")
        if self.mode != "daily" and self.daily_at is not None:
            raise ValueError("daily_at is for mode: daily")
        return self

    def digest(self, default_tz: str) -> tuple[str, str, str] | None:
        """``(mode, timezone, daily_at)`` of a digest; ``None`` when immediate."""
        if self.mode == "immediate":
            return None
        return self.mode, self.timezone or default_tz, self.daily_at or "09:00"

    def route(self, receiver: str, target: str, default_tz: str, source: str) -> Route:
        from alerts.routing import Route

        mode, tz, daily_at = self.digest(default_tz) or ("immediate", "UTC", "09:00")
        return Route(receiver, target, dict(self.match), self.min_severity, mode, tz, daily_at, source=source)


class SubscriptionPolicy(_Delivery):
    """A Slack channel subscribed to the alerts of the series that match, from a severity up:
    the short form of a route with ``receiver: slack``.

    ``mode``: ``immediate`` (a message per alert), or ``hourly`` / ``daily``: one digest
    message per period, the period in ``timezone`` (default: the top-level
    ``budget_timezone``), a daily one sent at ``daily_at`` (local ``HH:MM``, default 09:00).
    """

    channel: str = Field(min_length=1)


class RoutePolicy(_Delivery):
    """Where the alerts that match go: a ``receiver`` (``slack``, ``pagerduty``, ``webhook``,
    ``opsgenie``: the registry, ``alerts.receivers.RECEIVERS``) and its ``target``: a Slack
    channel, or the *name* of a secret in the settings (a PagerDuty routing key in
    ``TOKENPULSE_PAGERDUTY_ROUTING_KEYS``, an Opsgenie API key in
    ``TOKENPULSE_OPSGENIE_API_KEYS``; left out: ``default``, the receiver's unnamed key). The
    policy never holds a secret. Per receiver, what no route takes goes to its default target.
    ``mode: hourly|daily`` (digests) is for Slack routes."""

    receiver: str = Field(min_length=1)
    target: str | None = Field(default=None, min_length=1)

    @field_validator("receiver")
    @classmethod
    def _known_receiver(cls, v: str) -> str:
        from alerts.receivers import RECEIVERS

        if v not in RECEIVERS:
            raise ValueError(f"unknown receiver {v!r}; choose from {', '.join(RECEIVERS)}")
        return v

    @model_validator(mode="after")
    def _target(self) -> RoutePolicy:
        from alerts.receivers import DEFAULT_TARGET, RECEIVERS

        r = RECEIVERS[self.receiver]
        if self.target is None:
            if not r.config.named_targets:
                raise ValueError(f"a {self.receiver} route needs a target (a channel)")
            self.target = DEFAULT_TARGET
        if self.mode != "immediate" and not r.digests:
            raise ValueError(f"mode {self.mode} (a digest) is for receivers that keep digests "
                             f"({', '.join(n for n, x in RECEIVERS.items() if x.digests)}), not {self.receiver}")
        return self


class TeamPolicy(_Strict):
    slack_channel: str | None = None


class MixPolicy(_Strict):
    """Which models are the organisation's own (shell-style patterns, ``acme-*``): the rest of
    the spend is third-party, in ``/api/mix``. Optionally, an alert when a team's third-party
    share of the calendar ``period`` so far (in ``budget_timezone``) goes past
    ``max_third_party_share`` (a fraction; ``teams`` sets a team's own line, null: none for it),
    once the team spent ``min_spend_usd`` in the period."""

    internal_models: list[str] = Field(default_factory=list)
    max_third_party_share: float | None = Field(default=None, ge=0, lt=1)
    teams: dict[str, float | None] = Field(default_factory=dict)
    period: Literal["day", "week", "month"] = "week"
    min_spend_usd: Decimal = Field(default=Decimal(10), ge=0)

    @field_validator("teams")
    @classmethod
    def _team_lines(cls, v: dict[str, float | None]) -> dict[str, float | None]:
        for team, line in v.items():
            if line is not None and not 0 <= line < 1:
                raise ValueError(f"team {_short(team)}: a third-party share line is a fraction in [0, 1), got {line}")
        return v

    @model_validator(mode="after")
    def _needs_internal(self) -> MixPolicy:
        if not self.internal_models and (self.max_third_party_share is not None
                                         or any(x is not None for x in self.teams.values())):
            where = "max_third_party_share" if self.max_third_party_share is not None else "teams"
            raise _LocatedError(("mix", where),
                                "a third-party share line needs mix.internal_models (else every model is third-party)")
        _base_units(self.min_spend_usd, "usd")
        return self


class ReportPolicy(_Strict):
    """A spend report posted to a Slack channel for every closed calendar ``period`` (``daily``,
    or ``weekly``: Monday to Sunday) in ``timezone`` (default ``budget_timezone``), at ``at``
    (local time of day, HH:MM; default 00:00) after the period; ``match: {team: x}`` limits it
    to one team. ``name`` (default ``<period>:<channel>[:team=<x>]``) keys its notifications:
    keep it stable, or a renamed report is sent again for the current period."""

    channel: str = Field(min_length=1)
    period: Literal["daily", "weekly", "day", "week"]
    match: dict[str, str] = Field(default_factory=dict)
    at: str | None = None
    timezone: str | None = None
    name: str | None = Field(default=None, min_length=1)

    @field_validator("match")
    @classmethod
    def _match(cls, v: dict[str, str]) -> dict[str, str]:
        if set(v) - {"team"}:
            raise ValueError(f"a report matches on team only, got {', '.join(sorted(v))}")
        if any(not x for x in v.values()):
            raise ValueError("match: team needs a value")
        return v

    @field_validator("at", mode="before")
    @classmethod
    def _at_sexagesimal(cls, v: Any) -> Any:
        # YAML 1.1 reads an unquoted 10:30 as the base-60 integer 630
        if isinstance(v, int) and not isinstance(v, bool) and 0 <= v < 24 * 60:
            return f"{v // 60:02d}:{v % 60:02d}"
        return v

    @field_validator("at")
    @classmethod
    def _at(cls, v: str | None) -> str | None:
        if v is None:
            return v
        hh, sep, mm = v.partition(":")
        if not (sep and hh.isdigit() and mm.isdigit() and len(mm) == 2 and int(hh) < 24 and int(mm) < 60):
            raise ValueError(f"at must be a local time of day HH:MM (00:00..23:59), got {_short(v)}")
        return f"{int(hh):02d}:{mm}"

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str | None) -> str | None:
        return None if v is None else _check_timezone(v)

    def report_name(self) -> str:
        if self.name is not None:
            return self.name
        kind = "daily" if self.period in ("daily", "day") else "weekly"
        team = self.match.get("team")
        return f"{kind}:{self.channel}" + (f":team={team}" if team else "")


class LimitsPolicy(_Strict):
    """The most one usage event (one request) may carry. An event over either bound is
    implausible -- a unit mistake, an overflowed counter, a hostile producer -- and is
    quarantined: dead-lettered with reason ``implausible: …``, counted in
    ``tokenpulse_events_rejected_total{reason="implausible"}``, never added to spend. The cost
    bound applies to a producer's ``cost_usd`` (LiteLLM's ``spend``) and to the cost computed
    from prices alike. Changing it needs a restart."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    # input + output tokens: ten times the largest context windows of 2026 (1-2M)
    max_tokens_per_request: int = Field(default=10_000_000, gt=0, le=10**12)
    max_cost_usd_per_request: float = Field(default=500.0, gt=0, le=1_000_000)
    # not a bound on one event: the distinct tools one window of a usage partition names in its
    # spend; the spend of further ones counts under the tool "(other)", so a producer sending
    # made-up tool names cannot grow the spend records without bound
    max_tools_per_window: int = Field(default=50, ge=1, le=10_000)


class Policy(_Strict):
    watch: list[str] = Field(default_factory=lambda: [n for n in NAMES if n in DEFAULT_WATCHED])
    prices: dict[str, Price] = Field(default_factory=dict)
    detector: DetectorPolicy = Field(default_factory=DetectorPolicy)
    alerts: AlertPolicyModel = Field(default_factory=AlertPolicyModel)
    teams: dict[str, TeamPolicy] = Field(default_factory=dict)
    silences: list[SilencePolicy] = Field(default_factory=list)
    subscriptions: list[SubscriptionPolicy] = Field(default_factory=list)
    routes: list[RoutePolicy] = Field(default_factory=list)
    mix: MixPolicy = Field(default_factory=MixPolicy)
    budget_timezone: str = "UTC"
    budgets: list[BudgetPolicy] = Field(default_factory=list)
    reports: list[ReportPolicy] = Field(default_factory=list)
    limits: LimitsPolicy = Field(default_factory=LimitsPolicy)

    @field_validator("budget_timezone")
    @classmethod
    def _budget_tz(cls, v: str) -> str:
        return _check_timezone(v)

    @field_validator("watch")
    @classmethod
    def _dims(cls, v: list[str]) -> list[str]:
        out = []
        for d in v:
            d = ALIASES.get(d, d)
            if d not in NAMES:
                raise ValueError(f"unknown dimension {_short(d)}; choose from {', '.join(NAMES)}")
            out.append(d)
        return out

    @model_validator(mode="after")
    def _detector_builds(self) -> Policy:
        # Build one detector per parameter set, so a typo fails at start, not at the first
        # window of the first series.
        from detectors import make_detector

        sets: list[tuple[tuple[str | int, ...], dict[str, Any]]] = [(("detector", "params"), self.detector.params)]
        for i, o in enumerate(self.detector.overrides):
            sets.append((("detector", "overrides", i, "params"), merge_params(self.detector.params, o.params)))
        from detectors import DETECTORS

        for loc, params in sets:
            raw = params if loc[-1] == "params" and len(loc) == 2 else None
            for k, v in (raw or {}).items():
                # a component's own section: point at its line
                if k in DETECTORS and isinstance(v, dict):
                    try:
                        make_detector(k, **v)
                    except (ValueError, TypeError) as exc:
                        raise _LocatedError((*loc, k), str(exc)) from None
            try:
                make_detector(self.detector.name, **detector_kwargs(self.detector.name, params))
            except (ValueError, TypeError) as exc:
                raise _LocatedError(loc, str(exc)) from None
        return self

    def _located_routes(self) -> list[tuple[tuple[Any, ...], Route]]:
        """Every route with where it is written: each team's ``slack_channel``, ``routes``,
        then ``subscriptions`` (the order notifications fan out in)."""
        tz = self.budget_timezone
        out: list[tuple[tuple[Any, ...], Route]] = []
        for name, t in self.teams.items():
            if t.slack_channel:
                only_team = _Delivery(match={"team": name})
                out.append((("teams", name, "slack_channel"), only_team.route("slack", t.slack_channel, tz, "teams")))
        for i, r in enumerate(self.routes):
            assert r.target is not None  # filled in by RoutePolicy
            out.append((("routes", i), r.route(r.receiver, r.target, tz, "routes")))
        for i, sub in enumerate(self.subscriptions):
            out.append((("subscriptions", i), sub.route("slack", sub.channel, tz, "subscriptions")))
        return out

    @model_validator(mode="after")
    def _one_digest_per_channel(self) -> Policy:
        # A channel gets one digest per period: its digest routes share one schedule.
        seen: dict[str, tuple[tuple[Any, ...], tuple[str, str, str]]] = {}
        for loc, r in self._located_routes():
            if not r.digest:
                continue
            d = (r.mode, r.timezone, r.daily_at)
            first = seen.setdefault(r.target, (loc, d))
            if first[1] != d:
                where = ".".join(str(p + 1 if isinstance(p, int) else p) for p in first[0])
                raise _LocatedError((*loc, "mode"),
                                    f"{r.target} already has a {'/'.join(first[1])} digest ({where}); its digest "
                                    f"routes and subscriptions must share mode, timezone and daily_at, got "
                                    f"{'/'.join(d)}")
        return self

    @model_validator(mode="after")
    def _targets_have_secrets(self, info: ValidationInfo) -> Policy:
        # With the settings at hand (context "receivers": the configs of the receivers that are
        # on), a route whose target has no secret would drop its alerts: stop start-up instead.
        receivers = (info.context or {}).get("receivers")
        if receivers is None:
            return self
        from alerts.receivers import RECEIVERS

        for loc, r in self._located_routes():
            spec = RECEIVERS[r.receiver]
            cfg = receivers.get(r.receiver)
            if cfg is None:
                if spec.config.named_targets:
                    raise _LocatedError((*loc, "receiver") if loc[0] == "routes" else loc,
                                        f"{r.receiver} is not configured: set {spec.enable_hint()}")
                continue  # Slack without a token: its routes are unused, as before
            why = cfg.target_error(r.target)
            if why is not None:
                raise _LocatedError((*loc, "target") if loc[0] == "routes" else loc, why)
        return self

    def delivery_routes(self) -> list[Route]:
        """Where notifications go, as :class:`alerts.routing.Route` s in policy order: each
        team's ``slack_channel`` (a Slack route of its team's alerts), the ``routes``, then the
        ``subscriptions`` (Slack routes)."""
        return [r for _, r in self._located_routes()]

    @model_validator(mode="after")
    def _budgets_fit(self) -> Policy:
        # Names are table keys; shares must fit in their parent, in its unit and period.
        names: dict[str, int] = {}
        for i, b in enumerate(self.budgets):
            teams = [a.team for a in b.allocations]
            for j, t in enumerate(teams):
                if t in teams[:j]:
                    raise _LocatedError(("budgets", i, "allocations", j, "team"),
                                        f"team {_short(t)} is allocated twice in budget {_short(b.name)}")
            for n in (b.name, *(f"{b.name}/{t}" for t in teams)):
                if n in names:
                    raise _LocatedError(("budgets", i, "name"), f"budget name {_short(n)} is used twice")
                names[n] = i
        children: dict[str, list[tuple[int, BudgetPolicy]]] = {}
        for i, b in enumerate(self.budgets):
            if b.parent is None:
                continue
            pj = names.get(b.parent)
            parent = self.budgets[pj] if pj is not None and self.budgets[pj].name == b.parent else None
            if parent is None or parent.scope:
                raise _LocatedError(("budgets", i, "parent"),
                                    f"parent {_short(b.parent)} is not an org budget of this policy")
            mine = (b.unit, b.period, b.timezone or self.budget_timezone)
            theirs = (parent.unit, parent.period, parent.timezone or self.budget_timezone)
            if mine != theirs:
                raise _LocatedError(("budgets", i, "parent"),
                                    f"a share must have its parent's unit, period and timezone: {'/'.join(mine)} "
                                    f"here, {'/'.join(theirs)} in {_short(parent.name)}")
            if b.scope["team"] in {a.team for a in parent.allocations}:
                raise _LocatedError(("budgets", i, "parent"),
                                    f"team {_short(b.scope['team'])} already has an allocation in "
                                    f"{_short(parent.name)}")
            children.setdefault(b.parent, []).append((i, b))
        for i, b in enumerate(self.budgets):
            allocated = sum((b.share(a) for a in b.allocations), Decimal(0))
            total = allocated + sum((c.amount for _, c in children.get(b.name, ())), Decimal(0))
            if total > b.amount:
                # point at the allocations if they alone do not fit, else at the last child
                where = (("budgets", i, "allocations") if allocated > b.amount
                         else ("budgets", children[b.name][-1][0], "amount"))
                raise _LocatedError(where, f"shares of {_short(b.name)} add up to {total:f} {b.unit}, "
                                           f"more than its {b.amount:f}")
        return self

    @model_validator(mode="after")
    def _report_names(self) -> Policy:
        seen: set[str] = set()
        for i, r in enumerate(self.reports):
            name = r.report_name()
            if name in seen:
                raise _LocatedError(("reports", i), f"report {_short(name)} is defined twice (give one a name)")
            seen.add(name)
        return self

    def report_specs(self) -> list[Any]:
        """Every report as ``streams.reports.core.ReportSpec``."""
        from streams.reports.core import REPORT_PERIODS, ReportSpec

        out = []
        for r in self.reports:
            hh, _, mm = (r.at or "00:00").partition(":")
            out.append(ReportSpec(name=r.report_name(), channel=r.channel, period=REPORT_PERIODS[r.period],
                                  tz=r.timezone or self.budget_timezone, team=r.match.get("team"),
                                  at=int(hh) * 60 + int(mm)))
        return out

    def unallocated(self, budget: str) -> Decimal:
        """What is left of an org budget after its allocations and child budgets."""
        [b] = [b for b in self.budgets if b.name == budget]
        used = sum((b.share(a) for a in b.allocations), Decimal(0))
        used += sum((c.amount for c in self.budgets if c.parent == budget), Decimal(0))
        return b.amount - used

    def budget_specs(self) -> list[Any]:
        """Every budget as the ledger's ``streams.budgets.ledger.BudgetSpec``, allocations included
        (named ``{parent}/{team}``, with the parent's unit, period, timezone)."""
        from streams.budgets.ledger import BudgetSpec

        out = []
        for b in self.budgets:
            tz = b.timezone or self.budget_timezone
            common: dict[str, Any] = {
                "unit": b.unit,
                "period": b.period,
                "tz": tz,
                "forecast_alert": b.forecast.enabled,
                "forecast_margin": b.forecast.margin_pct / 100,
                "forecast_min_elapsed": b.forecast.min_elapsed_pct / 100,
                "on_exhausted": b.on_exhausted,
            }
            out.append(BudgetSpec(name=b.name, scope=tuple(sorted(b.scope.items())), limit=_base_units(b.amount, b.unit),
                                  thresholds=tuple(b.thresholds), parent=b.parent, **common))
            for a in b.allocations:
                # a percent share rounds down to the base unit: shares never exceed the parent
                limit = int(b.share(a) * (10**9 if b.unit == "usd" else 1))
                out.append(BudgetSpec(name=f"{b.name}/{a.team}", scope=(("team", a.team),), limit=limit,
                                      thresholds=tuple(a.thresholds or b.thresholds), parent=b.name, **common))
        return out

    def mix_alert_spec(self) -> Any:
        """The third-party share alert as ``streams.budgets.mix.MixAlertSpec``, or None when no line is set."""
        from streams.budgets.mix import MixAlertSpec

        m = self.mix
        if m.max_third_party_share is None and all(v is None for v in m.teams.values()):
            return None
        return MixAlertSpec(internal_models=tuple(m.internal_models), line=m.max_third_party_share,
                            team_lines=tuple(sorted(m.teams.items())), period=m.period, tz=self.budget_timezone,
                            min_spend_nusd=_base_units(m.min_spend_usd, "usd"))

    def alert_policy(self) -> dict[str, Any]:
        """The alert engine's settings: the ``alerts`` section plus the silences."""
        return {**self.alerts.model_dump(), "silences": [s.to_engine(i) for i, s in enumerate(self.silences)]}

    def price_overrides(self) -> dict[str, dict[str, float]]:
        return {m: p.model_dump(exclude_none=True) for m, p in self.prices.items()}


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the composed YAML tree along a pydantic error location to find its line."""
    line = node.start_mark.line + 1 if node is not None else None
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part):
                    node = v
                    line = k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            return line
    return line


class _Refused(Exception):
    """Something a policy file may not hold, at a line (1-based)."""

    def __init__(self, line: int, message: str) -> None:
        super().__init__(message)
        self.line = line
        self.message = message


def _line(mark: Any) -> int:
    return mark.line + 1 if mark is not None else 1


class _PolicyLoader(yaml.SafeLoader):
    """PyYAML's safe loader with a policy file's limits (see the module docstring): aliases,
    nesting past :data:`MAX_DEPTH` and repeated keys are refused while the document is
    composed, before anything is built from it; integers past 64 bits when they are built."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            raise _Refused(_line(event.start_mark),
                           f"YAML aliases are not allowed in a policy file (*{_short(str(event.anchor))[1:-1]}): "
                           "write the value out")
        self._depth += 1
        try:
            if self._depth > MAX_DEPTH:
                raise _Refused(_line(self.peek_event().start_mark), f"nested more than {MAX_DEPTH} levels deep")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def compose_mapping_node(self, anchor: Any) -> Any:
        node = super().compose_mapping_node(anchor)
        seen: dict[tuple[str, Any], yaml.Node] = {}
        for key, _ in node.value:
            if not isinstance(key, yaml.ScalarNode):
                continue  # not a key a policy has: the model refuses it
            # by value, as the built mapping would see it: `ads` and "ads", `1` and `0x1`
            merge = key.tag == "tag:yaml.org,2002:merge"  # `<<`: built by flatten_mapping, not a value
            ident = (key.tag, key.value if merge else self.construct_object(key))
            first = seen.setdefault(ident, key)
            if first is not key:
                raise _Refused(_line(key.start_mark),
                               f"key {_short(key.value)} is given twice in one mapping, at lines "
                               f"{_line(first.start_mark)} and {_line(key.start_mark)}")
        return node

    def construct_yaml_int(self, node: yaml.ScalarNode) -> int:
        try:
            value = super().construct_yaml_int(node)
        except ValueError:  # Python's int-string limit (4300 digits)
            value = _INT_LIMIT
        if not -_INT_LIMIT <= value < _INT_LIMIT:
            raise _Refused(_line(node.start_mark), f"integer out of range (64 bits): {_short(node.value)}")
        return value


_PolicyLoader.add_constructor("tag:yaml.org,2002:int", _PolicyLoader.construct_yaml_int)


def _policy_text(raw: str | bytes, source: str) -> str:
    """The policy's text: at most :data:`MAX_POLICY_BYTES`, UTF-8 (a BOM is dropped)."""
    size = len(raw.encode("utf-8", "surrogatepass")) if isinstance(raw, str) and len(raw) * 4 > MAX_POLICY_BYTES \
        else len(raw)
    if size > MAX_POLICY_BYTES:
        raise PolicyError(f"{source}: the policy file is larger than {MAX_POLICY_BYTES:,} bytes "
                          f"({MAX_POLICY_BYTES >> 20} MiB), the limit for a policy file")
    if isinstance(raw, str):
        return raw
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start:exc.end].hex(" ")
        raise PolicyError(f"{source}:{line}: not UTF-8 text: byte(s) {bad} at byte offset {exc.start} "
                          f"({exc.reason})") from None


def _compose(text: str) -> tuple[Any, yaml.Node | None]:
    """The data of a one-document YAML text and its node tree (for lines), built once."""
    loader = _PolicyLoader(text)
    try:
        node = loader.get_single_node()
        return (None if node is None else loader.construct_document(node)), node
    finally:
        loader.dispose()


def _cap(message: str) -> str:
    if len(message) <= _MAX_MESSAGE:
        return message
    return f"{message[:_MAX_MESSAGE]}… ({len(message) - _MAX_MESSAGE} more characters)"


def _loc_part(part: Any) -> str:
    text = str(part)
    return text if len(text) <= 80 and text.isprintable() else _short(text)


def parse_policy(text: str | bytes, source: str = "<policy>", *,
                 receivers: Mapping[str, Any] | None = None) -> Policy:
    """The policy in ``text`` (the file's bytes, or its text); :class:`PolicyError` naming
    ``source``, the line and what is wrong. Never another exception for any input. With
    ``receivers`` (the configs of the receivers that are on, ``Settings.receivers()``), a route
    whose target has no secret in the settings is an error too."""
    text = _policy_text(text, source)
    try:
        data, node = _compose(text)
    except _Refused as exc:
        raise PolicyError(f"{source}:{exc.line}: {exc.message}") from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f"{source}:{_line(mark)}" if mark is not None else source
        raise PolicyError(_cap(f"{where}: not valid YAML: {exc.problem or exc.context}")) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (NUL, most controls)
        line = text.count("\n", 0, exc.position) + 1
        what = f"U+{exc.character:04X}" if isinstance(exc.character, int) else "a byte"
        raise PolicyError(f"{source}:{line}: not valid YAML: character {what} is not allowed") from None
    except yaml.YAMLError as exc:
        raise PolicyError(_cap(f"{source}: not valid YAML: {exc}")) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}:1: the policy must be a mapping (key: value), got {type(data).__name__}")
    try:
        return Policy.model_validate(data, context=None if receivers is None else {"receivers": receivers})
    except ValidationError as exc:
        # formatted here, from each error's location and message: never pydantic's str(), which
        # quotes every input value whole
        errors = exc.errors(include_url=False, include_input=False)
        msgs = []
        for err in errors[:_MAX_ERRORS]:
            loc = tuple(err["loc"])
            msg = err["msg"]
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, _LocatedError):
                loc, msg = cause.loc, cause.message
            elif isinstance(cause, _InnerError):
                loc, msg = (*loc, *cause.inner), cause.message
            at = _line_of(node, loc)
            path = ".".join(_loc_part(p) for p in loc) or "(top level)"
            msgs.append(_cap(f"{source}:{at}: {path}: {msg}"))
        if len(errors) > _MAX_ERRORS:
            msgs.append(f"{source}: … and {len(errors) - _MAX_ERRORS} more errors")
        raise PolicyError("\n".join(msgs)) from None


def read_policy_file(path: Path | str) -> bytes:
    """At most :data:`MAX_POLICY_BYTES` + 1 bytes of the file (enough for
    :func:`parse_policy` to tell it is too large): ``/dev/zero`` or a 5 GB file is never read
    whole. OSError when it cannot be read."""
    with open(path, "rb") as f:
        return f.read(MAX_POLICY_BYTES + 1)


def load_policy(path: Path | None, *, receivers: Mapping[str, Any] | None = None) -> Policy:
    if path is None:
        return Policy()
    try:
        raw = read_policy_file(path)
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror}") from None
    return parse_policy(raw, str(path), receivers=receivers)
