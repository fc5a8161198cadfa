"""Team definitions (SPEC.md §4.1, §6): the eight default teams and the teams-file loader.

Use :data:`DEFAULT_TEAMS` for the standard history and :func:`load_teams` for an analyst's
YAML/JSON file; both give :class:`TeamSpec` objects that :func:`generator.generate` takes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml

from .prices import MODELS

ARCHETYPE_NAMES = ("chat", "rag", "agent", "long_context")
PATTERNS = ("office", "follow-the-sun", "global", "always-on")
WEEKDAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")


@dataclass(frozen=True)
class ToolSpec:
    name: str
    archetype: str
    share: float  # of the team's interactive spend
    models: dict[str, float] | None = None  # share of sessions; None: the team's mix
    context_scale: float = 1.0  # on top of the team's


@dataclass(frozen=True)
class JobSpec:
    """A scheduled batch job: part of normal traffic from the first day."""
    name: str
    every: str  # "daily" or a weekday "Mon".."Sun"
    at: str  # "HH:MM" in the team's zone
    minutes: float
    share: float  # of a day's spend (daily) or a week's (weekly)
    model: str | None = None  # None: the team's first model
    context: float = 6000.0  # median input tokens of a call


@dataclass(frozen=True)
class TeamSpec:
    name: str
    usd_per_day: float
    users: int
    pattern: str
    tools: tuple[ToolSpec, ...]
    models: dict[str, float]
    tz: str = "UTC"
    peak_hour_utc: float = 15.0
    native_share: float = 0.0
    context_scale: float = 1.0
    output_scale: float = 1.0
    jobs: tuple[JobSpec, ...] = field(default_factory=tuple)

    @property
    def scheduled_share(self) -> float:
        """Share of a normal week's spend that scheduled jobs take."""
        return sum(j.share for j in self.jobs)


def _tool(name: str, archetype: str, share: float, models: dict[str, float] | None = None,
          context_scale: float = 1.0) -> ToolSpec:
    return ToolSpec(name, archetype, share, models, context_scale)


DEFAULT_TEAMS: tuple[TeamSpec, ...] = (
    TeamSpec("sandbox", 0.50, 3, "office", (_tool("playground", "chat", 1.0),),
             {"gpt-4.1-mini": 0.7, "gemini-2.5-flash": 0.3}, tz="America/New_York"),
    TeamSpec("docs-bot", 5.0, 180, "office", (_tool("slack-qa", "rag", 1.0),),
             {"claude-3-5-haiku": 1.0}, tz="Europe/Berlin", native_share=1.0,
             jobs=(JobSpec("re-index", "Sun", "03:00", 40, 0.15),)),
    TeamSpec("hr-assist", 40.0, 120, "office",
             (_tool("hr-portal", "chat", 0.6, context_scale=3.0), _tool("policy-search", "rag", 0.4)),
             {"gpt-4.1-mini": 0.5, "gpt-4.1": 0.5}, tz="Asia/Kolkata", native_share=0.3),
    TeamSpec("search-eval", 300.0, 9, "office",
             (_tool("notebook", "chat", 0.2, context_scale=4.0), _tool("eval-harness", "agent", 0.8)),
             {"claude-sonnet-4": 0.5, "gpt-4.1": 0.3, "gemini-2.5-pro": 0.2}, tz="America/Los_Angeles",
             jobs=(JobSpec("nightly-eval", "daily", "01:30", 90, 0.30, context=40_000),
                   JobSpec("weekly-sweep", "Sat", "10:00", 180, 0.10, context=40_000))),
    # Support agents' copilot: the ticket thread and knowledge-base articles ride in every prompt.
    TeamSpec("support-copilot", 1500.0, 300, "follow-the-sun",
             (_tool("ticket-reply", "rag", 0.6), _tool("kb-search", "rag", 0.4)),
             {"claude-3-5-haiku": 0.3, "claude-sonnet-4": 0.7}, native_share=0.5, context_scale=10.0,
             jobs=(JobSpec("ticket-summaries", "daily", "02:00", 60, 0.15, model="claude-sonnet-4",
                           context=50_000),)),
    # Coding agents with whole repositories in context: few, expensive calls per developer.
    TeamSpec("code-assist", 6000.0, 250, "office",
             (_tool("ide-chat", "chat", 0.1, context_scale=8.0), _tool("ide-agent", "agent", 0.6, context_scale=2.0),
              _tool("pr-review", "long_context", 0.3)),
             {"claude-opus-4": 0.4, "claude-sonnet-4": 0.4, "gpt-4.1": 0.1, "llama-3.3-70b-internal": 0.1},
             tz="America/Los_Angeles", native_share=0.2, context_scale=3.0, output_scale=2.0),
    # Long-context creative generation: the product catalogue and brand book in every prompt.
    TeamSpec("ads-creative", 20000.0, 40, "global",
             (_tool("creative-gen", "long_context", 1.0),),
             {"gpt-4.1": 0.45, "gemini-2.5-pro": 0.3, "claude-sonnet-4-1m": 0.25}, peak_hour_utc=15,
             native_share=0.4, context_scale=4.0, output_scale=2.0,
             jobs=(JobSpec("catalogue-refresh", "daily", "03:00", 120, 0.10, context=900_000),)),
    TeamSpec("agents-platform", 50000.0, 150, "always-on",
             (_tool("deep-research", "long_context", 0.9), _tool("agent-runner", "agent", 0.1, context_scale=6.0)),
             {"claude-opus-4": 0.7, "claude-sonnet-4-1m": 0.3},
             peak_hour_utc=17, native_share=0.3, context_scale=1.5, output_scale=3.0,
             jobs=(JobSpec("backfill", "daily", "05:00", 90, 0.08, context=150_000),)),
)


