"""On-call answered "not an anomaly": that series' alerts need more money from now on.

The judge applies the raise around the detector, so no model changes: a window the detector
flags stays an alert for the engine only when the incident's excess over expected so far
(``Verdict.impact``, or the window's ``excess`` for models that do not track incidents) has
reached the series' floor (:attr:`SeriesRaise.floor_usd`). What the detector learns is left as
it was: the raise decides only what on-call hears.

Each answer sets the floor to ``step`` times the peak excess of the series' last flagged run
(the incident that was answered, :attr:`streams.judge.core.SeriesInfo.peak_usd`), and never
above ``max_raise`` times the peak of the first incident answered so (the bound the policy
sets, ``detector.feedback`` in the policy file): an incident the size of the one answered no
longer alerts, a larger one still does, and no run of presses can silence a series. An answer
usually comes while its incident still runs (on-call presses within minutes): the floor follows
that incident's peak until it is over, so it is the whole incident that no longer alerts, not
its first minutes.

Used by both the worker's feedback agent (:class:`streams.worker.feedback.FeedbackWorker`) and
the offline replay (``tokenpulse replay --feedback``), through :func:`not_anomaly`: the same
code path, so a replayed answer cuts the same alerts as a pressed one. Pure Python, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.judge.core import JudgeCore

__all__ = ["NOT_ANOMALY", "SeriesRaise", "not_anomaly"]

NOT_ANOMALY = "tokenpulse_not_anomaly"
_KEEP_ANSWERS = 5  # the last answers kept with the raise, for the API (why it is where it is)


@dataclass
class SeriesRaise:
    """How far on-call's "not an anomaly" answers have raised one series' alert floor, and why.

    ``floor_usd``: a flagged window alerts only once the incident's excess so far reaches it.
    ``ref_usd``: the first answered incident's peak excess (the cap is ``max_raise`` times it).
    ``answers``: the last few answers that moved it (id, who, when, alert key, peak excess, the
    floor after it), oldest first; ``count``: how many answers in all. ``following``: the
    last answered incident still runs, and the floor follows its peak (:meth:`follow`), with
    the ``step`` and ``max_raise`` in force when it was answered.
    """

    floor_usd: float = 0.0
    ref_usd: float = 0.0
    count: int = 0
    answers: list[dict[str, Any]] = field(default_factory=list)
    following: bool = False
    step: float = 1.0
    max_raise: float = 0.0

    def to_state(self) -> dict[str, Any]:
        return {"floor_usd": self.floor_usd, "ref_usd": self.ref_usd, "count": self.count,
                "answers": [dict(a) for a in self.answers], "following": self.following, "step": self.step,
                "max_raise": self.max_raise}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> SeriesRaise:
        return cls(float(data.get("floor_usd") or 0.0), float(data.get("ref_usd") or 0.0),
                   int(data.get("count") or 0), [dict(a) for a in data.get("answers") or ()],
                   bool(data.get("following")), float(data.get("step") or 1.0), float(data.get("max_raise") or 0.0))

    def follow(self, peak_usd: float) -> None:
        """The answered incident goes on and its excess has grown to ``peak_usd``: the floor (and,
        for the first answered incident, the reference of the cap) grows with it."""
        if self.count == 1 and peak_usd > self.ref_usd:
            self.ref_usd = peak_usd
        floor = min(max(self.floor_usd, self.step * peak_usd), self.max_raise * self.ref_usd)
        if floor != self.floor_usd:
            self.floor_usd = floor
            if self.answers:
                self.answers[-1] = {**self.answers[-1], "peak_usd": round(peak_usd, 6), "floor_usd": round(floor, 6)}

    def add(self, peak_usd: float, step: float, max_raise: float, answer: dict[str, Any], running: bool = False) -> bool:
        """One more answer on an incident whose excess peaked at ``peak_usd`` (so far, when it is
        ``running``: the floor then follows it until it is over); False when it
        changes nothing (no excess known, raising is off, or this answer was applied before: a
        crash between the judge's checkpoint and the answer's record applies it again)."""
        if peak_usd <= 0.0 or max_raise <= 0.0:
            return False
        if answer.get("id") and any(a.get("id") == answer["id"] for a in self.answers):
            return True
        if self.ref_usd <= 0.0:
            self.ref_usd = peak_usd
        self.floor_usd = min(max(self.floor_usd, step * peak_usd), max_raise * self.ref_usd)
        self.following, self.step, self.max_raise = running, step, max_raise
        self.count += 1
        self.answers = [*self.answers, {**answer, "peak_usd": round(peak_usd, 6),
                                        "floor_usd": round(self.floor_usd, 6)}][-_KEEP_ANSWERS:]
        return True


def not_anomaly(judge: JudgeCore, key: str, series: str, started_at: float | None, *, step: float,
                max_raise: float, answer: dict[str, Any]) -> tuple[list[str], list[str]]:
    """Apply one "not an anomaly" answer to the alert ``key`` (of ``series``): raise the floor of
    every series the answer speaks for -- the members firing in the group ``key`` leads, or
    ``series`` when nothing fires any more (the answer came after the resolve) -- on ``judge``.

    ``answer`` is what is recorded with the raise (id, who, when: the reason it was raised).
    Returns (the series raised, one line per series saying to what) for the answer's outcome.
    """
    firing = judge.engine.answered(key, started_at)
    names = [st.series for st in firing] or [series]
    raised, lines = [], []
    for name in names:
        r = judge.raise_floor(name, step, max_raise, {**answer, "key": key})
        if r is not None:
            raised.append(name)
            lines.append(f"{name} alerts from ${r.floor_usd:,.2f} over expected")
    return raised, lines
