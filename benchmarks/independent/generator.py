"""The independent workload generator: usage events and labelled spans per SPEC.md.

Use :func:`generate` for a history in memory (events are built lazily) and
``python -m benchmarks.independent`` to write JSONL files. Everything random comes from
numpy Generators keyed by (seed, purpose, team), so one part (say the positive incidents) can
be switched off without moving any other event: a test measures an incident's realised excess
as the difference between the two histories.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import IO, Any
from zoneinfo import ZoneInfo

import numpy as np
import orjson
from scipy.special import ndtri

from .prices import MODEL_NAMES, MODELS, P_CR, P_CW, P_IN, P_OUT, WINDOW, WRITES_CACHE, cost_idx
from .teams import DEFAULT_TEAMS, WEEKDAYS, TeamSpec, ToolSpec

MINUTE, HOUR, DAY = 60.0, 3600.0, 86400.0
BASE_START = datetime(2025, 3, 3, tzinfo=UTC)  # a Monday
ORG = "acme"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
MODEL_INDEX = {n: i for i, n in enumerate(MODEL_NAMES)}
PROVIDERS = [MODELS[n].provider for n in MODEL_NAMES]
MAX_OUTPUT = 64_000

# origins of a request: normal interactive, scheduled job, added by a negative, by a positive
NORMAL, BATCH, NEG, POS = 0, 1, 2, 3

GROWTH_TEAMS = (40.0, 2000.0)  # $/day of the teams that may grow organically
MAX_INCIDENT_REQUESTS = 25_000  # keeps the history's size bounded; not a materiality rule
POSITIVE_KINDS = ("runaway_loop", "model_switch", "short_burst", "night_spike", "rising", "key_leak")


# ------------------------------------------------------------------ archetypes ------------
@dataclass(frozen=True)
class Archetype:
    """How one kind of session behaves (SPEC.md §4.3); LN pairs are (median, sigma)."""
    calls: tuple[Any, ...]  # ("geometric", p, cap) | ("poisson", mu, cap) | ("lomax", alpha, scale, cap)
    gap: tuple[float, float]
    ctx0: tuple[float, float]
    growth: tuple[float, float]
    out: tuple[float, float]
    cached: float
    tail: tuple[float, float, float] | None = None  # (probability, minimum, Lomax alpha)


ARCHETYPES: dict[str, Archetype] = {
    "chat": Archetype(("geometric", 0.3, 40), (40, 0.8), (1500, 0.9), (600, 0.7), (350, 0.8), 0.70),
    "rag": Archetype(("poisson", 0.5, 20), (20, 0.6), (8000, 0.8), (2000, 0.7), (500, 0.7), 0.30,
                     tail=(0.04, 100_000, 1.2)),
    "agent": Archetype(("lomax", 1.5, 6, 250), (5, 0.8), (8000, 0.7), (2500, 0.9), (400, 1.0), 0.85),
    "long_context": Archetype(("lomax", 1.5, 3, 40), (45, 0.7), (120_000, 0.5), (20_000, 0.6),
                              (3000, 0.7), 0.40),
}


@dataclass
class Calls:
    """Columns of requests. ``t`` is event time in epoch seconds; strings are indices."""
    t: np.ndarray
    team: np.ndarray
    user: np.ndarray
    tool: np.ndarray
    model: np.ndarray
    inp: np.ndarray
    out: np.ndarray
    cr: np.ndarray
    cw: np.ndarray
    origin: np.ndarray

    FIELDS = ("t", "team", "user", "tool", "model", "inp", "out", "cr", "cw", "origin")

    def __len__(self) -> int:
        return len(self.t)

    def cost(self) -> np.ndarray:
        return cost_idx(self.model, self.inp, self.out, self.cr, self.cw)

    def take(self, idx: Any) -> Calls:
        return Calls(*(getattr(self, f)[idx] for f in self.FIELDS))

    @staticmethod
    def concat(parts: Sequence[Calls]) -> Calls:
        parts = [p for p in parts if len(p)]
        if not parts:
            return Calls.empty()
        return Calls(*(np.concatenate([getattr(p, f) for p in parts]) for f in Calls.FIELDS))

    @staticmethod
    def empty() -> Calls:
        f8, i8 = np.zeros(0), np.zeros(0, dtype=np.int64)
        return Calls(f8, i8, i8, i8, i8, i8, i8, i8, i8, i8)


@dataclass
class Tokens:
    """Requests of simulated sessions before they get a time, user and tool."""
    sidx: np.ndarray  # session of each call
    offset: np.ndarray  # seconds since the session's start
    model: np.ndarray
    inp: np.ndarray
    out: np.ndarray
    cr: np.ndarray
    cw: np.ndarray

    def cost(self) -> np.ndarray:
        return cost_idx(self.model, self.inp, self.out, self.cr, self.cw)

    def take(self, idx: Any) -> Tokens:
        return Tokens(self.sidx[idx], self.offset[idx], self.model[idx], self.inp[idx], self.out[idx],
                      self.cr[idx], self.cw[idx])


def _ln(rng: np.random.Generator, med_sigma: tuple[float, float], n: int) -> np.ndarray:
    return rng.lognormal(math.log(med_sigma[0]), med_sigma[1], n)


def simulate_sessions(rng: np.random.Generator, arch: Archetype, model: np.ndarray,
                      context_scale: float = 1.0, output_scale: float = 1.0) -> Tokens:
    """Calls of ``len(model)`` sessions, session i on model index ``model[i]`` (SPEC.md §4.3)."""
    n = len(model)
    c = arch.calls
    if c[0] == "geometric":
        calls = np.minimum(rng.geometric(c[1], n), c[2])
    elif c[0] == "poisson":
        calls = np.minimum(1 + rng.poisson(c[1], n), c[2])
    else:
        calls = np.minimum(1 + np.floor(c[2] * rng.pareto(c[1], n)).astype(np.int64), c[3])
    calls = calls.astype(np.int64)
    N = int(calls.sum())
    sidx = np.repeat(np.arange(n), calls)
    first = np.cumsum(calls) - calls
    k = np.arange(N) - first[sidx]
    gaps = _ln(rng, arch.gap, N)
    gaps[k == 0] = 0.0
    cs = np.cumsum(gaps)
    offset = cs - cs[first][sidx]
    c0 = _ln(rng, arch.ctx0, n)
    if arch.tail is not None:
        p, lo, alpha = arch.tail
        long = rng.random(n) < p
        c0 = np.where(long, lo * (1 + rng.pareto(alpha, n)), c0)
    # A first prompt never starts past the window: an oversized one is cut to 30-90 % of it.
    c0 = np.minimum(c0 * context_scale, 0.95 * WINDOW[model] * rng.uniform(0.3, 0.9, n))
    g = _ln(rng, arch.growth, n) * context_scale
    cmodel = model[sidx]
    # Past 95 % of the window the client compacts: the context falls back to the first
    # prompt's size and grows again (a sawtooth, not a pile-up at the cap).
    room = np.maximum(0.95 * WINDOW[cmodel] - c0[sidx], 1.0)
    ctx = c0[sidx] + np.mod(g[sidx] * k, room)
    prev = c0[sidx] + np.mod(g[sidx] * np.maximum(k - 1, 0), room)
    cached = (rng.random(n) < arch.cached)[sidx]
    frac = rng.uniform(0.85, 1.0, N)
    system = _ln(rng, (2000, 0.5), N)
    system_on = rng.random(N) < 0.5
    # After a compaction the prefix is new: only the system prompt can come from the cache.
    continued = (k > 0) & (ctx >= prev)
    read = np.where(continued, prev * frac, np.where(system_on, system, 0.0))
    inp = np.maximum(np.rint(ctx), 1).astype(np.int64)
    cr = np.where(cached, np.minimum(np.rint(read), inp), 0).astype(np.int64)
    cw = np.where(cached & WRITES_CACHE[cmodel], inp - cr, 0).astype(np.int64)
    out = np.clip(np.rint(_ln(rng, arch.out, N) * output_scale), 1, MAX_OUTPUT).astype(np.int64)
    return Tokens(sidx, offset, cmodel, inp, out, cr, cw)


def simulate_batch_calls(rng: np.random.Generator, n: int, model: int, context: float,
                         output_scale: float) -> Tokens:
    """Single calls of a scheduled job (SPEC.md §4.5)."""
    inp = np.maximum(np.rint(np.minimum(_ln(rng, (context, 0.6), n), 0.95 * WINDOW[model])), 1).astype(np.int64)
    system = np.minimum(np.rint(_ln(rng, (2000, 0.5), n)), inp).astype(np.int64)
    read = rng.random(n) < 0.9
    cr = np.where(read, system, 0)
    cw = np.where(~read & WRITES_CACHE[model], system, 0)
    out = np.clip(np.rint(_ln(rng, (600, 0.5), n) * output_scale), 1, MAX_OUTPUT).astype(np.int64)
    m = np.full(n, model, dtype=np.int64)
    return Tokens(np.arange(n), np.zeros(n), m, inp, out, cr.astype(np.int64), cw.astype(np.int64))


# ------------------------------------------------------------------ randomness --------------
def _rng(seed: int, purpose: str, team: str = "") -> np.random.Generator:
    """One independent stream per (seed, purpose, team): switching a part off moves no other."""
    return np.random.default_rng(np.random.SeedSequence(
        [int(seed), zlib.crc32(purpose.encode()), zlib.crc32(team.encode())]))


def _log_uniform(rng: np.random.Generator, lo: float, hi: float) -> float:
    return float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


# ------------------------------------------------------------------ calendar ---------------
# Office weekday profile by local hour (value at the start of the hour; linear in between).
OFFICE = np.array([0.04, 0.03, 0.03, 0.03, 0.04, 0.06, 0.12, 0.30, 0.65, 0.92, 1.00, 0.95,
                   0.70, 0.85, 1.00, 0.97, 0.85, 0.62, 0.40, 0.27, 0.19, 0.13, 0.08, 0.05])
OFFICE_MEAN = float(OFFICE.mean())
FOLLOW_THE_SUN_ZONES = ("Asia/Kolkata", "Europe/Dublin", "America/Chicago")


def _local_seconds(t: np.ndarray, tz: ZoneInfo) -> np.ndarray:
    """Local wall-clock seconds since the epoch for UTC epoch seconds ``t`` (hourly offsets)."""
    hours = np.floor(t / HOUR).astype(np.int64)
    uniq = np.unique(hours)
    offs = np.array([tz.utcoffset(datetime.fromtimestamp(h * HOUR, UTC)).total_seconds()
                     for h in uniq.tolist()])
    return t + offs[np.searchsorted(uniq, hours)]


def _office(t: np.ndarray, tz: ZoneInfo, weekend_level: float) -> np.ndarray:
    loc = _local_seconds(t, tz)
    days = np.floor(loc / DAY)
    weekday = (days.astype(np.int64) + 3) % 7  # 1970-01-01 was a Thursday; Monday = 0
    h = (loc - days * DAY) / HOUR
    v = np.interp(h, np.arange(25), np.append(OFFICE, OFFICE[0]))
    # Weekend days: flatter than a weekday, the same daytime lean.
    weekend = weekend_level * OFFICE_MEAN * (0.5 + 0.5 * v / OFFICE_MEAN)
    return np.where(weekday >= 5, weekend, v)


def shape_of(team: TeamSpec, t: np.ndarray) -> np.ndarray:
    """The team's unnormalised daily/weekly pattern at UTC times ``t`` (SPEC.md §4.4)."""
    if team.pattern == "office":
        return _office(t, ZoneInfo(team.tz), 0.12)
    if team.pattern == "follow-the-sun":
        return sum(_office(t, ZoneInfo(z), 0.5) for z in FOLLOW_THE_SUN_ZONES)
    amp, weekend = (0.35, 0.9) if team.pattern == "global" else (0.15, 0.97)
    h = (t % DAY) / HOUR
    weekday = (np.floor(t / DAY).astype(np.int64) + 3) % 7
    return (1 + amp * np.cos(2 * np.pi * (h - team.peak_hour_utc) / 24)) * np.where(weekday >= 5, weekend, 1.0)


