"""The judge core: merges window partials from every source partition, runs the detector of
each watched series on every closed window, and hands the verdicts to the org stage.

Pure Python (no Faust): the worker keeps one :class:`JudgeCore` per partition of the windows
topic; the offline replay drives the same class with one source.

What is one series' alone is here (the merge of partials, the detector, the contributor mix, the
exact spend, the recent windows); what needs the org's series together (the alert engine's window
step, budgets, the mix share) is the org stage's (:class:`streams.org.core.OrgCore`), which gets a
:class:`~streams.org.verdicts.WindowVerdict` per window judged (``JudgeOutput.windows``). Every
series of an org is judged on the org's partition today, so the org stage runs beside the judge
(:attr:`JudgeCore.org`), stepped window by window.

A window is final on this partition when every source partition's watermark
(``closed_until``) has passed its end. Windows in which a known series had no traffic are
judged as zero spend, which is how a spike that stops gets resolved. Partials are stored per
source so that a source which re-sends after a crash replaces, not adds.

Parking (:attr:`JudgeCore.park`): a window without spend can never be an anomaly
(:attr:`detectors.base.Detector.quiet_at_zero`), so a series with none and no alert tracked
needs no work in it: its empty windows are applied when it next spends (or is read:
:meth:`JudgeCore.settle`), in order, with the same verdicts. Idle at a checkpoint, it is
*parked*: its detector is dropped and only its checkpoint record is kept, packed -- the same
bytes the ``judge`` table's local data holds (:attr:`JudgeCore.packed_out`), one copy.
"""

from __future__ import annotations

import logging
import zlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from alerts import AlertEngine, Notification, Signal
from alerts.engine import clearly_normal
from detectors import Detector, Verdict
from streams.common.dimensions import TEAM, parse_series
from streams.common.packing import pack, pack_live, unpack, unpack_live
from streams.common.spend import SPEND_TAG, SeriesSpend, load_records
from streams.ingest.windows import NANO, Partial
from streams.judge.contrib import ContributorMix
from streams.judge.raising import DEFAULT_HALF_LIFE_S, SeriesRaise
from streams.judge.recent import RecentWindows
from streams.org.core import OrgCore, reads_team_numbers
from streams.org.newseries import NewSeriesRule, NewSeriesSettings, TeamBurstSettings, WeekOverWeekSettings
from streams.org.verdicts import RebaseMark, WindowVerdict

log = logging.getLogger("tokenpulse.judge")

_ZERO_SUMS = [0, 0, 0, 0, 0, 0]  # read-only: a window without traffic
_NO_CONTRIB: dict[str, int] = {}


class SeriesInfo:
    """What the judge keeps of a watched series besides its detector, spend and ``recent``
    windows. Slotted, and its labels not held when they are those its name says
    (:func:`~streams.common.dimensions.parse_series`: every series the ingest names): a user
    series' label dict and value string were ~240 bytes of the ~1 KiB this held per series."""

    __slots__ = ("name", "_labels", "last_end", "mix", "peak_usd", "peak_end", "hold_end", "raised", "phase",
                 "team", "idle_from")

    def __init__(self, labels: dict[str, str], last_end: int = 0, mix: ContributorMix | None = None,
                 peak_usd: float = 0.0, peak_end: int = 0, hold_end: int = 0, raised: SeriesRaise | None = None,
                 name: str = "") -> None:
        # the series' key: its labels are read from it when they are the ones it says
        self.name = name
        got = parse_series(name) if name else None
        self._labels: dict[str, str] | None = None if got is not None and got[1] == labels else labels
        self.last_end = last_end  # end of the last window judged for this series
        # each contributor's usual share of the spend, to name who drives an excess (persisted);
        # None while the series is parked: its parked record holds it (JudgeCore._park), and
        # waking it takes it back (~300 bytes per parked series)
        self.mix: ContributorMix | None = ContributorMix() if mix is None else mix
        # the peak excess of the last run of flagged windows (what a "not an anomaly" answer
        # raises the floor from) and the end of that run's last window (persisted)
        self.peak_usd = peak_usd
        self.peak_end = peak_end
        # the end of the last window after a flagged run that held its alert open (hysteresis,
        # alerts.engine.clearly_normal): a judge apart keeps sending windows R after it
        # (persisted: a judge restarted mid-hold would stop sending them and the alert would
        # never resolve)
        self.hold_end = hold_end
        # on-call's "not an anomaly" answers: the floor an incident's excess must reach (persisted)
        self.raised = raised
        # the window (its end // window seconds, modulo JudgeCore.state_every) whose checkpoint
        # writes this series' state: the series' writes spread evenly over the windows
        # (derived at its first window judged; -1: not yet)
        self.phase = -1
        # a team series (the team-scale gate's basis: its expected spend goes to the org stage; derived)
        self.team = False
        # Idle (parking): the start of its first window not applied yet, all of them empty
        # since (0: none pending). Its detector is live until the next checkpoint parks it.
        self.idle_from = 0

    @property
    def labels(self) -> dict[str, str]:
        """The series' labels (a dict of its own, as they were given, or read from its name)."""
        if self._labels is not None:
            return self._labels
        got = parse_series(self.name)
        assert got is not None  # (checked when it was made)
        return got[1]


