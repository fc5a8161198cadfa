"""Offline replay: historical usage events through the worker's own normalisation, windows,
detectors and alert lifecycle, with event time as the clock, and scoring against labelled
incidents.

No Kafka: one :class:`~streams.ingest.windows.IngestPartition` (a single source), fed by the
same per-message function as the worker's hot path (:func:`streams.ingest.pipeline.count_message`),
feeds one :class:`~streams.judge.core.JudgeCore`, built by the same factory the worker uses,
through the worker's own judge step (:func:`streams.judge.step.judge_step`: the judge, then the
budget ledger at its watermark).

Speed (``python -m benchmarks.replay``): lines that are one tidy canonical event skip the
dict-building decode (:func:`streams.ingest.normalize.canonical_event`) and are counted in runs; and
when the machine has a core to spare, a long replay forks its judge into a second process once
it is past :data:`FORK_AFTER_LINES` lines, so that reading and counting the file overlap with
the detectors. The judge then receives exactly the same messages, in the same order, as it would
in-process, so the alerts are the same (tests/tokenpulse/test_replay_fast.py).
"""

from __future__ import annotations

import math
import multiprocessing
import os
import pickle
import statistics
import sys
import time
import traceback
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice
from pathlib import Path
from typing import IO, Any

import orjson

from streams.budgets.ledger import BudgetLedger, BudgetSpec
from streams.common.config import StreamConfig
from streams.common.dimensions import parse_series
from streams.common.periods import rfc3339
from streams.ingest.normalize import ONE_CANONICAL, DecodeError, canonical_event, tidy_canonicals
from streams.ingest.pipeline import count_message
from streams.ingest.pricing import Pricer
from streams.ingest.windows import IngestPartition, Partial
from streams.judge.core import JudgeCore, judge_factory, new_series_settings
from streams.judge.raising import NOT_ANOMALY, not_anomaly
from streams.judge.step import judge_step


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
    skipped: dict[str, int] = field(default_factory=dict)  # held-back notifications by reason
    # budget notifications as --alerts-out lines (kept apart from ``firings``, which are scored)
    budget_firings: list[dict[str, Any]] = field(default_factory=list)
    budgets: list[dict[str, Any]] = field(default_factory=list)  # each budget's ledger (budget_summary)
    # every judged window of every series (tokenpulse.report_html.WindowTrace): only when asked
    trace: Any = None
    # --feedback: each "not an anomaly" answer with what it did (outcome, or not_applied)
    feedback: list[dict[str, Any]] = field(default_factory=list)


@dataclass
class Answer:
    """One "not an anomaly" answer of a ``--feedback`` file, applied once the judge has judged
    the window it answered (``window_end``, event time), as a worker applies the press."""

    series: str
    window_end: float
    key: str = ""
    started_at: float | None = None
    id: str = ""
    user: str = ""


def _record_head(note: Any, start: float, end: float) -> dict[str, Any]:
    """What every --alerts-out line starts with: whose, when, over which span, which rule."""
    return {
        "team": (note.labels or {}).get("team"),
        "series": note.series,
        "fired_at": rfc3339(note.fired_at),
        "window_start": rfc3339(start),
        "window_end": rfc3339(end),
        "kind": note.rule,
        "severity": note.severity,
    }


def firing_record(note: Any) -> dict[str, Any]:
    return {
        **_record_head(note, note.window_start, note.window_end),
        "observed": round(note.observed_usd, 6),
        "expected": round(note.expected_usd, 6),
        "excess_usd": round(note.excess_usd, 6),
        "excess_pct": None if note.excess_pct is None else round(note.excess_pct, 2),
        "incident_excess_usd": None if note.impact_usd is None else round(note.impact_usd, 6),
        "top_contributors": note.top_contributors,
        "page": note.page,
        "why": note.explanation,
    }


def inhibited_record(note: Any) -> dict[str, Any]:
    """A trigger the org alert inhibited (``JudgeOutput.inhibited``) as a firing of its own,
    marked ``inhibited_by``: on-call was paged by the org alert, so scoring credits the team."""
    return {**firing_record(note), "page": False, "inhibited_by": "cost_spike:org"}


_CHUNK = 128  # lines decoded at a time (bigger chunks measured slower: cache misses)
FORK_AFTER_LINES = 50_000
"""A replay forks its judge only past this many lines: below it, forking costs more than it
saves (and short replays, as in the tests of other modules, stay in one process)."""