def _rfc3339(t: float) -> str:
    return (EPOCH + timedelta(seconds=t)).strftime("%Y-%m-%dT%H:%M:%SZ")


def _local_midnight(day: int, tz: ZoneInfo) -> float:
    """UTC epoch seconds of local midnight starting the date that is ``day`` days after 1970-01-01."""
    d = (EPOCH + timedelta(days=day)).date()
    return datetime(d.year, d.month, d.day, tzinfo=tz).timestamp()


# ------------------------------------------------------------------ teams at run time ------
@dataclass
class ToolRun:
    spec: ToolSpec
    index: int  # into the string table
    arch: Archetype
    models: np.ndarray  # model indices
    weights: np.ndarray  # share of sessions
    cost_per_session: float = 0.0
    calls_per_session: float = 0.0
    sessions_per_day: float = 0.0
    # per model: mean (uncached input, cache read, cache write, output) tokens of a session
    tokens_per_session: dict[int, np.ndarray] = field(default_factory=dict)
    base_lam: np.ndarray = field(default_factory=lambda: np.zeros(0))  # sessions per minute, no calendar events
    team_scale: float = 1.0

    @property
    def context_scale(self) -> float:
        return self.team_scale * self.spec.context_scale


@dataclass
class TeamRun:
    spec: TeamSpec
    idx: int
    tz: ZoneInfo
    users: np.ndarray  # string indices, by rank
    user_w: np.ndarray
    tools: list[ToolRun]
    job_models: list[int]
    job_call_cost: list[float]
    job_tokens: list[np.ndarray]
    p95_context: float = 0.0
    hol_mult: np.ndarray = field(default_factory=lambda: np.zeros(0))
    growth_mult: np.ndarray = field(default_factory=lambda: np.zeros(0))
    exp_min: np.ndarray = field(default_factory=lambda: np.zeros(0))  # expected $ per minute (all normal traffic)
    inter_min: np.ndarray = field(default_factory=lambda: np.zeros(0))  # the same, interactive only
    base_exp_min: np.ndarray = field(default_factory=lambda: np.zeros(0))  # interactive, no holiday or growth
    runs: list[tuple[float, float, str]] = field(default_factory=list)  # scheduled runs
    spans: list[tuple[float, float]] = field(default_factory=list)  # label spans (not scheduled runs)
    # organic growth: a background trend that other spans may overlap
    background: list[tuple[float, float]] = field(default_factory=list)
    ev: Calls = field(default_factory=Calls.empty)  # normal + scheduled, sorted by time
    extra: list[Calls] = field(default_factory=list)
    positives: int = 0
    negatives: int = 0

    @property
    def name(self) -> str:
        return self.spec.name

    def main_tool(self) -> ToolRun:
        return max(self.tools, key=lambda tr: tr.spec.share)