@dataclass
class JudgeOutput:
    # (series, window start, sums, {source: message seq}) -- the seqs make spend updates
    # idempotent per key when a message is redelivered
    spend: list[tuple[str, int, list[int], dict[int, int]]] = field(default_factory=list)
    notifications: list[Notification] = field(default_factory=list)
    windows_judged: int = 0
    # partials of windows already judged (or sent late by their source): spend only, the
    # detectors never see them (the worker counts them: judge_late_partials_total)
    late_partials: int = 0
    skipped: list[str] = field(default_factory=list)  # why decided notifications were held back
    # triggers the org alert inhibited, once per run of windows (AlertEngine.inhibited)
    inhibited: list[Notification] = field(default_factory=list)
    # each window judged, with the signals handed to the org stage: what a verdicts message carries
    windows: list[WindowVerdict] = field(default_factory=list)
    # the rebases applied since the last message (:meth:`JudgeCore.rebase` with a mark), for the
    # org stage apart: the verdicts of this message carry them
    rebased: list[RebaseMark] = field(default_factory=list)
    # flagged team×model windows the team-scale gate turned normal (the org stage beside;
    # OrgCore.team_scale; the worker counts them: team_scale_gated_total)
    team_scaled: int = 0
    # flagged team×model windows the team corroboration turned normal (the org stage beside;
    # OrgCore.corroborate; counted as team_uncorroborated_total)
    uncorroborated: int = 0
    # flagged team and team×model windows the week-ago check of a sustained shift turned normal
    # (the org stage beside; OrgCore.confirm_shift; counted as shift_unconfirmed_total)
    shift_unconfirmed: int = 0


def _merge(per_src: dict[int, Partial]) -> tuple[list[int], dict[str, int]]:
    """Sum the partials of one series and window (read-only results: callers copy to keep)."""
    if len(per_src) == 1:
        (only,) = per_src.values()
        return only.sums, only.contributors
    sums = [0, 0, 0, 0, 0, 0]
    contrib: dict[str, int] = {}
    for p in per_src.values():
        for i in range(6):
            sums[i] += p.sums[i]
        for k, v in p.contributors.items():
            contrib[k] = contrib.get(k, 0) + v
    return sums, contrib


def _signal(series: str, info: SeriesInfo, w: int, end: int, observed: float, verdict: Verdict, is_anomaly: bool,
            contrib: dict[str, int]) -> Signal:
    """The engine's signal for a series' window that is flagged or of an alert it tracks: the
    verdict's figures and the window's top contributors by excess."""
    assert info.mix is not None  # (live: woken before it was judged)
    return Signal(
        series=series,
        labels=info.labels,
        window_start=float(w),
        window_end=float(end),
        observed_usd=observed,
        expected_usd=float(verdict.expected),
        upper_usd=float(verdict.upper),
        score=float(verdict.score),
        is_anomaly=is_anomaly,
        top_contributors=info.mix.excess(contrib, float(verdict.expected)),
        detector=verdict.detector,
        impact_usd=verdict.impact,
        explanation=verdict.reason,
        mean_expected_usd=None if verdict.mean_expected is None else float(verdict.mean_expected),
    )


