"""A labelled evaluation workload: weeks of realistic usage with the incidents that must page and
the look-alikes that must not, for scoring detectors offline (``benchmarks/detectors.py``,
``tokenpulse simulate --scenario eval``, ``tokenpulse replay --labels``).

Pure and seeded: :func:`generate` returns the same events and labels for the same arguments,
without Kafka, clocks or files. Events are canonical usage events in the same shape as
:mod:`tokenpulse.simulate`'s (no ``cost_usd``: the pipeline prices them), labels are the dicts
:func:`tokenpulse.replay.load_labels` reads (``team, start, end, should_alert, name`` plus
``kind`` and a few figures for people).

The organisation (dollars per minute: mean over weekday 11:00-16:00 local, before incidents;
about $3,100 a day and ~590k events over 21 days in all):

============  =====  ==============  ================================================
team          tz     peak $/min      what is special
============  =====  ==============  ================================================
platform      +0     ~2.4            largest; Claude-heavy coding agents (long contexts)
search        -5     ~1.0            OpenAI mix
support       +8     ~0.7            Haiku-heavy, many users
data          +0     ~0.5            a nightly batch (02:00 UTC, ~$4/min, ~40 min) from day one
growth        -8     ~0.5 -> ~1.1    slow organic growth (4 %/day compounded)
legal         -5     ~0.25           small, genuinely quiet nights (under a cent a minute)
labs          +1     ramps to ~0.3   new team: first call part-way through the history
============  =====  ==============  ================================================

Every team has a daily shape in its own time zone (working hours, a lunch dip, a night
floor), lighter weekends, day-to-day and quarter-hour variability, and Poisson calls whose
token counts are log-normal per model. Everybody has a holiday lull (2 days at ~20 %).

Incidents that should page (``should_alert=True``), three of each per 14 scored days, at random times
after the burn-in, never in the holiday and never overlapping another label of the same team:

- ``runaway_loop``: one user, one model, an agent calling every 2-5 s with a context that grows
  by a few thousand tokens a call, for 15-60 minutes;
- ``model_switch``: for 2-5 working hours, part of a team's calls (same requests, same tokens)
  go to a 3.75-7.5x pricier sibling model so that the team's spend is ~3x: a sustained rise worth
  hundreds of dollars, but only a few dollars per minute;
- ``burst``: 2-6 minutes at 10-20x a team's rate (a script fanning out), during working hours;
- ``night_spike``: 10-40 minutes of a few dollars a minute on the quiet ``legal`` team's night.

All but the model switch cost at least ``MIN_EXCESS_5MIN`` ($20+) over normal within their
first five minutes (checked as they are made; each label carries its ``excess_usd`` and
``excess_usd_5min``): material for a cumulative-excess gate of ~$20. Today's per-window alert
engine (>= $5 and >= 50 % over expected per 60-s window) sees bursts and night spikes from their
first minute, and a runaway loop once its growing calls pass ~$5 a minute.

Look-alikes that must not page (``should_alert=False``, for attributing false alerts):

- ``nightly_batch``: every night on ``data`` (labelled after the burn-in);
- ``organic_growth``: the whole scored span of ``growth``;
- ``tiny_blip``: a user's script worth $1-4.5 in total over 1-5 minutes, some of them at night
  on a quiet team (huge in percent, a few dollars in money);
- ``holiday_lull``: every team, the lull days and the next day (when traffic returns);
- ``new_team``: the first three days of ``labs``.

Burn-in: the first ``burn_in_days`` (7 by default; a quarter of a short history) are warm-up
for the established teams. No label starts in it and firings in it must not be scored
(:attr:`Workload.scored_from`). The new team appears after it: its first days are scored,
because paging on a new team's first spend is exactly the false alert to avoid.

Dollar figures use the pipeline's own price table (:class:`streams.ingest.pricing.Pricer`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np
import numpy.typing as npt
import orjson

from streams.common.dimensions import DEFAULT_ORG
from streams.ingest.pricing import Pricer

__all__ = [
    "DEFAULT_START",
    "KINDS",
    "MODELS",
    "NEGATIVE_KINDS",
    "POSITIVE_KINDS",
    "TEAMS",
    "ModelProfile",
    "TeamSpec",
    "Workload",
    "generate",
]

DAY = 86400.0
MINUTE = 60.0
DEFAULT_START = 1767571200.0  # 2026-01-05T00:00:00Z, a Monday
MIN_EXCESS_5MIN = 22.0  # USD over normal within an incident's first 5 minutes (a margin over $20)
BLIP_MAX_USD = 4.5  # a tiny blip's whole excess stays under this (and so under $5)

POSITIVE_KINDS = ("runaway_loop", "model_switch", "burst", "night_spike")
NEGATIVE_KINDS = ("nightly_batch", "organic_growth", "tiny_blip", "holiday_lull", "new_team")
KINDS = POSITIVE_KINDS + NEGATIVE_KINDS


@dataclass(frozen=True)
class ModelProfile:
    """How a model's calls look: median tokens (log-normal), and how often the prompt cache hits."""

    provider: str
    model: str
    input_median: int
    output_median: int
    input_sigma: float = 0.7
    output_sigma: float = 0.6
    cache_hit: float = 0.4  # share of calls that read part of their input from the cache
    cached_share: float = 0.6  # of those calls' input, on average


