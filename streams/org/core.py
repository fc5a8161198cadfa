"""The org stage: one organisation's alert engine step, budgets and mix watch, fed by verdicts.

:class:`OrgCore` is what needs the series of one org together. Its input is the judge
partitions' :class:`~streams.org.verdicts.Verdicts` (signals per window, spend rows, watermark);
it steps the org's one :class:`~alerts.AlertEngine` once per window with all the org's signals
of that window (so the org alert inhibits its teams and a team's series group into one
notification: one page per incident), feeds the spend rows to the org's
:class:`~streams.budgets.ledger.BudgetLedger` and :class:`~streams.budgets.mix.MixWatch`, and
returns what to send: spike and budget notifications, over-budget decisions.

Two ways to drive it:

- beside its judge, which is today's placement (every series of an org judged on the org's
  partition: :mod:`streams.common.partitioning`): the judge steps it window by window
  (:meth:`step_window`, from :class:`streams.judge.core.JudgeCore`), because which series the
  judge sends signals for in the next window depends on which alerts the engine tracks after
  this one (:meth:`tracks`), and :func:`streams.judge.step.judge_step` hands it the message's
  spend (:meth:`apply_spend`). Its alert and group states are checkpointed with the judge's.
- fed by several judge partitions (:meth:`receive`): it merges them as the judge merges
  sources -- a window is stepped once every judge partition's watermark has passed it -- and
  applies each verdicts message once per (judge partition, seq), so that a judge partition
  that replays after a crash re-sends the same verdicts and nothing is counted or paged twice.
  The mix watch (the third-party share, a ratio) gets a window's rows once the window is final
  there too, so that no share is read with one judge partition's rows of a window only.
  What it holds for that (the judges' watermarks and seqs, the signals of windows not yet
  final) is checkpointed too (:meth:`checkpoint`).

  Fed so, it resolves an alert on-call answered "expected, new normal" before the series' judge
  has rebased its detector (the detector part of the answer travels to the judge partition on
  the feedback topic). A window that judge judged in between, with the old baseline, must not
  raise the alert again: :meth:`await_rebase` holds back the flagged signals of the series
  until the judge's :class:`~streams.org.verdicts.RebaseMark` says from which window on it
  judged with the new one, and those of the windows before it after that.

Pure Python, no Faust, no I/O.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from alerts import AlertEngine, Notification, Signal
from alerts.model import BudgetNotification
from streams.budgets.ledger import BudgetEvent, BudgetLedger
from streams.budgets.mix import MixWatch
from streams.common.dimensions import TEAM, TEAM_MODEL, parse_series, series_key
from streams.org.newseries import NewSeriesRule, NewSeriesSettings, Row
from streams.org.verdicts import RebaseMark, SpendRow, Verdicts

log = logging.getLogger("tokenpulse.org")

__all__ = ["OrgCore", "OrgOutput", "corroborated", "reads_team_numbers", "shift_confirmed"]

# the checkpoint kinds of the org stage: the engine's (as the judge table has always held them)
# and those only a merging org stage writes
ORG_KINDS = frozenset({"alert", "group", "orgmeta", "orgsig", "newser", "newserw", "orgmix", "rebasing"})

# How long (event time, at the merged watermark) a series answered "expected, new normal" waits
# for its judge's rebase mark before its flagged windows count again: the mark normally comes
# with the judge's next verdicts message; one that never comes (the detector part not sent, the
# series gone from its judge) must not mute the series for good.
REBASE_WAIT_S = 3600.0


def team_scale_keeps(excess: float, team_expected: float, minutes: float, window_seconds: float) -> bool:
    """Whether a flagged team×model window stays flagged under the team-scale gate: its
    incident's excess so far (dollars) reaches ``minutes`` minutes of its team series' expected
    spend in the window (``team_expected``, dollars per window). The one comparison of the gate:
    :meth:`OrgCore.team_scale` uses it, and so does ``benchmarks.detect_fast`` (whose fast loop
    works on arrays, not signals), so that the benchmark measures the gate the worker applies."""
    return excess >= minutes * 60.0 / window_seconds * team_expected


def corroborated(p: float, limit: float, strict_p: float, week_ratio_min: float, week: float | None) -> bool:
    """Whether a team×model series' flagged window is corroborated by its team series (the team
    corroboration's one decision: :meth:`OrgCore.corroborate` uses it, and so does
    ``benchmarks.detect_fast``): the team's surprise p-value ``p`` in the window is at most
    ``limit``, and, with a week-ago reference (``week``: the team's spend over the last hour
    against the same hour a week before; None: no reference, and ``strict_p`` or
    ``week_ratio_min`` 0: off), either at most ``strict_p`` or the team spends at least
    ``week_ratio_min`` times what it spent a week before. A bursty team's ordinary session on
    one model finds its team mildly surprised (10^-3..10^-2) at a spend its same hour last week
    also had; a loop or a spike that the team absorbs as mildly surprising is still new money
    against last week (docs/detection-log.md, "a week-ago reference for the team corroboration").

    >>> corroborated(0.005, 0.01, 0.001, 3.0, 1.2), corroborated(0.005, 0.01, 0.001, 3.0, 4.0)
    (False, True)
    >>> corroborated(0.0005, 0.01, 0.001, 3.0, 1.2), corroborated(0.005, 0.01, 0.001, 3.0, None)
    (True, True)
    """
    if p > limit:
        return False
    if strict_p <= 0 or week_ratio_min <= 0 or week is None or p <= strict_p:
        return True
    return week >= week_ratio_min


#: the model of the default detector (``detectors.combined``) whose lead makes a flag a
#: sustained shift: its verdict's reason starts with ``"changepoint:"``
SHIFT_LEAD = "changepoint"


def shift_confirmed(lead: str, week: float | None, ratio_min: float) -> bool:
    """Whether a team or team×model series' flagged window led by ``lead`` (the model named at
    the start of the detector's reason) may start an alert under the week-ago check of a
    sustained shift (the check's one decision: :meth:`OrgCore.confirm_shift` uses it, and so
    does ``benchmarks.detect_fast``): a flag the sustained-shift model leads (:data:`SHIFT_LEAD`)
    needs the team's last hour to be at least ``ratio_min`` times the week-ago reference
    (``week``, :meth:`NewSeriesRule.week_ratio`; None: no reference, and ``ratio_min`` 0: off,
    decide nothing). That model's baseline is by hour of the day: quiet days learnt into it (a
    holiday, a weekend) put its level below an ordinary weekday, which then reads as a shift;
    a rise that is real money is above the same hours a week before too
    (docs/detection-log.md, "a sustained shift checked against a week before").

    >>> shift_confirmed("changepoint", 1.5, 1.8), shift_confirmed("changepoint", 2.4, 1.8)
    (False, True)
    >>> shift_confirmed("seasonal", 1.0, 1.8), shift_confirmed("changepoint", None, 1.8)
    (True, True)
    """
    if ratio_min <= 0 or week is None or lead != SHIFT_LEAD:
        return True
    return week >= ratio_min


def reads_team_numbers(team_scale_minutes: float, team_corroboration_p: float,
                       new_series: NewSeriesSettings | None) -> tuple[bool, bool]:
    """Whether the org stage's rules read the team series' expected spends and their surprise
    p-values of each window: the team-scale gate the former, the team corroboration the latter,
    the team burst rule (``new_series.team_burst``) both, so that turning a gate off does not
    turn that rule off unseen. The judges send them (``JudgeCore.sends_team_numbers``) and an
    org stage apart holds them (:meth:`OrgCore._hold_expected`) by this one answer."""
    burst = new_series is not None and new_series.team_burst is not None
    return team_scale_minutes > 0 or burst, team_corroboration_p > 0 or burst


def _team_of(sg: Signal, team_p: Mapping[str, float]) -> float | None:
    """The surprise p-value of a team×model signal's team series in ``team_p`` (None: not a
    team×model series, or its team's is not known)."""
    got = parse_series(sg.series)
    if got is None or got[0] is not TEAM_MODEL:
        return None
    return team_p.get(series_key({k: v for k, v in got[1].items() if k != "model"}))


