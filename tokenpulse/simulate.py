"""Simulated LLM usage with a realistic daily and weekly shape, and injectable incidents.

The generator is pure (event time in, event dicts out) so tests and the replay can use it
without Kafka; :func:`produce` sends it with kafka-python, keyed by team, batched per message.
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from streams.common.dimensions import DEFAULT_ORG
from streams.common.security import PLAINTEXT, KafkaSecurity

# (provider, model, typical input tokens, typical output tokens, share of calls)
MODELS: list[tuple[str, str, int, int, float]] = [
    ("anthropic", "claude-sonnet-4-20250514", 2400, 450, 0.35),
    ("openai", "gpt-4o", 1800, 380, 0.25),
    ("openai", "gpt-4o-mini", 1200, 300, 0.2),
    ("anthropic", "claude-3-5-haiku-20241022", 1500, 250, 0.1),
    ("google", "gemini-2.0-flash", 2000, 400, 0.1),
]

# The organisation's own model (served in-house, priced by the policy at internal cost): what
# a team with an ``internal_share`` calls instead of a third-party model.
IN_HOUSE_MODEL: tuple[str, str, int, int, float] = ("acme", "acme-llama-70b", 2200, 420, 0.0)


@dataclass(frozen=True)
class Team:
    name: str
    share: float  # share of the org's calls
    users: int
    tz_offset_h: int = 0  # where the team works; shifts its daily curve
    nightly_batch: bool = False  # a recurring 02:00 job that must not page
    internal_share: float = 0.0  # share of its calls to IN_HOUSE_MODEL (0: third-party only)


DEFAULT_TEAMS = (
    Team("ads", 0.3, 12),
    Team("search", 0.25, 9, tz_offset_h=-5),
    Team("support", 0.2, 20, tz_offset_h=1),
    Team("data", 0.15, 5, nightly_batch=True),
    Team("legal", 0.1, 4),
)

# The dev stack's teams (`tokenpulse dev` with its demo policy): the same teams, moving to the
# in-house model at different paces; legal barely started, so its third-party share of spend
# stays over the demo policy's line.
DEMO_TEAMS = (
    Team("ads", 0.3, 12, internal_share=0.3),
    Team("search", 0.25, 9, tz_offset_h=-5, internal_share=0.6),
    Team("support", 0.2, 20, tz_offset_h=1, internal_share=0.45),
    Team("data", 0.15, 5, nightly_batch=True, internal_share=0.8),
    Team("legal", 0.1, 4, internal_share=0.03),
)
TEAM_SETS = {"default": DEFAULT_TEAMS, "demo": DEMO_TEAMS}


@dataclass(frozen=True)
class Spike:
    """An incident: ``factor`` × a team's normal rate from ``start`` for ``minutes``."""

    team: str
    factor: float = 8.0
    minutes: float = 15.0
    start: float | None = None  # epoch seconds; None = when the simulation starts (+ delay)
    delay: float = 0.0  # seconds after the simulation start, when start is None
    model: str | None = None  # spend the excess on one model (a runaway agent loop usually does)

    @classmethod
    def parse(cls, text: str) -> Spike:
        """``team=ads,factor=8,minutes=15[,delay=120][,model=gpt-4o]``"""
        fields: dict[str, str] = {}
        for part in text.split(","):
            if not part.strip():
                continue
            k, sep, v = part.partition("=")
            if not sep:
                raise ValueError(f"spike: expected key=value, got {part!r}")
            fields[k.strip()] = v.strip()
        if "team" not in fields:
            raise ValueError("spike: team=... is required")
        unknown = set(fields) - {"team", "factor", "minutes", "delay", "model", "start"}
        if unknown:
            raise ValueError(f"spike: unknown key(s) {', '.join(sorted(unknown))}")
        try:
            return cls(
                team=fields["team"],
                factor=float(fields.get("factor", 8)),
                minutes=float(fields.get("minutes", 15)),
                delay=float(fields.get("delay", 0)),
                start=float(fields["start"]) if "start" in fields else None,
                model=fields.get("model"),
            )
        except ValueError as exc:
            raise ValueError(f"spike: {exc}") from None