MODELS: tuple[ModelProfile, ...] = (
    ModelProfile("anthropic", "claude-sonnet-4-20250514", 24_000, 700, cache_hit=0.5),
    ModelProfile("anthropic", "claude-opus-4-1-20250805", 24_000, 700, cache_hit=0.5),
    ModelProfile("anthropic", "claude-3-5-haiku-20241022", 9_000, 450),
    ModelProfile("openai", "gpt-4.1", 16_000, 600),
    ModelProfile("openai", "gpt-4.1-mini", 12_000, 500),
    ModelProfile("openai", "gpt-4o-mini", 5_000, 350),
    ModelProfile("google", "gemini-2.5-flash", 12_000, 600, cache_hit=0.2),
    ModelProfile("openai", "o1", 16_000, 600),
)
_MODEL_INDEX = {m.model: i for i, m in enumerate(MODELS)}
TOOLS = ("chat", "agent", "ide", "batch", "api")


@dataclass(frozen=True)
class TeamSpec:
    name: str
    tz_offset_h: float
    peak_calls_per_min: float  # weekday peak, before growth
    users: int
    mix: tuple[tuple[str, float], ...]  # (model, share of calls)
    night: float = 0.06  # activity at night relative to the weekday peak
    weekend: float = 0.3  # working-hours activity on weekends relative to weekdays
    tokens_scale: float = 1.0  # input tokens x this (coding agents and RAG send long contexts)
    growth_per_day: float = 0.0  # compounded
    nightly_batch: bool = False
    joins_after: float | None = None  # new team: first call this share of the scored span in
    switch: tuple[str, str] | None = None  # model switch: (from model, to pricier model)
    bursty: bool = False  # big enough for a 10-20x burst to be material


TEAMS: tuple[TeamSpec, ...] = (
    TeamSpec("platform", 0, 14, 30,
             (("claude-sonnet-4-20250514", 0.6), ("gpt-4.1", 0.2), ("claude-3-5-haiku-20241022", 0.2)),
             tokens_scale=4.3, switch=("claude-sonnet-4-20250514", "claude-opus-4-1-20250805"), bursty=True),
    TeamSpec("search", -5, 12, 20,
             (("gpt-4.1", 0.6), ("gpt-4.1-mini", 0.3), ("gemini-2.5-flash", 0.1)),
             tokens_scale=4.5, switch=("gpt-4.1", "o1"), bursty=True),
    TeamSpec("support", 8, 15, 40,
             (("claude-3-5-haiku-20241022", 0.85), ("gpt-4o-mini", 0.15)),
             tokens_scale=8.0, switch=("claude-3-5-haiku-20241022", "claude-sonnet-4-20250514"), bursty=True),
    TeamSpec("data", 0, 5, 6,
             (("gemini-2.5-flash", 0.4), ("gpt-4.1", 0.3), ("claude-sonnet-4-20250514", 0.3)),
             tokens_scale=3.2, night=0.12, nightly_batch=True),
    TeamSpec("growth", -8, 4, 8,
             (("gpt-4.1", 0.5), ("claude-sonnet-4-20250514", 0.3), ("gpt-4o-mini", 0.2)),
             tokens_scale=3.0, growth_per_day=0.04),
    TeamSpec("legal", -5, 2.5, 4,
             (("claude-sonnet-4-20250514", 0.6), ("gpt-4.1", 0.4)),
             tokens_scale=2.0, night=0.03, weekend=0.1),
    TeamSpec("labs", 1, 6, 5,
             (("claude-sonnet-4-20250514", 0.5), ("gpt-4.1-mini", 0.3), ("gemini-2.5-flash", 0.2)),
             tokens_scale=2.0, joins_after=0.15),
)

QUIET_TEAM = "legal"  # the night spikes' target


