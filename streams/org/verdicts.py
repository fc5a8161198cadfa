"""What a judge partition tells the org stage after each windows message it judged.

The judge stage (:class:`streams.judge.core.JudgeCore`) keeps what is one series' alone: the
merge of partials, the detector, the contributor mix, the exact spend. What the org stage
(:class:`streams.org.core.OrgCore`) needs from it is small, and this module is all of it:

- per window judged, the :class:`~alerts.Signal` of each series whose window was flagged or
  whose alert the org tracks (:class:`WindowVerdict`; a window with no signal is listed too: its
  end still drives the engine's group timers);
- the spend rows judged (what :meth:`BudgetLedger.apply_judge_spend` and the mix watch take);
- the judge's watermark after the message;
- the rebases it applied since its last message (:class:`RebaseMark`: on-call's "expected, new
  normal" reached the series' detector), so that the org stage knows from which window on the
  series was judged with its new baseline.

Today every series of an org is judged on the org's own partition, and the org stage runs
beside the judge, stepped window by window (:attr:`JudgeCore.org`); the same values are what a
judge partition would send on a verdicts topic once a series is judged on the partition its
name hashes to (docs/architecture.md, "Design: each series on the partition its name hashes to").

Pure data, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from alerts import Signal
from streams.common.dimensions import org_of
from streams.common.partitioning import org_partition

__all__ = ["MAX_MESSAGE_BYTES", "RebaseMark", "SpendRow", "Verdicts", "WindowVerdict", "for_org_partitions", "wire_parts"]

# The most one verdicts message may hold, serialised: well under the producer's (and a Kafka
# broker's) 1 MB default, so a judge that catches up on a backlog (hours of windows judged from
# one windows message, every team's expected spend in each) sends it in parts rather than a
# message the producer refuses, which stopped the judge agent.
MAX_MESSAGE_BYTES = 512 * 1024

# (series, window start, sums, {source: message seq}): JudgeOutput.spend's rows
SpendRow = tuple[str, int, list[int], dict[int, int]]


@dataclass(slots=True)
class WindowVerdict:
    """One window judged on one judge partition: its signals (often none), and, with the
    team-scale gate on, each team series' expected spend in it (``expected``: team series ->
    dollars, for the teams with spend in the window; what :meth:`OrgCore.team_scale` holds a
    team×model series' flag to, wherever that series was judged). With the team corroboration
    on, each team series' surprise p-value in it (``team_p``: team series -> p, for the teams
    with spend in the window; what :meth:`OrgCore.corroborate` holds a team×model series' flag
    to)."""

    start: int
    end: int
    signals: list[Signal] = field(default_factory=list)
    expected: dict[str, float] = field(default_factory=dict)
    team_p: dict[str, float] = field(default_factory=dict)

    def to_wire(self) -> list[Any]:
        row: list[Any] = [self.start, self.end, [s.to_dict() for s in self.signals]]
        if self.expected or self.team_p:  # left out otherwise, as it was before the gate existed
            row.append(dict(self.expected))
        if self.team_p:  # a fifth element, left out without the corroboration (older readers ignore it)
            row.append(dict(self.team_p))
        return row

    @classmethod
    def from_wire(cls, row: list[Any]) -> WindowVerdict:
        expected = {str(k): float(v) for k, v in row[3].items()} if len(row) > 3 and row[3] else {}
        team_p = {str(k): float(v) for k, v in row[4].items()} if len(row) > 4 and row[4] else {}
        return cls(int(row[0]), int(row[1]), [Signal.from_dict(d) for d in row[2]], expected, team_p)


@dataclass(slots=True, frozen=True)
class RebaseMark:
    """A judge partition applied the detector part of on-call's answer ``answer`` ("expected,
    new normal") to ``series`` before judging the window that starts at ``from_window``: the
    windows before it were judged with the old baseline, those from it on with the new one
    (``from_window`` None: the judge had judged no window yet). It rides on the judge's next
    verdicts message, so it reaches the org stage after every window judged before the rebase,
    and a judge that replays re-sends it under the same seq (:meth:`OrgCore.receive`)."""

    series: str
    from_window: int | None
    answer: str

    def to_wire(self) -> list[Any]:
        return [self.series, self.from_window, self.answer]

    @classmethod
    def from_wire(cls, row: list[Any]) -> RebaseMark:
        return cls(str(row[0]), None if row[1] is None else int(row[1]), str(row[2]))


@dataclass(slots=True)
class Verdicts:
    """What one windows message gave on judge partition ``judge``, for one org partition.

    ``seq`` orders one judge partition's verdicts (-1: not numbered; the org stage beside its
    judge needs no numbers, as the judge's checkpoint covers both); the org stage applies each
    (judge, seq) once. ``watermark`` is the judge's after the message (None: not every source
    heard from yet). ``rebased``: the rebases the judge applied just before the message
    (:class:`RebaseMark`; a message without the field, from a version before it, has none)."""

    judge: int
    seq: int = -1
    windows: list[WindowVerdict] = field(default_factory=list)
    spend: list[SpendRow] = field(default_factory=list)
    watermark: float | None = None
    rebased: list[RebaseMark] = field(default_factory=list)
    # Which part of the windows message's verdicts this is (:func:`wire_parts`): the org stage
    # applies each (judge, seq, part) once, parts of one seq in order.
    part: int = 0

    def to_wire(self) -> dict[str, Any]:
        """A JSON-able form (seqs' source keys become strings, as JSON objects have them).

        A run of back-to-back windows without signals is one ``{"run": [start, width, count]}``:
        a judge that jumps over a gap in event time (a backfill starting yesterday) judges every
        window in between, and as one row each the message passed the producer's 1 MB limit
        (a day of 2 s windows) and stopped the judge agent."""
        body = {"judge": self.judge, "seq": self.seq, "windows": _windows_to_wire(self.windows),
                "spend": [[s, w, list(sums), {str(k): v for k, v in seqs.items()}] for s, w, sums, seqs in self.spend],
                "wm": self.watermark}
        if self.rebased:  # rare: left out otherwise, as it was before marks existed
            body["rebased"] = [m.to_wire() for m in self.rebased]
        if self.part:  # left out for a message in one part, as before parts existed
            body["part"] = self.part
        return body

    @classmethod
    def from_wire(cls, body: dict[str, Any]) -> Verdicts:
        wm = body.get("wm")
        return cls(int(body["judge"]), int(body["seq"]), _windows_from_wire(body["windows"]),
                   [(str(s), int(w), [int(x) for x in sums], {int(k): int(v) for k, v in seqs.items()})
                    for s, w, sums, seqs in body["spend"]],
                   None if wm is None else float(wm),
                   [RebaseMark.from_wire(r) for r in body.get("rebased") or ()],
                   int(body.get("part") or 0))


def wire_parts(v: Verdicts, dumps: Any, limit: int = MAX_MESSAGE_BYTES) -> list[bytes]:
    """``v`` serialised (``dumps`` of :meth:`Verdicts.to_wire`) as one message, or as several
    of at most ``limit`` bytes each when it is bigger: its windows split in runs, each part with
    the spend rows of its windows; the rebase marks go with the first part (they came before the
    message) and the watermark with the last (the org stage steps nothing on a part before it).
    Deterministic, so that a judge replaying the same windows message sends the same parts.
    A single window bigger than ``limit`` alone goes as one part (the producer may refuse it)."""
    one = dumps(v.to_wire())
    if len(one) <= limit or len(v.windows) <= 1:
        return [one]
    chunks = _split(v.windows, v.spend, dumps, limit)
    out: list[bytes] = []
    for i, (windows, spend) in enumerate(chunks):
        last = i == len(chunks) - 1
        part = Verdicts(v.judge, v.seq, windows, spend, v.watermark if last else None,
                        v.rebased if i == 0 else [], i)
        out.append(dumps(part.to_wire()))
    return out


def _split(windows: list[WindowVerdict], spend: list[SpendRow], dumps: Any, limit: int
           ) -> list[tuple[list[WindowVerdict], list[SpendRow]]]:
    """Windows, with the spend rows of them, halved until each run serialises within
    ``limit`` (a row goes with the run whose windows' span holds its window; rows before the
    first window with the first run). Only a run over the limit is serialised again."""
    if len(windows) <= 1 or len(dumps(Verdicts(0, 0, windows, spend).to_wire())) <= limit:
        return [(windows, spend)]
    mid = len(windows) // 2
    cut = windows[mid].start
    return (_split(windows[:mid], [r for r in spend if r[1] < cut], dumps, limit)
            + _split(windows[mid:], [r for r in spend if r[1] >= cut], dumps, limit))


def _windows_to_wire(windows: list[WindowVerdict]) -> list[Any]:
    out: list[Any] = []
    i, n = 0, len(windows)
    while i < n:
        w = windows[i]
        j = i + 1
        if not w.signals and not w.expected and not w.team_p:
            width = w.end - w.start
            while (j < n and not windows[j].signals and not windows[j].expected and not windows[j].team_p
                   and windows[j].start == windows[j - 1].end
                   and windows[j].end - windows[j].start == width):
                j += 1
        if j - i > 1:
            out.append({"run": [w.start, width, j - i]})
        else:
            out.append(w.to_wire())
        i = j
    return out


def _windows_from_wire(rows: list[Any]) -> list[WindowVerdict]:
    out: list[WindowVerdict] = []
    for r in rows:
        if isinstance(r, dict):
            start, width, count = (int(x) for x in r["run"])
            out.extend(WindowVerdict(start + k * width, start + (k + 1) * width) for k in range(count))
        else:
            out.append(WindowVerdict.from_wire(r))
    return out


def for_org_partitions(v: Verdicts, n: int) -> dict[int, Verdicts]:
    """One judge partition's verdicts split by org partition
    (:func:`streams.common.partitioning.org_partition` of each series' org), for a verdicts topic
    of ``n`` partitions: each org partition gets the windows (with only its orgs' signals: a window
    without any still drives the engine's group timers) and the watermark -- every org partition,
    as an org stage waits for every judge partition -- and the spend rows and rebase marks of its
    orgs' series (and each window's team expected spends and p-values, :attr:`WindowVerdict.expected`,
    :attr:`WindowVerdict.team_p`)."""
    out = {p: Verdicts(v.judge, v.seq, [WindowVerdict(w.start, w.end, []) for w in v.windows], [], v.watermark)
           for p in range(n)}
    for i, w in enumerate(v.windows):
        for sg in w.signals:
            out[org_partition(org_of(sg.series), n)].windows[i].signals.append(sg)
        for series, e in w.expected.items():
            out[org_partition(org_of(series), n)].windows[i].expected[series] = e
        for series, tp in w.team_p.items():
            out[org_partition(org_of(series), n)].windows[i].team_p[series] = tp
    for row in v.spend:
        out[org_partition(org_of(row[0]), n)].spend.append(row)
    for mark in v.rebased:
        out[org_partition(org_of(mark.series), n)].rebased.append(mark)
    return out