@dataclass
class JudgeCore:
    partition: int
    window_seconds: int
    make_detector: Callable[[], Detector]
    # the alert engine of the org stage beside this judge (:attr:`org`)
    engine: AlertEngine
    # per-series detectors (policy overrides by label); None: make_detector for every series
    detector_for: Callable[[dict[str, str]], Detector] | None = None
    max_fill_windows: int = 7 * 24 * 60
    # Whether this partition judges a series (None: every series it has). Restored series it
    # does not judge (judged here before the series moved: streams.common.partitioning) are kept
    # only until their alert has resolved, then dropped with their state.
    owns: Callable[[str], bool] | None = None
    _foreign: set[str] = field(default_factory=set)

    src_wm: dict[int, int | None] = field(default_factory=dict)  # None: source is idle
    n_src: int = 1
    done_until: int | None = None
    pending: dict[int, dict[str, dict[int, Partial]]] = field(default_factory=dict)
    series: dict[str, SeriesInfo] = field(default_factory=dict)
    detectors: dict[str, Detector] = field(default_factory=dict)
    # exact spend per series, under spend_key(series): its windows, rolled hours and days
    # (streams.common.spend; the spend table's changelog keeps a record per window and day)
    spend: dict[str, SeriesSpend] = field(default_factory=dict)
    _dirty: set[str] = field(default_factory=set)
    _dirty_spend: set[tuple[str, int]] = field(default_factory=set)  # (spend key, window start)
    # the keys of the changelog records the last restore read into ``spend``
    spend_loaded: list[str] = field(default_factory=list)
    # the last judged windows per series, for the API (not persisted)
    recent: dict[str, RecentWindows] = field(default_factory=dict)
    recent_len: int = 240
    # Offline replay turns off what only the worker's API and spend table read: the
    # ``recent`` rings and the ``spend`` records (``JudgeOutput.spend`` is returned either way).
    keep_recent: bool = True
    keep_spend: bool = True
    # how fast a floor "not an anomaly" answers raised comes down without another answer: it
    # halves every this many seconds of event time (policy detector.feedback; 0: never)
    raise_half_life_s: float = DEFAULT_HALF_LIFE_S
    # A series' detector state (with its contributor mix) is checkpointed with one window in
    # every ``state_every`` (each series in its own phase, so that the writes spread evenly),
    # and with every window flagged or judged while its alert is tracked; 1: with every window.
    # A crash loses at most the last ``state_every - 1`` windows of a series' learning: its
    # detector restarts from the state last written and does not see those windows again.
    # A rebalance loses as much: a revoked partition writes nothing (streams.worker.judging).
    state_every: int = 1
    # 0: the org stage runs beside this judge (today's placement) and says which series' alerts
    # it tracks. R > 0: the org stage is on another partition (each series judged on the
    # partition its name hashes to); the judge does not step it, and takes a series' alert as
    # tracked for the R windows after its last flagged one -- the policy's resolve_after_windows:
    # a firing alert resolves within them, so the engine gets every window it needs.
    local_tracking: int = 0
    # The org stage's ``new-series`` rule beside this judge (None: off; streams.org.newseries)
    new_series: NewSeriesSettings | None = None
    # The org stage's team-scale gate (policy detector.team_scale_minutes; 0: off). On, each
    # window's verdict carries the team series' expected spend (WindowVerdict.expected), for
    # the org stage beside this judge or apart (OrgCore.team_scale); so does the team burst
    # rule on, whatever the gate (sends_team_numbers).
    team_scale_minutes: float = 0.0
    # The org stage's team corroboration (policy detector.team_corroboration_p; 0: off). On,
    # each window's verdict carries the team series' surprise p (WindowVerdict.team_p), for
    # the org stage beside this judge or apart (OrgCore.corroborate); so does the team burst
    # rule on, whatever the gate (sends_team_numbers).
    team_corroboration_p: float = 0.0
    # ... and its week-ago reference (OrgCore.team_corroboration_strict_p, team_week_ratio; 0: off)
    team_corroboration_strict_p: float = 0.0
    team_week_ratio: float = 0.0
    team_week_shift_h: int = 0
    # The org stage's week-ago check of a sustained shift (OrgCore.shift_week_ratio; 0: off)
    shift_week_ratio: float = 0.0
    # Rebases applied for an org stage apart (:meth:`rebase` with ``mark``), not yet handed to
    # a message's output: series -> (the first window judged with the new baseline, answer id).
    # Checkpointed (``rbmark|<series>``) with the rebased detector, so a crash neither loses
    # one nor sends it twice under two seqs.
    rebase_marks: dict[str, tuple[int | None, str]] = field(default_factory=dict)
    # Parking (see the module's doc): a series without spend in a window and no alert tracked is
    # not stepped; its empty windows wait (SeriesInfo.idle_from) until it spends or is read,
    # and a checkpoint parks it: ``parked`` then holds its checkpoint record, packed, in place
    # of its detector. Only for detectors that are ``quiet_at_zero``.
    park: bool = False
    parked: dict[str, bytes] = field(default_factory=dict)
    # the packed records of the series the last checkpoint parked, by checkpoint key: the
    # worker keeps these very bytes in the judge table's local data (persist(..., packed=blob))
    packed_out: dict[str, bytes] = field(default_factory=dict)
    _idle: set[str] = field(default_factory=set)  # idle series whose detector is still live
    # the series with an ``idle|`` record on the changelog (their empty windows since their
    # det record: [from, to], to None while parked; deleted with the next det record)
    # (a tuple: the checkpoint writes this very object, which the judge table's local data then
    # holds, one object for both)
    _idle_recs: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    _quiet_class: bool | None = None
    _org: OrgCore | None = field(default=None, init=False, repr=False, compare=False)

    @property
    def org(self) -> OrgCore:
        """The org stage beside this judge, stepped with each window it judges, holding the
        alert states (today's placement: the judge partition of every series of an org is the
        org's own). Its engine is :attr:`engine`."""
        org = self._org
        if org is None:
            org = self._org = OrgCore(self.partition, self.window_seconds, self.engine,
                                      new_series=None if self.new_series is None else NewSeriesRule(self.new_series),
                                      team_scale_minutes=self.team_scale_minutes,
                                      team_corroboration_p=self.team_corroboration_p,
                                      team_corroboration_strict_p=self.team_corroboration_strict_p,
                                      team_week_ratio=self.team_week_ratio,
                                      team_week_shift_h=self.team_week_shift_h,
                                      shift_week_ratio=self.shift_week_ratio)
        elif org.engine is not self.engine:  # the engine was replaced: the org stage follows
            org.engine = self.engine
        return org

    def sends_team_numbers(self) -> tuple[bool, bool]:
        """Whether each window's verdict carries the team series' expected spends
        (:attr:`WindowVerdict.expected`) and surprise p-values (:attr:`WindowVerdict.team_p`):
        whenever one of the org stage's rules reads them, beside this judge or apart
        (:func:`~streams.org.core.reads_team_numbers`)."""
        return reads_team_numbers(self.team_scale_minutes, self.team_corroboration_p, self.new_series)

    def receive(
        self, src: int, n_src: int, closed_until: int | None, partials: Iterable[Partial], seq: int = -1,
        carries_watermark: bool = True,
    ) -> JudgeOutput:
        """One message from source ``src``. ``closed_until`` None with ``carries_watermark``
        means the source is idle (caught up, no events yet); a message that is one chunk of
        a larger emission carries no watermark at all and says nothing about idleness."""
        out = JudgeOutput()
        if self.rebase_marks:
            # applied before any window of this message is judged: its verdicts say so
            for series, (w0, answer) in self.rebase_marks.items():
                out.rebased.append(RebaseMark(series, w0, answer))
                self._dirty.add(f"rbmark|{series}")
            self.rebase_marks.clear()
        self.n_src = max(self.n_src, n_src)
        done = self.done_until
        pending = self.pending
        spend = out.spend
        last_w: int | None = None
        by_series: dict[str, dict[int, Partial]] = {}
        for p in partials:
            p.seq = seq
            w = p.window_start
            if p.late or (done is not None and w < done):
                # The window was already judged: its spend still counts, exactly, but the
                # detector does not see it twice.
                spend.append((p.series, w, list(p.sums), {src: seq}))
                out.late_partials += 1
                continue
            if w != last_w:  # partials come grouped by window: one lookup per window
                by_series = pending.get(w)  # type: ignore[assignment]
                if by_series is None:
                    by_series = pending[w] = {}
                self._dirty.add(f"pend|{src}|{w}")
                last_w = w
            per_src = by_series.get(p.series)
            if per_src is None:
                by_series[p.series] = {src: p}
            else:
                per_src[src] = p
        if carries_watermark:
            if src not in self.src_wm:
                self.src_wm[src] = None
                self._dirty.add("meta")
            prev = self.src_wm[src]
            if closed_until is not None and (prev is None or closed_until > prev):
                self.src_wm[src] = closed_until
                self._dirty.add("meta")
            self._finalise(out)
        if self.keep_spend:
            apply = self._apply_spend
            for series, w, sums, seqs in out.spend:
                apply(series, w, sums, seqs)
        return out

    def _apply_spend(self, series: str, w: int, sums: list[int], seqs: dict[int, int]) -> None:
        """Add one contribution to a series' window, once per (source, message seq)
        (:meth:`SeriesSpend.add_window`)."""
        key = f"{series}|{SPEND_TAG}"
        book = self.spend.get(key)
        if book is None:
            book = self.spend[key] = SeriesSpend()
        if book.add_window(w, sums, seqs):
            self._dirty_spend.add((key, w))

    def watermark(self) -> int | None:
        """Min over the sources' watermarks, leaving idle sources out (as Flink does); None
        until every source has been heard from, so a slow starter is not run over."""
        if len(self.src_wm) < self.n_src:
            return None
        active = [w for w in self.src_wm.values() if w is not None]
        if not active:
            return None
        wm = min(active)
        # never go back: a source that wakes up behind the others is late, not a reason to
        # judge windows twice
        return max(wm, self.done_until) if self.done_until is not None else wm

    def _finalise(self, out: JudgeOutput) -> None:
        wm = self.watermark()
        if wm is None:
            return
        W = self.window_seconds
        ready = sorted(w for w in self.pending if w + W <= wm)
        if self.done_until is None:
            if not ready:
                return
            self.done_until = ready[0]
        if wm <= self.done_until:
            return
        start = self.done_until
        if (wm - start) // W > self.max_fill_windows:
            # A long silence (or a first start far behind): do not replay weeks of zeros.
            start = max(start, (ready[0] if ready else wm - W * self.max_fill_windows))
            if start > self.done_until:  # the idle series' empty windows before the gap, not in it
                self.settle()
                for info in self.series.values():
                    if info.idle_from:
                        info.idle_from = start
        w = start
        while w + W <= wm:
            self._judge_window(w, out)
            out.windows_judged += 1
            w += W
        self.done_until = w
        self._dirty.add("meta")

    def _judge_window(self, w: int, out: JudgeOutput) -> None:  # noqa: C901 - per window: merge, detect, judge in one pass (the judge's hot path)
        W = self.window_seconds
        end = w + W
        spend = out.spend
        first_row = len(spend)  # this window's spend rows follow: the org stage's new-series rule reads them
        by_series = self._take_pending(w, spend)
        dirty = self._dirty
        org = self.org
        tracks = org.tracks
        key_for = org.key_for
        local = self.local_tracking * W
        detectors = self.detectors
        keep_recent = self.keep_recent
        every = self.state_every
        turn = end // W % every if every > 1 else 0
        ts_end = float(end)
        # The engine takes the window's signals in one step (the org alert's decision before
        # its teams', the members of a group together): collected here, handed to the org below.
        signals: list[Signal] = []
        # the team series' expected spends and p-values go to the org stage for whichever of its
        # rules reads them: the team-scale gate, the team corroboration, the team burst rule
        team_scale, corroborate = self.sends_team_numbers()
        team_expected: dict[str, float] = {}
        park = self.park
        idle = self._idle
        team_p: dict[str, float] = {}
        for series, info in self.series.items():
            parts = by_series.get(series)
            if info.idle_from:
                if not parts:
                    continue  # idle: this empty window waits with the others
                self._wake(series, info, w)
            elif info.last_end >= end:
                continue  # already judged (a redelivered message)
            if info.phase < 0:
                info.phase = zlib.crc32(series.encode()) % every if every > 1 else 0
                got = parse_series(series)
                info.team = got is not None and got[0] is TEAM
            if parts:
                sums, contrib = _merge(parts)
            else:
                if park and self._quiet(series) and not (
                        end - max(info.peak_end, info.hold_end) <= local if local else tracks(key_for(series))):
                    # nothing to send, nothing to learn but the empty window: it waits
                    info.idle_from = w
                    idle.add(series)
                    continue
                sums, contrib = _ZERO_SUMS, _NO_CONTRIB
            observed = sums[0] / NANO
            verdict = detectors[series].update(ts_end, observed, float(sums[5]))
            info.last_end = end
            if team_scale and info.team and parts:
                team_expected[series] = float(verdict.expected)
            if corroborate and info.team and parts:
                team_p[series] = float(verdict.upward_p)
            if info.phase == turn:
                dirty.add(f"det|{series}")
            if local:
                last = max(info.peak_end, info.hold_end)
                tracked = bool(last) and end - last <= local
                if tracked and not verdict.is_anomaly and not clearly_normal(
                        self.engine.policy, observed, float(verdict.baseline), end - info.peak_end):
                    # the engine neither resolves nor re-fires on it: the R windows start again
                    # (peak_end, the last flagged window, is at or after the engine's last
                    # material one: this holds at least as long as the engine's cap)
                    info.hold_end = end
            else:
                tracked = tracks(key_for(series))
            is_anomaly = bool(verdict.is_anomaly)
            if is_anomaly:
                is_anomaly = self._past_floor(info, w, end, verdict.impact, verdict.excess, tracked)
            if keep_recent:
                rec = self.recent.get(series)
                if rec is None:
                    rec = self.recent[series] = RecentWindows(self.recent_len)
                rec.append(w, observed, float(verdict.expected), float(verdict.upper), float(verdict.score), is_anomaly)
            if not is_anomaly and not tracked:
                # A normal window: it teaches the series' contributor mix. The engine neither
                # starts an alert on a window the detector did not flag nor keeps state for it
                # (tests/streams/judge/test_judge_fast.py holds it to that): no Signal, no top
                # contributors, no call, for nearly every window.
                if parts:
                    assert info.mix is not None  # (live: woken above)
                    info.mix.learn(w, contrib, sums[0])
                continue
            dirty.add(f"det|{series}")  # a flagged window, or one of an alert: its state goes out now
            signals.append(_signal(series, info, w, end, observed, verdict, is_anomaly, contrib))
        out.windows.append(WindowVerdict(w, end, signals, team_expected, team_p))
        if not local:
            # before the next window is judged: which series it sends signals for depends on it
            rows = ([(row[0], row[2][0], row[2][5]) for row in spend[first_row:]]
                    if org.new_series is not None else ())
            org.step_window(end, signals, out, rows, team_expected, team_p)
        if self._foreign:
            self._drop_foreign()

    def _take_pending(self, w: int, spend: list[tuple[str, int, list[int], dict[int, int]]]) -> dict[str, dict[int, Partial]]:
        """Window ``w``'s pending parts by series (taken out of ``pending``): each series' merged
        spend row appended to ``spend``, a detector made for a series seen for the first time,
        and the parts' records and new series marked to be written."""
        by_series = self.pending.pop(w, {})
        dirty = self._dirty
        srcs_seen: set[int] = set()
        for series, per_src in by_series.items():
            if len(per_src) == 1:
                ((src, first),) = per_src.items()
                srcs_seen.add(src)
                spend.append((series, w, first.sums, {src: first.seq}))
            else:
                srcs_seen.update(per_src)
                sums, _ = _merge(per_src)
                spend.append((series, w, sums, {s: p.seq for s, p in per_src.items()}))
                first = next(iter(per_src.values()))
            if first.detected and series not in self.series:
                self.series[series] = SeriesInfo(dict(first.labels), name=series)
                self.detectors[series] = self._new_detector(first.labels)
                dirty.add(f"det|{series}")  # a new series is written at once, whatever its turn
        for src in srcs_seen:
            dirty.add(f"pend|{src}|{w}")
        return by_series

    def _parks(self, labels: dict[str, str]) -> bool:
        """Whether a series' detector would be ``quiet_at_zero`` (every series of a judge has
        a detector of the policy's one class: asked once)."""
        q = self._quiet_class
        if q is None:
            q = self._quiet_class = type(self._new_detector(labels)).quiet_at_zero
        return q

    def _quiet(self, series: str) -> bool:
        """Whether the series' empty windows can wait (its detector is ``quiet_at_zero``)."""
        det = self.detectors.get(series)
        return det is not None and type(det).quiet_at_zero

    def _wake(self, series: str, info: SeriesInfo, upto: int, ring: bool = True) -> Detector:
        """Apply an idle series' waiting empty windows, those before ``upto`` (a window start),
        as :meth:`_judge_window` would have one by one (its detector loaded back first if
        parked); it is live and not idle after. ``ring``: their records go to ``recent``."""
        det = self.detectors.get(series)
        blob = self.parked.pop(series, None)
        if blob is not None:
            det = self.detectors[series] = self._unpark(blob, info)
        assert det is not None
        W = self.window_seconds
        w = info.idle_from
        if w and w < upto:
            rec = None
            if ring and self.keep_recent:
                rec = self.recent.get(series)
                if rec is None:
                    rec = self.recent[series] = RecentWindows(self.recent_len)
            # in one run: the same states as update(end, 0.0, 0.0) window by window (Detector.update_empty)
            starts = range(w, upto, W)
            got_v = det.update_empty([float(s + W) for s in starts])
            for s, (expected, upper, score, flagged) in zip(starts, got_v, strict=True):
                if flagged:  # quiet_at_zero says never: said, as no alert can follow now
                    log.error("judge partition %d: %s: an empty window at %d judged anomalous after it waited",
                              self.partition, series, s)
                if rec is not None:
                    rec.append(s, 0.0, float(expected), float(upper), float(score), False)
            info.last_end = starts[-1] + W
            got = self._idle_recs.get(series)
            if got is not None and got[1] is None:  # the changelog's idle record: up to here, not on
                self._idle_recs[series] = (got[0], upto)
                self._dirty.add(f"idle|{series}")
        info.idle_from = 0
        self._idle.discard(series)
        return det

    def _unpark(self, blob: bytes, info: SeriesInfo) -> Detector:
        """The detector a parked record holds (:func:`pack_live`), or one rebuilt from its
        state (a record restored from the changelog, packed as JSON); the series' contributor
        mix taken back from the record if it was dropped (:meth:`_park`)."""
        got = unpack_live(blob)
        if got is not None:
            rec, det = got
        else:
            rec = unpack(blob)
            det = self._new_detector(info.labels)
            det.load_state(rec["state"])
        if info.mix is None:  # the state it had at its park: a parked series learns no mix
            info.mix = ContributorMix.from_state(rec.get("mix"))
        return det

    def settle(self, series: str | None = None) -> None:
        """Apply the waiting empty windows of ``series`` (None: of every idle series) up to the
        windows judged, so that its detector and ``recent`` windows are as if it had been
        stepped every window (the API before it answers, a rebase). A parked series is loaded
        back; the next checkpoint parks it again."""
        done = self.done_until
        if done is None:
            return
        names = [series] if series is not None else [s for s, i in self.series.items() if i.idle_from]
        for name in names:
            info = self.series.get(name)
            if info is not None and info.idle_from:
                self._wake(name, info, done)
                if self.park and self._quiet(name):  # idle again from here: parked at the next checkpoint
                    info.idle_from = done
                    self._idle.add(name)

    def detector(self, series: str) -> Detector | None:
        """The series' detector, with every window judged applied (:meth:`settle`)."""
        self.settle(series)
        return self.detectors.get(series)

    def _park(self, series: str, info: SeriesInfo) -> dict[str, Any]:
        """The series' checkpoint record; its detector dropped and the record kept packed."""
        rec = self._record(series, info)
        det = self.detectors.pop(series)
        self.parked[series] = self.packed_out[f"det|{series}"] = pack_live(
            {k: v for k, v in rec.items() if k != "state"}, det)
        info.mix = None  # (in the record: taken back on waking)
        self._idle_recs[series] = (info.idle_from, None)
        ring = self.recent.get(series)
        if ring is not None:  # it takes no window until the series wakes: its newest records deflated too
            ring.compact()
        return rec

    def _record(self, series: str, info: SeriesInfo) -> dict[str, Any]:
        """The series' checkpoint record (``det|<series>``); a parked one's with its state
        as parked (what changed of it while parked: on-call's raised floor), packed again."""
        blob = self.parked.get(series)
        det = self.detectors[series] if blob is None else self._unpark(blob, info)
        assert info.mix is not None  # (live, or taken back from the parked record)
        rec = {
            "labels": info.labels,
            "last_end": info.last_end,
            "state": det.to_state(),
            "mix": info.mix.to_state(),
        }
        if info.peak_end:
            rec["peak"] = [info.peak_usd, info.peak_end]
        if info.hold_end:
            rec["hold"] = info.hold_end
        if info.raised is not None:
            rec["raised"] = info.raised.to_state()
        if blob is not None:
            self.parked[series] = self.packed_out[f"det|{series}"] = pack_live(
                {k: v for k, v in rec.items() if k != "state"}, det)
            info.mix = None
        return rec

    def _drop_foreign(self) -> None:
        """Forget restored series another partition judges now, once nothing fires for them."""
        org = self.org
        for series in sorted(self._foreign):
            info = self.series.get(series)
            if info is not None and org.tracks(org.key_for(series)):
                continue  # its alert resolves here first, as it started here
            self._foreign.discard(series)
            self.series.pop(series, None)
            self.detectors.pop(series, None)
            self.parked.pop(series, None)
            self._idle.discard(series)
            self.recent.pop(series, None)
            self._dirty.add(f"det|{series}")  # checkpointed as a deletion
            if series in self._idle_recs:
                self._dirty.add(f"idle|{series}")

    def _past_floor(self, info: SeriesInfo, w: int, end: int, impact: float | None, excess: float, tracked: bool) -> bool:
        """A window the detector flagged: note the run's peak excess, and say whether it still
        alerts under the floor on-call's "not an anomaly" answers set (:mod:`streams.judge.raising`)."""
        e = float(impact) if impact is not None else float(excess)
        # the run goes on while its alert is tracked or the windows are flagged back to back
        going_on = tracked or info.peak_end == w
        info.peak_usd = max(info.peak_usd, e) if going_on else e
        info.peak_end = end
        r = info.raised
        if r is None:
            return True
        if r.following:
            if going_on:
                r.follow(info.peak_usd, float(end))  # the answered incident goes on: the floor grows, holds
            else:
                r.following = False
        return e >= r.floor_at(end, self.raise_half_life_s)

    def raise_floor(self, series: str, step: float, max_raise: float, answer: dict[str, Any]) -> SeriesRaise | None:
        """On-call answered "not an anomaly" on ``series``: raise its floor from the peak excess
        of its last flagged run (:meth:`SeriesRaise.add`). None: no such series here, no
        excess known for it, or raising is off (``max_raise`` 0)."""
        info = self.series.get(series)
        if info is None:
            return None
        r = info.raised if info.raised is not None else SeriesRaise()
        # the last window judged was flagged: the answered incident still runs
        running = bool(info.peak_end) and info.peak_end == self.done_until
        if not r.add(info.peak_usd, step, max_raise, answer, running, at=float(self.done_until or 0),
                     half_life_s=self.raise_half_life_s):
            return None
        info.raised = r
        self._dirty.add(f"det|{series}")
        return r

    def raises(self) -> dict[str, SeriesRaise]:
        """The series whose floor on-call's answers have raised (for the API)."""
        return {name: info.raised for name, info in list(self.series.items()) if info.raised is not None}

    def floor_now(self, r: SeriesRaise) -> float:
        """A raised floor as it stands after the windows judged so far (decayed: the one a
        flagged window would be held to now)."""
        return r.floor_at(float(self.done_until or 0), self.raise_half_life_s)

    def rebase(self, series: str, mark: str | None = None) -> bool:
        """On-call answered "expected, new normal": the series' detector adopts its current
        level (:meth:`detectors.base.Detector.rebase`). False: no detector for it here.

        ``mark``: the answer's id, when the org stage that resolved the alert is apart
        (``TOKENPULSE_PLACEMENT=series``): the next message's verdicts tell it from which window
        on the series is judged with the new baseline (:class:`~streams.org.verdicts.RebaseMark`;
        also without a detector here, which sends no signal of the series either)."""
        if mark is not None:
            self.rebase_marks[series] = (self.done_until, mark)
            self._dirty.add(f"rbmark|{series}")
        det = self.detector(series)
        if det is None:
            return False
        det.rebase()
        self._dirty.add(f"det|{series}")
        return True

    def alerts_changed(self, keys: Iterable[str], groups: Iterable[str] = ()) -> None:
        """Alert (and group) states changed outside a window (an answer from on-call): written
        with the next checkpoint (the org stage's: :meth:`OrgCore.alerts_changed`)."""
        self.org.alerts_changed(keys, groups)

    def _new_detector(self, labels: dict[str, str]) -> Detector:
        return self.make_detector() if self.detector_for is None else self.detector_for(labels)

    # -- persistence --------------------------------------------------------------------
    def checkpoint(self) -> dict[str, Any]:
        """Key → value changes since the last checkpoint (value None deletes the key).

        A handful of records per checkpoint: the meta record, one record of pending partials
        per (source, window) that changed, one per detector that changed, and the org stage's
        beside it: one per alert and alert group state that changed (:meth:`OrgCore.checkpoint`).
        """
        changes: dict[str, Any] = self.org.checkpoint()
        self.packed_out.clear()
        if self._idle:
            for series in self._idle:  # parked: written now, its record kept packed
                idler = self.series[series]
                self._dirty.discard(f"det|{series}")
                changes[f"det|{series}"] = self._park(series, idler)
                changes[f"idle|{series}"] = self._idle_recs[series]  # (idle_from, None), as _park made it
                self._dirty.discard(f"idle|{series}")
            self._idle.clear()
        for key in self._dirty:
            kind, _, rest = key.partition("|")
            if kind == "meta":
                changes[key] = {
                    "src_wm": {str(k): v for k, v in self.src_wm.items()},
                    "n_src": self.n_src,
                    "done_until": self.done_until,
                }
            elif kind == "pend":
                # one record per (source, window): bounded by the series of one window
                src_s, _, w_s = rest.partition("|")
                src = int(src_s)
                rows = [
                    [p.seq, *p.to_wire()]
                    for per_src in self.pending.get(int(w_s), {}).values()
                    for s, p in per_src.items()
                    if s == src
                ]
                changes[key] = rows or None
            elif kind == "det":
                info = self.series.get(rest)
                if info is None:  # dropped (_drop_foreign)
                    changes[key] = None
                    continue
                changes[key] = self._record(rest, info)
                if rest in self.parked:  # the record of its park stands for its empty windows
                    continue
                if self._idle_recs.pop(rest, None) is not None:  # its empty windows are in this state
                    changes[f"idle|{rest}"] = None
            elif kind == "idle":
                span = self._idle_recs.get(rest) if rest in self.series else None
                if span is None:
                    self._idle_recs.pop(rest, None)
                    changes[key] = None
                elif key not in changes:  # (None: a det record after it was written)
                    changes[key] = span
            elif kind == "rbmark":
                got = self.rebase_marks.get(rest)
                changes[key] = None if got is None else list(got)
        self._dirty.clear()
        return changes

    def spend_changes(self) -> dict[str, Any]:
        """The window records changed since the last call, as the spend table's changelog
        holds them (``"<series>|<window start>"`` -> ``{"s": …, "v": …}``)."""
        out: dict[str, Any] = {}
        for key, w in sorted(self._dirty_spend):
            book = self.spend.get(key)
            out[f"{key.rpartition('|')[0]}|{w}"] = None if book is None else book.window_wire(w)
        self._dirty_spend.clear()
        return out

    def unwritten_spend(self) -> set[tuple[str, int]]:
        """The window records (spend key, window start) changed since the last
        :meth:`spend_changes`: what ``spend`` holds that the changelog does not yet."""
        return set(self._dirty_spend)

    def rewrite_spend(self, records: Iterable[tuple[str, int]]) -> int:
        """Have the next :meth:`spend_changes` write these window records (spend key, window
        start) too, those ``spend`` holds; how many. For books restored ahead of the changelog
        (:meth:`streams.worker.judging.JudgeWorker.revoke` says when)."""
        n = 0
        for key, w in records:
            book = self.spend.get(key)
            if book is not None and book.holds(w, False):
                self._dirty_spend.add((key, w))
                n += 1
        return n

    def restore(self, items: Iterable[tuple[str, Any]], spend: Iterable[tuple[str, Any]] = ()) -> None:
        """Take back a checkpoint (the judge table's records of this partition, the org stage's
        among them) and the spend table's records of the series judged here."""
        org = self.org
        dets: dict[str, tuple[dict[str, Any], bytes | None, Detector | None]] = {}
        idle: dict[str, list[Any]] = {}
        for key, value in items:
            if value is None or (not isinstance(value, bytes) and org.restore_item(key, value)):
                continue
            kind, _, rest = key.partition("|")
            if kind == "meta":
                self.src_wm = {int(k): (None if v is None else int(v)) for k, v in value["src_wm"].items()}
                self.n_src = int(value["n_src"])
                self.done_until = value["done_until"]
            elif kind == "pend":
                src = int(rest.partition("|")[0])
                for row in value:
                    p = Partial.from_wire(row[1:])
                    p.seq = int(row[0])
                    self.pending.setdefault(p.window_start, {}).setdefault(p.series, {})[src] = p
            elif kind == "det":
                # packed (the judge table's local data, restore_items(raw=True)): kept as they
                # are if the series is parked
                blob = value if isinstance(value, bytes) else None
                live = None
                if blob is not None:
                    got = unpack_live(blob)  # a parked series' record, with its detector
                    if got is not None:
                        value, live = got
                    else:
                        value = unpack(blob)
                dets[rest] = (value, blob, live)
                peak = value.get("peak") or (0.0, 0)
                raised = value.get("raised")
                self.series[rest] = SeriesInfo(value["labels"], name=rest, last_end=int(value["last_end"]),
                                               mix=ContributorMix.from_state(value.get("mix")),
                                               peak_usd=float(peak[0]), peak_end=int(peak[1]),
                                               hold_end=int(value.get("hold") or 0),  # none before 2026-12
                                               raised=None if raised is None else SeriesRaise.from_state(raised))
            elif kind == "idle":
                idle[rest] = value
            elif kind == "rbmark":
                self.rebase_marks[rest] = (None if value[0] is None else int(value[0]), str(value[1]))
        for name, (value, blob, live) in dets.items():
            self._restore_detector(name, value, blob, live, idle.pop(name, None))
        for name in idle:  # without its det record: nothing it stands for (deleted)
            self._dirty.add(f"idle|{name}")
        self.spend_loaded = self.restore_spend(spend)
        if self.owns is not None:
            self._foreign = {name for name in self.series if not self.owns(name)}


    def _restore_detector(self, name: str, value: dict[str, Any], blob: bytes | None, live: Detector | None,
                          idle: list[Any] | None) -> None:
        """A series' detector from its record, and the empty windows its ``idle|`` record says
        it had after it (``[from, to]``; ``to`` None: still idle at the checkpoint, every window
        judged up to ``done_until`` since ``from`` empty): a parked series stays parked."""
        info = self.series[name]
        start = None if idle is None else int(idle[0])
        if idle is None or start is None or start < info.last_end:  # none, or not of this state: as before
            if idle is not None:
                self._dirty.add(f"idle|{name}")  # deleted with the next checkpoint
            self.detectors[name] = live if live is not None else self._loaded(value)
            return
        to = self.done_until if idle[1] is None else int(idle[1])
        if idle[1] is None and not (self.park and self._parks(value["labels"])):
            self._dirty.add(f"idle|{name}")  # applied below: the record says up to where
        self._idle_recs[name] = (start, None if idle[1] is None else to)
        if idle[1] is None and self.park and self._parks(value["labels"]):
            self.parked[name] = blob if blob is not None else pack(value)  # (unparked from its state)
            info.mix = None  # (the record holds it, as a park's does)
            info.idle_from = start
            return
        self.detectors[name] = live if live is not None else self._loaded(value)
        info.idle_from = start
        if to is not None:
            self._wake(name, info, to, ring=False)

    def _loaded(self, value: dict[str, Any]) -> Detector:
        det = self._new_detector(value["labels"])
        det.load_state(value["state"])
        return det

    def restore_spend(self, items: Iterable[tuple[str, Any]]) -> list[str]:
        """Take the spend of ``items`` (a spend table's: a :class:`SeriesSpend` per series,
        or the records per window and day that recovery puts there:
        :func:`streams.common.spend.load_records`); the keys of the records read."""
        done, bad = load_records(self.spend, items)
        for why in bad:  # a record no book can hold: said, not silently summed as zero
            log.error("spend record of judge partition %d not restored: %s", self.partition, why)
        return done