def diurnal(ts: float, tz_offset_h: int = 0) -> float:
    """Relative activity at a moment: busy working hours, quiet nights, lighter weekends.

    A weekend lightens the working hours only: a night is as quiet on a Sunday as on a Monday,
    so activity has no step at midnight (a 2.9x step at Monday 00:00 made the demo's detectors
    alert on the week starting rather than on its spike)."""
    local = ts + tz_offset_h * 3600
    dt = datetime.fromtimestamp(local, tz=UTC)
    hour = dt.hour + dt.minute / 60
    weekend = 0.35 if dt.weekday() >= 5 else 1.0
    return 0.15 + 0.85 * weekend * math.exp(-((hour - 14) ** 2) / (2 * 3.2**2))


@dataclass
class Simulator:
    rate: float = 20.0  # mean events/s for the whole org at a weekday peak
    teams: tuple[Team, ...] = DEFAULT_TEAMS
    spikes: list[Spike] = field(default_factory=list)
    # the org its events name: the default one (short series names), unless a test or a demo of
    # several orgs asks for another
    org: str = DEFAULT_ORG
    seed: int = 7

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)
        known = {t.name for t in self.teams}
        for s in self.spikes:
            if s.team not in known:
                raise ValueError(f"spike team {s.team!r} is not simulated (teams: {', '.join(sorted(known))})")

    def team_rate(self, team: Team, ts: float, sim_start: float) -> float:
        r = self.rate * team.share * diurnal(ts, team.tz_offset_h)
        if team.nightly_batch:
            dt = datetime.fromtimestamp(ts, tz=UTC)
            if dt.hour == 2 and dt.minute < 30:
                r += self.rate * team.share * 2.0
        for s in self.spikes:
            start = s.start if s.start is not None else sim_start + s.delay
            if s.team == team.name and start <= ts < start + s.minutes * 60:
                r *= s.factor
        return r

    def second(self, ts: float, sim_start: float) -> Iterator[dict[str, Any]]:
        """Events of one second of event time ``[ts, ts+1)``."""
        for team in self.teams:
            lam = self.team_rate(team, ts, sim_start)
            n = _poisson(self.rng, lam)
            for _ in range(n):
                yield self._event(team, ts + self.rng.random(), sim_start)

    def _event(self, team: Team, ts: float, sim_start: float) -> dict[str, Any]:
        rng = self.rng
        spike_model = next(
            (
                s.model
                for s in self.spikes
                if s.team == team.name
                and s.model
                and (s.start if s.start is not None else sim_start + s.delay) <= ts
            ),
            None,
        )
        x = rng.random()
        provider, model, tin, tout, _ = MODELS[-1]
        for m in MODELS:
            x -= m[4]
            if x <= 0:
                provider, model, tin, tout, _ = m
                break
        # drawn only for a team that uses the in-house model: the default teams' events stay
        # the same for a seed
        if team.internal_share > 0 and rng.random() < team.internal_share:
            provider, model, tin, tout, _ = IN_HOUSE_MODEL
        if spike_model:
            for m in MODELS:
                if m[1] == spike_model:
                    provider, model, tin, tout, _ = m
        inp = max(1, int(rng.lognormvariate(math.log(tin), 0.5)))
        out = max(1, int(rng.lognormvariate(math.log(tout), 0.6)))
        cached = int(inp * rng.choice((0.0, 0.0, 0.5, 0.8)))
        return {
            "event_id": uuid.UUID(int=rng.getrandbits(128)).hex,
            "ts": round(ts, 3),
            "org": self.org,
            "team": team.name,
            "user": f"{team.name}-user-{rng.randrange(team.users)}",
            "provider": provider,
            "model": model,
            "tool": rng.choice(("chat", "agent", "ide", "batch")),
            "input_tokens": inp,
            "output_tokens": out,
            "cache_read_tokens": cached,
            "cache_write_tokens": 0,
        }

    def between(self, start: float, end: float, sim_start: float | None = None) -> Iterator[dict[str, Any]]:
        """Every event with event time in ``[start, end)``, in time order per second."""
        s0 = start if sim_start is None else sim_start
        t = math.floor(start)
        while t < end:
            yield from self.second(t, s0)
            t += 1