_BUDGET_FIELDS = ("unit", "period", "tz", "period_id", "period_start", "period_end", "spent", "limit", "pct_used",
                  "days_left", "threshold", "thresholds", "projected_total", "projected_pct", "exhaustion_ts")


def budget_record(note: Any) -> dict[str, Any]:
    """An --alerts-out line for a budget notification (``alerts.model.BudgetNotification``):
    when and where, its ``kind`` (the rule: ``budget_threshold``, ``budget_forecast``), the
    action, and the budget's numbers under ``budget`` (``name``, ``series``, the period, spent
    and limit in its unit, the forecast)."""
    return {
        **_record_head(note, note.period_start, note.period_end),
        "page": note.page,
        "why": note.explanation,
        "action": note.action,
        "budget": {"name": note.budget, "series": note.series, **{k: getattr(note, k) for k in _BUDGET_FIELDS}},
    }


class _Verdicts:
    """What the replay keeps from the judge's outputs (picklable: it crosses the fork), and the
    budget ledger fed with the judge's spend, as in the worker: its crossings are evaluated at
    the judge's watermark after every message, with event time as the clock, so a replay tells
    what a worker that ran through this history live would have posted."""

    def __init__(self, budgets: list[BudgetSpec] | tuple[BudgetSpec, ...] = (), window_seconds: int = 60) -> None:
        self.notifications: list[dict[str, Any]] = []
        self.firings: list[dict[str, Any]] = []
        self.windows_judged = 0
        self.first_w: int | None = None
        self.series: set[str] = set()
        self.skipped: dict[str, int] = {}
        self.ledger = BudgetLedger(window_seconds, list(budgets)) if budgets else None
        self.budget_firings: list[dict[str, Any]] = []
        self.trace: Any = None  # a report's WindowTrace: fed after every step that judged windows
        # --feedback: the answers still to apply (latest first: popped as the judge passes
        # them), the bounds of the policy's detector.feedback, and what each one did
        self.answers: list[Answer] = []
        self.raise_bounds = (1.5, 4.0)
        self.feedback: list[dict[str, Any]] = []

    def after(self) -> _Verdicts:
        """Empty verdicts that carry on with this one's ledger and answers (for the forked judge:
        the child goes on counting from the spend so far and hands the ledger back with its
        verdicts)."""
        got = _Verdicts()
        got.ledger = self.ledger
        got.trace = None if self.trace is None else self.trace.after()
        got.answers, got.raise_bounds = self.answers, self.raise_bounds
        self.answers = []
        return got

    def apply_answers(self, judge: JudgeCore) -> None:
        """The answers whose window the judge has judged: each raises the series' floor through
        :func:`streams.judge.raising.not_anomaly`, the worker's own step."""
        done = judge.done_until
        step, max_raise = self.raise_bounds
        while self.answers and done is not None and self.answers[-1].window_end <= done:
            a = self.answers.pop()
            key = a.key or judge.engine.key_for(a.series)
            raised, lines = not_anomaly(judge, key, a.series, a.started_at, step=step, max_raise=max_raise,
                                        answer={"id": a.id, "by": a.user or "replay", "at": a.window_end,
                                                "window_end": a.window_end})
            self.feedback.append({"id": a.id, "series": a.series, "key": key, "window_end": rfc3339(a.window_end),
                                  "applied_at": rfc3339(float(done)),
                                  "outcome": "; ".join(lines) if raised else "no threshold raised (no flagged "
                                  "window of the series before it, or max_raise 0)"})

    def feedback_report(self) -> list[dict[str, Any]]:
        """What each answer did, then the answers the history ended before (not applied)."""
        return self.feedback + [
            {"id": a.id, "series": a.series, "key": a.key, "window_end": rfc3339(a.window_end), "applied_at": None,
             "outcome": "not applied: after the end of the history"} for a in reversed(self.answers)]

    def take(self, judge: JudgeCore, closed_until: int | None, partials: list[Partial], seq: int) -> None:
        step = judge_step(judge, self.ledger, None, 0, 1, closed_until, partials, seq)
        out = step.judged
        self.windows_judged += out.windows_judged
        if self.trace is not None and out.windows_judged:
            self.trace.collect(judge)
        if out.spend:
            lo = min([row[1] for row in out.spend])
            if self.first_w is None or lo < self.first_w:
                self.first_w = lo
            self.series.update([row[0] for row in out.spend])
        for note in out.notifications:
            self.notifications.append(note.to_dict())
            if note.action == "trigger":
                self.firings.append(firing_record(note))
        for note in out.inhibited:
            self.firings.append(inhibited_record(note))
        for why in out.skipped:
            self.skipped[why] = self.skipped.get(why, 0) + 1
        for _, bnote in step.budget_events:
            if bnote is not None:  # late spend of a period long over: recorded as fired, not told
                self.notifications.append(bnote.to_dict())
                self.budget_firings.append(budget_record(bnote))
        if self.answers and out.windows_judged:
            self.apply_answers(judge)

    def extend(self, later: _Verdicts) -> None:
        for why, n in later.skipped.items():
            self.skipped[why] = self.skipped.get(why, 0) + n
        self.notifications += later.notifications
        self.firings += later.firings
        self.budget_firings += later.budget_firings
        self.feedback += later.feedback
        self.answers = later.answers
        if later.ledger is not None:
            self.ledger = later.ledger  # it went on from ours
        self.windows_judged += later.windows_judged
        if later.first_w is not None and (self.first_w is None or later.first_w < self.first_w):
            self.first_w = later.first_w
        self.series |= later.series
        if self.trace is not None and later.trace is not None:
            self.trace.extend(later.trace)

    def budget_summary(self) -> list[dict[str, Any]]:
        """Each budget with every period it has spend in: spent and limit in its unit, % used,
        and the thresholds fired with the event time each fired at (a threshold of a period
        that was over when late spend reached it is listed with ``notified: false``)."""
        led = self.ledger
        if led is None:
            return []
        told = {(n["budget"], n["period_id"], n["threshold"])
                for n in self.notifications if n.get("kind") == "budget" and n.get("rule") == "budget_threshold"}
        out = []
        for name, spec in led.budgets.items():
            periods = []
            for pid in led.periods(name):
                st = led.status(name, float(led.clock), pid)
                periods.append({
                    "period_id": pid,
                    "period_start": rfc3339(st.period_start),
                    "period_end": rfc3339(st.period_end),
                    "spent": round(st.spent, 9),
                    "spent_base": led.spent(name, pid),
                    "pct_used": round(st.pct_used, 4),
                    "fired": [{"threshold": th, "at": rfc3339(st.fired_at[f"{th:g}"]) if f"{th:g}" in st.fired_at
                               else None, "notified": (name, pid, th) in told} for th in st.fired],
                })
            out.append({"budget": name, "scope": spec.labels, "series": spec.series, "unit": spec.unit,
                        "period": spec.period, "tz": spec.tz, "limit": spec.to_display(spec.limit),
                        "thresholds": sorted(spec.thresholds), "periods": periods})
        return out