def _excess(sg: Signal) -> float:
    """A flagged signal's excess for the team-scale gate: its incident's (``impact_usd``), or
    its window's own without it."""
    return sg.impact_usd if sg.impact_usd is not None else sg.observed_usd - sg.expected_usd


@dataclass(slots=True)
class Rebasing:
    """A series on-call answered "expected, new normal" on this org stage, and its judge's
    rebase mark (:class:`~streams.org.verdicts.RebaseMark`).

    ``answer``: the answer's id (a mark of another answer is not this one's). ``at``: event time
    on the org stage when it was answered (or the mark came). ``from_window``: from the mark, the
    first window judged with the new baseline (None: no mark yet). ``asked``: the answer was
    applied here (False: a mark came first, which a crash can do: the org stage restored from a
    checkpoint before the answer, its verdicts read again before the answer is)."""

    answer: str
    at: float
    from_window: int | None = None
    asked: bool = True
    marked: bool = False

    def holds(self, start: int) -> bool:
        """Whether a flagged signal of the window starting at ``start`` is held back: judged
        before the rebase reached the judge, or maybe so (no mark yet)."""
        if not self.asked:
            return False
        return not self.marked or (self.from_window is not None and start < self.from_window)

    def to_state(self) -> dict[str, Any]:
        return {"answer": self.answer, "at": self.at, "from": self.from_window, "asked": self.asked,
                "marked": self.marked}

    @classmethod
    def from_state(cls, d: dict[str, Any]) -> Rebasing:
        w = d.get("from")
        return cls(str(d["answer"]), float(d["at"]), None if w is None else int(w), bool(d.get("asked", True)),
                   bool(d.get("marked", False)))


class _Collects(Protocol):
    """Where a window step's notifications go (an :class:`OrgOutput`, or the judge's output)."""

    notifications: list[Notification]
    skipped: list[str]
    inhibited: list[Notification]
    team_scaled: int
    uncorroborated: int
    shift_unconfirmed: int


@dataclass
class OrgOutput:
    """What one verdicts message gave on the org stage."""

    notifications: list[Notification] = field(default_factory=list)  # spike notifications, window by window
    skipped: list[str] = field(default_factory=list)  # why decided notifications were held back
    inhibited: list[Notification] = field(default_factory=list)  # triggers the org alert inhibited
    windows_stepped: int = 0
    # each threshold or forecast event of the ledger, with its notification (None: past period)
    budget_events: list[tuple[BudgetEvent, BudgetNotification | None]] = field(default_factory=list)
    budget_skipped: list[str] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)  # over-budget decisions due now
    duplicate: bool = False  # the (judge partition, seq) was applied before: nothing done
    late: int = 0  # signals of windows stepped already (a judge ahead of its own watermark): logged, not stepped
    # flagged signals of series answered "expected, new normal" from windows judged before the
    # rebase reached their judge (:meth:`OrgCore.await_rebase`): not stepped, so not raised again
    before_rebase: int = 0
    # rebase marks: matched to an answer applied here, or not (kept a while for one to come)
    marks: int = 0
    marks_unasked: int = 0
    expired: list[str] = field(default_factory=list)  # series whose mark never came (REBASE_WAIT_S)
    # flagged team×model windows the team-scale gate turned normal (:meth:`OrgCore.team_scale`)
    team_scaled: int = 0
    # flagged team×model windows the team corroboration turned normal (:meth:`OrgCore.corroborate`)
    uncorroborated: int = 0
    # flagged team and team×model windows the week-ago check of a sustained shift turned normal
    # (:meth:`OrgCore.confirm_shift`)
    shift_unconfirmed: int = 0