def _poisson(rng: random.Random, lam: float) -> int:
    if lam <= 0:
        return 0
    if lam > 30:
        return max(0, int(round(rng.gauss(lam, math.sqrt(lam)))))
    # Knuth: fine for small rates
    limit, k, p = math.exp(-lam), 0, 1.0
    while True:
        p *= rng.random()
        if p <= limit:
            return k
        k += 1


class KafkaSink:
    """Sends event dicts with kafka-python: keyed by team, ``batch`` events per message."""

    def __init__(self, bootstrap: str, topic: str, batch: int = 100, security: KafkaSecurity = PLAINTEXT) -> None:
        from kafka import KafkaProducer

        self.topic = topic
        self.batch = max(1, batch)
        self.producer = KafkaProducer(
            bootstrap_servers=bootstrap,
            linger_ms=20,
            batch_size=256 * 1024,
            max_request_size=4 * 1024 * 1024,
            acks=1,
            client_id="tokenpulse-simulate",
            **security.kafka_python(),
        )
        self.pending: dict[str, list[dict[str, Any]]] = {}
        self.sent_events = 0
        self.sent_messages = 0

    def add(self, ev: dict[str, Any]) -> None:
        buf = self.pending.setdefault(ev["team"], [])
        buf.append(ev)
        if len(buf) >= self.batch:
            self._send(ev["team"])

    def _send(self, team: str) -> None:
        import orjson

        buf = self.pending.pop(team, [])
        if not buf:
            return
        value = orjson.dumps(buf[0] if self.batch == 1 else buf)
        self.producer.send(self.topic, key=team.encode(), value=value)
        self.sent_events += len(buf)
        self.sent_messages += 1

    def flush(self) -> None:
        for team in list(self.pending):
            self._send(team)
        self.producer.flush()

    def close(self) -> None:
        self.flush()
        self.producer.close()


def run(
    sim: Simulator,
    sink: KafkaSink,
    *,
    backfill_days: float = 0.0,
    duration: float | None = None,
    speed: float = 1.0,
    progress: Callable[[str], None] | None = None,
    stop: Callable[[], bool] | None = None,
) -> None:
    """Backfill ``backfill_days`` of past event time at full speed, then (unless
    ``duration`` is 0) produce live traffic second by second until ``duration`` or ``stop()``.

    A spike's ``delay`` counts from the start of the live traffic (``tokenpulse dev``'s
    "four minutes in"), so the history the detectors learn from is free of it; with no live
    traffic (``duration`` 0) it counts from the start of the backfill."""
    now = time.time()
    sim_start = now
    if backfill_days > 0:
        start = now - backfill_days * 86400
        anchor = start if duration == 0 else sim_start
        total = now - start
        last_report = time.monotonic()
        t = math.floor(start)
        while t < now:
            for ev in sim.second(t, anchor):
                sink.add(ev)
            t += 1
            if progress and time.monotonic() - last_report > 2:
                last_report = time.monotonic()
                progress(f"backfill {100 * (t - start) / total:5.1f}%  {sink.sent_events:,} events")
        sink.flush()
        if progress:
            progress(f"backfill done: {sink.sent_events:,} events in {sink.sent_messages:,} messages")
    if duration == 0:
        return
    t = math.floor(time.time())
    end = None if duration is None else t + duration
    while (end is None or t < end) and not (stop and stop()):
        for ev in sim.second(t, sim_start):
            sink.add(ev)
        sink.flush()
        t += 1
        delay = (t - time.time()) / speed if speed > 0 else 0
        if delay > 0:
            time.sleep(delay)