# ------------------------------------------------------------------ loading --------------
class TeamsFileError(ValueError):
    """A teams file that does not describe valid teams; the message names team and field."""


_TEAM_FIELDS = {"name", "usd_per_day", "users", "pattern", "tz", "peak_hour_utc", "tools", "models",
                "native_share", "context_scale", "output_scale", "jobs"}
_TOOL_FIELDS = {"archetype", "share", "models", "context_scale"}
_JOB_FIELDS = {"name", "every", "at", "minutes", "share", "model", "context"}


def load_teams(path: str | Path) -> tuple[TeamSpec, ...]:
    """Teams from a YAML or JSON file: a list of teams or ``{teams: [...]}`` (SPEC.md §6)."""
    p = Path(path)
    text = p.read_text()
    try:
        data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        raise TeamsFileError(f"{p}: not valid {'JSON' if p.suffix == '.json' else 'YAML'}: {exc}") from None
    if isinstance(data, dict) and set(data) == {"teams"}:
        data = data["teams"]
    if not isinstance(data, list) or not data:
        raise TeamsFileError(f"{p}: expected a non-empty list of teams (or {{teams: [...]}})")
    teams = tuple(team_from_dict(d, where=f"{p}: team {i}") for i, d in enumerate(data, 1))
    names = [t.name for t in teams]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise TeamsFileError(f"{p}: duplicate team names: {', '.join(dup)}")
    return teams