@dataclass
class OrgCore:
    """One org partition's alert engine, with what it needs to merge judge partitions.

    ``n_judges``: how many judge partitions feed it (each one's watermark is waited for, as the
    judge waits for every source). Use :meth:`receive` for verdicts from judge partitions
    (several, or one on another worker); the judge beside it uses :meth:`step_window` and
    :meth:`apply_spend` directly.
    """

    partition: int
    window_seconds: int
    engine: AlertEngine
    n_judges: int = 1
    judge_wm: dict[int, float | None] = field(default_factory=dict)  # None: heard from, no watermark yet
    applied: dict[int, int] = field(default_factory=dict)  # judge partition -> last verdicts seq applied
    # judge partition -> the last part applied of that seq (a windows message's verdicts sent in
    # parts, streams.org.verdicts.wire_parts); absent: part 0
    applied_part: dict[int, int] = field(default_factory=dict)
    # window start -> (its end, the signals of it so far): windows some judge judged, not stepped yet
    pending: dict[int, tuple[int, list[Signal]]] = field(default_factory=dict)
    done_until: int | None = None  # the end of the last window stepped by :meth:`receive`
    # The ``new-series`` rule (None: off): a team's new model judged against the team's price
    # per request (:mod:`streams.org.newseries`). It reads each stepped window's spend rows;
    # :meth:`receive` keeps those of windows not final yet here (window start -> rows).
    new_series: NewSeriesRule | None = None
    pending_rows: dict[int, list[Row]] = field(default_factory=dict)
    # The team-scale gate (policy detector.team_scale_minutes; 0: off): a team×model series'
    # flagged window counts only once its incident's excess reaches this many minutes of its
    # team series' expected spend in the window (:meth:`team_scale`). :meth:`receive` keeps
    # the team expected spends of windows not final yet here (window start -> team -> dollars).
    team_scale_minutes: float = 0.0
    pending_expected: dict[int, dict[str, float]] = field(default_factory=dict)
    # The team corroboration (policy detector.team_corroboration_p; 0: off): a team×model
    # series' flagged window starts an alert only when its team series' surprise p-value in the
    # window is at most this (:meth:`corroborate`). :meth:`receive` keeps the team p-values of
    # windows not final yet here (window start -> team -> p).
    team_corroboration_p: float = 0.0
    # ... and, where the team has a week-ago reference (the new-series rule's hourly team sums,
    # NewSeriesRule.week_ratio), its p must be at most team_corroboration_strict_p unless the
    # team spent team_week_ratio times its same hour a week before (:func:`corroborated`;
    # policy detector.team_corroboration_strict_p, detector.team_week_ratio; 0: off)
    team_corroboration_strict_p: float = 0.0
    team_week_ratio: float = 0.0
    # ... the same hour a week before or up to this many hours either side, the largest
    # (NewSeriesRule.week_ratio's shift_h; policy detector.team_week_shift_h; 0: the same hour)
    team_week_shift_h: int = 0
    # The week-ago check of a sustained shift (policy detector.shift_week_ratio; 0: off): a team
    # or team×model series' flag that the sustained-shift model leads starts an alert only while
    # the team's last hour is at least this many times its week-ago reference (the same
    # reference as above, NewSeriesRule.week_ratio with team_week_shift_h; :meth:`confirm_shift`)
    shift_week_ratio: float = 0.0
    pending_team_p: dict[int, dict[str, float]] = field(default_factory=dict)
    # window start -> the team×model spend rows of it held for the mix watch until the window is
    # final on every judge partition (:meth:`receive`): a share counted with one judge
    # partition's rows of a window and not yet another's is a share that never was
    mix_held: dict[int, list[SpendRow]] = field(default_factory=dict)
    # series answered "expected, new normal" whose windows judged before their judge rebased
    # must not raise the alert again (:meth:`await_rebase`); bounded by ``rebase_wait_s``
    rebasing: dict[str, Rebasing] = field(default_factory=dict)
    rebase_wait_s: float = REBASE_WAIT_S
    # Alert keys taken over from the org placement's judge table (:meth:`adopt`), until they
    # resolve: their series' windows may come from a judge that never flagged them (a series
    # moves to the partition its name hashes to, with a new detector), which sends no normal
    # window, so a final window without a signal of theirs is stepped as a normal one.
    adopted: set[str] = field(default_factory=set)
    _dirty: set[str] = field(default_factory=set)
    # The pending windows that have an ``orgsig`` record on the changelog. Only windows with
    # signals (or the new-series rule's rows) are written: the empty ones of a gap (a judge partition judging a day of windows
    # the others have not reached) were one record each, 13,000 of them in one test run, and the
    # budgets' records waited behind them on the producer. An empty window lost in a crash is
    # not stepped: the engine's group timers are looked at again at the next window stepped.
    _written: set[int] = field(default_factory=set)

    # -- what the judge asks --------------------------------------------------------------
    def key_for(self, series: str) -> str:
        """The alert key of ``series``."""
        return self.engine.key_for(series)

    def tracks(self, key: str) -> bool:
        """Whether the engine holds state for the alert ``key`` (pending or firing): the judge
        sends that series' every window until it does not (so that the alert can resolve), and
        a tracked series' windows do not teach its contributor mix."""
        return self.engine.tracks(key)

    # -- the steps ------------------------------------------------------------------------
    def step_window(self, end: int, signals: Sequence[Signal], out: _Collects, rows: Iterable[Row] = (),
                    expected: Mapping[str, float] | None = None, team_p: Mapping[str, float] | None = None) -> None:
        """Step the engine over one window ending at ``end`` with every signal of it (the
        org's), into ``out``. ``rows``: the window's spend rows ((series, nano-dollars,
        requests)), for the ``new-series`` rule, whose signals join the judges'. ``expected``:
        the team series' expected spend in the window, for the team-scale gate
        (:meth:`team_scale`; None or empty: no team's known, nothing gated). ``team_p``: the
        team series' surprise p-values in the window, for the team corroboration
        (:meth:`corroborate`; None or empty: nothing gated). The week-ago check of a sustained
        shift (:meth:`confirm_shift`) reads the new-series rule's hourly team sums; the team burst
        rule (:class:`~streams.org.newseries.TeamBurstSettings`) reads ``expected`` and ``team_p``."""
        engine = self.engine
        signals = self._gated(end, signals, out, expected, team_p)
        rule = self.new_series
        if rule is not None:
            key_for, tracks = engine.key_for, engine.tracks
            signals = rule.judge_window(end - self.window_seconds, end, rows, signals,
                                        lambda series: tracks(key_for(series)), expected, team_p)
            self._dirty.update(f"newser|{t}" for t in rule.take_dirty())
            self._dirty.update(f"newserw|{t}" for t in rule.take_week_dirty())
        notes = engine.observe_window(signals, float(end))
        if engine.skipped:
            out.skipped.extend(engine.skipped)
            out.inhibited.extend(engine.inhibited)
        dirty = self._dirty
        key_for = engine.key_for
        for sg in signals:  # each had state before (tracked) or may have now
            dirty.add(f"alert|{key_for(sg.series)}")
        for gid in engine.changed_groups:
            dirty.add(f"group|{gid}")
        out.notifications.extend(notes)

    def _gated(self, end: int, signals: Sequence[Signal], out: _Collects, expected: Mapping[str, float] | None,
               team_p: Mapping[str, float] | None) -> Sequence[Signal]:
        """A window's signals after the team-scale gate, the team corroboration and the week-ago
        check of a sustained shift (each counted in ``out`` and logged at debug)."""
        if expected and self.team_scale_minutes > 0:
            gated = self.team_scale(signals, expected)
            if gated is not signals:  # counted (team_scale_gated_total) and logged: else a page that never came leaves no trace
                for was, now in zip(signals, gated, strict=True):
                    if was.is_anomaly and not now.is_anomaly:
                        out.team_scaled += 1
                        log.debug("team-scale gate: %s window ending %d turned normal (excess %.4g $ < %g min of "
                                  "its team's expected spend)", was.series, end,
                                  _excess(was), self.team_scale_minutes)
                signals = gated
        if team_p and self.team_corroboration_p > 0:
            kept = self.corroborate(signals, team_p, end - self.window_seconds)
            if kept is not signals:  # counted (team_uncorroborated_total) and logged, as the gate above
                for was, now in zip(signals, kept, strict=True):
                    if was.is_anomaly and not now.is_anomaly:
                        out.uncorroborated += 1
                        log.debug("team corroboration: %s window ending %d turned normal (its team's p %.3g > %g, "
                                  "or > %g at %.3gx its spend a week before)", was.series, end, _team_of(was, team_p),
                                  self.team_corroboration_p, self.team_corroboration_strict_p,
                                  self._week(was, end - self.window_seconds) or float("nan"))
                signals = kept
        if self.shift_week_ratio > 0 and self.new_series is not None:
            kept = self.confirm_shift(signals, end - self.window_seconds)
            if kept is not signals:  # counted (shift_unconfirmed_total) and logged, as the gates above
                for was, now in zip(signals, kept, strict=True):
                    if was.is_anomaly and not now.is_anomaly:
                        out.shift_unconfirmed += 1
                        log.debug("week-ago check of a sustained shift: %s window ending %d turned normal (its "
                                  "team's last hour %.3gx a week before < %g)", was.series, end,
                                  self._week(was, end - self.window_seconds) or float("nan"),
                                  self.shift_week_ratio)
                signals = kept
        return signals

    def team_scale(self, signals: Sequence[Signal], expected: Mapping[str, float]) -> Sequence[Signal]:
        """The team-scale gate, under either placement (the judge beside hands it its team
        series' expected spends, :meth:`receive` those the judges sent): a team×model series'
        flagged window whose incident's excess so far (``impact_usd``; the window's own excess
        without it) is below :attr:`team_scale_minutes` minutes of its team series' expected
        spend in the window becomes a normal window. Pages go to the team, and a burst that is
        5-100x one model's series can be small change to the team, whose own series found it
        unremarkable (docs/detection-log.md, "a team-scale gate"). A team with no expected spend
        here (not watched, or no spend in the window) gates nothing."""
        minutes, window = self.team_scale_minutes, self.window_seconds
        out: list[Signal] | None = None
        for i, sg in enumerate(signals):
            if not sg.is_anomaly:
                continue
            got = parse_series(sg.series)
            if got is None or got[0] is not TEAM_MODEL:
                continue
            labels = got[1]
            team = expected.get(series_key({k: v for k, v in labels.items() if k != "model"}))
            if not team:
                continue
            if team_scale_keeps(_excess(sg), team, minutes, window):
                continue
            if out is None:
                out = list(signals)
            out[i] = dataclasses.replace(sg, is_anomaly=False)
        return signals if out is None else out

    def _week(self, sg: Signal, at: int | None) -> float | None:
        """The week-ago reference of a team or team×model signal's team (None: none, or not such
        a series; see :meth:`NewSeriesRule.week_ratio`): the team corroboration's and the
        week-ago check of a sustained shift's."""
        rule = self.new_series
        if rule is None or at is None:
            return None
        got = parse_series(sg.series)
        if got is None or got[0] not in (TEAM, TEAM_MODEL):
            return None
        return rule.week_ratio(series_key({k: v for k, v in got[1].items() if k != "model"}), at,
                               self.team_week_shift_h)

    def confirm_shift(self, signals: Sequence[Signal], at: int) -> Sequence[Signal]:
        """The week-ago check of a sustained shift, under either placement: a team or team×model
        series' flagged window whose detector's reason is led by the sustained-shift model
        (``"changepoint: ..."``, :data:`SHIFT_LEAD`) becomes a normal window when its team's last
        hour is under :attr:`shift_week_ratio` times the week-ago reference (the most of the
        same hour and :attr:`team_week_shift_h` hours either side a week before, folded up to
        ``at``, the window's start; :meth:`NewSeriesRule.week_ratio`), unless the engine
        already tracks its alert (an incident that started goes on, and resolves as before).
        That model's baseline is by hour of the day, so the quiet days of a holiday learnt into
        it make the next ordinary weekday a "shift"; against the same hours a week before that
        day is ordinary (docs/detection-log.md, "a sustained shift checked against a week
        before"). Without a reference (the new-series rule off; a team known here for under a
        week and an hour; nothing spent then) nothing is turned normal; other models' flags and
        the new-series rule's signals are not checked (:func:`shift_confirmed`)."""
        engine = self.engine
        out: list[Signal] | None = None
        for i, sg in enumerate(signals):
            if not sg.is_anomaly:
                continue
            lead = sg.explanation.partition(":")[0]
            if lead != SHIFT_LEAD or engine.tracks(engine.key_for(sg.series)):
                continue
            if shift_confirmed(lead, self._week(sg, at), self.shift_week_ratio):
                continue
            if out is None:
                out = list(signals)
            out[i] = dataclasses.replace(sg, is_anomaly=False)
        return signals if out is None else out

    def corroborate(self, signals: Sequence[Signal], team_p: Mapping[str, float],
                    at: int | None = None) -> Sequence[Signal]:
        """The team corroboration, under either placement (the judge beside hands it its team
        series' p-values, :meth:`receive` those the judges sent): a team×model series' flagged
        window whose team series' surprise p-value in the same window is above
        :attr:`team_corroboration_p` becomes a normal window, unless the engine already tracks
        its alert (an incident that started corroborated goes on, and resolves as before). Pages
        go to the team, and an incident on one of its models (a runaway loop, a key leak) moves
        the team's spend too; a bursty team's session that lands on one model's series does not
        (docs/detection-log.md, "corroboration by the team series' surprise"). A team with no
        p-value here (not watched, or no spend in the window) gates nothing; the new-series
        rule's signals are not the judges' and are not gated.

        Where the team has a week-ago reference (``at``: the start of the window, up to which
        the new-series rule has folded the team's spend; :meth:`NewSeriesRule.week_ratio`), a
        p-value above :attr:`team_corroboration_strict_p` corroborates only while the team's
        last hour is at least :attr:`team_week_ratio` times the same hour a week before (or the
        most of it and :attr:`team_week_shift_h` hours either side)
        (:func:`corroborated`); without one (the rule off, a team known here for under a week
        and an hour) the p-value alone decides, as before."""
        limit, strict, ratio = self.team_corroboration_p, self.team_corroboration_strict_p, self.team_week_ratio
        engine = self.engine
        out: list[Signal] | None = None
        for i, sg in enumerate(signals):
            if not sg.is_anomaly:
                continue
            p = _team_of(sg, team_p)
            if p is None or engine.tracks(engine.key_for(sg.series)):
                continue
            week = self._week(sg, at) if strict > 0 and limit >= p > strict else None
            if corroborated(p, limit, strict, ratio, week):
                continue
            if out is None:
                out = list(signals)
            out[i] = dataclasses.replace(sg, is_anomaly=False)
        return signals if out is None else out

    def apply_spend(
        self, spend: Iterable[SpendRow], wm: float | None, ledger: BudgetLedger | None, mix: MixWatch | None,
        out: OrgOutput, *, wall: float | None = None,
    ) -> None:
        """Feed one message's spend rows to the org's budget ledger (its crossings and the
        decisions due at the watermark ``wm``) and to its mix watch, into ``out``.

        ``ledger`` None (or holding no budget) and ``mix`` None leave those parts out. ``wall``:
        when budget crossings are counted (None: ``wm``; :meth:`BudgetLedger.crossings`)."""
        rows = spend if isinstance(spend, list) else list(spend)
        if ledger is not None and ledger.budgets:
            out.budget_events = ledger.judge_step(rows, wm, wall=wall)
            if wm is not None:
                out.budget_skipped = list(ledger.skipped)
                # before the checkpoint, like the outbox: a replay of the message decides the same
                out.decisions = ledger.decisions(wm)
        if mix is not None:
            for series, w, sums, seqs in rows:
                mix.apply_judge_spend(series, w, sums, seqs)

    def _seen(self, q: int, seq: int, part: int) -> bool:
        """Whether judge partition ``q``'s verdicts (``seq``, ``part``) were applied before;
        if not, they count as applied from now."""
        last = self.applied.get(q)
        if last is not None and (seq < last or (seq == last and part <= self.applied_part.get(q, 0))):
            return True
        self.applied[q] = seq
        if part:
            self.applied_part[q] = part
        else:
            self.applied_part.pop(q, None)
        self._dirty.add("orgmeta")
        return False

    def receive(
        self, v: Verdicts, ledger: BudgetLedger | None = None, mix: MixWatch | None = None, *,
        wall: float | None = None,
    ) -> OrgOutput:
        """One verdicts message from judge partition ``v.judge``: its signals wait for their
        window to be final on every judge partition, its spend goes to the ledger and the mix
        watch at the merged watermark. A (judge partition, seq) applied before changes nothing."""
        out = OrgOutput()
        q = v.judge
        if v.seq >= 0 and self._seen(q, v.seq, v.part):
            out.duplicate = True
            return out
        if q not in self.judge_wm:
            self.judge_wm[q] = None
            self._dirty.add("orgmeta")
        if v.rebased:
            self._marked(v.rebased, out)
        done = self.done_until
        for wv in v.windows:
            if done is not None and wv.start < done:
                # Cannot happen while judges keep to their watermarks; said, not silently dropped.
                out.late += len(wv.signals)
                if wv.signals:
                    log.error("org partition %d: %d signals of window %d from judge partition %d after it was "
                              "stepped (at %d); not stepped", self.partition, len(wv.signals), wv.start, q, done)
                continue
            got = self.pending.get(wv.start)
            if got is None:
                self.pending[wv.start] = (wv.end, list(wv.signals))
            else:
                got[1].extend(wv.signals)
            if wv.signals:  # an empty window is not written (see _written)
                self._dirty.add(f"orgsig|{wv.start}")
        self._hold_rows(v, done)
        self._hold_expected(v, done)
        prev = self.judge_wm[q]
        if v.watermark is not None and (prev is None or v.watermark > prev):
            self.judge_wm[q] = v.watermark
            self._dirty.add("orgmeta")
        wm = self.watermark()
        if wm is not None and self.pending:
            for start in sorted(w for w, (end, _) in self.pending.items() if end <= wm):
                end, signals = self.pending.pop(start)
                signals = self._after_rebase(start, signals, out)
                signals = self._with_adopted(start, end, signals)
                self.step_window(end, signals, out, self.pending_rows.pop(start, ()),
                                 self.pending_expected.pop(start, None), self.pending_team_p.pop(start, None))
                out.windows_stepped += 1
                self.done_until = end
                if start in self._written:  # its record goes
                    self._dirty.add(f"orgsig|{start}")
                else:  # never written: nothing to delete
                    self._dirty.discard(f"orgsig|{start}")
                self._dirty.add("orgmeta")
        self._rebased_done(out)
        self.apply_spend(v.spend, wm, ledger, None, out, wall=wall)
        if mix is not None:
            self._mix_final(v.spend, wm, mix)
        return out

    # -- a new normal answered while windows are in flight ------------------------------
    def await_rebase(self, series: Iterable[str], answer: str, at: float) -> None:
        """On-call answered "expected, new normal" (answer id ``answer``, at event time ``at``)
        for ``series``, whose alerts this stage has just resolved; the detector parts are on
        their way to the series' judge partitions. Until a judge's
        :class:`~streams.org.verdicts.RebaseMark` of this answer comes back, that series'
        flagged signals are held back (judged with the old baseline, they would raise the alert
        again: a second page for an incident on-call closed), then those of the windows it
        judged before the rebase. A mark that does not come within ``rebase_wait_s`` of event
        time is given up on (:attr:`OrgOutput.expired`, logged). Only for an org stage apart
        from its judges: beside them, the answer rebases the detector in the same step."""
        for s in series:
            r = self.rebasing.get(s)
            if r is not None and r.answer == answer:
                r.asked = True  # its mark came first (a replay after a crash): already known
            else:
                self.rebasing[s] = Rebasing(answer, float(at))
            self._dirty.add(f"rebasing|{s}")

    def cancel_rebase(self, series: str, answer: str) -> bool:
        """Stop waiting for ``series``' rebase mark of ``answer``: its detector part did not
        reach the feedback topic, so no mark will come, and waiting out ``rebase_wait_s`` would
        hold back every flagged window of the series for an hour (a real spike unpaged). Its
        flagged windows count again at once. Returns whether a wait was cancelled (not when a
        mark of it came already: a replay after a crash had sent the part before)."""
        r = self.rebasing.get(series)
        if r is None or r.answer != answer or r.marked:
            return False
        del self.rebasing[series]
        self._dirty.add(f"rebasing|{series}")
        return True

    def _marked(self, marks: Iterable[RebaseMark], out: OrgOutput) -> None:
        """A judge's rebase marks: each series' windows from ``mark.from_window`` on count again."""
        for mark in marks:
            self._mark(mark, out)

    def _mark(self, mark: RebaseMark, out: OrgOutput) -> None:
        r = self.rebasing.get(mark.series)
        if r is not None and r.answer == mark.answer:
            out.marks += 1
        elif r is None or not r.asked or r.marked:
            # no answer waiting for it here (yet): kept a while, in case the answer is applied
            # again after it (a crash put this stage back before the answer)
            at = self.done_until if self.done_until is not None else mark.from_window  # event time now
            r = self.rebasing[mark.series] = Rebasing(mark.answer, float(at or 0), asked=False)
            out.marks_unasked += 1
        else:  # the mark of an earlier answer: this one's rebase has not reached the judge yet
            log.info("org partition %d: a rebase mark of %s for answer %s while answer %s waits for its own",
                     self.partition, mark.series, mark.answer, r.answer)
            return
        r.marked, r.from_window = True, mark.from_window
        self._dirty.add(f"rebasing|{mark.series}")

    def _after_rebase(self, start: int, signals: list[Signal], out: OrgOutput) -> list[Signal]:
        """The signals of the window ``start`` without the flagged ones judged before their
        series' rebase (:meth:`await_rebase`): as if the window were normal for that series."""
        rebasing = self.rebasing
        if not rebasing:
            return signals
        kept = []
        for sg in signals:
            r = rebasing.get(sg.series) if sg.is_anomaly else None
            if r is not None and r.holds(start):
                out.before_rebase += 1
                log.info("org partition %d: %s's flagged window %d held back: judged before the new normal "
                         "answered (%s) reached its judge", self.partition, sg.series, start, r.answer)
                continue
            kept.append(sg)
        return kept

    def _rebased_done(self, out: OrgOutput) -> None:
        """Forget the series whose windows before the rebase are all stepped, and give up on
        those whose mark did not come within ``rebase_wait_s`` of event time."""
        done = self.done_until
        if done is None or not self.rebasing:
            return
        for s, r in list(self.rebasing.items()):
            if r.asked and r.marked and (r.from_window is None or r.from_window <= done):
                pass  # every window judged before the rebase is stepped
            elif done - r.at < self.rebase_wait_s:
                continue
            elif r.asked and not r.marked:
                out.expired.append(s)
                log.warning("org partition %d: no rebase mark for %s from its judge %.0f s of event time after "
                            "on-call's new normal (answer %s); its flagged windows count again", self.partition, s,
                            done - r.at, r.answer)
            del self.rebasing[s]
            self._dirty.add(f"rebasing|{s}")

    def adopt(self, items: Iterable[tuple[str, Any]]) -> list[str]:
        """Take the alert and group states of ``items`` (the org placement's judge table records
        of this partition: ``alert|<key>``, ``group|<id>``) as this stage's own, once, on a
        switch to the series placement: an incident open at the pager then resolves here, with
        its key, rather than never (or paging again). Returns the record keys taken; they are
        written with the next :meth:`checkpoint`."""
        took = []
        for key, value in items:
            kind, _, rest = key.partition("|")
            if value is None or kind not in ("alert", "group"):
                continue
            if kind == "alert":
                self.engine.load_state(rest, value)
                self.adopted.add(rest)
            else:
                self.engine.load_group_state(rest, value)
            self._dirty.add(key)
            took.append(key)
        if took:
            self._dirty.add("orgmeta")
        return took

    def _with_adopted(self, start: int, end: int, signals: list[Signal]) -> list[Signal]:
        """``signals`` of a final window, plus a normal one for each adopted alert without a
        signal in it (see :attr:`adopted`); adopted alerts that resolved are let go."""
        if not self.adopted:
            return signals
        engine = self.engine
        have = {engine.key_for(sg.series) for sg in signals}
        extra = []
        for key in sorted(self.adopted):
            st = engine.state_for(key)
            if st is None:
                self.adopted.discard(key)
                self._dirty.add("orgmeta")
            elif key not in have:
                extra.append(Signal(series=st["series"], labels=dict(st.get("labels") or {}), window_start=float(start),
                                    window_end=float(end), observed_usd=0.0, expected_usd=0.0, is_anomaly=False))
        return [*signals, *extra] if extra else signals

    def _hold_rows(self, v: Verdicts, done: int | None) -> None:
        """The new-series rule's rows of the windows ``v`` judged (as beside the judge: a late
        partial's spend counts in budgets, not in the rule), held until their window is final."""
        rule = self.new_series
        if rule is None or not v.spend:
            return
        judged = {wv.start for wv in v.windows if done is None or wv.start >= done}
        for series, w, sums, _ in v.spend:
            if w in judged and rule.wants(series):
                self.pending_rows.setdefault(w, []).append((series, int(sums[0]), int(sums[5])))
                self._dirty.add(f"orgsig|{w}")  # the window's record carries its rows

    def _hold_expected(self, v: Verdicts, done: int | None) -> None:
        """The team series' expected spends and p-values of the windows ``v`` judged, for the
        team-scale gate (:meth:`team_scale`), the team corroboration (:meth:`corroborate`) and
        the team burst rule (which reads both, whatever the gates), held until their window is
        final here."""
        rule = self.new_series
        scale, corroborate = reads_team_numbers(self.team_scale_minutes, self.team_corroboration_p,
                                                None if rule is None else rule.settings)
        for wv in v.windows:
            if done is not None and wv.start < done:
                continue
            if wv.expected and scale:
                self.pending_expected.setdefault(wv.start, {}).update(wv.expected)
                self._dirty.add(f"orgsig|{wv.start}")  # the window's record carries them
            if wv.team_p and corroborate:
                self.pending_team_p.setdefault(wv.start, {}).update(wv.team_p)
                self._dirty.add(f"orgsig|{wv.start}")

    def _mix_final(self, spend: Iterable[SpendRow], wm: float | None, mix: MixWatch) -> None:
        """Hold the mix's rows (the default org's team×model series) of windows not final yet,
        and give the mix watch those final at the merged watermark ``wm``."""
        held, dirty = self.mix_held, self._dirty
        for row in spend:
            got = parse_series(row[0])
            if got is not None and got[0] is TEAM_MODEL and "org" not in got[1]:
                held.setdefault(row[1], []).append(row)
                dirty.add(f"orgmix|{row[1]}")
        if wm is None or not held:
            return
        W = self.window_seconds
        for w in sorted(w for w in held if w + W <= wm):
            for series, ws, sums, seqs in held.pop(w):
                mix.apply_judge_spend(series, ws, sums, seqs)
            dirty.add(f"orgmix|{w}")

    def watermark(self) -> float | None:
        """Min over the judge partitions' watermarks; None until every one of the ``n_judges``
        has sent one, so that a slow starter is not run over. Never goes back."""
        if len(self.judge_wm) < self.n_judges:
            return None
        marks = list(self.judge_wm.values())
        if any(m is None for m in marks):
            return None
        wm = min(m for m in marks if m is not None)
        return wm if self.done_until is None else max(wm, float(self.done_until))

    def alerts_changed(self, keys: Iterable[str], groups: Iterable[str] = ()) -> None:
        """Alert (and group) states changed outside a window (an answer from on-call): written
        with the next checkpoint."""
        self._dirty.update(f"alert|{k}" for k in keys)
        self._dirty.update(f"group|{g}" for g in groups)

    # -- persistence --------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Key -> value changes since the last checkpoint (None deletes the key): the alert and
        group states (``alert|<key>``, ``group|<id>``: the judge table's keys since before the
        org stage had a name), and, when merging judge partitions, ``orgmeta`` (their
        watermarks and seqs), ``orgsig|<window start>`` (the signals of a window not final yet; none for a window without) and
        ``orgmix|<window start>`` (its team×model spend rows, held for the mix watch) and
        ``rebasing|<series>`` (a new normal waiting for its judge's rebase mark)."""
        changes: dict[str, Any] = {}
        for key in self._dirty:
            kind, _, rest = key.partition("|")
            if kind == "alert":
                changes[key] = self.engine.state_for(rest)
            elif kind == "group":
                changes[key] = self.engine.group_state_for(rest)
            elif kind == "orgmeta":
                changes[key] = {
                    "judge_wm": {str(k): v for k, v in self.judge_wm.items()},
                    "applied": {str(k): v for k, v in self.applied.items()},
                    **({"applied_part": {str(k): v for k, v in self.applied_part.items()}} if self.applied_part else {}),
                    "n_judges": self.n_judges,
                    "done_until": self.done_until,
                    **({"adopted": sorted(k for k in self.adopted if self.engine.tracks(k))} if self.adopted else {}),
                }
            elif kind == "orgsig":
                got = self.pending.get(int(rest))
                if got is None:
                    changes[key] = None
                    self._written.discard(int(rest))
                else:
                    rec = changes[key] = [got[0], [s.to_dict() for s in got[1]]]
                    rows = self.pending_rows.get(int(rest))
                    exp = self.pending_expected.get(int(rest))
                    tp = self.pending_team_p.get(int(rest))
                    if rows or exp or tp:
                        rec.append([list(r) for r in rows or ()])
                    if exp or tp:
                        rec.append(dict(exp or {}))
                    if tp:
                        rec.append(dict(tp))
                    self._written.add(int(rest))
            elif kind == "newser":
                changes[key] = None if self.new_series is None else self.new_series.get_state(rest)
            elif kind == "newserw":
                changes[key] = None if self.new_series is None else self.new_series.get_week(rest)
            elif kind == "orgmix":
                held = self.mix_held.get(int(rest))
                changes[key] = None if held is None else [
                    [series, w, list(sums), {str(k): v for k, v in seqs.items()}] for series, w, sums, seqs in held]
            elif kind == "rebasing":
                r = self.rebasing.get(rest)
                changes[key] = None if r is None else r.to_state()
        self._dirty.clear()
        return changes

    def restore(self, items: Iterable[tuple[str, Any]]) -> None:
        """Take back what :meth:`checkpoint` wrote; keys of other kinds are left alone (the
        judge's, when both share a table)."""
        for key, value in items:
            self.restore_item(key, value)

    def restore_item(self, key: str, value: Any) -> bool:
        """Take back one checkpoint record; False: not an org stage record."""
        kind, _, rest = key.partition("|")
        if kind not in ORG_KINDS:
            return False
        if value is None:
            return True
        if kind == "alert":
            self.engine.load_state(rest, value)
        elif kind == "group":
            self.engine.load_group_state(rest, value)
        elif kind == "orgmeta":
            self.judge_wm = {int(k): (None if v is None else float(v)) for k, v in value["judge_wm"].items()}
            self.applied = {int(k): int(v) for k, v in value["applied"].items()}
            self.applied_part = {int(k): int(v) for k, v in (value.get("applied_part") or {}).items()}
            self.n_judges = max(self.n_judges, int(value["n_judges"]))
            self.done_until = None if value["done_until"] is None else int(value["done_until"])
            self.adopted = {str(k) for k in value.get("adopted") or ()}
        elif kind == "newser":
            if self.new_series is not None:  # the rule turned off: its records are left alone
                self.new_series.set_state(rest, value)
        elif kind == "newserw":
            if self.new_series is not None:
                self.new_series.set_week(rest, value)
        elif kind == "rebasing":
            self.rebasing[rest] = Rebasing.from_state(value)
        elif kind == "orgmix":
            self.mix_held[int(rest)] = [(str(series), int(w), [int(x) for x in sums], {int(k): int(v) for k, v in seqs.items()})
                                        for series, w, sums, seqs in value]
        else:  # orgsig ([end, signals] before the new-series rule, [end, signals, rows] with it,
            # [end, signals, rows, team expected spends] with the team-scale gate, and the team
            # p-values fifth with the team corroboration)
            self.pending[int(rest)] = (int(value[0]), [Signal.from_dict(d) for d in value[1]])
            if len(value) > 2 and value[2]:
                self.pending_rows[int(rest)] = [(str(r[0]), int(r[1]), int(r[2])) for r in value[2]]
            if len(value) > 3 and value[3]:
                self.pending_expected[int(rest)] = {str(k): float(v) for k, v in value[3].items()}
            if len(value) > 4 and value[4]:
                self.pending_team_p[int(rest)] = {str(k): float(v) for k, v in value[4].items()}
            self._written.add(int(rest))
        return True