def detector_params(window_seconds: int, name: str, params: dict[str, Any]) -> dict[str, Any]:
    """The policy's detector parameters as constructor arguments (component sections gathered
    for the combiner), plus the window length when the model takes one."""
    import inspect

    from detectors import DEFAULT_DETECTOR, DETECTORS
    from detectors.config import detector_kwargs

    out = detector_kwargs(name, params)
    cls = DETECTORS.get(DEFAULT_DETECTOR if name == "default" else name)
    if cls is not None and "window_seconds" in inspect.signature(cls).parameters:
        out.setdefault("window_seconds", window_seconds)
    return out


def judge_factory(
    window_seconds: int, detector_name: str, params: dict[str, Any], alert_policy: dict[str, Any],
    dashboard_url: str | None = None,
    overrides: Iterable[tuple[dict[str, str], dict[str, Any]]] = (),
    raise_half_life_s: float = DEFAULT_HALF_LIFE_S,
    state_every: int = 1,
    new_series: NewSeriesSettings | None = None,
    team_scale_minutes: float = 0.0,
    park: bool = False,
    team_corroboration_p: float = 0.0,
    team_corroboration_strict_p: float = 0.0,
    team_week_ratio: float = 0.0,
    team_week_shift_h: int = 0,
    shift_week_ratio: float = 0.0,
) -> Callable[[int], JudgeCore]:
    """Builds the judge of a partition exactly as the worker does (the replay uses it too).

    ``overrides`` are the policy's per-series detector parameters: (match labels, params),
    later ones winning; a series gets a clone of the detector built for its parameters.
    ``raise_half_life_s``: how fast raised alert floors come down (:mod:`streams.judge.raising`).
    ``state_every``: :attr:`JudgeCore.state_every`.
    ``new_series``: the org stage's new-series rule beside the judge (None: off;
    :func:`new_series_settings` reads it from a :class:`StreamConfig`).
    ``team_scale_minutes``: the org stage's team-scale gate (:attr:`JudgeCore.team_scale_minutes`).
    ``park``: idle series parked (:attr:`JudgeCore.park`; the worker's, not the offline replay's,
    which reads every window's record as it is judged).
    ``team_corroboration_p``: the org stage's team corroboration (:attr:`JudgeCore.team_corroboration_p`);
    ``team_corroboration_strict_p``, ``team_week_ratio``, ``team_week_shift_h``: its week-ago reference.
    ``shift_week_ratio``: the org stage's week-ago check of a sustained shift (:attr:`JudgeCore.shift_week_ratio`).
    """
    from alerts import AlertPolicy
    from detectors import make_detector
    from detectors.config import params_for

    proto = make_detector(detector_name, **detector_params(window_seconds, detector_name, params))
    policy = AlertPolicy(**alert_policy)
    rules = [(dict(m), dict(p)) for m, p in overrides]
    protos: dict[str, Detector] = {}

    def detector_for(labels: dict[str, str]) -> Detector:
        merged = params_for(params, rules, labels)
        if merged == params:
            return proto.clone()
        key = repr(merged)
        found = protos.get(key)
        if found is None:
            found = protos[key] = make_detector(
                detector_name, **detector_params(window_seconds, detector_name, merged)
            )
        return found.clone()

    def build(q: int) -> JudgeCore:
        return JudgeCore(
            partition=q,
            window_seconds=window_seconds,
            make_detector=proto.clone,
            detector_for=detector_for if rules else None,
            engine=AlertEngine(policy, dashboard_url=dashboard_url),
            raise_half_life_s=raise_half_life_s,
            state_every=max(1, state_every),
            new_series=new_series,
            team_scale_minutes=team_scale_minutes,
            park=park,
            team_corroboration_p=team_corroboration_p,
            team_corroboration_strict_p=team_corroboration_strict_p,
            team_week_ratio=team_week_ratio,
            team_week_shift_h=team_week_shift_h,
            shift_week_ratio=shift_week_ratio,
        )

    return build


def new_series_settings(cfg: Any) -> NewSeriesSettings | None:
    """The new-series rule's settings of a :class:`streams.common.config.StreamConfig` (None:
    off, or nothing for it to judge: the team x model series are not watched)."""
    if cfg.new_series is None or "team×model" not in cfg.watched:
        return None
    got = dict(cfg.new_series)
    wow = got.pop("week_over_week", None)  # the week-over-week judge rides on the rule's hourly sums
    burst = got.pop("team_burst", None)  # so does the team burst rule (the team's mean spend)
    return NewSeriesSettings(**got, week_over_week=None if wow is None else WeekOverWeekSettings(**wow),
                             team_burst=None if burst is None else TeamBurstSettings(**burst))
