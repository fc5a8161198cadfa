"""Offline replay: historical usage events through the worker's own normalisation, windows,
detectors and alert lifecycle, with event time as the clock, and scoring against labelled
incidents.

No Kafka: one :class:`~streams.ingest.IngestPartition` (a single source) feeds one
:class:`~streams.judge.JudgeCore`, built by the same factory the worker uses, through the same
per-message function (:func:`streams.pipeline.count_message`).
"""

from __future__ import annotations

import statistics
import sys
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import orjson

from streams.config import StreamConfig
from streams.ingest import IngestPartition
from streams.judge import judge_factory
from streams.pipeline import count_message
from streams.pricing import Pricer


def rfc3339(ts: float) -> str:
    return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat().replace("+00:00", "Z")


@dataclass
class ReplayResult:
    firings: list[dict[str, Any]] = field(default_factory=list)
    notifications: list[dict[str, Any]] = field(default_factory=list)
    counters: dict[str, int] = field(default_factory=dict)
    windows_judged: int = 0
    first_ts: float | None = None
    last_ts: float | None = None
    teams: set[str] = field(default_factory=set)
    rejects: list[tuple[int, str]] = field(default_factory=list)  # (line, reason), first 100
    seconds: float = 0.0
    bytes_read: int = 0


def firing_record(note: Any) -> dict[str, Any]:
    return {
        "team": (note.labels or {}).get("team"),
        "series": note.series,
        "fired_at": rfc3339(note.fired_at),
        "window_start": rfc3339(note.window_start),
        "window_end": rfc3339(note.window_end),
        "kind": note.rule,
        "severity": note.severity,
        "observed": round(note.observed_usd, 6),
        "expected": round(note.expected_usd, 6),
        "excess_usd": round(note.excess_usd, 6),
        "excess_pct": None if note.excess_pct is None else round(note.excess_pct, 2),
        "top_contributors": note.top_contributors,
        "page": note.page,
    }


def replay_lines(
    lines: Iterable[bytes],
    cfg: StreamConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    total_bytes: int = 0,
) -> ReplayResult:
    """Replay JSONL lines (each one message: an event, an array of events, any accepted shape)."""
    res = ReplayResult()
    pricer = Pricer(cfg.price_overrides)
    core = IngestPartition(
        partition=0, window_seconds=cfg.window_seconds, lateness=cfg.lateness,
        idle_grace=cfg.idle_grace, watched=cfg.watched,
    )
    judge = judge_factory(cfg.window_seconds, cfg.detector_name, cfg.detector_params, cfg.alert_policy)(0)
    seq = 0
    line_no = 0

    def on_reject(raw: bytes, reason: str, index: int | None) -> None:
        if len(res.rejects) < 100:
            res.rejects.append((line_no, reason))

    def feed(wall: float) -> None:
        nonlocal seq
        before = core.closed_until
        partials = core.advance(wall)
        if not partials and core.closed_until == before:
            return
        seq += 1
        out = judge.receive(0, 1, core.closed_until, partials, seq)
        res.windows_judged += out.windows_judged
        for note in out.notifications:
            res.notifications.append(note.to_dict())
            if note.action == "trigger":
                res.firings.append(firing_record(note))

    started = time.monotonic()
    last_report = started
    next_advance = None
    for raw in lines:
        line_no += 1
        res.bytes_read += len(raw)
        if not raw.strip():
            continue
        # Event time is the clock: the wall clock never runs ahead of the newest event, so
        # nothing closes for idleness until the end of the file.
        clock = core.max_ts if core.max_ts is not None else 0.0
        count_message(core, raw, pricer, clock, on_reject)
        core.wall_at_max = core.max_ts  # the event clock is the only clock here
        if core.max_ts is not None and (next_advance is None or core.max_ts >= next_advance):
            feed(core.max_ts)
            next_advance = core.max_ts + cfg.window_seconds / 4
        if progress is not None and line_no % 4096 == 0:
            now = time.monotonic()
            if now - last_report >= 1.0:
                last_report = now
                progress(res.bytes_read, total_bytes)
    if core.max_ts is not None:
        # End of history: close every window still open, then a few quiet windows so alerts
        # that ended with the data can resolve.
        feed(core.max_ts + cfg.idle_grace + cfg.lateness + cfg.window_seconds * 8)
    res.counters = core.counters.to_dict()
    res.seconds = time.monotonic() - started
    res.first_ts = min((float(k.rpartition("|")[2]) for k in judge.spend), default=None)
    res.last_ts = core.max_ts
    series = {k.rpartition("|")[0] for k in judge.spend}  # keys are "series|window"
    res.teams = {name[5:] for name in series if name.startswith("team=") and "|" not in name}
    return res