def _can_fork() -> bool:
    # a daemonic process may not have children
    return ((os.cpu_count() or 1) >= 2 and "fork" in multiprocessing.get_all_start_methods()
            and not multiprocessing.current_process().daemon)


def _fork_by_default() -> bool:
    # Only with a core to spare: a replay running in a process pool's worker (benchmarks.detectors
    # runs several side by side), or on a machine already busy, would only oversubscribe the
    # cores (measured 10-15 % slower than one process when both were taken). Only on Linux:
    # macOS lists fork, but some of its system libraries do not survive one.
    if not _can_fork() or not sys.platform.startswith("linux") or multiprocessing.parent_process() is not None:
        return False
    try:
        busy = os.getloadavg()[0]  # this process counts as about one
    except OSError:
        return True
    return busy < (os.cpu_count() or 1) - 0.5


def _judge_process(conn: Any, judge: JudgeCore, before: _Verdicts | None = None) -> None:
    """The forked judge: receives (closed_until, partial rows, seq) messages, one per closing,
    until None, then sends back what it found (or the error that stopped it), the budget
    ledger included (carried on from ``before``'s)."""
    got = _Verdicts() if before is None else before.after()
    try:
        while True:
            msg = pickle.loads(conn.recv_bytes())
            if msg is None:
                break
            closed_until, rows, seq = msg
            got.take(judge, closed_until, [Partial(*r) for r in rows], seq)
        conn.send_bytes(pickle.dumps(("ok", got), protocol=pickle.HIGHEST_PROTOCOL))
    except (EOFError, BrokenPipeError):
        pass  # the parent gave up (an error or an interrupt on its side): nothing to report
    except BaseException:  # noqa: BLE001 - reported to the parent, which raises it
        try:
            conn.send_bytes(pickle.dumps(("error", traceback.format_exc()), protocol=pickle.HIGHEST_PROTOCOL))
        except OSError:
            pass
    finally:
        conn.close()


