"""The YAML policy: what is watched, prices of internal models, detector and alert thresholds,
and where each team's alerts go. Validated at start; an error names the line at fault."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from detectors.config import detector_kwargs, merge_params

DIMENSIONS = ("org", "team", "team×model", "provider", "model", "user")
_DIM_ALIASES = {"team*model": "team×model", "team_model": "team×model", "team x model": "team×model"}


class _LocatedError(ValueError):
    """A semantic error found after parsing, with the policy path it belongs to."""

    def __init__(self, loc: tuple[Any, ...], message: str) -> None:
        super().__init__(message)
        self.loc = loc
        self.message = message


class PolicyError(Exception):
    """The policy file is invalid. ``str()`` names the file, the line and what is wrong."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


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


class DetectorPolicy(_Strict):
    """Which model judges every watched series, and its parameters.

    For the default combiner, a key of ``params`` that names one of its components (a mapping
    such as ``seasonal: {threshold: 6}``) sets that component's parameters; the other keys are
    the combiner's own (``min_excess_usd``, ``components``...). ``overrides`` change parameters
    for the series whose labels match, the later entries winning.
    """

    name: str = "default"
    params: dict[str, Any] = Field(default_factory=dict)
    overrides: list[DetectorOverride] = Field(default_factory=list)

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
    repeat_interval_s: float = Field(default=4 * 3600, gt=0)
    worsen_factor: float = Field(default=1.5, gt=1)
    fire_after_windows: int = Field(default=1, ge=1)


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
        from alerts.model import SILENCE_MATCHERS

        bad = sorted(set(v) - set(SILENCE_MATCHERS))
        if bad:
            raise ValueError(f"unknown matcher(s) {', '.join(bad)}; choose from {', '.join(SILENCE_MATCHERS)}")
        return v

    @field_validator("starts_at", "ends_at")
    @classmethod
    def _utc(cls, v: datetime | None) -> datetime | None:
        return v if v is None or v.tzinfo else v.replace(tzinfo=timezone.utc)

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


class TeamPolicy(_Strict):
    slack_channel: str | None = None


class Policy(_Strict):
    watch: list[str] = Field(default_factory=lambda: ["org", "team", "team×model", "provider"])
    prices: dict[str, Price] = Field(default_factory=dict)
    detector: DetectorPolicy = Field(default_factory=DetectorPolicy)
    alerts: AlertPolicyModel = Field(default_factory=AlertPolicyModel)
    teams: dict[str, TeamPolicy] = Field(default_factory=dict)
    silences: list[SilencePolicy] = Field(default_factory=list)

    @field_validator("watch")
    @classmethod
    def _dims(cls, v: list[str]) -> list[str]:
        out = []
        for d in v:
            d = _DIM_ALIASES.get(d, d)
            if d not in DIMENSIONS:
                raise ValueError(f"unknown dimension {d!r}; choose from {', '.join(DIMENSIONS)}")
            out.append(d)
        return out

    @model_validator(mode="after")
    def _detector_builds(self) -> Policy:
        # Build one detector per parameter set, so a typo fails at start, not at the first
        # window of the first series.
        from detectors import make_detector

        sets = [(("detector", "params"), self.detector.params)]
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


def parse_policy(text: str, source: str = "<policy>") -> Policy:
    try:
        data = yaml.safe_load(text)
        node = yaml.compose(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else source
        raise PolicyError(f"{where}: not valid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError(f"{source}:1: the policy must be a mapping (key: value), got {type(data).__name__}")
    try:
        return Policy.model_validate(data)
    except ValidationError as exc:
        msgs = []
        for err in exc.errors():
            loc = tuple(err["loc"])
            msg = err["msg"]
            cause = (err.get("ctx") or {}).get("error")
            if isinstance(cause, _LocatedError):
                loc, msg = cause.loc, cause.message
            line = _line_of(node, loc)
            path = ".".join(str(p) for p in loc) or "(top level)"
            msgs.append(f"{source}:{line}: {path}: {msg}")
        raise PolicyError("\n".join(msgs)) from None


def load_policy(path: Path | None) -> Policy:
    if path is None:
        return Policy()
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file: {exc.strerror}") from None
    return parse_policy(text, str(path))