def read_lines(path: Path) -> Iterator[bytes]:
    if str(path) == "-":
        yield from sys.stdin.buffer
        return
    with open(path, "rb") as f:
        yield from f


# ------------------------------------------------------------------ scoring ----------
@dataclass
class Incident:
    team: str
    start: float
    end: float
    should_alert: bool
    name: str = ""


def _time(v: Any, what: str) -> float:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{what}: not RFC 3339 or epoch seconds: {v!r}") from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=timezone.utc)).timestamp()
    raise ValueError(f"{what}: not RFC 3339 or epoch seconds: {v!r}")


def load_labels(path: Path) -> list[Incident]:
    """Labelled incidents, JSONL (one object a line) or a JSON array: team, start, end,
    should_alert, optional name."""
    text = Path(path).read_bytes()
    try:
        data = orjson.loads(text)
        rows = data if isinstance(data, list) else [data]
    except orjson.JSONDecodeError:
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    rows.append(orjson.loads(line))
                except orjson.JSONDecodeError as exc:
                    raise ValueError(f"{path}:{n}: invalid JSON: {exc}") from None
    out = []
    for n, r in enumerate(rows, 1):
        where = f"{path}: incident {n}"
        if not isinstance(r, dict):
            raise ValueError(f"{where}: must be an object")
        missing = [k for k in ("team", "start", "end", "should_alert") if k not in r]
        if missing:
            raise ValueError(f"{where}: missing {', '.join(missing)}")
        out.append(Incident(str(r["team"]), _time(r["start"], where), _time(r["end"], where),
                            bool(r["should_alert"]), str(r.get("name", ""))))
    return out


def score(firings: list[dict[str, Any]], incidents: list[Incident], teams: set[str],
          first_ts: float | None, last_ts: float | None, grace: float = 0.0) -> dict[str, Any]:
    """Recall over should-alert incidents, false alerts per team-week, detection delay.

    A firing of a team's series (team, team×model) inside ``[start, end + grace]`` of one of
    that team's incidents detects it; firings outside every should-alert incident are false.
    Org- and provider-level firings are not attributed to a team and are not scored.
    """
    fired = [(f["team"], _time(f["fired_at"], "fired_at"), _time(f["window_start"], "window_start")) for f in firings
             if f.get("team")]
    should = [i for i in incidents if i.should_alert]
    delays = []
    detected = 0
    per_incident = []
    for inc in should:
        hits = [t for team, t, _ in fired if team == inc.team and inc.start <= t <= inc.end + grace]
        if hits:
            detected += 1
            delays.append(min(hits) - inc.start)
        per_incident.append({"team": inc.team, "name": inc.name, "start": rfc3339(inc.start),
                             "detected": bool(hits), "delay_s": (min(hits) - inc.start) if hits else None})
    false = [
        (team, t) for team, t, _ in fired
        if not any(i.team == team and i.start <= t <= i.end + grace for i in should)
    ]
    span = max(0.0, (last_ts or 0) - (first_ts or 0))
    team_weeks = max(len(teams), 1) * max(span / (7 * 86400), 1e-9)
    return {
        "incidents": len(should),
        "detected": detected,
        "recall": (detected / len(should)) if should else None,
        "false_alerts": len(false),
        "team_weeks": round(team_weeks, 3),
        "false_alerts_per_team_week": round(len(false) / team_weeks, 3) if span else None,
        "median_delay_s": statistics.median(delays) if delays else None,
        "per_incident": per_incident,
    }


def write_firings(firings: list[dict[str, Any]], out: IO[bytes]) -> None:
    for f in firings:
        out.write(orjson.dumps(f) + b"\n")
