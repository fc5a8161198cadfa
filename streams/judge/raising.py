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

The floor does not stay up for ever: without another answer it halves every ``half_life``
(the policy's ``detector.feedback.floor_half_life_days``, 14 days by default) from the time it
was last set -- the answer, or the last window of the answered incident when the floor followed
it -- so a series whose spend has moved on is heard again in the end. The decayed floor is a
function of what is persisted (the floor, the event time it was set at) and of event time, not
something stepped window by window, so a restart, a replay and the live judge agree to the bit.

Used by both the worker's feedback agent (:class:`streams.worker.feedback.FeedbackWorker`) and
the offline replay (``tokenpulse replay --feedback``), through :func:`not_anomaly`: the same
code path, so a replayed answer cuts the same alerts as a pressed one. Pure Python, no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from streams.judge.core import JudgeCore

__all__ = ["DEFAULT_HALF_LIFE_S", "NOT_ANOMALY", "SeriesRaise", "not_anomaly"]

NOT_ANOMALY = "tokenpulse_not_anomaly"
DEFAULT_HALF_LIFE_S = 14 * 86400.0  # the policy's default floor_half_life_days
_KEEP_ANSWERS = 5  # the last answers kept with the raise, for the API (why it is where it is)


@dataclass
class SeriesRaise:
    """How far on-call's "not an anomaly" answers have raised one series' alert floor, and why.

    ``floor_usd``: the floor as set at ``since`` (event time: the last answer, or the last window
    of the answered incident it followed); a flagged window alerts only once the incident's
    excess so far reaches the floor as it has decayed since then (:meth:`floor_at`).
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
    since: float | None = None  # None: not known (state written before floors decayed): no decay

    def to_state(self) -> dict[str, Any]:
        return {"floor_usd": self.floor_usd, "ref_usd": self.ref_usd, "count": self.count,
                "answers": [dict(a) for a in self.answers], "following": self.following, "step": self.step,
                "max_raise": self.max_raise, "since": self.since}

    @classmethod
    def from_state(cls, data: dict[str, Any]) -> SeriesRaise:
        answers = [dict(a) for a in data.get("answers") or ()]
        since = data.get("since")
        if since is None and answers and isinstance(answers[-1].get("window_end"), int | float):
            # state written before floors decayed: the last answer's event time is when it was set
            since = answers[-1]["window_end"]
        return cls(float(data.get("floor_usd") or 0.0), float(data.get("ref_usd") or 0.0),
                   int(data.get("count") or 0), answers,
                   bool(data.get("following")), float(data.get("step") or 1.0), float(data.get("max_raise") or 0.0),
                   None if since is None else float(since))

    def floor_at(self, t: float, half_life_s: float) -> float:
        """The floor at event time ``t``: :attr:`floor_usd` halved every ``half_life_s`` seconds
        after :attr:`since` (``half_life_s`` 0: it never decays).

        >>> SeriesRaise(floor_usd=80.0, since=0.0).floor_at(28 * 86400, 14 * 86400)
        20.0
        """
        if half_life_s <= 0.0 or self.since is None or t <= self.since:
            return self.floor_usd
        return self.floor_usd * 0.5 ** ((t - self.since) / half_life_s)

    def follow(self, peak_usd: float, at: float) -> None:
        """The answered incident goes on (its window ending at ``at`` was flagged) and its excess
        has grown to ``peak_usd``: the floor (and, for the first answered incident, the reference
        of the cap) grows with it, and holds until the incident is over."""
        self.since = at
        if self.count == 1 and peak_usd > self.ref_usd:
            self.ref_usd = peak_usd
        floor = min(max(self.floor_usd, self.step * peak_usd), self.max_raise * self.ref_usd)
        if floor != self.floor_usd:
            self.floor_usd = floor
            if self.answers:
                self.answers[-1] = {**self.answers[-1], "peak_usd": round(peak_usd, 6), "floor_usd": round(floor, 6)}

    def add(self, peak_usd: float, step: float, max_raise: float, answer: dict[str, Any], running: bool = False, *,
            at: float = 0.0, half_life_s: float = 0.0) -> bool:
        """One more answer, applied at event time ``at``, on an incident whose excess peaked at
        ``peak_usd`` (so far, when it is ``running``: the floor then follows it until it is
        over): the floor becomes the larger of ``step`` times that peak and the floor as it has
        decayed by ``at`` (``half_life_s``), and starts decaying again from ``at``. False when it
        changes nothing (no excess known, raising is off, or this answer was applied before: a
        crash between the judge's checkpoint and the answer's record applies it again)."""
        if peak_usd <= 0.0 or max_raise <= 0.0:
            return False
        if answer.get("id") and any(a.get("id") == answer["id"] for a in self.answers):
            return True
        if self.ref_usd <= 0.0:
            self.ref_usd = peak_usd
        self.floor_usd = min(max(self.floor_at(at, half_life_s), step * peak_usd), max_raise * self.ref_usd)
        self.since = at
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