class _ForkedJudge:
    """The judge in a child process (fork: the child starts with the judge's state as it is)."""

    def __init__(self, judge: JudgeCore, verdicts: _Verdicts | None = None) -> None:
        ctx = multiprocessing.get_context("fork")
        self.conn, child = ctx.Pipe()
        self.proc = ctx.Process(target=_judge_process, args=(child, judge, verdicts), daemon=True)
        self.proc.start()
        child.close()

    def send(self, closed_until: int | None, partials: list[Partial], seq: int) -> None:
        # field by field (and no seq: the judge sets it), which pickles faster than the objects
        rows = [(p.series, p.labels, p.window_start, p.sums, p.contributors, p.detected, p.late) for p in partials]
        body = pickle.dumps((closed_until, rows, seq), protocol=pickle.HIGHEST_PROTOCOL)
        try:
            self.conn.send_bytes(body)
        except OSError:  # the judge stopped: it says why before it exits
            self.finish()
            raise

    def finish(self) -> _Verdicts:
        try:
            try:
                self.conn.send_bytes(pickle.dumps(None))
            except OSError:
                pass  # already stopped; its answer is in the pipe
            status, payload = pickle.loads(self.conn.recv_bytes())
        except (EOFError, OSError) as exc:
            raise RuntimeError(f"the replay's judge process died (exit code {self.proc.exitcode})") from exc
        finally:
            self.conn.close()
            self.proc.join(timeout=30)
        if status != "ok":
            raise RuntimeError(f"the replay's judge process failed:\n{payload}")
        return payload

    def abandon(self) -> None:
        self.conn.close()  # idempotent
        self.proc.join(timeout=5)
        if self.proc.is_alive():
            self.proc.kill()


def replay_lines(
    lines: Iterable[bytes],
    cfg: StreamConfig,
    *,
    progress: Callable[[int, int], None] | None = None,
    total_bytes: int = 0,
    fork: bool | None = None,
    trace: Any = None,
    judge: JudgeCore | None = None,
    feedback: Iterable[Answer] = (),
) -> ReplayResult:
    """Replay JSONL lines (each one message: an event, an array of events, any accepted shape).

    ``fork``: run the judge in a second process past :data:`FORK_AFTER_LINES` lines (None:
    when the machine has a core to spare and can fork, and this is not already a worker
    process of a pool). The result is the same either way.

    ``trace``: a :class:`tokenpulse.report_html.WindowTrace` to fill with every judged window of
    every series (for ``--report``); None keeps the judge's per-window records off.

    ``judge``: judge with this one instead of the one ``cfg`` describes (never forked, so the
    caller can read its state afterwards): ``tokenpulse tune`` records the windows with it.

    ``feedback``: on-call's "not an anomaly" answers (:func:`load_feedback_answers`), each
    applied once the judge has judged the window it answered, through the worker's own step
    (:func:`streams.judge.raising.not_anomaly`, bounded by ``cfg``'s ``detector.feedback``);
    ``ReplayResult.feedback`` says what each did.
    """
    pricer = Pricer(cfg.price_overrides)
    core = IngestPartition(
        partition=0, window_seconds=cfg.window_seconds, lateness=cfg.lateness,
        idle_grace=cfg.idle_grace, watched=cfg.watched, limits=cfg.limits,
        dedupe_retention=cfg.dedupe_horizon,
    )
    if judge is None:
        judge = judge_factory(
            cfg.window_seconds, cfg.detector_name, cfg.detector_params, cfg.alert_policy,
            overrides=cfg.detector_overrides, raise_half_life_s=cfg.not_anomaly_half_life_days * 86400,
            new_series=new_series_settings(cfg), team_scale_minutes=cfg.team_scale_minutes,
            team_corroboration_p=cfg.team_corroboration_p,
            team_corroboration_strict_p=cfg.team_corroboration_strict_p,
            team_week_ratio=cfg.team_week_ratio,
            team_week_shift_h=cfg.team_week_shift_h,
            shift_week_ratio=cfg.shift_week_ratio,
        )(0)
    else:
        fork = False  # the caller reads the judge's state afterwards
    verdicts = _replay_verdicts(cfg, judge, feedback, trace)
    may_fork = _fork_by_default() if fork is None else (fork and _can_fork())
    lanes = _Lanes(cfg, core, pricer, judge, verdicts, may_fork)
    started = time.monotonic()
    try:
        lanes.read(lines, progress, total_bytes)
        lanes.end_of_history()
    finally:
        lanes.abandon()
    return _replay_result(lanes, started)