@dataclass
class Workload:
    """Generated history: columns of events (sorted by time) and labels."""

    seed: int
    start: float
    end: float
    scored_from: float  # burn-in end: score firings at or after it only
    labels: list[dict[str, Any]]
    teams: tuple[TeamSpec, ...]
    users: list[str]
    active_from: dict[str, float]  # team -> its first moment (start, or when a new team joins)
    org: str = DEFAULT_ORG
    # columns
    ts: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))
    team: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int16))
    user: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int32))
    model: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int16))
    tool: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int16))
    input_tokens: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    output_tokens: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    cache_read: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0, np.int64))
    cost: np.ndarray = field(repr=False, default_factory=lambda: np.zeros(0))  # USD, for checks

    def __len__(self) -> int:
        return int(self.ts.shape[0])

    def events(self) -> Iterator[dict[str, Any]]:
        """Canonical usage events in time order (the format of :mod:`tokenpulse.simulate`)."""
        teams = [t.name for t in self.teams]
        users = self.users
        models = [(m.provider, m.model) for m in MODELS]
        prefix = f"wl{self.seed}-"
        org = self.org
        cols = zip(
            np.round(self.ts, 3).tolist(), self.team.tolist(), self.user.tolist(), self.model.tolist(),
            self.tool.tolist(), self.input_tokens.tolist(), self.output_tokens.tolist(), self.cache_read.tolist(),
            strict=True,
        )
        for n, (ts, te, us, mo, to, i, o, cr) in enumerate(cols):
            provider, model = models[mo]
            yield {
                "event_id": f"{prefix}{n:x}",
                "ts": ts,
                "org": org,
                "team": teams[te],
                "user": users[us],
                "provider": provider,
                "model": model,
                "tool": TOOLS[to],
                "input_tokens": i,
                "output_tokens": o,
                "cache_read_tokens": cr,
                "cache_write_tokens": 0,
            }

    def write_jsonl(self, events_path: Any, labels_path: Any | None = None) -> int:
        """Write the events (one JSON object a line) and optionally the labels; returns the count."""
        dumps = orjson.dumps
        n = 0
        with open(events_path, "wb") as f:
            buf: list[bytes] = []
            for ev in self.events():
                buf.append(dumps(ev))
                if len(buf) >= 8192:
                    f.write(b"\n".join(buf) + b"\n")
                    n += len(buf)
                    buf = []
            if buf:
                f.write(b"\n".join(buf) + b"\n")
                n += len(buf)
        if labels_path is not None:
            with open(labels_path, "wb") as f:
                for lab in self.labels:
                    f.write(dumps(lab) + b"\n")
        return n

    def team_weeks(self, since: float | None = None) -> float:
        """Team-weeks of history from ``since`` (default: the burn-in end), new team pro rata."""
        s = self.scored_from if since is None else since
        return sum(max(0.0, self.end - max(s, a)) for a in self.active_from.values()) / (7 * DAY)