def team_from_dict(d: Any, where: str = "team") -> TeamSpec:  # noqa: C901 - one check per field of the teams file
    """One :class:`TeamSpec` from a mapping; errors name ``where`` and the field."""
    if not isinstance(d, dict):
        raise TeamsFileError(f"{where}: must be a mapping")
    if isinstance(d.get("name"), str):
        where = f"{where} ({d['name']})"
    unknown = sorted(set(d) - _TEAM_FIELDS)
    if unknown:
        raise TeamsFileError(f"{where}: unknown field(s) {', '.join(unknown)}")
    for req in ("name", "usd_per_day", "users", "pattern", "tools", "models"):
        if req not in d:
            raise TeamsFileError(f"{where}: missing field {req}")
    name = _s(d["name"], f"{where}.name")
    usd = _pos(d["usd_per_day"], f"{where}.usd_per_day")
    users = d["users"]
    if not isinstance(users, int) or isinstance(users, bool) or users < 1:
        raise TeamsFileError(f"{where}.users: must be an integer >= 1, got {users!r}")
    pattern = d["pattern"]
    if pattern not in PATTERNS:
        raise TeamsFileError(f"{where}.pattern: must be one of {', '.join(PATTERNS)}, got {pattern!r}")
    tz = _s(d.get("tz", "UTC"), f"{where}.tz")
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise TeamsFileError(f"{where}.tz: unknown time zone {tz!r}") from None
    models = _mix(d["models"], f"{where}.models")
    tools_raw = d["tools"]
    if not isinstance(tools_raw, dict) or not tools_raw:
        raise TeamsFileError(f"{where}.tools: must be a non-empty mapping name: {{archetype, share}}")
    tools = []
    for tname, td in tools_raw.items():
        tw = f"{where}.tools.{tname}"
        if not isinstance(td, dict):
            raise TeamsFileError(f"{tw}: must be a mapping with archetype and share")
        unknown = sorted(set(td) - _TOOL_FIELDS)
        if unknown:
            raise TeamsFileError(f"{tw}: unknown field(s) {', '.join(unknown)}")
        arch = td.get("archetype")
        if arch not in ARCHETYPE_NAMES:
            raise TeamsFileError(f"{tw}.archetype: must be one of {', '.join(ARCHETYPE_NAMES)}, got {arch!r}")
        if "share" not in td:
            raise TeamsFileError(f"{tw}: missing field share")
        tools.append(ToolSpec(str(tname), arch, _pos(td["share"], f"{tw}.share"),
                              _mix(td["models"], f"{tw}.models") if td.get("models") is not None else None,
                              _pos(td.get("context_scale", 1.0), f"{tw}.context_scale")))
    total = sum(t.share for t in tools)
    if abs(total - 1) > 1e-6:
        raise TeamsFileError(f"{where}.tools: shares must add up to 1, got {total:g}")
    jobs = []
    for i, jd in enumerate(d.get("jobs") or [], 1):
        jw = f"{where}.jobs[{i}]"
        if not isinstance(jd, dict):
            raise TeamsFileError(f"{jw}: must be a mapping")
        unknown = sorted(set(jd) - _JOB_FIELDS)
        if unknown:
            raise TeamsFileError(f"{jw}: unknown field(s) {', '.join(unknown)}")
        for req in ("name", "every", "at", "minutes", "share"):
            if req not in jd:
                raise TeamsFileError(f"{jw}: missing field {req}")
        every = jd["every"]
        if every != "daily" and every not in WEEKDAYS:
            raise TeamsFileError(f"{jw}.every: must be daily or one of {', '.join(WEEKDAYS)}, got {every!r}")
        at = _s(jd["at"], f"{jw}.at")
        try:
            hh, mm = (int(x) for x in at.split(":"))
            if not (0 <= hh < 24 and 0 <= mm < 60):
                raise ValueError
        except ValueError:
            raise TeamsFileError(f"{jw}.at: must be HH:MM, got {at!r}") from None
        model = jd.get("model")
        if model is not None and model not in MODELS:
            raise TeamsFileError(f"{jw}.model: unknown model {model!r} (known: {', '.join(MODELS)})")
        jobs.append(JobSpec(_s(jd["name"], f"{jw}.name"), every, at, _pos(jd["minutes"], f"{jw}.minutes"),
                            _pos(jd["share"], f"{jw}.share"), model,
                            _pos(jd.get("context", 6000.0), f"{jw}.context")))
    team = TeamSpec(
        name, usd, users, pattern, tuple(tools), models, tz=tz,
        peak_hour_utc=float(_num(d.get("peak_hour_utc", 15.0), f"{where}.peak_hour_utc")),
        native_share=_unit(d.get("native_share", 0.0), f"{where}.native_share"),
        context_scale=_pos(d.get("context_scale", 1.0), f"{where}.context_scale"),
        output_scale=_pos(d.get("output_scale", 1.0), f"{where}.output_scale"),
        jobs=tuple(jobs),
    )
    if team.scheduled_share >= 0.9:
        raise TeamsFileError(f"{where}.jobs: scheduled shares add up to {team.scheduled_share:g}; "
                             "keep them under 0.9 so the team has interactive traffic")
    return team


def _s(v: Any, what: str) -> str:
    if not isinstance(v, str) or not v.strip():
        raise TeamsFileError(f"{what}: must be a non-empty string, got {v!r}")
    return v


def _num(v: Any, what: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v:
        raise TeamsFileError(f"{what}: must be a number, got {v!r}")
    return float(v)


def _pos(v: Any, what: str) -> float:
    x = _num(v, what)
    if not 0 < x < float("inf"):
        raise TeamsFileError(f"{what}: must be > 0, got {v!r}")
    return x


def _unit(v: Any, what: str) -> float:
    x = _num(v, what)
    if not 0 <= x <= 1:
        raise TeamsFileError(f"{what}: must be between 0 and 1, got {v!r}")
    return x


def _mix(v: Any, what: str) -> dict[str, float]:
    if not isinstance(v, dict) or not v:
        raise TeamsFileError(f"{what}: must be a non-empty mapping model: share")
    out = {}
    for m, s in v.items():
        if m not in MODELS:
            raise TeamsFileError(f"{what}: unknown model {m!r} (known: {', '.join(MODELS)})")
        out[str(m)] = _pos(s, f"{what}.{m}")
    total = sum(out.values())
    if abs(total - 1) > 1e-6:
        raise TeamsFileError(f"{what}: shares must add up to 1, got {total:g}")
    return out