def _replay_verdicts(cfg: StreamConfig, judge: JudgeCore, feedback: Iterable[Answer], trace: Any) -> _Verdicts:
    """The verdicts a replay through ``judge`` fills: ``cfg``'s budgets, the answers to apply
    (latest first, within ``cfg``'s ``detector.feedback`` bounds) and the report's trace."""
    # what only the worker's API and spend table read; the spend the replay reports is taken
    # from each judge output
    judge.keep_recent = False
    judge.keep_spend = False
    verdicts = _Verdicts(cfg.budgets, cfg.window_seconds)
    verdicts.answers = sorted(feedback, key=lambda a: a.window_end, reverse=True)
    verdicts.raise_bounds = (cfg.not_anomaly_step, cfg.not_anomaly_max_raise)
    if trace is not None:  # a report: the judge records every window, the trace drains it
        trace.prepare(judge)
        verdicts.trace = trace
    return verdicts


def _decode_tidy(chunk: list[bytes]) -> list[Any] | None:
    """The chunk's events when every line is one tidy canonical event (the common case, all
    in C but the tidy checks), else None: the chunk is then taken line by line."""
    try:
        events = list(map(ONE_CANONICAL.decode, chunk))
        return events if tidy_canonicals(events) else None
    except DecodeError:
        return None
    except Exception:  # noqa: BLE001 - never: line by line then, each under its guard
        return None