# ------------------------------------------------------------------ helpers ----------
def _rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(round(ts, 3), tz=UTC).isoformat().replace("+00:00", "Z")


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _shape(t: np.ndarray, spec: TeamSpec) -> np.ndarray:
    """Relative activity at times ``t``: 1 at a weekday peak, ``spec.night`` at night."""
    local = t + spec.tz_offset_h * 3600
    h = (local % DAY) / 3600
    weekday = ((local // DAY) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    work = _sigmoid((h - 8.8) / 0.6) * _sigmoid((18.2 - h) / 0.9)
    work = work * (1 - 0.22 * np.exp(-((h - 12.6) ** 2) / (2 * 0.45**2)))
    work = np.where(weekday >= 5, work * spec.weekend, work)
    return spec.night + (1 - spec.night) * work


class _Chunks:
    """Event columns gathered chunk by chunk, concatenated and sorted once at the end."""

    def __init__(self) -> None:
        self.parts: list[tuple[np.ndarray, ...]] = []

    def add(self, ts: np.ndarray, team: int, user: npt.ArrayLike, model: npt.ArrayLike, tool: npt.ArrayLike,
            inp: np.ndarray, out: np.ndarray, cr: np.ndarray) -> None:
        n = ts.shape[0]
        if n == 0:
            return
        self.parts.append((
            ts.astype(np.float64), np.full(n, team, np.int16), np.broadcast_to(user, n).astype(np.int32),
            np.broadcast_to(model, n).astype(np.int16), np.broadcast_to(tool, n).astype(np.int16),
            inp.astype(np.int64), out.astype(np.int64), cr.astype(np.int64),
        ))


class _Prices:
    """Vectorised cost per event from the pipeline's own price table."""

    def __init__(self, at: float) -> None:
        pricer = Pricer()
        rows = []
        for m in MODELS:
            r = pricer.rates_for(m.provider, m.model, at)
            if r is None or r.input_tiers or r.output_tiers or r.cache_read_tiers or r.per_request:
                raise RuntimeError(f"workload model {m.model} needs a flat price in the price table")
            rows.append((r.input, r.output, r.cache_read))
        self.rates = np.array(rows) / 1e6

    def cost(self, model: np.ndarray, inp: np.ndarray, out: np.ndarray, cr: np.ndarray) -> np.ndarray:
        r = self.rates[model]
        return (inp - cr) * r[..., 0] + cr * r[..., 2] + out * r[..., 1]

    def mean_call(self, model: int, rng: np.random.Generator, scale: float = 1.0, n: int = 4000) -> float:
        inp, out, cr = _tokens(rng, np.full(n, model), scale)
        return float(self.cost(np.full(n, model), inp, out, cr).mean())


def _tokens(rng: np.random.Generator, model: np.ndarray, scale: float = 1.0) -> tuple[np.ndarray, ...]:
    """Input, output and cache-read tokens of calls to ``model`` (an array of model indices)."""
    n = model.shape[0]
    med_in = np.array([m.input_median for m in MODELS], float)[model] * scale
    med_out = np.array([m.output_median for m in MODELS], float)[model]
    sig_in = np.array([m.input_sigma for m in MODELS])[model]
    sig_out = np.array([m.output_sigma for m in MODELS])[model]
    hit = np.array([m.cache_hit for m in MODELS])[model]
    share = np.array([m.cached_share for m in MODELS])[model]
    inp = np.maximum(50, (med_in * np.exp(sig_in * rng.standard_normal(n)))).astype(np.int64)
    inp = np.minimum(inp, 190_000)
    out = np.maximum(5, (med_out * np.exp(sig_out * rng.standard_normal(n)))).astype(np.int64)
    cached = rng.random(n) < hit
    frac = np.clip(share + 0.2 * rng.standard_normal(n), 0.0, 0.95)
    cr = np.where(cached, (inp * frac).astype(np.int64), 0)
    return inp, out, cr


@dataclass
class _Plan:
    """Bookkeeping of where labels already are, so incidents do not overlap each other."""

    busy: dict[str, list[tuple[float, float]]] = field(default_factory=dict)

    def free(self, team: str, s: float, e: float, margin: float = 3 * 3600) -> bool:
        return all(not (s < b + margin and e > a - margin) for a, b in self.busy.get(team, []))

    def take(self, team: str, s: float, e: float) -> None:
        self.busy.setdefault(team, []).append((s, e))


# ------------------------------------------------------------------ generator --------
def generate(seed: int = 0, days: float = 21.0, *, start: float = DEFAULT_START,
             burn_in_days: float | None = None, scale: float = 1.0, org: str = DEFAULT_ORG) -> Workload:
    """Make ``days`` of labelled history from ``start`` (epoch seconds; default a Monday).

    ``scale`` multiplies every team's call rate (and divides nothing else): below 1 the history
    is smaller and quieter, so incidents stay the same size in dollars but stand out more.
    ``burn_in_days`` defaults to 7, or a quarter of a history shorter than 14 days.
    """
    if days <= 0:
        raise ValueError("days must be > 0")
    if burn_in_days is None:
        burn_in_days = 7.0 if days >= 14 else days / 4
    if not 0 <= burn_in_days < days:
        raise ValueError("burn_in_days must be in [0, days)")
    sc = _Scenario(seed, days, start, burn_in_days, scale)
    # The order matters: every step draws from the one seeded generator, so the same seed gives
    # the same history only if the steps run in this order.
    sc.calendar()
    sc.baseline()
    sc.nightly_batches()
    sc.should_not_page_spans()
    sc.runaway_loops()
    sc.model_switches()
    sc.bursts()
    sc.night_spikes()
    sc.tiny_blips()
    return sc.assemble(org)


class _Scenario:
    """The state :func:`generate` builds step by step: one seeded generator, the teams and
    their users, the event chunks, the labels and the plan of where labels already are.

    Each method is one part of the scenario (the calendar, the baseline traffic, the nightly
    batch, the look-alikes, each kind of incident); they draw from the same generator in the
    order :func:`generate` calls them.
    """

    def __init__(self, seed: int, days: float, start: float, burn_in_days: float, scale: float) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.days = days
        self.scale = scale
        self.burn_in_days = burn_in_days
        self.start = float(math.floor(start / MINUTE) * MINUTE)
        self.end = self.start + days * DAY
        self.scored_from = self.start + burn_in_days * DAY
        self.scored_days = days - burn_in_days
        self.prices = _Prices(self.start)
        self.teams = TEAMS
        self.team_ix = {t.name: i for i, t in enumerate(self.teams)}
        self.users: list[str] = []
        self.team_users: dict[str, np.ndarray] = {}
        for t in self.teams:
            self.team_users[t.name] = np.arange(len(self.users), len(self.users) + t.users)
            self.users += [f"{t.name}-{k:02d}" for k in range(t.users)]
        self.chunks = _Chunks()
        self.labels: list[dict[str, Any]] = []
        self.plan = _Plan()
        self.minutes = np.arange(self.start, self.end, MINUTE)
        self.active_from = {t.name: self.start for t in self.teams}
        self.new_team = next((t for t in self.teams if t.joins_after is not None), None)
        self.baseline_rate: dict[str, np.ndarray] = {}  # calls per minute, before incidents
        self.baseline_part: dict[str, int] = {}  # team -> index of its baseline chunk
        self.mean_cost: dict[str, float] = {}
        self.established = [t for t in self.teams if t.joins_after is None]
        self.n_each = max(1, round(3 * self.scored_days / 14))
        self.n_blips = max(2, round(5 * self.scored_days / 14))
        self.hol_days = 2 if self.scored_days >= 6 else 1
        self.hol_start = self.hol_end = self.start

    # -- small helpers ---------------------------------------------------------------------
    def special_user(self, name: str) -> int:
        self.users.append(name)
        return len(self.users) - 1

    def label(self, team: str, s: float, e: float, should: bool, kind: str, name: str, **extra: Any) -> None:
        self.labels.append({"team": team, "start": _rfc3339(s), "end": _rfc3339(e), "should_alert": should,
                            "name": name, "kind": kind, **extra})

    def base_usd_per_min(self, team: str, t0: float) -> float:
        k = int((t0 - self.start) // MINUTE)
        return float(self.baseline_rate[team][max(0, min(k, len(self.minutes) - 1))]) * self.mean_cost[team]

    def pick_time(self, team: TeamSpec, dur: float, *, local_hours: tuple[float, float] | None = None,
                  weekdays: bool = False, tries: int = 400) -> float | None:
        """A random start after the burn-in, at the team's local hours, clear of other labels."""
        lo, hi = self.scored_from + 3600, self.end - dur - 3600
        if hi <= lo:
            return None
        for _ in range(tries):
            s = float(lo + self.rng.random() * (hi - lo))
            s = math.floor(s)
            local = s + team.tz_offset_h * 3600
            h = (local % DAY) / 3600
            if local_hours is not None and not (local_hours[0] <= h < local_hours[1]):
                continue
            if weekdays and ((local // DAY) + 3) % 7 >= 5:
                continue
            if not self.plan.free(team.name, s, s + dur):
                continue
            return s
        return None

    def add_incident(self, team: TeamSpec, ts: np.ndarray, user: Any, model: Any, tool: int,
                     inp: np.ndarray, out: np.ndarray, cr: np.ndarray) -> np.ndarray:
        """Add an incident's calls; returns their cost per call."""
        self.chunks.add(ts, self.team_ix[team.name], np.int32(user) if np.isscalar(user) else user,
                        np.int16(model) if np.isscalar(model) else model, np.int16(tool), inp, out, cr)
        m = np.full(ts.shape[0], model) if np.isscalar(model) else model
        return self.prices.cost(m, inp, out, cr)

    # -- calendar: holiday lull and the new team ---------------------------------------------
    def calendar(self) -> None:
        start, days, burn_in_days = self.start, self.days, self.burn_in_days
        hol_days = self.hol_days
        first_day = math.ceil(burn_in_days + self.scored_days * 0.45)
        last_day = int(days - hol_days - 1)
        options = [d for d in range(first_day, max(first_day, last_day) + 1)
                   if ((start + d * DAY) // DAY + 3) % 7 <= 4 - hol_days]  # lull and the day after on weekdays
        if not options:
            options = [max(first_day, min(last_day, int(burn_in_days) + 1))]
        hol_day = int(self.rng.choice(options))
        self.hol_start, self.hol_end = start + hol_day * DAY, start + (hol_day + hol_days) * DAY
        new_team = self.new_team
        if new_team is not None:
            join = self.scored_from + (new_team.joins_after or 0.0) * self.scored_days * DAY
            # at 09:00 local on that day
            local_day = math.floor((join + new_team.tz_offset_h * 3600) / DAY)
            join = local_day * DAY + 9 * 3600 - new_team.tz_offset_h * 3600
            if join < self.scored_from:
                join += DAY
            self.active_from[new_team.name] = join

    # -- baseline traffic ------------------------------------------------------------------
    def baseline(self) -> None:
        rng, start, minutes = self.rng, self.start, self.minutes
        day_index = ((minutes - start) // DAY).astype(int)
        quarter = ((minutes - start) // (15 * MINUTE)).astype(int)
        for ti, t in enumerate(self.teams):
            mix_models = np.array([_MODEL_INDEX[m] for m, _ in t.mix])
            mix_p = np.array([p for _, p in t.mix])
            mix_p = mix_p / mix_p.sum()
            self.mean_cost[t.name] = float(sum(p * self.prices.mean_call(int(m), rng, t.tokens_scale)
                                               for m, p in zip(mix_models, mix_p, strict=True)))
            rate = t.peak_calls_per_min * self.scale * _shape(minutes, t)
            rate *= np.exp(0.1 * rng.standard_normal(int(self.days) + 2))[day_index]
            rate *= np.exp(0.12 * rng.standard_normal(int(quarter[-1]) + 2))[quarter]
            if t.growth_per_day:
                rate *= (1 + t.growth_per_day) ** ((minutes - start) / DAY)
            local = minutes + t.tz_offset_h * 3600
            in_hol = (local >= self.hol_start) & (local < self.hol_end)
            rate = np.where(in_hol, rate * 0.2, rate)
            a = self.active_from[t.name]
            if a > start:
                ramp = np.clip(0.15 + 0.85 * (minutes - a) / (3 * DAY), 0.0, 1.0)
                rate = np.where(minutes >= a, rate * ramp, 0.0)
            self.baseline_rate[t.name] = rate
            counts = rng.poisson(rate)
            n = int(counts.sum())
            ts = np.repeat(minutes, counts) + rng.random(n) * MINUTE
            ts = np.maximum(ts, a)
            model = mix_models[rng.choice(len(mix_models), size=n, p=mix_p)]
            inp, out, cr = _tokens(rng, model, t.tokens_scale)
            # a few heavy users and many light ones
            w = 1.0 / np.arange(1, t.users + 1) ** 0.8
            user = self.team_users[t.name][rng.choice(t.users, size=n, p=w / w.sum())]
            tool = rng.choice(3, size=n, p=[0.5, 0.3, 0.2])  # chat, agent, ide: "batch" and "api" are not theirs
            self.chunks.add(ts, ti, user, model, tool, inp, out, cr)
            if n:
                self.baseline_part[t.name] = len(self.chunks.parts) - 1

    # -- the nightly batch (present from day one) -----------------------------------------
    def nightly_batches(self) -> None:
        rng, start, end = self.rng, self.start, self.end
        for t in self.teams:
            if not t.nightly_batch:
                continue
            ti = self.team_ix[t.name]
            etl = self.special_user(f"{t.name}-etl")
            sonnet = _MODEL_INDEX["claude-sonnet-4-20250514"]
            usd_per_min = 4.0 * (0.9 + 0.2 * rng.random())
            per_call = self.prices.mean_call(sonnet, rng, 2.0)
            for d in range(int(math.ceil(self.days))):
                s = start + d * DAY + 2 * 3600 - t.tz_offset_h * 3600 + rng.random() * 180
                dur = (35 + 10 * rng.random()) * MINUTE
                e = min(s + dur, end)
                if e <= s or s < start:
                    continue
                n = rng.poisson(usd_per_min / per_call * (e - s) / MINUTE * (0.95 + 0.1 * rng.random()))
                ts = np.sort(s + rng.random(n) * (e - s))
                inp, out, cr = _tokens(rng, np.full(n, sonnet), 2.0)
                self.chunks.add(ts, ti, np.int32(etl), np.int16(sonnet), np.int16(3), inp, out, cr)
                if s >= self.scored_from:
                    self.label(t.name, s, e, False, "nightly_batch", f"{t.name} nightly batch",
                               usd=round(float(self.prices.cost(np.full(n, sonnet), inp, out, cr).sum()), 2))
                self.plan.take(t.name, s, e)

    # -- should-not-page spans -----------------------------------------------------------------
    def should_not_page_spans(self) -> None:
        end = self.end
        for t in self.teams:  # the lull follows each team's local calendar
            tz = t.tz_offset_h * 3600
            a, b = max(self.hol_start - tz, self.active_from[t.name]), min(self.hol_end + DAY - tz, end)
            if a < b:
                self.label(t.name, a, b, False, "holiday_lull",
                           f"holiday lull ({self.hol_days} days at ~20 %) and the day after")
                self.plan.take(t.name, a, b)
        for t in self.teams:
            if t.growth_per_day:
                self.label(t.name, self.scored_from, end, False, "organic_growth",
                           f"{t.name} grows {100 * t.growth_per_day:g} %/day")
        new_team = self.new_team
        if new_team is not None and self.active_from[new_team.name] < end:
            a = self.active_from[new_team.name]
            self.label(new_team.name, a, min(a + 3 * DAY, end), False, "new_team", f"{new_team.name}'s first days")
            self.plan.take(new_team.name, a, a + 3 * DAY)

    # -- incidents ----------------------------------------------------------------------------
    def runaway_loops(self) -> None:
        """One user, one model, a context growing call after call."""
        rng, established = self.rng, self.established
        for _ in range(self.n_each):
            team = established[int(rng.integers(len(established)))]
            dur = float(rng.uniform(15, 60)) * MINUTE
            s = self.pick_time(team, dur)
            if s is None:
                continue
            model = _MODEL_INDEX["claude-sonnet-4-20250514" if rng.random() < 0.7 else "gpt-4.1"]
            user = int(self.team_users[team.name][int(rng.integers(team.users))])
            gap = float(rng.uniform(2.0, 5.0))
            c0, grow = float(rng.uniform(20_000, 50_000)), float(rng.uniform(1_500, 4_000))
            for _attempt in range(20):
                n = int(dur / gap)
                ts = s + np.cumsum(gap * rng.uniform(0.6, 1.4, n))
                ts = ts[ts < s + dur]
                n = ts.shape[0]
                inp = np.minimum(190_000, c0 + grow * np.arange(n) * rng.uniform(0.8, 1.2, n)).astype(np.int64)
                out = rng.integers(200, 1_500, n)
                cr = (inp * rng.uniform(0.0, 0.5, n)).astype(np.int64)
                usd = self.prices.cost(np.full(n, model), inp, out, cr)
                if _excess_first(ts, usd, s) >= MIN_EXCESS_5MIN:
                    break
                gap *= 0.8
                grow *= 1.1
            self.add_incident(team, ts, user, model, 1, inp, out, cr)
            e = float(ts[-1]) + 1
            self.plan.take(team.name, s, e)
            self.label(team.name, s, e, True, "runaway_loop",
                       f"runaway agent loop ({self.users[user]}, {MODELS[model].model})",
                       excess_usd=round(float(usd.sum()), 2), excess_usd_5min=round(_excess_first(ts, usd, s), 2))

    def model_switches(self) -> None:
        """Part of a team's calls go to a pricier sibling, same tokens."""
        rng, prices = self.rng, self.prices
        switchable = [t for t in self.established if t.switch]
        for k in range(self.n_each):
            team = switchable[k % len(switchable)] if k < len(switchable) else switchable[int(rng.integers(len(switchable)))]
            assert team.switch is not None
            dur = float(rng.uniform(2, 5)) * 3600
            s = self.pick_time(team, dur, local_hours=(9.0, 12.0), weekdays=True)
            if s is None:
                continue
            e = s + dur
            src, dst = _MODEL_INDEX[team.switch[0]], _MODEL_INDEX[team.switch[1]]
            # base cost in the window and what the source model's calls would cost at dst prices
            if team.name not in self.baseline_part:
                continue
            part = self.chunks.parts[self.baseline_part[team.name]]
            ts_all, model_all = part[0], part[3]
            sel = (ts_all >= s) & (ts_all < e)
            inp, out, cr = part[5][sel], part[6][sel], part[7][sel]
            m = model_all[sel]
            base = prices.cost(m, inp, out, cr)
            moved_now = base[m == src].sum()
            moved_then = prices.cost(np.full(int((m == src).sum()), dst), inp[m == src], out[m == src], cr[m == src]).sum()
            gain = moved_then - moved_now
            f = min(1.0, 2.0 * base.sum() / gain) if gain > 0 else 1.0
            switch = (m == src) & (rng.random(m.shape[0]) < f)
            new_model = np.where(switch, dst, m)
            extra = float((prices.cost(new_model, inp, out, cr) - base).sum())
            model_all[np.nonzero(sel)[0][switch]] = dst
            self.plan.take(team.name, s, e)
            ratio = (base.sum() + extra) / base.sum() if base.sum() > 0 else float("inf")
            self.label(team.name, s, e, True, "model_switch",
                       f"model switch {team.switch[0]} -> {team.switch[1]} ({100 * f:.0f} % of those calls)",
                       excess_usd=round(extra, 2), ratio=round(float(ratio), 2))

    def bursts(self) -> None:
        """Short large bursts: 10-20x the team's rate for a few minutes."""
        rng = self.rng
        bursty = [t for t in self.established if t.bursty]
        for _ in range(self.n_each):
            team = bursty[int(rng.integers(len(bursty)))]
            dur = float(rng.uniform(2, 6)) * MINUTE
            s = self.pick_time(team, dur, local_hours=(10.0, 17.0), weekdays=True)
            if s is None:
                continue
            factor = float(rng.uniform(10, 20))
            base = self.base_usd_per_min(team.name, s)
            # at least the material excess in its first minutes, whatever the baseline is
            need = MIN_EXCESS_5MIN / min(5.0, dur / MINUTE)
            extra_usd_per_min = max((factor - 1) * base, need * 1.1)
            mix_models = np.array([_MODEL_INDEX[m] for m, _ in team.mix])
            mix_p = np.array([p for _, p in team.mix])
            for _attempt in range(20):
                n = int(rng.poisson(extra_usd_per_min / self.mean_cost[team.name] * dur / MINUTE))
                ts = np.sort(s + rng.random(n) * dur)
                model = mix_models[rng.choice(len(mix_models), size=n, p=mix_p / mix_p.sum())]
                inp, out, cr = _tokens(rng, model, team.tokens_scale)
                usd = self.prices.cost(model, inp, out, cr)
                if _excess_first(ts, usd, s) >= MIN_EXCESS_5MIN:
                    break
                extra_usd_per_min *= 1.2
            user = self.team_users[team.name][rng.integers(0, min(3, team.users), n)]
            self.add_incident(team, ts, user, model, 4, inp, out, cr)
            self.plan.take(team.name, s, s + dur)
            self.label(team.name, s, s + dur, True, "burst",
                       f"burst x{1 + extra_usd_per_min / max(base, 1e-9):.0f} for {dur / MINUTE:.0f} min",
                       excess_usd=round(float(usd.sum()), 2), excess_usd_5min=round(_excess_first(ts, usd, s), 2))

    def night_spikes(self) -> None:
        """A few dollars a minute for 10-40 minutes of the quiet team's night."""
        rng, prices = self.rng, self.prices
        quiet = next(t for t in self.teams if t.name == QUIET_TEAM)
        for k in range(self.n_each):
            dur = float(rng.uniform(10, 40)) * MINUTE
            s = self.pick_time(quiet, dur, local_hours=(0.5, 4.5))
            if s is None:
                continue
            usd_per_min = float(rng.uniform(5, 9))
            model = _MODEL_INDEX["claude-sonnet-4-20250514" if rng.random() < 0.5 else "gpt-4.1"]
            per_call = prices.mean_call(model, rng)
            for _attempt in range(20):
                n = int(rng.poisson(usd_per_min / per_call * dur / MINUTE))
                ts = np.sort(s + rng.random(n) * dur)
                inp, out, cr = _tokens(rng, np.full(n, model))
                usd = prices.cost(np.full(n, model), inp, out, cr)
                if _excess_first(ts, usd, s) >= MIN_EXCESS_5MIN:
                    break
                usd_per_min *= 1.2
            user = self.special_user(f"{quiet.name}-svc-{k}")
            self.add_incident(quiet, ts, user, model, 4, inp, out, cr)
            self.plan.take(quiet.name, s, s + dur)
            self.label(quiet.name, s, s + dur, True, "night_spike",
                       f"night spike on {quiet.name} (${usd_per_min:.0f}/min, {MODELS[model].model})",
                       excess_usd=round(float(usd.sum()), 2), excess_usd_5min=round(_excess_first(ts, usd, s), 2))

    def tiny_blips(self) -> None:
        """A few dollars in total, some at night on the quiet team: must not page."""
        rng, prices = self.rng, self.prices
        quiet = next(t for t in self.teams if t.name == QUIET_TEAM)
        for k in range(self.n_blips):
            team = quiet if k % 2 == 0 else self.established[int(rng.integers(len(self.established)))]
            dur = float(rng.uniform(1, 5)) * MINUTE
            s = self.pick_time(team, dur, local_hours=(0.0, 6.0) if team is quiet else None)
            if s is None:
                continue
            budget = float(rng.uniform(1.5, BLIP_MAX_USD))
            model = _MODEL_INDEX["claude-sonnet-4-20250514"]
            n = max(1, int(budget / prices.mean_call(model, rng) * 1.5))
            ts = np.sort(s + rng.random(n) * dur)
            inp, out, cr = _tokens(rng, np.full(n, model), scale=0.5)
            usd = prices.cost(np.full(n, model), inp, out, cr)
            keep = np.cumsum(usd) <= budget
            keep[0] = usd[0] <= BLIP_MAX_USD
            ts, inp, out, cr, usd = ts[keep], inp[keep], out[keep], cr[keep], usd[keep]
            if ts.shape[0] == 0:
                continue
            user = int(self.team_users[team.name][int(rng.integers(team.users))])
            self.add_incident(team, ts, user, model, 4, inp, out, cr)
            self.plan.take(team.name, s, s + dur)
            self.label(team.name, s, s + dur, False, "tiny_blip", f"tiny blip (${usd.sum():.2f} in {dur / MINUTE:.0f} min)",
                       excess_usd=round(float(usd.sum()), 2))

    # -- assemble ---------------------------------------------------------------------------------
    def assemble(self, org: str) -> Workload:
        """The chunks as sorted columns inside [start, end), the labels sorted by start."""
        cols = [np.concatenate([p[i] for p in self.chunks.parts]) for i in range(8)]
        order = np.argsort(cols[0], kind="stable")
        cols = [c[order] for c in cols]
        keep = (cols[0] >= self.start) & (cols[0] < self.end)
        cols = [c[keep] for c in cols]
        self.labels.sort(key=lambda lab: (lab["start"], lab["team"]))
        wl = Workload(
            seed=self.seed, start=self.start, end=self.end, scored_from=self.scored_from, labels=self.labels,
            teams=self.teams, users=self.users, active_from=self.active_from, org=org,
            ts=cols[0], team=cols[1], user=cols[2], model=cols[3], tool=cols[4],
            input_tokens=cols[5], output_tokens=cols[6], cache_read=cols[7],
        )
        wl.cost = self.prices.cost(wl.model.astype(np.intp), wl.input_tokens, wl.output_tokens, wl.cache_read)
        return wl


def _excess_first(ts: np.ndarray, usd: np.ndarray, s: float, seconds: float = 300.0) -> float:
    """Dollars of an incident's calls in its first ``seconds``."""
    return float(usd[ts < s + seconds].sum())