class Strings:
    """Interned strings (users, tools) so that event columns stay numeric."""

    def __init__(self) -> None:
        self.values: list[str] = []
        self._index: dict[str, int] = {}

    def __call__(self, s: str) -> int:
        i = self._index.get(s)
        if i is None:
            i = self._index[s] = len(self.values)
            self.values.append(s)
        return i


# ------------------------------------------------------------------ the generator ----------
class _History:
    def __init__(self, seed: int, days: float, burn_in_days: float, teams: Sequence[TeamSpec],
                 start: float | None, positives: bool, negatives: bool) -> None:
        if days <= 0:
            raise ValueError(f"days must be > 0, got {days}")
        if not 0 <= burn_in_days < days:
            raise ValueError(f"burn_in_days must be in [0, days), got {burn_in_days}")
        if not teams:
            raise ValueError("no teams")
        self.seed = int(seed)
        if start is None:
            offset = int(_rng(seed, "calendar").integers(0, 7))
            start = (BASE_START + timedelta(days=offset)).timestamp()
        self.start = float(start)
        self.end = self.start + days * DAY
        self.burn_end = self.start + burn_in_days * DAY
        self.days = days
        self.teams_spec = list(teams)
        self.with_positives = positives
        self.with_negatives = negatives
        self.M = int(math.ceil(days * 1440))
        self.minutes = self.start + MINUTE * np.arange(self.M)
        self.strings = Strings()
        self.native_user: dict[int, bool] = {}
        self.labels: list[dict[str, Any]] = []
        self.skipped: list[str] = []
        self.neg_rng = _rng(seed, "negatives")
        self.pos_rng = _rng(seed, "positives")

    # -------------------------------------------------------------- build ---------------
    def build(self) -> None:
        self.teams = [self._team(i, spec) for i, spec in enumerate(self.teams_spec)]
        hol, growth = (self._plan_calendar() if self.with_negatives else (None, None))
        self.growth = growth
        for team in self.teams:
            self._rates(team, hol, growth)
            self._traffic(team)
        if self.with_negatives:
            self._label_calendar(hol, growth)
            self._migration()
            self._blips()
            self._label_runs()
        if self.with_positives:
            self._positives()

    def _team(self, idx: int, spec: TeamSpec) -> TeamRun:
        rng = _rng(self.seed, "calibration", spec.name)
        width = max(3, len(str(spec.users)))
        users = np.array([self.strings(f"{spec.name}-u{r:0{width}d}") for r in range(1, spec.users + 1)])
        w = np.arange(1, spec.users + 1, dtype=float) ** -1.1
        # Native clients: users in random order until they carry native_share of the sessions
        # (a coin per user would let one heavy user swing the team's share).
        urng = _rng(self.seed, "users", spec.name)
        share = w / w.sum()
        native = np.zeros(spec.users, dtype=bool)
        acc = 0.0
        for i in urng.permutation(spec.users).tolist():
            if acc + share[i] / 2 <= spec.native_share:
                native[i] = True
                acc += share[i]
        for u, nat in zip(users.tolist(), native.tolist(), strict=True):
            self.native_user[u] = nat
        tools = []
        contexts = []
        interactive_usd = spec.usd_per_day * (1 - spec.scheduled_share)
        for ts in spec.tools:
            mix = ts.models or spec.models
            tr = ToolRun(ts, self.strings(ts.name), ARCHETYPES[ts.archetype],
                         np.array([MODEL_INDEX[m] for m in mix]), np.array(list(mix.values())),
                         team_scale=spec.context_scale)
            costs, calls = [], []
            for m in tr.models.tolist():
                tok = simulate_sessions(rng, tr.arch, np.full(4000, m), tr.context_scale, spec.output_scale)
                costs.append(float(tok.cost().sum()) / 4000)
                calls.append(len(tok.inp) / 4000)
                u = tok.inp - tok.cr - tok.cw
                tr.tokens_per_session[m] = np.array([u.sum(), tok.cr.sum(), tok.cw.sum(), tok.out.sum()]) / 4000
                contexts.append(tok.inp)
            tr.cost_per_session = float(np.dot(tr.weights, costs))
            tr.calls_per_session = float(np.dot(tr.weights, calls))
            tr.sessions_per_day = interactive_usd * ts.share / tr.cost_per_session
            tools.append(tr)
        job_models, job_cost, job_tokens = [], [], []
        for job in spec.jobs:
            m = MODEL_INDEX[job.model or next(iter(spec.models))]
            tok = simulate_batch_calls(rng, 20_000, m, job.context, spec.output_scale)
            job_models.append(m)
            job_cost.append(float(tok.cost().mean()))
            u = tok.inp - tok.cr - tok.cw
            job_tokens.append(np.array([u.mean(), tok.cr.mean(), tok.cw.mean(), tok.out.mean()]))
        team = TeamRun(spec, idx, ZoneInfo(spec.tz), users, w / w.sum(), tools, job_models, job_cost, job_tokens)
        team.p95_context = float(np.percentile(np.concatenate(contexts), 95))
        return team

    # -------------------------------------------------------------- rates and traffic ---
    def _rates(self, team: TeamRun, hol: dict[str, Any] | None, growth: dict[str, Any] | None) -> None:
        spec = team.spec
        rng = _rng(self.seed, "noise", spec.name)
        week = self.start + MINUTE * np.arange(max(self.M, 7 * 1440)) + 30
        shape_all = shape_of(spec, week)
        shape = shape_all[: self.M] / shape_all[: 7 * 1440].mean()
        day_idx = np.floor((self.minutes - self.start) / DAY).astype(np.int64)
        s_day = 0.12
        day_noise = np.exp(rng.normal(-s_day ** 2 / 2, s_day, day_idx.max() + 1))
        hour_idx = np.floor((self.minutes - self.start) / HOUR).astype(np.int64)
        nh = int(hour_idx.max()) + 1
        phi, s_in = 0.7, 0.12
        var = s_in ** 2 / (1 - phi ** 2)
        x = np.empty(nh)
        eps = rng.normal(0, s_in, nh)
        x[0] = rng.normal(0, math.sqrt(var))
        for i in range(1, nh):
            x[i] = phi * x[i - 1] + eps[i]
        hour_noise = np.exp(x - var / 2)
        base = shape * day_noise[day_idx] * hour_noise[hour_idx]
        team.hol_mult = np.ones(self.M)
        team.growth_mult = np.ones(self.M)
        if hol is not None:
            loc_day = np.floor(_local_seconds(self.minutes + 30, team.tz) / DAY).astype(np.int64)
            m, after = hol["mult"][spec.name], hol["after"][spec.name]
            team.hol_mult[np.isin(loc_day, hol["days"])] = m
            team.hol_mult[loc_day == max(hol["days"]) + 1] = after
        if growth is not None and growth["team"] == spec.name:
            el = np.clip((self.minutes - growth["t0"]) / DAY, 0, growth["days"])
            team.growth_mult = (1 + growth["rate"]) ** el
        inter = np.zeros(self.M)
        for tr in team.tools:
            tr.base_lam = tr.sessions_per_day / 1440 * base
            inter += tr.base_lam * tr.cost_per_session
        team.exp_min = inter * team.hol_mult * team.growth_mult
        team.inter_min = team.exp_min.copy()
        team.base_exp_min = inter

    def _traffic(self, team: TeamRun) -> None:
        spec = team.spec
        rng = _rng(self.seed, "traffic", spec.name)
        parts = []
        for tr in team.tools:
            lam = tr.base_lam * team.hol_mult * team.growth_mult
            counts = rng.poisson(lam)
            n = int(counts.sum())
            starts = np.repeat(self.minutes, counts) + rng.uniform(0, MINUTE, n)
            models = tr.models[rng.choice(len(tr.models), size=n, p=tr.weights)]
            users = team.users[rng.choice(len(team.users), size=n, p=team.user_w)]
            tok = simulate_sessions(rng, tr.arch, models, tr.context_scale, spec.output_scale)
            parts.append(self._calls(team, starts[tok.sidx] + tok.offset, users[tok.sidx], tr.index, tok, NORMAL))
        brng = _rng(self.seed, "batch", spec.name)
        for j, job in enumerate(spec.jobs):
            hh, mm = (int(x) for x in job.at.split(":"))
            first_day = int(math.floor(self.start / DAY)) - 1
            last_day = int(math.ceil(self.end / DAY)) + 1
            user = self.strings(f"svc-{job.name}")
            self.native_user.setdefault(user, False)
            tool = self.strings(job.name)
            for day in range(first_day, last_day + 1):
                d = (EPOCH + timedelta(days=day)).date()
                if job.every != "daily" and WEEKDAYS[d.weekday()] != job.every:
                    continue
                s = datetime(d.year, d.month, d.day, hh, mm, tzinfo=team.tz).timestamp()
                s += brng.uniform(-5, 5) * MINUTE
                if not self.start <= s < self.end:
                    continue
                usd = job.share * spec.usd_per_day * (1 if job.every == "daily" else 7)
                n = max(1, int(round(usd * brng.uniform(0.9, 1.1) / team.job_call_cost[j])))
                times = np.sort(s + brng.uniform(0, job.minutes * MINUTE, n))
                tok = simulate_batch_calls(brng, n, team.job_models[j], job.context, spec.output_scale)
                run = self._calls(team, times, np.full(n, user), tool, tok, BATCH)
                parts.append(run)
                inside = times[times < self.end]  # a run may go on past the history's end
                team.runs.append((float(inside[0]), float(inside[-1]), job.name))
                # expected spend of the run, spread over its minutes
                a = int((s - self.start) // MINUTE)
                b = int(math.ceil((s + job.minutes * MINUTE - self.start) / MINUTE))
                a, b = max(a, 0), min(b, self.M)
                if b > a:
                    team.exp_min[a:b] += usd / (b - a)
        ev = Calls.concat(parts)
        ev = ev.take(ev.t < self.end)
        team.ev = ev.take(np.argsort(ev.t, kind="stable"))

    def _calls(self, team: TeamRun, t: np.ndarray, users: np.ndarray, tool: int | np.ndarray,
               tok: Tokens, origin: int) -> Calls:
        n = len(t)
        return Calls(np.asarray(t, dtype=float), np.full(n, team.idx), np.asarray(users, dtype=np.int64),
                     np.broadcast_to(np.asarray(tool, dtype=np.int64), (n,)).copy(), tok.model.astype(np.int64),
                     tok.inp, tok.out, tok.cr, tok.cw, np.full(n, origin, dtype=np.int64))

    def team_calls(self, rng: np.random.Generator, team: TeamRun, tool: ToolRun, usd: float,
                   at_least: int = 0) -> Tokens:
        """Whole calls of freshly simulated sessions of ``tool``, in random order, until their
        cost reaches ``usd`` and their number ``at_least``."""
        mean_call = tool.cost_per_session / tool.calls_per_session
        need = usd / mean_call * 1.3 + at_least + 10
        pool: list[Tokens] = []
        total, count = 0.0, 0
        while total < usd or count < at_least:
            sessions = int(min(max(need / tool.calls_per_session, 5), 200_000))
            models = tool.models[rng.choice(len(tool.models), size=sessions, p=tool.weights)]
            tok = simulate_sessions(rng, tool.arch, models, tool.context_scale, team.spec.output_scale)
            tok = tok.take(rng.permutation(len(tok.inp)))
            pool.append(tok)
            total += float(tok.cost().sum())
            count += len(tok.inp)
        tok = Tokens(*(np.concatenate([getattr(p, f) for p in pool]) for f in
                       ("sidx", "offset", "model", "inp", "out", "cr", "cw")))
        cum = np.cumsum(tok.cost())
        n = max(int(np.searchsorted(cum, usd)) + 1, at_least)
        return tok.take(slice(0, min(n, len(tok.inp))))

    def expected(self, team: TeamRun, a: float, b: float) -> float:
        """Expected normal spend of the team in [a, b] (USD), from its rates."""
        x = (np.array([a, b]) - self.start) / MINUTE
        cum = np.concatenate([[0.0], np.cumsum(team.exp_min)])
        return float(np.interp(x[1], np.arange(self.M + 1), cum) - np.interp(x[0], np.arange(self.M + 1), cum))

    # -------------------------------------------------------------- negatives -----------
    def _plan_calendar(self) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
        rng = self.neg_rng
        hol = None
        first = int(math.ceil(self.burn_end / DAY)) + 1
        last = int(math.floor(self.end / DAY)) - 2  # the day after must fit, in every zone
        cands = [d for d in range(first, last + 1) if (d + 3) % 7 < 5]
        two = rng.random() < 0.4
        if (self.end - self.burn_end) >= 3 * DAY and cands:
            pairs = [d for d in cands if (d + 3) % 7 in (0, 3) and d + 1 <= last]
            if two and pairs:
                d0 = int(rng.choice(pairs))
                days = [d0, d0 + 1]
            else:
                days = [int(rng.choice(cands))]
            mult, after = {}, {}
            for spec in self.teams_spec:
                lo, hi = (0.1, 0.3) if spec.pattern in ("office", "follow-the-sun") else (0.5, 0.8)
                mult[spec.name] = float(rng.uniform(lo, hi))
                after[spec.name] = float(rng.uniform(1.0, 1.15))
            hol = {"days": np.array(days), "mult": mult, "after": after}
        growth = None
        # Mid-size teams only: compounding the biggest teams' traffic for two weeks would
        # blow the history's event budget without testing anything new.
        eligible = [s.name for s in self.teams_spec if GROWTH_TEAMS[0] <= s.usd_per_day <= GROWTH_TEAMS[1]]
        if eligible and self.days >= 9:
            gdays = float(rng.uniform(7, 12))
            t0 = self.start + float(rng.uniform(2, self.days - 7)) * DAY
            growth = {"team": str(rng.choice(eligible)), "t0": t0, "days": gdays,
                      "rate": float(rng.uniform(0.03, 0.10))}
        return hol, growth

    def _label_calendar(self, hol: dict[str, Any] | None, growth: dict[str, Any] | None) -> None:
        if hol is not None:
            for team in self.teams:
                a = max(_local_midnight(int(hol["days"][0]), team.tz), self.burn_end)
                b = min(_local_midnight(int(hol["days"][-1]) + 2, team.tz), self.end)
                excess = self._minute_sum((team.hol_mult - 1) * team.base_exp_min * team.growth_mult, a, b)
                self._label(team, "holiday", False, a, b, excess, hol["mult"][team.name],
                            detail=f"{len(hol['days'])} day(s) at {hol['mult'][team.name]:.2f}, "
                                   f"day after at {hol['after'][team.name]:.2f}")
        if growth is not None:
            team = next(t for t in self.teams if t.name == growth["team"])
            a = max(growth["t0"], self.burn_end)
            b = min(growth["t0"] + growth["days"] * DAY, self.end)
            if b - a >= DAY:
                excess = self._minute_sum((team.growth_mult - 1) * team.base_exp_min * team.hol_mult, a, b)
                ga = (1 + growth["rate"]) ** ((a - growth["t0"]) / DAY)
                gb = (1 + growth["rate"]) ** ((b - growth["t0"]) / DAY)
                self._label(team, "organic_growth", False, a, b, excess, gb / ga,
                            detail=f"+{growth['rate'] * 100:.1f}%/day for {growth['days']:.1f} days")

    def _minute_sum(self, per_min: np.ndarray, a: float, b: float) -> float:
        i, j = int((a - self.start) // MINUTE), int(math.ceil((b - self.start) / MINUTE))
        return float(per_min[max(i, 0):min(j, self.M)].sum())

    def _team_model_usd(self, team: TeamRun) -> dict[int, np.ndarray]:
        """Per model: the team's tokens of a normal day (uncached, read, write, output)."""
        out: dict[int, np.ndarray] = {}
        for tr in team.tools:
            for m, w in zip(tr.models.tolist(), tr.weights.tolist(), strict=True):
                out[m] = out.get(m, 0) + tr.sessions_per_day * w * tr.tokens_per_session[m]
        for j, job in enumerate(team.spec.jobs):
            m = team.job_models[j]
            # a weekly job's share is of a week: the same average per day as a daily job's
            calls = job.share * team.spec.usd_per_day / team.job_call_cost[j]
            out[m] = out.get(m, 0) + calls * team.job_tokens[j]
        return out

    @staticmethod
    def _price(tokens: np.ndarray, m: int) -> float:
        u, cr, cw, o = tokens
        if not WRITES_CACHE[m]:
            u, cw = u + cw, 0.0
        return float(u * P_IN[m] + cr * P_CR[m] + cw * P_CW[m] + o * P_OUT[m]) / 1e6

    def _migration(self) -> None:
        rng = self.neg_rng
        growth_team = self.growth["team"] if self.growth else None
        options = []
        for team in self.teams:
            if team.name == growth_team:
                continue
            toks = self._team_model_usd(team)
            total = sum(self._price(v, m) for m, v in toks.items())
            for a, v in toks.items():
                for b in range(len(MODEL_NAMES)):
                    if b == a or WINDOW[b] < WINDOW[a]:
                        continue
                    r = (total - self._price(v, a) + self._price(v, b)) / total
                    if 0.6 <= r <= 0.87 or 1.15 <= r <= 1.5:
                        options.append((team, a, b, r))
        if not options or self.end - self.burn_end < 2 * HOUR:
            return
        for _ in range(50):
            team, a, b, r = options[int(rng.integers(len(options)))]
            ramp = float(rng.uniform(10, 60)) * MINUTE
            t0 = float(rng.uniform(self.burn_end, max(self.burn_end, self.end - ramp - HOUR)))
            span_end = min(t0 + ramp + DAY, self.end)
            if not self._free(team, t0, span_end, gap=0.0, runs_gap=None):
                continue
            ev = team.ev
            after = ev.t >= t0
            u = rng.random(len(ev.t))
            move = (ev.model == a) & after & (u < np.clip((ev.t - t0) / ramp, 0, 1))
            old = ev.take(move).cost()
            ev.model[move] = b
            if not WRITES_CACHE[b]:
                ev.cw[move] = 0
            new = ev.take(move).cost()
            in_span = ev.t[move] <= span_end
            excess = float((new - old)[in_span].sum())
            k0 = int((t0 + ramp - self.start) // MINUTE)
            team.exp_min[max(k0, 0):] *= r
            self._label(team, "migration", False, t0, span_end, excess, r, requests=int(move.sum()),
                        detail=f"{MODEL_NAMES[a]} -> {MODEL_NAMES[b]} over {ramp / 60:.0f} min")
            return

    def _blips(self) -> None:
        rng = self.neg_rng
        order = rng.permutation(len(self.teams)).tolist()
        made = 0
        for i in order:
            if made == 2:
                break
            team = self.teams[i]
            for _ in range(30):
                t0 = float(rng.uniform(self.burn_end, self.end - 2 * MINUTE))
                if not self._free(team, t0, t0 + MINUTE, gap=3 * HOUR, runs_gap=HOUR):
                    continue
                per_min = sum(float(np.interp(t0, self.minutes, tr.base_lam * team.hol_mult * team.growth_mult))
                              * tr.calls_per_session for tr in team.tools)
                k = max(3, int(round(2 * per_min)))
                tool = team.main_tool()
                tok = self.team_calls(rng, team, tool, 0.0, at_least=k).take(slice(0, k))
                times = np.sort(t0 + rng.uniform(0, MINUTE, k))
                users = team.users[rng.choice(len(team.users), size=k, p=team.user_w)]
                calls = self._calls(team, times, users, tool.index, tok, NEG)
                excess = float(calls.cost().sum())
                if excess >= self._floor(team):
                    continue
                team.extra.append(calls)
                a, b = math.floor(times[0]), math.ceil(times[-1])
                B = self.expected(team, a, max(b, a + MINUTE)) / (max(b - a, MINUTE) / HOUR)
                self._label(team, "short_blip", False, a, b, excess, 1 + excess / (B * max(b - a, MINUTE) / HOUR),
                            baseline=B, requests=k, detail=f"{k} extra requests in one minute")
                made += 1
                break

    def _label_runs(self) -> None:
        for team in self.teams:
            for a, b, job in team.runs:
                if a < self.burn_end:
                    continue
                sel = (team.ev.t >= a) & (team.ev.t <= b) & (team.ev.origin == BATCH)
                excess = float(team.ev.take(sel).cost().sum())
                a2, b2 = math.floor(a), math.ceil(b)
                D = max(b2 - a2, MINUTE) / HOUR
                B = max(self._minute_sum(team.inter_min, a2, b2), 1e-9) / D
                self._label(team, "scheduled_batch", False, a2, b2, excess, 1 + excess / (B * D), baseline=B,
                            requests=int(sel.sum()), detail=job, span=False)

    # -------------------------------------------------------------- positives -----------
    def _floor(self, team: TeamRun) -> float:
        return max(0.5, team.spec.usd_per_day / 48)

    def _free(self, team: TeamRun, a: float, b: float, gap: float, runs_gap: float | None) -> bool:
        if a < self.burn_end or b > self.end:
            return False
        if any(a < y + gap and x - gap < b for x, y in team.spans):
            return False
        return not (runs_gap is not None and any(a < y + runs_gap and x - runs_gap < b for x, y, _ in team.runs))

    def _positives(self) -> None:
        """Place the should-alert incidents (SPEC.md §5.1): every kind at least once and, when
        there are at least as many incidents as teams, every team at least once."""
        rng = self.pos_rng
        scoring_days = (self.end - self.burn_end) / DAY
        n = max(len(POSITIVE_KINDS), round(0.8 * scoring_days))
        used: dict[str, int] = {k: 0 for k in POSITIVE_KINDS}
        placed = 0

        def by_use() -> list[str]:
            ties = rng.random(len(POSITIVE_KINDS))
            return [k for _, _, k in sorted((used[k], ties[i], k) for i, k in enumerate(POSITIVE_KINDS))]

        def on_least_busy_team(kind: str) -> bool:
            ties = rng.random(len(self.teams))
            order = sorted(range(len(self.teams)), key=lambda i: (self.teams[i].positives, ties[i]))
            return any(self._place(kind, self.teams[i], rng, attempts=12) for i in order)

        if n >= len(self.teams):
            for i in rng.permutation(len(self.teams)).tolist():
                for kind in by_use():
                    if self._place(kind, self.teams[i], rng, attempts=12):
                        used[kind] += 1
                        placed += 1
                        break
        for kind in [k for k in by_use() if used[k] == 0]:
            if on_least_busy_team(kind):
                used[kind] += 1
                placed += 1
            else:
                self.skipped.append(kind)
        while placed < n:
            kind = str(rng.choice(POSITIVE_KINDS))
            if on_least_busy_team(kind):
                used[kind] += 1
            else:
                self.skipped.append(kind)
            placed += 1

    def _window(self, rng: np.random.Generator, lo: float, hi: float, log: bool = True) -> float | None:
        """A duration in [lo, hi] seconds that fits the scoring period, or None."""
        room = (self.end - 15 * MINUTE - self.burn_end) * 0.9
        if room < lo * 0.5:
            return None
        d = _log_uniform(rng, lo, hi) if log else float(rng.uniform(lo, hi))
        return min(d, room)

    def _start(self, rng: np.random.Generator, D: float, team: TeamRun,
               when: Any = None) -> float | None:
        """A uniform start for a span of D seconds that is free on the team's calendar (and
        satisfies ``when(start)``), or None after 200 draws."""
        for _ in range(200):
            a = float(rng.uniform(self.burn_end, self.end - 15 * MINUTE - D))
            if (when is None or when(a)) and self._free(team, a, a + D, gap=3 * HOUR, runs_gap=HOUR):
                return a
        return None

    def _place(self, kind: str, team: TeamRun, rng: np.random.Generator, attempts: int) -> bool:
        for _ in range(attempts):
            got = getattr(self, f"_{kind}")(team, rng)
            if got is None:
                continue
            calls, detail, extra_fields, apply = got
            t = calls.t
            a, b = float(math.floor(t.min())), float(math.ceil(t.max()))
            if not self._free(team, a, b, gap=3 * HOUR, runs_gap=HOUR):
                continue
            excess = float(extra_fields.pop("excess")) if "excess" in extra_fields else float(calls.cost().sum())
            D = max(b - a, MINUTE) / HOUR
            B = self.expected(team, a, b) / D
            if B <= 0:
                continue
            factor = 1 + excess / (B * D)
            n = len(t)
            ok = (excess >= self._floor(team) and 2 <= factor <= 50 and (factor >= 3 or D >= 3)
                  and n >= 15 and excess <= 50_000 and extra_fields.get("peak_factor", 0) <= 50
                  and n <= MAX_INCIDENT_REQUESTS)
            if not ok:
                continue
            apply()
            team.positives += 1
            self._label(team, kind, True, a, b, excess, factor, baseline=B, requests=n, detail=detail,
                        **extra_fields)
            return True
        return False

    def _additive(self, team: TeamRun, calls: Calls) -> Any:
        def apply() -> None:
            team.extra.append(calls)
        return apply

    def _target(self, team: TeamRun, rng: np.random.Generator, a: float, D: float, lo: float, hi: float) -> float:
        """Extra dollars for a factor drawn in [lo, hi] over [a, a + D], at least R1's floor."""
        f = _log_uniform(rng, lo, hi)
        B = self.expected(team, a, a + D) / (D / HOUR)
        usd = (f - 1) * B * D / HOUR
        floor = self._floor(team)
        if usd < floor:
            usd = floor * float(rng.uniform(1.05, 2.0))
        return min(usd, 50_000 * float(rng.uniform(0.5, 0.95)))

    def _pick_user(self, team: TeamRun, rng: np.random.Generator, n: int = 1) -> np.ndarray:
        return team.users[rng.choice(len(team.users), size=n, p=team.user_w)]

    def _tool_by_share(self, team: TeamRun, rng: np.random.Generator) -> ToolRun:
        return team.tools[int(rng.choice(len(team.tools), p=[t.spec.share for t in team.tools]))]

    def _runaway_loop(self, team: TeamRun, rng: np.random.Generator) -> Any:
        D = self._window(rng, 20 * MINUTE, 8 * HOUR)
        if D is None:
            return None
        a = self._start(rng, D, team)
        if a is None:
            return None
        usd = self._target(team, rng, a, D, 3, 30)
        agents = [t for t in team.tools if t.spec.archetype in ("agent", "long_context")]
        tool = agents[0] if agents else team.main_tool()
        m = int(tool.models[rng.choice(len(tool.models), p=tool.weights)])
        ctx = min(_log_uniform(rng, 0.9, 1.1) * float(rng.lognormal(math.log(max(30_000, team.p95_context)), 0.3)),
                  0.95 * WINDOW[m])
        frac = float(rng.uniform(0, 0.8))
        out_med = tool.arch.out[0] * team.spec.output_scale
        one = self._price(np.array([ctx * (1 - frac), ctx * frac, 0.0, out_med]), m)
        n = max(15, int(math.ceil(usd / one)))
        cadence = D / n
        if cadence < 1:
            return None
        if cadence > 300:
            cadence = float(rng.uniform(60, 300))
        times = a + np.cumsum(np.full(n, cadence) * rng.uniform(0.9, 1.1, n)) - cadence
        inp = np.rint(ctx * rng.uniform(0.98, 1.02, n)).astype(np.int64)
        cr = np.rint(inp * frac).astype(np.int64)
        out = np.clip(np.rint(rng.lognormal(math.log(out_med), 0.5, n)), 1, MAX_OUTPUT).astype(np.int64)
        tok = Tokens(np.zeros(n, dtype=np.int64), np.zeros(n), np.full(n, m), inp, out, cr, np.zeros(n, dtype=np.int64))
        user = self._pick_user(team, rng)[0]
        calls = self._calls(team, times, np.full(n, user), tool.index, tok, POS)
        return calls, (f"{self.strings.values[user]} on {tool.spec.name}, {MODEL_NAMES[m]}, "
                       f"~{ctx / 1000:.0f}k tokens every {cadence:.0f} s"), {}, self._additive(team, calls)

    def _model_switch(self, team: TeamRun, rng: np.random.Generator) -> Any:
        toks = self._team_model_usd(team)
        present = np.unique(team.ev.model[team.ev.origin == NORMAL]).tolist()
        pairs = []
        for a in present:
            if a not in toks:
                continue
            for b in range(len(MODEL_NAMES)):
                same = PROVIDERS[a] == PROVIDERS[b] or (PROVIDERS[a] == "internal" and PROVIDERS[b] == "anthropic")
                if b == a or not same or WINDOW[b] < WINDOW[a]:
                    continue
                ratio = self._price(toks[a], b) / self._price(toks[a], a)
                if 5 <= ratio <= 15:
                    pairs.append((a, b, ratio))
        if not pairs:
            return None
        a_m, b_m, ratio = pairs[int(rng.integers(len(pairs)))]
        D = self._window(rng, 3 * HOUR, 36 * HOUR)
        if D is None:
            return None
        start = self._start(rng, D, team)
        if start is None:
            return None
        share = float(rng.uniform(0.6, 1.0))
        ev = team.ev
        cand = np.flatnonzero((ev.origin == NORMAL) & (ev.model == a_m) & (ev.t >= start) & (ev.t <= start + D))
        idx = cand[rng.random(len(cand)) < share]
        if len(idx) < 15:
            return None
        before = ev.take(idx)
        after = ev.take(idx)
        after.model = np.full(len(idx), b_m)
        if not WRITES_CACHE[b_m]:
            after.cw = np.zeros(len(idx), dtype=np.int64)
        excess = float((after.cost() - before.cost()).sum())

        def apply() -> None:
            ev.model[idx] = b_m
            if not WRITES_CACHE[b_m]:
                ev.cw[idx] = 0

        return after, (f"{MODEL_NAMES[a_m]} -> {MODEL_NAMES[b_m]} ({ratio:.1f}x the price), "
                       f"{share * 100:.0f}% of its requests"), {"excess": excess}, apply

    def _extra_from_tool(self, team: TeamRun, rng: np.random.Generator, tool: ToolRun, usd: float,
                         times_fn: Any, users: np.ndarray) -> Calls:
        tok = self.team_calls(rng, team, tool, usd, at_least=15)
        n = len(tok.inp)
        times = np.sort(times_fn(n))
        u = users[rng.integers(0, len(users), n)]
        return self._calls(team, times, u, tool.index, tok, POS)

    def _short_burst(self, team: TeamRun, rng: np.random.Generator) -> Any:
        D = self._window(rng, 10 * MINUTE, 30 * MINUTE, log=False)
        if D is None:
            return None
        a = self._start(rng, D, team)
        if a is None:
            return None
        usd = self._target(team, rng, a, D, 10, 50)
        tool = team.main_tool()
        users = self._pick_user(team, rng, int(rng.integers(1, 6)))
        calls = self._extra_from_tool(team, rng, tool, usd, lambda n: a + rng.uniform(0, D, n), users)
        return calls, f"retry storm on {tool.spec.name}, {len(set(users.tolist()))} user(s)", {}, \
            self._additive(team, calls)

    def _off_hours(self, team: TeamRun, t: float) -> bool:
        loc = float(_local_seconds(np.array([t]), team.tz)[0])
        h = (loc % DAY) / HOUR
        weekday = (int(loc // DAY) + 3) % 7
        return h >= 22 or h < 5 or (team.spec.pattern == "office" and weekday >= 5)

    def _night_spike(self, team: TeamRun, rng: np.random.Generator) -> Any:
        D = self._window(rng, 30 * MINUTE, 4 * HOUR)
        if D is None:
            return None
        a = self._start(rng, D, team, when=lambda t: self._off_hours(team, t))
        if a is None:
            return None
        usd = self._target(team, rng, a, D, 5, 40)
        tool = self._tool_by_share(team, rng)
        user = self._pick_user(team, rng)
        calls = self._extra_from_tool(team, rng, tool, usd, lambda n: a + rng.uniform(0, D, n), user)
        return calls, f"{self.strings.values[int(user[0])]}'s script on {tool.spec.name} off-hours", {}, \
            self._additive(team, calls)

    def _rising(self, team: TeamRun, rng: np.random.Generator) -> Any:
        D = self._window(rng, 3 * HOUR, 8 * HOUR, log=False)
        if D is None:
            return None
        a = self._start(rng, D, team)
        if a is None:
            return None
        T = float(rng.uniform(40, 120)) * MINUTE
        B0 = self.expected(team, a, a + 30 * MINUTE) / 0.5
        if B0 <= 0:
            return None
        r0 = float(rng.uniform(0.1, 0.4)) * B0  # $/h
        D = min(D, T * math.log2(49 * B0 / r0))
        growth = 2 ** (D / T)
        usd = r0 * (T / HOUR) / math.log(2) * (growth - 1)
        if usd < self._floor(team):
            return None
        B1 = self.expected(team, a + D - 30 * MINUTE, a + D) / 0.5
        peak = 1 + r0 * growth / max(B1, 1e-12)
        tool = self._tool_by_share(team, rng)
        users = team.users

        def times(n: int) -> np.ndarray:
            return a + T * np.log2(1 + rng.uniform(0, 1, n) * (growth - 1))

        calls = self._extra_from_tool(team, rng, tool, usd, times, users)
        return calls, (f"{tool.spec.name} doubling every {T / 60:.0f} min for {D / 3600:.1f} h"), \
            {"peak_factor": round(peak, 2)}, self._additive(team, calls)

    def _key_leak(self, team: TeamRun, rng: np.random.Generator) -> Any:
        D = self._window(rng, HOUR, 12 * HOUR)
        if D is None:
            return None
        a = self._start(rng, D, team)
        if a is None:
            return None
        usd = self._target(team, rng, a, D, 3, 30)
        providers = {PROVIDERS[m] for tr in team.tools for m in tr.models.tolist()}
        m = max((i for i in range(len(MODEL_NAMES)) if PROVIDERS[i] in providers), key=lambda i: P_IN[i])
        ctx_med = 60_000.0
        one = self._price(np.array([ctx_med * math.exp(0.18), 0.0, 0.0, 1000 * math.exp(0.245)]), m)
        n = max(15, int(math.ceil(usd / one)))
        inp = np.rint(np.minimum(rng.lognormal(math.log(ctx_med), 0.6, n), 0.95 * WINDOW[m])).astype(np.int64)
        out = np.clip(np.rint(rng.lognormal(math.log(1000), 0.7, n)), 1, MAX_OUTPUT).astype(np.int64)
        z = np.zeros(n, dtype=np.int64)
        tok = Tokens(z, np.zeros(n), np.full(n, m), inp, out, z, z)
        user = self.strings(f"ext-{rng.integers(0, 16 ** 6):06x}")
        self.native_user[user] = bool(rng.random() < team.spec.native_share)
        times = np.sort(a + rng.uniform(0, D, n))
        calls = self._calls(team, times, np.full(n, user), self.strings("api"), tok, POS)
        return calls, f"new user {self.strings.values[user]} on {MODEL_NAMES[m]}", {}, self._additive(team, calls)

    # -------------------------------------------------------------- labels --------------
    def _label(self, team: TeamRun, name: str, should: bool, a: float, b: float, excess: float,
               factor: float, baseline: float | None = None, requests: int | None = None,
               detail: str = "", span: bool = True, **extra: Any) -> None:
        if baseline is None:
            D = max(b - a, MINUTE) / HOUR
            baseline = self.expected(team, a, b) / D
        lab: dict[str, Any] = {
            "team": team.name, "start": _rfc3339(math.floor(a)), "end": _rfc3339(math.ceil(b)),
            "should_alert": should, "name": name, "excess_usd": round(excess, 6), "factor": round(factor, 4),
            "baseline_usd_per_hour": round(baseline, 6),
        }
        if requests is not None:
            lab["requests"] = requests
        lab.update(extra)
        if detail:
            lab["detail"] = detail
        self.labels.append(lab)
        if name == "organic_growth":
            team.background.append((a, b))
        elif span:
            team.spans.append((a, b))
        if not should:
            team.negatives += 1

    # -------------------------------------------------------------- output --------------
    def events(self) -> Events:
        allc = Calls.concat([c for team in self.teams for c in [team.ev, *team.extra]])
        # Ids, and from them the redeliveries, come from two streams: one for the positives'
        # requests and one for all others, in an order that does not depend on the positives.
        # So a history without its positives is this one minus their requests, ids included.
        pos = allc.origin == POS
        idb = np.empty((len(allc), 16), dtype=np.uint8)
        for mask, purpose in ((~pos, "ids"), (pos, "ids/positives")):
            k = int(mask.sum())
            idb[mask] = np.frombuffer(_rng(self.seed, purpose).bytes(16 * k), dtype=np.uint8).reshape(k, 16)
        t_ms = np.rint(allc.t * 1000).astype(np.int64)
        keep = t_ms < self.end * 1000
        allc, t_ms, idb = allc.take(keep), t_ms[keep], idb[keep]
        order = np.argsort(t_ms, kind="stable")
        allc, t_ms, idb = allc.take(order), t_ms[order], idb[order]
        n = len(t_ms)
        # two uniforms per event from its id's (random) bytes: is it redelivered, and when
        halves = np.ascontiguousarray(idb).view("<u8").reshape(n, 2) >> np.uint64(11)
        u = halves.astype(np.float64) / 2.0 ** 53
        dup = np.flatnonzero(u[:, 0] < 0.005)
        z = ndtri(np.clip(u[dup, 1], 1e-12, 1 - 1e-12))
        delay = np.clip(20 * np.exp(1.0 * z), 2, 300)
        arrival = np.concatenate([t_ms, t_ms[dup] + np.rint(delay * 1000).astype(np.int64)])
        rows = np.concatenate([np.arange(n), dup])
        # originals first among equal arrival times, so a duplicate never comes before its original
        seq = np.lexsort((np.arange(len(rows)), arrival))
        rows = rows[seq]
        ids = idb.tobytes().hex()
        return Events(self, allc, t_ms, rows, ids, n_dup=len(dup))

    def summary(self, events: Events) -> dict[str, Any]:
        cost = events.cost
        per_team = []
        days = self.days
        for team in self.teams:
            sel = events.calls.team == team.idx
            spent = float(cost[sel].sum())
            lines = int(np.isin(events.rows, np.flatnonzero(sel)).sum())
            per_team.append({
                "team": team.name, "usd_per_day_spec": team.spec.usd_per_day,
                "usd_per_day": spent / days, "requests": int(sel.sum()), "events": lines,
                "requests_per_day": float(sel.sum()) / days,
                "positives": team.positives, "negatives": team.negatives,
            })
        return {
            "seed": self.seed, "start": _rfc3339(self.start), "burn_in_end": _rfc3339(self.burn_end),
            "end": _rfc3339(self.end), "days": self.days, "events": len(events.rows),
            "requests": len(events.t_ms), "duplicates": events.n_dup, "teams": per_team,
            "labels": len(self.labels), "positives": sum(1 for lab in self.labels if lab["should_alert"]),
            "skipped_positives": self.skipped,
        }


class Events:
    """The history's events, in arrival order: a re-iterable, sized sequence of dicts built on
    demand (a 21-day history is ~1 M events; as dicts it would not fit in memory)."""

    def __init__(self, hist: _History, calls: Calls, t_ms: np.ndarray, rows: np.ndarray, ids: str,
                 n_dup: int) -> None:
        self.calls = calls
        self.t_ms = t_ms
        self.rows = rows
        self.n_dup = n_dup
        self._ids = ids
        self.cost = calls.cost()
        self._teams = [t.name for t in hist.teams]
        self._strings = hist.strings.values
        native = np.zeros(len(self._strings), dtype=bool)
        for u, nat in hist.native_user.items():
            native[u] = nat
        provider = np.array([{"openai": 1, "anthropic": 2}.get(p, 0) for p in PROVIDERS])
        # 0 canonical, 1 OpenAI usage, 2 Anthropic usage (SPEC.md §3.2)
        self.shape = np.where(native[calls.user], provider[calls.model], 0)

    def __len__(self) -> int:
        return len(self.rows)

    def __iter__(self) -> Iterator[dict[str, Any]]:
        c = self.calls
        columns = (self.t_ms, c.team, c.user, c.tool, c.model, c.inp, c.out, c.cr, c.cw, self.cost, self.shape)
        ids = self._ids
        teams, strings = self._teams, self._strings
        for lo in range(0, len(self.rows), 50_000):
            rows = self.rows[lo:lo + 50_000]
            # Python values one chunk at a time: a whole 21-day history of them takes GBs
            chunk = zip(rows.tolist(), *(col[rows].tolist() for col in columns), strict=True)
            for i, t_ms, team, user, tool, model, inp, out, cr, cw, cost, shape in chunk:
                h = ids[32 * i: 32 * i + 32]
                eid = f"{h[:8]}-{h[8:12]}-4{h[13:16]}-a{h[17:20]}-{h[20:32]}"
                mname = MODEL_NAMES[model]
                if shape == 0:
                    yield {"event_id": eid, "ts": t_ms / 1000, "org": ORG, "team": teams[team],
                           "user": strings[user], "provider": PROVIDERS[model], "model": mname,
                           "tool": strings[tool], "input_tokens": inp, "output_tokens": out,
                           "cache_read_tokens": cr, "cache_write_tokens": cw, "cost_usd": cost}
                    continue
                if shape == 1:
                    usage: dict[str, Any] = {"prompt_tokens": inp, "completion_tokens": out,
                                             "total_tokens": inp + out,
                                             "prompt_tokens_details": {"cached_tokens": cr}}
                else:
                    usage = {"input_tokens": inp - cr - cw, "output_tokens": out, "cache_read_input_tokens": cr,
                             "cache_creation_input_tokens": cw}
                ts = (EPOCH + timedelta(milliseconds=t_ms)).isoformat(timespec="milliseconds")[:-6] + "Z"
                yield {"event_id": eid, "ts": ts, "org": ORG, "team": teams[team], "user": strings[user],
                       "provider": PROVIDERS[model], "model": mname, "tool": strings[tool], "cost_usd": cost,
                       "usage": usage}

    def write_jsonl(self, f: IO[bytes]) -> int:
        """Write every event as one JSON line; returns the number of lines."""
        n = 0
        dumps = orjson.dumps
        buf: list[bytes] = []
        for ev in self:
            buf.append(dumps(ev))
            n += 1
            if len(buf) >= 10_000:
                f.write(b"\n".join(buf) + b"\n")
                buf.clear()
        if buf:
            f.write(b"\n".join(buf) + b"\n")
        return n


def generate(seed: int, days: float = 21, burn_in_days: float = 7, teams: Sequence[TeamSpec] | None = None,
             start: float | datetime | None = None, positives: bool = True,
             negatives: bool = True) -> tuple[Events, list[dict[str, Any]], dict[str, Any]]:
    """A labelled history (SPEC.md): ``(events, labels, meta)``.

    ``events`` is a re-iterable sequence of event dicts in arrival order, ``labels`` the
    labelled spans sorted by start, ``meta`` the history's start/end/burn-in and per-team
    figures. ``positives=False`` drops the should-alert incidents and changes nothing else;
    ``negatives=False`` drops the holiday, growth, migration and blips (scheduled jobs stay).
    """
    if isinstance(start, datetime):
        start = (start if start.tzinfo else start.replace(tzinfo=UTC)).timestamp()
    hist = _History(seed, days, burn_in_days, tuple(teams or DEFAULT_TEAMS), start, positives, negatives)
    hist.build()
    events = hist.events()
    labels = sorted(hist.labels, key=lambda lab: (lab["start"], lab["team"], lab["name"]))
    return events, labels, hist.summary(events)