class _Lanes:
    """One replay's pass over its lines, with event time as the only clock.

    Lines that are one tidy canonical event are decoded straight into structs and counted in
    runs (:meth:`IngestPartition.add_events`); every other line goes through
    :func:`count_message`. Either way each line is counted in file order and windows close
    after the same lines (every quarter window of event time), so the judge -- here, or forked
    past :data:`FORK_AFTER_LINES` lines -- receives the same messages in the same order."""

    def __init__(self, cfg: StreamConfig, core: IngestPartition, pricer: Pricer, judge: JudgeCore,
                 verdicts: _Verdicts, may_fork: bool) -> None:
        self.cfg, self.core, self.pricer, self.judge, self.verdicts = cfg, core, pricer, judge, verdicts
        self.may_fork = may_fork
        self.forked: _ForkedJudge | None = None
        self.quarter = cfg.window_seconds / 4
        self.next_advance: float | None = None
        self.seq = 0
        self.line_no = 0
        self.bytes_read = 0
        self.run: list[Any] = []  # tidy events not counted yet
        self.run_first = 0  # the line number of run[0]
        self.rejects: list[tuple[int, str]] = []  # (line, reason), the first 100

    def on_reject(self, raw: bytes, reason: str, index: int | None) -> None:
        if len(self.rejects) < 100:
            self.rejects.append((self.line_no, reason))

    def on_run_reject(self, i: int, reason: str) -> None:
        # run[i] is line run_first + i: each line of a run is one event
        if len(self.rejects) < 100:
            self.rejects.append((self.run_first + i, reason))

    def read(self, lines: Iterable[bytes], progress: Callable[[int, int], None] | None, total_bytes: int) -> None:
        """Count every line, ``_CHUNK`` at a time so that decoding them is one C-level map;
        ``progress(bytes read, total_bytes)`` at most once a second."""
        last_report = time.monotonic()
        source = iter(lines)
        while chunk := list(islice(source, _CHUNK)):
            events = _decode_tidy(chunk)
            if events is not None:
                self.add_tidy(chunk, events)
            else:
                self.add_lines(chunk)
            if self.may_fork and self.forked is None and self.line_no >= FORK_AFTER_LINES:
                self.fork()
            if progress is not None:
                now = time.monotonic()
                if now - last_report >= 1.0:
                    last_report = now
                    progress(self.bytes_read, total_bytes)

    def add_tidy(self, chunk: list[bytes], events: list[Any]) -> None:
        """A chunk of tidy events (``_decode_tidy``): one run."""
        if not self.run:
            self.run_first = self.line_no + 1
        self.run += events
        self.line_no += len(chunk)
        self.bytes_read += sum(map(len, chunk))
        self.count_run()

    def add_lines(self, chunk: list[bytes]) -> None:
        """A chunk line by line: tidy events join the run, any other line is counted on its own
        (after the run before it, to keep the file's order)."""
        core, run = self.core, self.run
        for raw in chunk:
            self.line_no += 1
            ev = canonical_event(raw)
            self.bytes_read += len(raw)
            if ev is not None:
                if not run:
                    self.run_first = self.line_no
                run.append(ev)
                continue
            if run:
                self.count_run()
            if raw.strip():
                # Event time is the clock: the wall clock never runs ahead of the newest
                # event, so nothing closes for idleness until the end.
                clock = core.max_ts if core.max_ts is not None else 0.0
                count_message(core, raw, self.pricer, clock, self.on_reject)
                self.counted()
        if run:
            self.count_run()

    def count_run(self) -> None:
        core, run = self.core, self.run
        i, n = 0, len(run)
        while i < n:
            # add_events stops at the event that reaches next_advance, so windows close there
            i = core.add_events(run, 0.0, self.pricer, i, -math.inf if self.next_advance is None else self.next_advance,
                                on_reject=self.on_run_reject)
            self.counted()
        run.clear()

    def counted(self) -> None:
        """After counting: the event clock is the only clock here, and windows close every
        quarter window of it."""
        core = self.core
        core.wall_at_max = core.max_ts
        if core.max_ts is not None and (self.next_advance is None or core.max_ts >= self.next_advance):
            self.feed(core.max_ts)
            self.next_advance = core.max_ts + self.quarter

    def feed(self, wall: float) -> None:
        """Close what the clock ``wall`` closes and give it to the judge."""
        core = self.core
        before = core.closed_until
        partials = core.advance(wall)
        if not partials and core.closed_until == before:
            return
        self.seq += 1
        if self.forked is not None:
            self.forked.send(core.closed_until, partials, self.seq)
        else:
            self.verdicts.take(self.judge, core.closed_until, partials, self.seq)

    def fork(self) -> None:
        self.may_fork = False
        try:
            self.forked = _ForkedJudge(self.judge, self.verdicts)
        except OSError:  # no process to spare (limits): judge here, as before
            self.forked = None

    def end_of_history(self) -> None:
        """Close every window still open, then a few quiet windows so alerts that ended with
        the data can resolve, and as many more as flap damping holds a team's resolve
        (``alerts.group_keep_firing_s``): the quiet a worker's idle clock goes on judging
        when the traffic stops; take back the forked judge's verdicts."""
        core, cfg = self.core, self.cfg
        if core.max_ts is not None:
            hold = self.judge.engine.policy.group_keep_firing_s
            self.feed(core.max_ts + cfg.idle_grace + cfg.lateness + cfg.window_seconds * 8 + hold)
        if self.forked is not None:
            self.verdicts.extend(self.forked.finish())
            self.forked = None

    def abandon(self) -> None:
        """Stop a forked judge left running (an error or an interrupt on this side)."""
        if self.forked is not None:
            self.forked.abandon()


def _replay_result(lanes: _Lanes, started: float) -> ReplayResult:
    verdicts, core = lanes.verdicts, lanes.core
    return ReplayResult(
        firings=verdicts.firings,
        notifications=verdicts.notifications,
        counters=core.counters.to_dict(),
        windows_judged=verdicts.windows_judged,
        first_ts=None if verdicts.first_w is None else float(verdicts.first_w),
        last_ts=core.max_ts,
        teams=_teams_of(verdicts.series),
        rejects=lanes.rejects,
        seconds=time.monotonic() - started,
        bytes_read=lanes.bytes_read,
        skipped=dict(verdicts.skipped),
        budget_firings=verdicts.budget_firings,
        budgets=verdicts.budget_summary(),
        trace=verdicts.trace,
        feedback=verdicts.feedback_report(),
    )


def _teams_of(series: Iterable[str]) -> set[str]:
    """The teams with a team series among ``series`` (of any org: labels carry no org).

    >>> sorted(_teams_of(["org", "team=ads", "team=ads|model=m", "org=acme|team=ml", "user=bob"]))
    ['ads', 'ml']
    """
    out = set()
    for name in series:
        parsed = parse_series(name)
        if parsed is not None and parsed[0].name == "team":
            out.add(parsed[1]["team"])
    return out


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


def to_epoch(v: Any, what: str) -> float:
    """Epoch seconds from epoch seconds or an RFC 3339 string (no zone: UTC); ``what`` names
    the field in the error."""
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return float(v)
    if isinstance(v, str):
        try:
            dt = datetime.fromisoformat(v.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError(f"{what}: not RFC 3339 or epoch seconds: {v!r}") from None
        return (dt if dt.tzinfo else dt.replace(tzinfo=UTC)).timestamp()
    raise ValueError(f"{what}: not RFC 3339 or epoch seconds: {v!r}")


def load_labels(path: Path) -> list[Incident]:
    """Labelled incidents, JSONL (one object a line) or a JSON array: team, start, end,
    should_alert, optional name. An incident whose ``team`` is null is skipped: an answer on the
    org's or a provider's alert (``tokenpulse feedback export`` writes them), which scoring does
    not attribute to a team."""
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
        if r["team"] is None:
            continue
        out.append(Incident(str(r["team"]), to_epoch(r["start"], where), to_epoch(r["end"], where),
                            bool(r["should_alert"]), str(r.get("name", ""))))
    return out


def jsonl_values(path: Path) -> Iterator[tuple[str, Any]]:
    """Each non-blank line of a JSONL file, parsed, with ``"<path>:<line>"`` to name it in
    errors; a line that is not JSON raises ``ValueError`` naming it."""
    for n, line in enumerate(Path(path).read_bytes().splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path}:{n}"
        try:
            value = orjson.loads(line)
        except orjson.JSONDecodeError as exc:
            raise ValueError(f"{where}: invalid JSON: {exc}") from None
        yield where, value


def load_feedback_answers(path: Path) -> list[Answer]:
    """The "not an anomaly" answers of a feedback file (JSONL, one object a line: what
    ``tokenpulse feedback export`` writes, or written by hand): ``series`` and ``window_end``
    (the window answered: RFC 3339 or epoch seconds), optional ``key`` (the alert answered;
    default the series' own), ``started_at``, ``id`` and ``user``. A line is such an answer when
    its ``action`` is ``tokenpulse_not_anomaly``, or it has no ``action`` and ``useful`` is
    false; other lines (acknowledged, new normal...) are labels, not answers to replay, and are
    passed over. A bad line raises ``ValueError`` naming the file and line."""
    out = []
    for where, r in jsonl_values(path):
        if not isinstance(r, dict):
            raise ValueError(f"{where}: must be an object")
        action = r.get("action")
        if not (action == NOT_ANOMALY or (action is None and r.get("useful") is False)):
            continue
        missing = [k for k in ("series", "window_end") if r.get(k) in (None, "")]
        if missing:
            raise ValueError(f"{where}: a not-an-anomaly answer needs {' and '.join(missing)}")
        started = r.get("started_at")
        out.append(Answer(series=str(r["series"]), window_end=to_epoch(r["window_end"], f"{where}: window_end"),
                          key=str(r.get("key") or ""),
                          started_at=None if started is None else to_epoch(started, f"{where}: started_at"),
                          id=str(r.get("id") or where), user=str(r.get("user") or "")))
    return out


def score(firings: list[dict[str, Any]], incidents: list[Incident], teams: set[str],
          first_ts: float | None, last_ts: float | None, grace: float = 0.0) -> dict[str, Any]:
    """Recall over should-alert incidents, false alerts per team-week, detection delay.

    A firing of a team's series (team, team×model) inside ``[start, end + grace]`` of one of
    that team's incidents detects it; firings outside every should-alert incident are false.
    Org- and provider-level firings are not attributed to a team and are not scored.
    """
    fired = [(f["team"], to_epoch(f["fired_at"], "fired_at"), to_epoch(f["window_start"], "window_start")) for f in firings
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
